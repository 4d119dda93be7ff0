"""The operator's kopf handlers, called as kopf calls them (kopf's own Body, Patch and Memo)
over an in-memory Kubernetes API (tests/unit/fakes.py) in which the test plays the Job
controller and the kubelet: what `kubectl get ffj,jobs,pods` and `kubectl describe ffj` show."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Iterator
from typing import Any

import kopf
import pytest
from fakes import NAMESPACE, FakeBucket, FakeKubernetes, Obj, operator_context, stamp
from ffmpeg_operator import handlers
from ffmpegjob_model.exitcodes import EXIT_INVALID, EXIT_IO, EXIT_STEP
from ffmpegjob_model.grants import GRANTS_FILE, Grants
from ffmpegjob_model.model import FINISHED_LABEL

SPEC: Obj = {"tenant": "acme", "machine": "cpu", "outputs": [{"name": "out.mp4"}], "output": {"dirId": "d1"},
             "commands": ["-f lavfi -i testsrc=duration=1 {{out.mp4}}"], "timeoutSeconds": 120, "backoffLimit": 0}
RESULT = [{"fileName": "out.mp4", "sizeBytes": 2048, "storagePath": "d1/out.mp4"}]


class Operator:
    """The handlers as kopf drives them: the FFmpegJob's create, field and event handlers, each
    handler's status patch applied to the object afterwards."""

    def __init__(self, k: FakeKubernetes, **settings: Any) -> None:
        self.k = k
        self.c = operator_context(k, FakeBucket(), **settings)
        self.memo = kopf.Memo()
        self.memo["ctx"] = self.c

    def body(self, name: str) -> kopf.Body:
        return kopf.Body(self.k.get("FFmpegJob", NAMESPACE, name))

    def created(self, name: str, body: kopf.Body | None = None) -> None:
        body = body or self.body(name)
        patch = kopf.Patch()
        handlers.ensure_job(body=body, spec=body.spec, meta=body.meta, patch=patch, memo=self.memo,
                            logger=logging.getLogger("test"))
        if patch.status:
            self.k.set_status("FFmpegJob", name, dict(patch.status))

    def cancelled(self, name: str) -> None:
        self.k.patch("FFmpegJob", NAMESPACE, name, {"spec": {"cancel": True}})
        handlers.on_cancel(body=self.body(name), memo=self.memo)

    def job_event(self, job: Obj, type_: str = "MODIFIED") -> None:
        # An async handler (an event the status reflects already is dropped on kopf's loop).
        asyncio.run(handlers.on_job_event(type=type_, body=kopf.Body(job), memo=self.memo))

    def pod_event(self, pod: Obj) -> None:
        handlers.on_pod_event(type="MODIFIED", body=kopf.Body(pod), memo=self.memo)

    def settle(self) -> None:
        """Let the background work (identity release, scratch clean-up) finish."""
        self.c.background.shutdown(wait=True)

    def status(self, name: str = "clip") -> Obj:
        return dict(self.k.get("FFmpegJob", NAMESPACE, name).get("status") or {})


@pytest.fixture
def k() -> FakeKubernetes:
    return FakeKubernetes()


@pytest.fixture
def op(k: FakeKubernetes, monkeypatch: pytest.MonkeyPatch) -> Iterator[Operator]:
    o = Operator(k)
    monkeypatch.setattr(handlers, "_event_kube", o.c.kube)  # as start-up sets it: Events outside kopf's queue
    yield o
    o.c.background.shutdown(wait=True)
    o.c.io.shutdown(wait=True)


def submit(k: FakeKubernetes, op: Operator, name: str = "clip", labels: dict[str, str] | None = None,
           **spec: Any) -> Obj:
    ffj = k.add_ffmpegjob(name, {**SPEC, **spec}, labels=labels)
    op.created(name)
    return ffj


def the_job(k: FakeKubernetes) -> Obj:
    job = k.find("Job")
    assert job is not None, "no Job"
    return job


def running_pod(k: FakeKubernetes, job: Obj) -> Obj:
    k.set_status("Job", job["metadata"]["name"], {"active": 1, "startTime": "2026-01-01T12:00:00Z"})
    return k.add_pod(job, "Running", containerStatuses=[{"name": "worker", "state": {"running": {}}}])


def ended(k: FakeKubernetes, pod: Obj, phase: str, code: int, message: str = "") -> Obj:
    term = {"exitCode": code, "reason": "Completed" if code == 0 else "Error", "message": message,
            "finishedAt": "2026-01-01T12:00:07Z"}
    return k.set_status("Pod", pod["metadata"]["name"], {
        "phase": phase, "containerStatuses": [{"name": "worker", "state": {"terminated": term}}]})


# ------------------------------------------------------------------------------------ create
def test_a_new_ffmpegjob_gets_one_job_on_its_pool_and_its_own_identity(k: FakeKubernetes, op: Operator) -> None:
    ffj = submit(k, op, machine="nvidia", backoffLimit=2, labels={"kueue.x-k8s.io/queue-name": "team-a"})
    uid = ffj["metadata"]["uid"]
    st = op.status()
    # Created suspended with a queue's label: Queued until Kueue admits it (written with the Job).
    assert (st["phase"], st["reason"], st["jobName"]) == ("Pending", "Queued", f"ffj-{uid}")
    assert [c["type"] for c in st["conditions"]] == ["Submitted"]
    job = the_job(k)
    assert job["metadata"]["name"] == f"ffj-{uid}"
    [owner] = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("FFmpegJob", "clip", uid, True)
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"  # a queue admits it
    assert (job["spec"]["backoffLimit"], job["spec"]["activeDeadlineSeconds"]) == (2, 120)
    pod = job["spec"]["template"]["spec"]
    [worker] = pod["containers"]
    assert (worker["image"], pod["nodeSelector"]) == ("worker:gpu", {"kubeffmpeg.io/pool": "gpu"})  # nvidia = gpu
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert worker["securityContext"]["readOnlyRootFilesystem"] is True
    assert worker["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    # The pod runs as the job's own ServiceAccount, whose Role reaches this FFmpegJob only.
    assert pod["serviceAccountName"] == f"ffj-{uid}"
    role = k.find("Role", name=f"ffj-{uid}")
    assert role is not None and {n for r in role["rules"] for n in r["resourceNames"]} == {"clip"}
    assert k.find("RoleBinding", name=f"ffj-{uid}") is not None
    assert k.find("ServiceAccount", name=f"ffj-{uid}") is not None
    secret = k.find("Secret", name=f"ffj-{uid}-grants")
    assert secret is not None
    grants = Grants.model_validate_json(base64.b64decode(secret["data"][GRANTS_FILE]))
    assert set(grants.outputs) == {"out.mp4"}
    [event] = k.events("JobCreated")
    assert event["type"] == "Normal" and event["involvedObject"]["name"] == "clip"


def test_a_retried_create_handler_adopts_the_job_it_made(k: FakeKubernetes, op: Operator) -> None:
    k.add_ffmpegjob("clip", SPEC)
    before = op.body("clip")  # kopf retries with the body it had: no status yet
    op.created("clip", before)
    op.created("clip", before)
    assert len(k.select("Job", NAMESPACE)) == 1 and len(k.select("Secret", NAMESPACE)) == 1
    assert op.status()["jobName"] == the_job(k)["metadata"]["name"]


@pytest.mark.parametrize(("spec", "reason", "message"), [
    ({"machine": "tpu"}, "UnknownMachine", "machine 'tpu' is not a node pool; known: cpu, gpu"),
    ({"commands": ["-i /etc/passwd {{out.mp4}}"]}, "ValidationFailed", "/etc/passwd"),
])
def test_what_cannot_run_fails_with_the_reason(k: FakeKubernetes, op: Operator, spec: Obj, reason: str,
                                               message: str) -> None:
    submit(k, op, **spec)
    st = op.status()
    assert (st["phase"], st["reason"]) == ("Failed", reason) and message in st["message"]
    assert k.select("Job", NAMESPACE) == [] and k.select("ServiceAccount", NAMESPACE) == []
    [event] = k.events(reason)
    assert event["type"] == "Warning"


# ------------------------------------------------------------------------ status from children
def test_status_follows_the_pod_to_success(k: FakeKubernetes, op: Operator) -> None:
    submit(k, op)
    job = the_job(k)
    op.pod_event(running_pod(k, job))
    st = op.status()
    assert (st["phase"], st["startTime"], st["attempts"]) == ("Running", "2026-01-01T12:00:00Z", 1)
    assert {c["type"]: c["status"] for c in st["conditions"]}["Running"] == "True"
    pod = k.find("Pod")
    assert pod is not None
    k.set_status("FFmpegJob", "clip", {"result": RESULT, "progress": {"step": 1, "steps": 1, "percent": 90.0}})
    op.pod_event(ended(k, pod, "Succeeded", 0))  # the worker saved its result and exited 0
    st = op.status()
    assert (st["phase"], st["reason"], st["message"]) == ("Succeeded", "Completed", "all outputs uploaded")
    assert (st["completionTime"], st["duration"], st["progress"]["percent"]) == ("2026-01-01T12:00:07Z", "7s", 100)
    assert k.get("FFmpegJob", NAMESPACE, "clip")["metadata"]["labels"][FINISHED_LABEL] == "true"
    op.settle()
    assert k.select("ServiceAccount", NAMESPACE) == [] and k.select("Secret", NAMESPACE) == []  # released
    op.job_event(k.get("Job", NAMESPACE, job["metadata"]["name"]))  # late events change nothing
    assert op.status() == st


@pytest.mark.parametrize(("code", "reason"), [(EXIT_STEP, "CommandFailed"), (EXIT_INVALID, "ValidationFailed")])
def test_a_failed_command_fails_the_job_with_the_workers_error(k: FakeKubernetes, op: Operator, code: int,
                                                               reason: str) -> None:
    submit(k, op, backoffLimit=3)
    pod = running_pod(k, the_job(k))
    k.set_status("FFmpegJob", "clip", {"error": "step 1 exited 1: Invalid data found when processing input"})
    op.pod_event(ended(k, pod, "Failed", code, "step 1 failed"))
    st = op.status()
    assert (st["phase"], st["reason"]) == ("Failed", reason)
    assert st["message"] == "step 1 exited 1: Invalid data found when processing input"
    assert k.events(reason)[0]["type"] == "Warning"


def test_retryable_failures_count_against_the_backoff_limit(k: FakeKubernetes, op: Operator) -> None:
    submit(k, op, backoffLimit=1)
    job = the_job(k)
    op.pod_event(ended(k, running_pod(k, job), "Failed", EXIT_IO, "storage unreachable"))
    assert op.status()["phase"] != "Failed"  # one more attempt allowed
    op.pod_event(ended(k, k.add_pod(job, "Running"), "Failed", EXIT_IO, "storage unreachable"))
    st = op.status()
    assert (st["phase"], st["reason"]) == ("Failed", "BackoffLimitExceeded")
    assert st["message"] == f"worker exited with code {EXIT_IO}: storage unreachable"


def test_the_jobs_deadline_is_a_timeout(k: FakeKubernetes, op: Operator) -> None:
    submit(k, op)
    job = the_job(k)
    running_pod(k, job)
    job = k.set_status("Job", job["metadata"]["name"], {"active": 0, "failed": 1, "conditions": [
        {"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "lastTransitionTime": stamp(),
         "message": "Job was active longer than specified deadline"}]})
    op.job_event(job)
    st = op.status()
    assert (st["phase"], st["reason"]) == ("Failed", "DeadlineExceeded")
    assert st["message"].startswith("timed out after 120s:")


def test_a_pod_that_cannot_start_fails_the_job_and_the_job_goes(k: FakeKubernetes, monkeypatch: pytest.MonkeyPatch,
                                                                ) -> None:
    op = Operator(k, pod_start_timeout_seconds=1)
    monkeypatch.setattr(handlers, "_event_kube", op.c.kube)
    submit(k, op)
    job = the_job(k)
    pod = k.add_pod(job, "Pending", containerStatuses=[{"name": "worker", "state": {"waiting": {
        "reason": "ImagePullBackOff", "message": 'Back-off pulling image "worker:cpu"'}}}])
    k.objects[("Pod", NAMESPACE, pod["metadata"]["name"])]["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    op.pod_event(pod)
    st = op.status()
    assert (st["phase"], st["reason"]) == ("Failed", "ImagePullBackOff")
    assert "did not start within 1s" in st["message"]
    assert k.select("Job", NAMESPACE) == [] and k.select("Pod", NAMESPACE) == []  # deleted, its pods with it
    op.settle()


# ------------------------------------------------------------------------------- missing Job
def test_a_deleted_job_is_recreated_while_attempts_remain(k: FakeKubernetes, op: Operator) -> None:
    ffj = submit(k, op, backoffLimit=1)
    job = the_job(k)
    k.delete("Job", NAMESPACE, job["metadata"]["name"])  # kubectl delete job
    op.job_event(job, "DELETED")
    st = op.status()
    uid = ffj["metadata"]["uid"]
    assert (st["phase"], st["reason"], st["jobName"], st["jobRestarts"]) == ("Pending", "JobRecreated",
                                                                             f"ffj-{uid}-r1", 1)
    assert [j["metadata"]["name"] for j in k.select("Job", NAMESPACE)] == [f"ffj-{uid}-r1"]
    assert k.events("JobRecreated")[0]["type"] == "Warning"
    again = the_job(k)
    k.delete("Job", NAMESPACE, again["metadata"]["name"])
    op.job_event(again, "DELETED")
    st = op.status()
    assert (st["phase"], st["reason"]) == ("Failed", "JobDeleted")
    assert "no attempts remain" in st["message"] and k.select("Job", NAMESPACE) == []


# ------------------------------------------------------------------------------------ cancel
def test_cancel_stops_the_job(k: FakeKubernetes, op: Operator) -> None:
    submit(k, op)
    pod = running_pod(k, the_job(k))
    op.pod_event(pod)
    op.cancelled("clip")
    st = op.status()
    assert (st["phase"], st["reason"], st["message"]) == ("Cancelled", "Cancelled", "cancelled by spec.cancel")
    assert k.select("Job", NAMESPACE) == [] and k.select("Pod", NAMESPACE) == []
    assert k.events("Cancelled")
    op.pod_event(ended(k, pod, "Failed", 143) if k.find("Pod") else pod)  # a late event of the killed pod
    assert op.status() == st  # terminal stays terminal


def test_cancelled_before_it_started_never_gets_a_job(k: FakeKubernetes, op: Operator) -> None:
    submit(k, op, cancel=True)
    assert op.status()["phase"] == "Cancelled" and k.select("Job", NAMESPACE) == []


# ------------------------------------------------------------------------------ housekeeping
def test_housekeeping_deletes_finished_jobs_past_their_ttl(k: FakeKubernetes, op: Operator) -> None:
    long_ago = {"phase": "Succeeded", "completionTime": "2026-01-01T00:00:00Z"}
    k.add_ffmpegjob("expired", {**SPEC, "ttlSecondsAfterFinished": 60}, long_ago)
    k.add_ffmpegjob("kept-forever", SPEC, long_ago)  # no TTL
    hook = {"webhook": {"url": "https://93.184.215.14/hook"}}
    k.add_ffmpegjob("hook-pending", {**SPEC, **hook, "ttlSecondsAfterFinished": 60}, long_ago)
    k.add_ffmpegjob("hook-done", {**SPEC, **hook, "ttlSecondsAfterFinished": 60},
                    {**long_ago, "webhook": {"delivered": True}})
    k.add_ffmpegjob("recent", {**SPEC, "ttlSecondsAfterFinished": 3600}, {**long_ago, "completionTime": stamp()})
    handlers.housekeeping_round(op.c)
    assert sorted(o["metadata"]["name"] for o in k.select("FFmpegJob", NAMESPACE)) == [
        "hook-pending", "kept-forever", "recent"]


def test_housekeeping_catches_up_with_missed_events_and_a_quiet_round_writes_nothing(
        k: FakeKubernetes, op: Operator) -> None:
    submit(k, op)
    job = the_job(k)
    pod = running_pod(k, job)  # no event delivered: the operator was down
    handlers.housekeeping_round(op.c)
    assert op.status()["phase"] == "Running"
    k.set_status("FFmpegJob", "clip", {"result": RESULT})
    ended(k, pod, "Succeeded", 0)
    k.set_status("Job", job["metadata"]["name"], {"active": 0, "succeeded": 1, "completionTime": "2026-01-01T12:00:08Z",
                                                  "conditions": [{"type": "Complete", "status": "True"}]})
    handlers.housekeeping_round(op.c)
    assert (op.status()["phase"], op.status()["completionTime"]) == ("Succeeded", "2026-01-01T12:00:08Z")
    op.settle()
    writes = len(k.writes)
    handlers.housekeeping_round(op.c)
    assert k.writes[writes:] == []  # a quiet round writes nothing


# ------------------------------------------------------------------------- GPU capabilities
def test_a_job_its_gpu_pool_cannot_run_fails_or_falls_back_to_the_cpu(k: FakeKubernetes, op: Operator) -> None:
    nvenc = ["-f lavfi -i testsrc=duration=1 -vf scale_cuda=64:64 -c:v h264_nvenc -preset p1 {{out.mp4}}"]
    submit(k, op, name="nv", machine="gpu", commands=nvenc)
    st = op.status("nv")
    assert (st["phase"], st["reason"]) == ("Failed", "ValidationFailed")
    assert "machine 'gpu' lacks" in st["message"] and "NVENC encoding of h264" in st["message"]
    assert k.find("Job") is None

    submit(k, op, name="fb", machine="gpu", fallback="cpu", commands=nvenc)
    st = op.status("fb")
    assert [c["type"] for c in st["conditions"]] == ["FellBack", "Submitted"]
    assert st["conditions"][0]["reason"] == "GpuCapabilityMissing"
    assert (st["fallback"]["fromMachine"], st["fallback"]["machine"]) == ("gpu", "cpu")
    assert st["fallback"]["commands"] == [
        "-f lavfi -i testsrc=duration=1 -vf scale=64:64 -c:v libx264 -preset ultrafast '{{out.mp4}}'"]
    pod = the_job(k)["spec"]["template"]["spec"]
    [worker] = pod["containers"]
    assert pod["nodeSelector"] == {"kubeffmpeg.io/pool": "cpu"}
    assert {"name": "FFMPEG_FALLBACK", "value": "cpu"} in worker["env"]
