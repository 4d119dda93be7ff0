"""The reconciler's decisions, over a fake API server: a missing Job is re-created while attempts
remain, else the job fails JobDeleted; a lost conflict is retried from a fresh read; a quiet
round writes nothing."""

from __future__ import annotations

import base64
import copy
from types import SimpleNamespace
from typing import Any

import pytest
from ffmpeg_operator import handlers
from ffmpeg_operator.context import Context
from ffmpeg_operator.grants import Signer
from ffmpeg_operator.metrics import Metrics
from ffmpeg_operator.settings import OperatorSettings
from ffmpegjob_model.grants import GRANTS_FILE, Grants
from ffmpegjob_model.pools import parse_pools
from ffmpegjob_model.settings import S3Settings
from ffmpegjob_model.storage_layout import file_key
from kubernetes.client.rest import ApiException

POOLS = parse_pools("cpu:\n  image: worker:cpu\n  nodeSelector: {kubeffmpeg.io/pool: cpu}\n")
S3 = S3Settings.model_validate({"endpoint_url": "http://minio:9000", "bucket": "b",
                                "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t"})


class FakeIdentityApi:
    """Creates, reads and deletes a job's identity objects (ServiceAccount, Role, RoleBinding,
    grants Secret) over a dict: (kind, name) -> manifest."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.created: list[tuple[str, str]] = []

    def _create(self, body: dict[str, Any]) -> Any:
        k = (body["kind"], body["metadata"]["name"])
        if k in self.objects:
            raise ApiException(status=409)
        self.objects[k] = copy.deepcopy(body)
        self.objects[k]["metadata"]["uid"] = f"uid-{len(self.created)}"
        self.created.append(k)
        return SimpleNamespace(data=b"{}")  # an unparsed answer (_preload_content=False)

    def _delete(self, kind: str, name: str, body: Any = None) -> None:
        obj = self.objects.get((kind, name))
        if obj is None:
            raise ApiException(status=404)
        if body is not None and body.preconditions.uid != obj["metadata"]["uid"]:
            raise ApiException(status=409)
        del self.objects[(kind, name)]

    def __getattr__(self, attr: str) -> Any:
        verb, _, kind = attr.partition("_namespaced_")
        kind = "".join(w.capitalize() for w in kind.split("_")).replace("Serviceaccount", "ServiceAccount")
        if verb == "create":
            return lambda ns, body, **_: self._create(body)
        if verb == "delete":
            return lambda name, ns, body=None: self._delete(kind, name, body)
        raise AttributeError(attr)

    def read_namespaced_secret(self, name: str, ns: str) -> Any:
        body = self.objects.get(("Secret", name))
        if body is None:
            raise ApiException(status=404)
        data = {k: base64.b64encode(v.encode()).decode() for k, v in body["stringData"].items()}
        meta = SimpleNamespace(annotations=body["metadata"].get("annotations"), uid=body["metadata"]["uid"])
        return SimpleNamespace(metadata=meta, data=data)


class FakeBatch:
    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube

    def create_namespaced_job(self, ns: str, body: dict[str, Any], **_: Any) -> Any:
        name = body["metadata"]["name"]
        if name in self.kube.jobs:
            raise ApiException(status=409)
        self.kube.jobs[name] = {**copy.deepcopy(body), "status": {}}
        self.kube.jobs[name]["metadata"]["uid"] = f"juid-{name}"
        return SimpleNamespace(data=b"{}")


class FakeKube:
    def __init__(self, ffj: dict[str, Any]) -> None:
        self.ffj = ffj
        self.jobs: dict[str, dict[str, Any]] = {}
        self.writes: list[dict[str, Any]] = []
        self.conflicts = 0
        self.batch = FakeBatch(self)
        self.core = self.rbac = FakeIdentityApi()

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
    """A bucket with nothing in scratch/, holding the objects of `sizes` (key -> bytes)."""

    bucket = "b"

    def __init__(self, sizes: dict[str, int] | None = None) -> None:
        self.sizes = sizes or {}

    def get_paginator(self, _: str) -> Any:
        sizes = self.sizes

        class Pages:
            def paginate(self, Prefix: str = "", **_: Any) -> list[dict[str, Any]]:
                return [{"Contents": [{"Key": k, "Size": n} for k, n in sizes.items() if k.startswith(Prefix)]}]
        return Pages()


def context(kube: FakeKube) -> Context:
    c = Context(settings=OperatorSettings(ffmpeg_namespace="ffmpeg", grant_multipart_parts=0),
                kube=kube, metrics=Metrics(), pools=FakePools())  # type: ignore[arg-type]
    # The cached properties: no storage requests (presigning is local computation).
    c.__dict__.update(storage=EmptyStore(), s3=S3, signer=Signer(S3, client=EmptyStore()))
    return c


def test_a_missing_job_is_recreated_while_attempts_remain_then_the_job_fails() -> None:
    kube = FakeKube(ffj(backoff=1))
    c = context(kube)
    handlers.housekeeping_round(c)
    assert list(kube.jobs) == ["ffj-u1-r1"] and kube.jobs["ffj-u1-r1"]["spec"]["backoffLimit"] == 0
    st = kube.ffj["status"]
    assert (st["phase"], st["reason"], st["jobName"], st["jobRestarts"]) == ("Pending", "JobRecreated", "ffj-u1-r1", 1)
    # The re-created Job's pods run as the job's identity, with grants presigned anew for it.
    pod = kube.jobs["ffj-u1-r1"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "ffj-u1"
    assert {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v} == {"ffj-u1-grants"}
    ids = kube.core.objects
    assert {k for k in ids} == {("ServiceAccount", "ffj-u1"), ("Role", "ffj-u1"), ("RoleBinding", "ffj-u1"),
                                ("Secret", "ffj-u1-grants")}
    secret = ids[("Secret", "ffj-u1-grants")]
    assert secret["metadata"]["annotations"][handlers.ANNOTATION_GRANTS_FOR] == "ffj-u1-r1"
    grants = Grants.model_validate_json(secret["stringData"][GRANTS_FILE])
    assert set(grants.outputs) == {"o.mp4"} and grants.scratch == {}  # one command: no checkpoints
    handlers.housekeeping_round(c)  # the Job is there, its pod not yet
    assert kube.ffj["status"]["message"] == "waiting for the worker pod"
    writes = len(kube.writes)
    handlers.housekeeping_round(c)  # nothing changed: nothing written
    assert len(kube.writes) == writes
    kube.jobs.clear()  # deleted again: no attempt left
    handlers.housekeeping_round(c)
    st = kube.ffj["status"]
    assert (st["phase"], st["reason"]) == ("Failed", "JobDeleted") and "ffj-u1-r1" in st["message"]
    c.background.shutdown(wait=True)
    assert kube.core.objects == {}  # the finished job's identity is released


def test_a_recreated_job_keeps_grants_presigned_for_it_and_replaces_older_ones() -> None:
    kube = FakeKube(ffj(backoff=3))
    c = context(kube)
    handlers.housekeeping_round(c)  # ffj-u1-r1, with grants for it
    first = kube.core.objects[("Secret", "ffj-u1-grants")]
    kube.ffj["status"]["jobName"] = "ffj-u1"  # as if the status write had been lost: r1 once more
    kube.ffj["status"]["jobRestarts"] = 0
    handlers.housekeeping_round(c)
    assert kube.core.objects[("Secret", "ffj-u1-grants")] is first  # kept: r1's pod may read it
    kube.jobs.clear()
    handlers.housekeeping_round(c)  # ffj-u1-r2: the Secret is presigned anew
    assert sorted(kube.jobs) == ["ffj-u1-r2"]
    renewed = kube.core.objects[("Secret", "ffj-u1-grants")]
    assert renewed["metadata"]["annotations"][handlers.ANNOTATION_GRANTS_FOR] == "ffj-u1-r2"
    assert kube.core.created.count(("Secret", "ffj-u1-grants")) == 2
    assert kube.core.created.count(("ServiceAccount", "ffj-u1")) == 1  # never deleted between attempts


RESULT = [{"fileName": "o.mp4", "sizeBytes": 7, "storagePath": "d/o.mp4"}]


def test_a_job_that_vanished_after_its_outputs_were_stored_succeeded() -> None:
    kube = FakeKube(ffj(result=RESULT))
    c = context(kube)
    c.__dict__["storage"] = EmptyStore({file_key("default", "d", "o.mp4"): 7})
    handlers.sync(c, "ffmpeg", "j")
    assert (kube.ffj["status"]["phase"], kube.jobs) == ("Succeeded", {})


@pytest.mark.parametrize("stored", [{}, {file_key("default", "d", "o.mp4"): 3}], ids=["missing", "partial"])
def test_a_result_whose_upload_did_not_finish_is_not_a_success(stored: dict[str, int]) -> None:
    """The worker records its result while the last uploads finish: a Job deleted in that window
    left a result that storage does not back, so the work runs again (or fails, no attempts left)."""
    kube = FakeKube(ffj(result=RESULT, backoff=1))
    c = context(kube)
    c.__dict__["storage"] = EmptyStore(stored)
    handlers.sync(c, "ffmpeg", "j")
    st = kube.ffj["status"]
    assert (st["phase"], st["reason"], st["result"], list(kube.jobs)) == ("Pending", "JobRecreated", None,
                                                                          ["ffj-u1-r1"])
    c.background.shutdown(wait=True)


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


def test_two_renewals_at_once_never_delete_the_newer_secret() -> None:
    """Two handlers both saw the Job missing: the second read the old Secret, the first replaced
    it meanwhile; the second's delete is refused (a precondition on the uid it read)."""
    kube = FakeKube(ffj(backoff=3))
    c = context(kube)
    handlers.housekeeping_round(c)  # ffj-u1-r1, with its Secret
    stale = kube.core.read_namespaced_secret("ffj-u1-grants", "ffmpeg")
    stale.metadata.annotations = {handlers.ANNOTATION_GRANTS_FOR: "ffj-u1"}
    kube.core.read_namespaced_secret = lambda name, ns: stale
    kube.core.objects[("Secret", "ffj-u1-grants")]["metadata"]["uid"] = "uid-new"  # replaced meanwhile
    handlers.renew_grants(c, "ffmpeg", "ffj-u1", "ffj-u1-r1")
    assert kube.core.objects[("Secret", "ffj-u1-grants")]["metadata"]["uid"] == "uid-new"
    kube.core.objects[("Secret", "ffj-u1-grants")]["metadata"]["uid"] = stale.metadata.uid  # as read
    handlers.renew_grants(c, "ffmpeg", "ffj-u1", "ffj-u1-r1")
    assert ("Secret", "ffj-u1-grants") not in kube.core.objects  # the one read is replaced
