"""Queueing on Kueue: the Job's queue labels, LocalQueue names, and the `Queued` condition and
queue position computed from Kueue's Workloads (pure functions; the integration tests run Kueue)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ffmpeg_operator.jobs import build_job
from ffmpeg_operator.queueing import ffmpegjob_uid, queue_entries, queue_patch
from ffmpeg_operator.settings import OperatorSettings
from ffmpeg_operator.split import stitch_job
from ffmpeg_operator.status import observe
from ffmpegjob_model.model import FFmpegJobSpec
from ffmpegjob_model.pools import parse_pools
from ffmpegjob_model.queueing import PRIORITY_CLASS_LABEL, QUEUE_NAME_LABEL, local_queue_name

POOLS = parse_pools("""
cpu: {nodeSelector: {kubeffmpeg.io/pool: cpu}, resources: {requests: {cpu: 250m}}, clusterQueue: kubeffmpeg-cpu}
other: {nodeSelector: {kubeffmpeg.io/pool: other}}
""")
NOW = datetime(2026, 1, 1, tzinfo=UTC)
UID = "0c5e1111-2222-3333-4444-555566667777"
ON = OperatorSettings(kueue_enabled=True)


def body() -> dict[str, Any]:
    return {"apiVersion": "kubeffmpeg.io/v1alpha1", "kind": "FFmpegJob",
            "metadata": {"name": "clip", "namespace": "ffmpeg", "uid": UID, "labels": {}}}


def spec(**kw: Any) -> FFmpegJobSpec:
    return FFmpegJobSpec.model_validate({
        "inputs": [{"name": "in.mp4", "source": "dir_demo/in.mp4"}], "outputs": [{"name": "out.mp4"}],
        "commands": ["-i {{in.mp4}} {{out.mp4}}"], "output": {"dirId": "dir_demo"}, "tenant": "acme", **kw})


def test_without_kueue_the_job_runs_at_once_and_carries_no_queue() -> None:
    job = build_job(body(), spec(), "cpu", POOLS["cpu"], OperatorSettings())
    assert job["spec"]["suspend"] is False
    assert QUEUE_NAME_LABEL not in job["metadata"]["labels"]


def test_with_kueue_the_job_is_created_suspended_in_the_tenants_queue() -> None:
    job = build_job(body(), spec(priority="high"), "cpu", POOLS["cpu"], ON)
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"][QUEUE_NAME_LABEL] == "cpu-acme"
    assert job["metadata"]["labels"][PRIORITY_CLASS_LABEL] == "high"
    assert build_job(body(), spec(), "cpu", POOLS["cpu"], ON)["metadata"]["labels"][PRIORITY_CLASS_LABEL] == "normal"


def test_a_pool_that_no_cluster_queue_serves_runs_at_once() -> None:
    job = build_job(body(), spec(machine="other"), "other", POOLS["other"], ON)
    assert job["spec"]["suspend"] is False and QUEUE_NAME_LABEL not in job["metadata"]["labels"]


def test_a_job_the_user_suspends_is_not_handed_to_kueue_until_resumed() -> None:
    job = build_job(body(), spec(suspend=True), "cpu", POOLS["cpu"], ON)
    assert job["spec"]["suspend"] is True
    assert QUEUE_NAME_LABEL not in job["metadata"]["labels"]


def test_the_stitch_job_is_queued_too() -> None:
    plan = {"chunks": 2, "parallelism": 2, "scratchPrefix": "s/", "duration": 10, "frames": 250}
    job = stitch_job(body(), spec(), "cpu", POOLS["cpu"], ON, [], plan)
    assert job["spec"]["suspend"] is True and job["metadata"]["labels"][QUEUE_NAME_LABEL] == "cpu-acme"
    assert stitch_job(body(), spec(), "cpu", POOLS["cpu"], OperatorSettings(), [], plan)["spec"]["suspend"] is False


def test_local_queue_names_are_dns_labels_and_never_shared() -> None:
    assert local_queue_name("cpu", "acme") == "cpu-acme"
    a, b = local_queue_name("cpu", "Acme_1"), local_queue_name("cpu", "acme-1")
    assert a != b and a.startswith("cpu-acme-1-")
    long = local_queue_name("gpu", "t" * 64)
    assert len(long) <= 63


def test_a_queued_job_is_pending_with_reason_queued() -> None:
    job = build_job(body(), spec(), "cpu", POOLS["cpu"], ON)
    out = observe({"phase": "Pending"}, job, [], NOW, 1, 600)
    assert out.patch["reason"] == "Queued" and "cpu-acme" in out.patch["message"]
    assert not any(c["type"] == "Suspended" for c in out.patch.get("conditions") or [])


def workload(name: str, job: str, lq: str, *, priority: int = 1000, created: str = "2026-01-01T00:00:00Z",
             admitted: bool = False, reason: str = "Pending", message: str = "insufficient quota") -> dict[str, Any]:
    cond = {"type": "QuotaReserved", "status": "True" if admitted else "False", "reason": reason,
            "message": message}
    return {"metadata": {"name": name, "uid": f"wl-{name}", "creationTimestamp": created,
                         "ownerReferences": [{"kind": "Job", "name": job, "uid": "j"}]},
            "spec": {"queueName": lq, "priority": priority, "priorityClassName": "normal"},
            "status": {"conditions": [cond]}}


def uid(n: int) -> str:
    return f"0c5e1111-2222-3333-4444-{n:012d}"


def test_positions_follow_priority_then_arrival_within_a_local_queue() -> None:
    wls = [workload("a", f"ffj-{uid(1)}", "cpu-acme", created="2026-01-01T00:00:01Z"),
           workload("b", f"ffj-{uid(2)}", "cpu-acme", created="2026-01-01T00:00:02Z"),
           workload("c", f"ffj-{uid(3)}-r1", "cpu-acme", created="2026-01-01T00:00:03Z", priority=10000),
           workload("d", f"ffj-{uid(4)}", "cpu-other", created="2026-01-01T00:00:00Z"),
           workload("e", f"ffj-{uid(5)}", "cpu-acme", admitted=True, reason="QuotaReserved")]
    entries = queue_entries(wls, {"cpu-acme": "kubeffmpeg-cpu", "cpu-other": "kubeffmpeg-cpu"})
    assert [entries[uid(n)].position for n in (3, 1, 2, 4)] == [1, 2, 3, 1]
    assert entries[uid(1)].waiting == 4 and entries[uid(1)].cluster_queue == "kubeffmpeg-cpu"
    assert entries[uid(5)].admitted and entries[uid(5)].position is None


def test_the_pending_workload_of_a_split_job_speaks_for_it() -> None:
    wls = [workload("chunks", f"ffj-{uid(1)}", "cpu-acme", admitted=True, reason="QuotaReserved"),
           workload("stitch", f"ffj-{uid(1)}-stitch", "cpu-acme")]
    entry = queue_entries(wls, {})[uid(1)]
    assert not entry.admitted and entry.position == 1
    assert ffmpegjob_uid({"metadata": {"ownerReferences": [{"kind": "Job", "name": "someone-else"}]}}) is None


def test_queue_patch_writes_the_queued_condition_then_admitted() -> None:
    wl = workload("a", f"ffj-{uid(1)}", "cpu-acme", message="couldn't assign flavors: insufficient quota for cpu")
    entry = queue_entries([wl], {"cpu-acme": "kubeffmpeg-cpu"})[uid(1)]
    patch = queue_patch({"phase": "Pending"}, entry, NOW, 1)
    assert patch["queue"] == {"localQueue": "cpu-acme", "clusterQueue": "kubeffmpeg-cpu", "position": 1,
                              "waiting": 1, "reason": "Pending", "priority": "normal",
                              "message": "couldn't assign flavors: insufficient quota for cpu"}
    cond = patch["conditions"][0]
    assert cond["type"] == "Queued" and cond["status"] == "True" and cond["reason"] == "Pending"
    assert cond["message"].startswith("position 1 in LocalQueue cpu-acme: ")
    status = {"phase": "Pending", **patch}
    assert queue_patch(status, entry, NOW, 1) == {}  # nothing changed: nothing written
    admitted = queue_entries([workload("a", f"ffj-{uid(1)}", "cpu-acme", admitted=True)],
                             {"cpu-acme": "kubeffmpeg-cpu"})[uid(1)]
    done = queue_patch(status, admitted, NOW, 1)
    assert done["queue"] is None
    assert done["conditions"][0]["status"] == "False" and done["conditions"][0]["reason"] == "Admitted"
