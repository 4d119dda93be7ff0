"""The reconciler's decisions, over a fake API server: a missing Job is re-created while attempts
remain, else the job fails JobDeleted; a lost conflict is retried from a fresh read; a quiet
round writes nothing."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from ffmpeg_operator import handlers
from ffmpeg_operator.context import Context
from ffmpeg_operator.metrics import Metrics
from ffmpeg_operator.settings import OperatorSettings
from ffmpegjob_model.pools import parse_pools
from kubernetes.client.rest import ApiException

POOLS = parse_pools("cpu:\n  image: worker:cpu\n  nodeSelector: {kubeffmpeg.io/pool: cpu}\n")


class FakeBatch:
    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube

    def create_namespaced_job(self, ns: str, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        if name in self.kube.jobs:
            raise ApiException(status=409)
        self.kube.jobs[name] = {**copy.deepcopy(body), "status": {}}
        self.kube.jobs[name]["metadata"]["uid"] = f"juid-{name}"


class FakeKube:
    def __init__(self, ffj: dict[str, Any]) -> None:
        self.ffj = ffj
        self.jobs: dict[str, dict[str, Any]] = {}
        self.writes: list[dict[str, Any]] = []
        self.conflicts = 0
        self.batch = FakeBatch(self)

    def get_ffmpegjob(self, ns: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.ffj)

    def iter_ffmpegjobs(self, ns: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(self.ffj)]

    def iter_jobs(self, ns: str, selector: str) -> list[dict[str, Any]]:
        return list(self.jobs.values())

    def iter_pods(self, ns: str, selector: str) -> list[dict[str, Any]]:
        return []

    def read_job(self, ns: str, name: str) -> dict[str, Any] | None:
        return self.jobs.get(name)

    def list_pods(self, ns: str, selector: str) -> list[dict[str, Any]]:
        return []

    def patch_status(self, ns: str, name: str, status: dict[str, Any], rv: str | None = None) -> None:
        if self.conflicts:
            self.conflicts -= 1
            self.ffj["metadata"]["resourceVersion"] = str(int(self.ffj["metadata"]["resourceVersion"]) + 1)
            raise ApiException(status=409)
        assert rv == self.ffj["metadata"]["resourceVersion"]
        self.writes.append(status)
        self.ffj["status"] = {**self.ffj["status"], **status}
        self.ffj["metadata"]["resourceVersion"] = str(int(rv) + 1)

    def delete_job(self, ns: str, name: str) -> bool:
        return self.jobs.pop(name, None) is not None

    def label_finished(self, ns: str, name: str) -> None:
        pass


class FakePools:
    def get(self) -> Any:
        return POOLS


def ffj(backoff: int = 0, **status: Any) -> dict[str, Any]:
    return {"apiVersion": "kubeffmpeg.io/v1alpha1", "kind": "FFmpegJob",
            "metadata": {"name": "j", "namespace": "ffmpeg", "uid": "u1", "generation": 1, "resourceVersion": "1"},
            "spec": {"outputs": [{"name": "o.mp4"}], "output": {"dirId": "d"}, "backoffLimit": backoff,
                     "commands": ["-f lavfi -i testsrc -t 1 {{o.mp4}}"]},
            "status": {"phase": "Running", "jobName": "ffj-u1", **status}}


class EmptyStore:
    """A bucket with nothing in scratch/."""

    bucket = "b"

    def get_paginator(self, _: str) -> Any:
        class Pages:
            def paginate(self, **_: Any) -> list[dict[str, Any]]:
                return [{}]
        return Pages()


def context(kube: FakeKube) -> Context:
    c = Context(settings=OperatorSettings(ffmpeg_namespace="ffmpeg"), kube=kube,  # type: ignore[arg-type]
                metrics=Metrics(), pools=FakePools())  # type: ignore[arg-type]
    c.__dict__.update(storage=EmptyStore(), s3=EmptyStore())  # the cached properties
    return c


def test_a_missing_job_is_recreated_while_attempts_remain_then_the_job_fails() -> None:
    kube = FakeKube(ffj(backoff=1))
    c = context(kube)
    handlers.housekeeping_round(c)
    assert list(kube.jobs) == ["ffj-u1-r1"] and kube.jobs["ffj-u1-r1"]["spec"]["backoffLimit"] == 0
    st = kube.ffj["status"]
    assert (st["phase"], st["reason"], st["jobName"], st["jobRestarts"]) == ("Pending", "JobRecreated", "ffj-u1-r1", 1)
    handlers.housekeeping_round(c)  # the Job is there, its pod not yet
    assert kube.ffj["status"]["message"] == "waiting for the worker pod"
    writes = len(kube.writes)
    handlers.housekeeping_round(c)  # nothing changed: nothing written
    assert len(kube.writes) == writes
    kube.jobs.clear()  # deleted again: no attempt left
    handlers.housekeeping_round(c)
    st = kube.ffj["status"]
    assert (st["phase"], st["reason"]) == ("Failed", "JobDeleted") and "ffj-u1-r1" in st["message"]


def test_a_job_that_vanished_after_the_worker_saved_its_result_succeeded() -> None:
    kube = FakeKube(ffj(result=[{"fileName": "o.mp4", "sizeBytes": 1, "storagePath": "d/o.mp4"}]))
    handlers.sync(context(kube), "ffmpeg", "j")
    assert (kube.ffj["status"]["phase"], kube.jobs) == ("Succeeded", {})


def test_a_lost_conflict_is_retried_from_fresh_state_and_giving_up_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    kube = FakeKube(ffj())
    kube.conflicts = 2
    handlers.sync(context(kube), "ffmpeg", "j")
    assert kube.ffj["status"]["reason"] == "JobDeleted"
    kube = FakeKube(ffj())
    kube.conflicts = 99
    handlers.sync(context(kube), "ffmpeg", "j")
    assert kube.ffj["status"]["phase"] == "Running"
    assert "gave up writing the status of FFmpegJob ffmpeg/j" in caplog.text
