"""Warm pools (docs/warm-pools.md), our own logic without a cluster: the pool setting, the warm
pod and its rights, the conditional claim, and what the supervisor passes to a job's process.
The whole flow runs on the real stack in tests/integration/test_warm_pool.py."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from ffmpeg_operator import warm
from ffmpeg_operator.settings import OperatorSettings
from ffmpeg_worker.warm import Supervisor
from ffmpegjob_model import warm as contract
from ffmpegjob_model.pools import parse_pools
from ffmpegjob_model.settings import S3Settings
from kubernetes.client.rest import ApiException
from pydantic import ValidationError

POOLS = """
cpu: {nodeSelector: {kubeffmpeg.io/pool: cpu}}
fast: {nodeSelector: {kubeffmpeg.io/pool: cpu}, warm: {replicas: 2, maxJobsPerPod: 5}}
"""


def test_warm_pools_are_off_unless_a_pool_asks_and_default_to_one_job_per_pod() -> None:
    pools = parse_pools(POOLS)
    assert pools["cpu"].warm is None and not warm.enabled(pools["cpu"])
    fast = pools["fast"].warm
    assert fast is not None and warm.enabled(pools["fast"])
    assert (fast.replicas, fast.max_jobs_per_pod, fast.max_idle_seconds) == (2, 5, 3600)
    assert contract.WarmPool().max_jobs_per_pod == 1
    assert not warm.enabled(parse_pools("p: {warm: {replicas: 0}}")["p"])
    with pytest.raises(ValidationError):
        parse_pools("p: {warm: {replicas: 2, shareTenants: true}}")


class FakeCore:
    """Pods as the API server keeps them: a patch that carries a stale resourceVersion is a 409."""

    def __init__(self, pods: dict[str, dict[str, Any]]) -> None:
        self.pods = pods
        self.patches: list[tuple[str, dict[str, Any]]] = []

    def patch_namespaced_pod(self, name: str, namespace: str, body: dict[str, Any], **_: Any) -> Any:
        self.patches.append((name, body))
        pod = self.pods[name]
        if body["metadata"].get("resourceVersion") != pod["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        pod["metadata"]["labels"].update(body["metadata"]["labels"])
        pod["metadata"]["annotations"].update(body["metadata"]["annotations"])
        pod["metadata"]["resourceVersion"] = str(int(pod["metadata"]["resourceVersion"]) + 1)
        return SimpleNamespace(data=json.dumps(pod))


def pod(name: str, rv: str, state: str = contract.IDLE, phase: str = "Running") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": rv,
                         "labels": warm.pod_labels("fast", state),
                         "annotations": {contract.WARM_SERVED_ANNOTATION: "0"}},
            "status": {"phase": phase}}


def context(core: Any = None) -> Any:
    return SimpleNamespace(settings=OperatorSettings(url_allow_hosts="", worker_command=["ffmpeg-worker"]),
                           s3=S3Settings(bucket="media", endpoint_url="http://minio:9000"),
                           kube=SimpleNamespace(core=core, api=SimpleNamespace(
                               configuration=SimpleNamespace(host="https://10.96.0.1:443"))),
                           warm_pods=warm.WarmPods())


def test_a_claim_is_conditional_and_a_lost_race_moves_on_to_the_next_idle_pod() -> None:
    a, b = pod("warm-fast-a", "10"), pod("warm-fast-b", "20")
    busy, starting = pod("warm-fast-c", "30", state=contract.CLAIMED), pod("warm-fast-d", "40", phase="Pending")
    c = context(FakeCore({p["metadata"]["name"]: p for p in (a, b, busy, starting)}))
    for p in (a, b, busy, starting):
        c.warm_pods.update(p)
    a["metadata"]["resourceVersion"] = "11"  # another operator (or replica) claimed it meanwhile
    pool = parse_pools(POOLS)["fast"]
    got = warm.claim(c, "ns", "fast", pool, "job-1", "uid-1", deadline=1000.0)
    assert got is not None and got.name == "warm-fast-b" and got.state == contract.CLAIMED
    tried = [name for name, _ in c.kube.core.patches]
    assert tried == ["warm-fast-a", "warm-fast-b"]  # never the busy or the starting one
    body = c.kube.core.patches[-1][1]["metadata"]
    assert body["resourceVersion"] == "20"
    assert body["annotations"] == {contract.WARM_JOB_ANNOTATION: "job-1", contract.WARM_JOB_UID_ANNOTATION: "uid-1",
                                   contract.WARM_SERVED_ANNOTATION: "1", contract.WARM_DEADLINE_ANNOTATION: "1000"}
    assert warm.claim(c, "ns", "fast", pool, "job-2", "uid-2", deadline=1000.0) is None  # none idle: the Job path


def test_a_warm_pod_mounts_no_token_and_its_own_rights_are_one_secret_by_name() -> None:
    pool = parse_pools(POOLS)["fast"]
    manifest = warm.pod_manifest(context(), "ns", "warm-fast-x", "fast", pool)
    spec = manifest["spec"]
    assert spec["automountServiceAccountToken"] is False and spec["serviceAccountName"] == "warm-fast-x"
    assert spec["restartPolicy"] == "Never" and spec["securityContext"]["runAsNonRoot"] is True
    container = spec["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e for e in container["env"]}
    assert env[contract.ENV_TOKEN]["valueFrom"]["secretKeyRef"]["name"] == "warm-fast-x-token"
    assert env[contract.ENV_MODE]["value"] == contract.MODE_WARM and env[contract.ENV_MAX_JOBS]["value"] == "5"
    assert env[contract.ENV_API_SERVER]["value"] == "https://10.96.0.1:443"
    assert not {"FFMPEGJOB_NAME", "GRANTS_FILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} & set(env)
    assert {v.get("secret", {}).get("secretName") for v in spec["volumes"]} == {None}  # no Secret mounted
    labels = manifest["metadata"]["labels"]
    assert labels[contract.WARM_POOL_LABEL] == "fast" and labels[contract.WARM_STATE_LABEL] == contract.IDLE
    rules = warm.pod_identity("warm-fast-x", "ns", "fast")["Role"]["rules"]
    assert rules == [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["warm-fast-x-claim"],
                      "verbs": ["get", "list", "watch"]}]


def test_the_job_process_gets_neither_the_pod_token_nor_the_service_variables(tmp_path: Path) -> None:
    sup = Supervisor({contract.ENV_POD: "warm-fast-x", contract.ENV_NAMESPACE: "ns",
                      contract.ENV_API_SERVER: "https://10.96.0.1:443", contract.ENV_TOKEN: "pod-secret",
                      contract.ENV_MAX_JOBS: "3", "KUBERNETES_SERVICE_HOST": "10.96.0.1",
                      "KUBERNETES_SERVICE_PORT": "443", "FFMPEG_WORKDIR": str(tmp_path), "S3_BUCKET": "media"})
    assert (sup.api_host, sup.api_port, sup.max_jobs) == ("10.96.0.1", 443, 3)
    assert sup.base_env == {"FFMPEG_WORKDIR": str(tmp_path), "S3_BUCKET": "media"}
    assert "pod-secret" not in json.dumps(sup.base_env)
    (tmp_path / ".claim").mkdir()
    (tmp_path / ".claim" / "kubeconfig.json").write_text("{}")
    (tmp_path / "work" / "job").mkdir(parents=True)
    (tmp_path / "work" / "job" / "out.mp4").write_bytes(b"x")
    (tmp_path / ".hidden").write_text("left behind")
    sup.wipe()
    assert list(tmp_path.iterdir()) == []


def test_leftover_processes_are_killed_only_as_pid_1_of_the_pods_own_namespace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ffmpeg_worker import warm as supervisor

    for pid in ("1", "7", "42", "self"):
        (tmp_path / pid).mkdir()
    killed: list[int] = []
    monkeypatch.setattr(supervisor.os, "kill", lambda pid, sig: killed.append(pid))
    monkeypatch.setattr(supervisor.os, "waitpid", lambda pid, flags: (0, 0))
    monkeypatch.setattr(supervisor.os, "getpid", lambda: 4242)
    assert supervisor.kill_leftovers(tmp_path) == 0 and killed == []  # a shared PID namespace: never
    monkeypatch.setattr(supervisor.os, "getpid", lambda: 1)
    assert supervisor.kill_leftovers(tmp_path) == 2 and sorted(killed) == [7, 42]


def test_a_retried_create_finds_its_own_claim_instead_of_claiming_a_second_pod(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """kopf runs the create handler again when its status write failed after the claim: the job
    must not run on two pods (or on a warm pod and a Job)."""
    a, b = pod("warm-fast-a", "10"), pod("warm-fast-b", "20")
    core = FakeCore({"warm-fast-a": a, "warm-fast-b": b})
    c = context(core)
    for p in (a, b):
        c.warm_pods.update(p)
    handed: list[str] = []
    monkeypatch.setattr(warm, "hand_over", lambda c, obj, model, pn, pool, wp, d: handed.append(wp.name))
    secrets: set[str] = set()
    monkeypatch.setattr(warm, "_claim_secret_exists", lambda c, ns, name: name in secrets)
    monkeypatch.setattr(warm, "set_condition", lambda conds, *a, **k: list(conds or []))
    pool = parse_pools(POOLS)["fast"]
    obj = {"metadata": {"name": "job-1", "namespace": "ns", "uid": "uid-1", "generation": 1}, "spec": {}}
    model = SimpleNamespace(suspend=False, parallel=None, timeout_seconds=60)
    c.metrics = SimpleNamespace(transitions=SimpleNamespace(labels=lambda *a: SimpleNamespace(inc=lambda: None)))
    monkeypatch.setattr(warm, "namespace_of", lambda c: "ns")
    for _attempt in range(3):
        patch: Any = SimpleNamespace(status={})
        assert warm.start(c, obj, model, "fast", pool, patch, lambda *a: None)
        assert patch.status["warm"]["pod"] == "warm-fast-a"
        secrets.add("warm-fast-a")  # the first hand-over created the claim Secret
    assert [name for name, _ in core.patches] == ["warm-fast-a"]  # one claim, never pod b
    assert handed == ["warm-fast-a"]  # handed over once: a second claim Secret would run it again
    other = {"metadata": {"name": "job-2", "namespace": "ns", "uid": "uid-2", "generation": 1}, "spec": {}}
    patch = SimpleNamespace(status={})
    assert warm.start(c, other, model, "fast", pool, patch, lambda *a: None)
    assert patch.status["warm"]["pod"] == "warm-fast-b"


def test_a_deleted_ffmpegjob_frees_its_warm_pod_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    claimed = pod("warm-fast-a", "10", state=contract.CLAIMED)
    claimed["metadata"]["annotations"].update({contract.WARM_JOB_ANNOTATION: "job-1",
                                               contract.WARM_JOB_UID_ANNOTATION: "uid-1"})
    c = context()
    c.warm_pods.update(claimed)
    retired: list[str] = []
    monkeypatch.setattr(warm, "retire", lambda c, ns, name: retired.append(name))
    body = {"metadata": {"name": "job-1", "namespace": "ns", "uid": "uid-1",
                         "deletionTimestamp": "2026-11-23T00:00:00Z"},
            "status": {"phase": "Running", "warm": {"pod": "warm-fast-a"}}}
    assert warm._deleted_while_warm(type="MODIFIED", body=body)
    assert not warm._deleted_while_warm(type="MODIFIED", body={**body, "metadata": {"name": "job-1"}})
    warm.on_deleted(body=body, memo={"ctx": c})
    assert retired == ["warm-fast-a"]
    # The pod has moved on to another job (the deletion event came late): it stays.
    moved = {**body, "metadata": {**body["metadata"], "uid": "uid-0"}}
    warm.on_deleted(body=moved, memo={"ctx": c})
    assert retired == ["warm-fast-a"]
    # Deleted while no operator watched: the keeper's check finds the claim orphaned.
    c.kube.get_ffmpegjob = lambda ns, name: None
    assert warm._orphaned(c, c.warm_pods.pods[("ns", "warm-fast-a")])
    c.kube.get_ffmpegjob = lambda ns, name: {"metadata": {"uid": "uid-9"}}  # the name reused
    assert warm._orphaned(c, c.warm_pods.pods[("ns", "warm-fast-a")])
    c.kube.get_ffmpegjob = lambda ns, name: {"metadata": {"uid": "uid-1"}}
    assert not warm._orphaned(c, c.warm_pods.pods[("ns", "warm-fast-a")])


@pytest.mark.parametrize("stored", [True, False])
def test_a_lost_exit_report_ends_a_stored_result_succeeded_not_timed_out(
        monkeypatch: pytest.MonkeyPatch, stored: bool) -> None:
    c = context()
    ffj = {"metadata": {"name": "job-1", "namespace": "ns", "uid": "uid-1", "generation": 1, "resourceVersion": "5"},
           "spec": {"tenant": "t1", "timeoutSeconds": 60},
           "status": {"phase": "Running", "warm": {"pod": "warm-fast-a"},
                      "result": [{"storagePath": "d1/out.mp4", "sizeBytes": 3}]}}
    c.kube.get_ffmpegjob = lambda ns, name: ffj
    c.storage, checked = object(), []
    monkeypatch.setattr(warm, "outputs_stored",
                        lambda client, bucket, tenant, result: checked.append((bucket, tenant)) or stored)
    written: list[dict[str, Any]] = []
    monkeypatch.setattr(warm, "write_status", lambda kube, ns, name, p, rv: written.append(p) or warm.Written.DONE)
    from ffmpeg_operator import handlers
    monkeypatch.setattr(handlers, "record_transition", lambda *a: None)
    warm.timed_out(c, "ns", "job-1", "warm-fast-a")
    assert checked == [("media", "t1")]
    assert (written[0]["phase"], written[0]["reason"]) == (("Succeeded", "Completed") if stored
                                                           else ("Failed", "DeadlineExceeded"))


def test_the_exit_report_is_retried_through_a_hiccup_and_not_for_a_gone_job(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from ffmpeg_worker import warm as supervisor
    from ffmpeg_worker.kube import ApiError

    monkeypatch.setattr(supervisor.time, "sleep", lambda s: None)
    answers: list[Exception | None] = [ApiError(503, "busy"), ConnectionResetError(), None]
    calls: list[dict[str, Any]] = []

    def patch_status(status: dict[str, Any]) -> None:
        calls.append(status)
        err = answers.pop(0)
        if err is not None:
            raise err

    jobs: Any = SimpleNamespace(patch_status=patch_status)
    assert supervisor.report_exit(jobs, {"warm": {"exitCode": 0}}) and len(calls) == 3
    answers[:] = [ApiError(404, "gone")]
    assert not supervisor.report_exit(jobs, {"warm": {"exitCode": 0}}) and len(calls) == 4
    answers[:] = [ApiError(500, "x")] * 5
    assert not supervisor.report_exit(jobs, {"warm": {"exitCode": 0}}) and len(calls) == 9
