"""Phase and conditions computed from a Job and its pods."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ffmpeg_operator.status import fmt_duration, observe, set_condition, terminal_patch
from ffmpegjob_model.model import Phase

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def job(**status: Any) -> dict[str, Any]:
    return {"spec": {"suspend": status.pop("suspend", False), "activeDeadlineSeconds": 60}, "status": status}


def pod(phase: str, created: datetime = T0, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p1", "creationTimestamp": created.isoformat()}, "spec": {"nodeName": "n1"},
            "status": {"phase": phase, **status}}


def test_running_pod_makes_running_and_keeps_worker_fields_out() -> None:
    st = {"phase": "Pending", "progress": {"step": 1, "steps": 2, "percent": 10}}
    out = observe(st, job(active=1, startTime="2025-01-01T12:00:01Z"), [pod("Running")], T0, 1, 300)
    assert out.new_phase == "Running" and out.transitioned
    assert out.patch["startTime"] == "2025-01-01T12:00:01Z" and out.patch["attempts"] == 1
    assert {c["type"]: c["status"] for c in out.patch["conditions"]} == {"PodScheduled": "True", "Running": "True"}
    assert "progress" not in out.patch and "result" not in out.patch


def test_complete_job_succeeds_with_job_times() -> None:
    st = {"phase": "Running", "startTime": "2025-01-01T12:00:00Z", "progress": {"step": 2, "steps": 2, "percent": 97}}
    j = job(succeeded=1, startTime="2025-01-01T12:00:00Z", completionTime="2025-01-01T12:01:05Z",
            conditions=[{"type": "Complete", "status": "True"}])
    out = observe(st, j, [], T0 + timedelta(hours=1), 1, 300)
    assert out.new_phase == "Succeeded"
    assert out.patch["completionTime"] == "2025-01-01T12:01:05Z" and out.patch["duration"] == "1m5s"
    assert out.patch["progress"]["percent"] == 100
    assert any(c["type"] == "Succeeded" and c["status"] == "True" for c in out.patch["conditions"])


def test_failed_job_reports_the_workers_error_then_the_pods() -> None:
    j = job(failed=1, conditions=[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                   "lastTransitionTime": "2025-01-01T12:00:09Z"}])
    out = observe({"phase": "Running", "error": "FFmpeg exited 1: Invalid data"}, j, [], T0, 1, 300)
    assert (out.new_phase, out.patch["reason"]) == ("Failed", "BackoffLimitExceeded")
    assert out.patch["message"] == "FFmpeg exited 1: Invalid data"
    dead = pod("Failed", containerStatuses=[{"state": {"terminated": {"exitCode": 2, "message": "boom"}}}])
    out = observe({"phase": "Running"}, j, [dead], T0, 1, 300)
    assert out.patch["message"] == "worker exited with code 2: boom"


def test_unschedulable_pod_shows_scheduler_message_then_fails_after_the_wait() -> None:
    msg = "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
    p = pod("Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                    "message": msg}])
    out = observe({"phase": "Pending"}, job(active=1), [p], T0 + timedelta(seconds=10), 1, 300)
    assert out.new_phase == "Pending" and not out.stop_job
    cond = next(c for c in out.patch["conditions"] if c["type"] == "PodScheduled")
    assert (cond["status"], cond["reason"], cond["message"]) == ("False", "Unschedulable", msg)
    out = observe({"phase": "Pending"}, job(active=1), [p], T0 + timedelta(seconds=301), 1, 300)
    assert out.new_phase == "Failed" and out.stop_job and msg in out.patch["message"]


def test_image_pull_backoff_is_a_blocker() -> None:
    p = pod("Pending", containerStatuses=[{"state": {"waiting": {"reason": "ImagePullBackOff", "message": "nope"}}}])
    out = observe({}, job(active=1), [p], T0 + timedelta(seconds=5), 1, 300)
    assert out.patch["reason"] == "ImagePullBackOff" and out.new_phase == "Pending"


def test_terminal_is_final_and_suspend_is_shown() -> None:
    assert observe({"phase": "Cancelled"}, job(active=1), [pod("Running")], T0, 1, 300).patch == {}
    out = observe({"phase": "Pending"}, job(suspend=True), [], T0, 3, 300)
    assert out.patch["reason"] == "Suspended" and out.patch["observedGeneration"] == 3


def test_conditions_move_transition_time_only_on_flip() -> None:
    c1 = set_condition(None, "Running", "True", "PodRunning", "", T0, 1)
    c2 = set_condition(c1, "Running", "True", "PodRunning", "still", T0 + timedelta(minutes=1), 1)
    assert c2[0]["lastTransitionTime"] == c1[0]["lastTransitionTime"] and c2[0]["message"] == "still"
    c3 = set_condition(c2, "Running", "False", "Completed", "", T0 + timedelta(minutes=2), 1)
    assert c3[0]["lastTransitionTime"] == "2025-01-01T12:02:00Z"


def test_terminal_patch_and_duration_format() -> None:
    p = terminal_patch({"startTime": "2025-01-01T12:00:00Z"}, Phase.CANCELLED, "Cancelled", "by user",
                       T0 + timedelta(hours=2, minutes=3), 1)
    assert p["phase"] == "Cancelled" and p["duration"] == "2h3m"
    assert [fmt_duration(s) for s in (5, 65, 3600 * 25)] == ["5s", "1m5s", "1d1h"]


def _terminated(phase: str, code: int, finished: datetime) -> dict[str, Any]:
    return pod(phase, containerStatuses=[{"name": "worker", "state": {"terminated": {
        "exitCode": code, "finishedAt": finished.strftime("%Y-%m-%dT%H:%M:%SZ")}}}])


def test_succeeded_pod_with_a_recorded_result_finishes_before_the_job_controller() -> None:
    end = T0 + timedelta(seconds=7)
    st = {"phase": "Running", "startTime": "2025-01-01T12:00:00Z", "result": [{"fileName": "o.mp4"}]}
    out = observe(st, job(active=1, startTime="2025-01-01T12:00:00Z"), [_terminated("Succeeded", 0, end)],
                  T0 + timedelta(seconds=9), 1, 600)
    assert out.new_phase == "Succeeded"
    assert out.patch["completionTime"] == "2025-01-01T12:00:07Z"  # the container's end, not the clock


def test_succeeded_pod_without_a_result_waits_for_the_job() -> None:
    out = observe({"phase": "Running"}, job(active=1), [_terminated("Succeeded", 0, T0)], T0, 1, 600)
    assert out.new_phase != "Succeeded"


def test_failed_pods_beyond_the_backoff_limit_fail_the_job_at_once() -> None:
    j = job(failed=2)
    j["spec"] = {"backoffLimit": 1}
    pods = [_terminated("Failed", 1, T0), _terminated("Failed", 1, T0 + timedelta(seconds=3))]
    out = observe({"phase": "Running", "error": "step 1 failed: boom"}, j, pods, T0 + timedelta(seconds=4), 1, 600)
    assert out.new_phase == "Failed" and out.patch["message"] == "step 1 failed: boom"
    one = observe({"phase": "Running"}, j, pods[:1], T0 + timedelta(seconds=4), 1, 600)
    assert one.new_phase != "Failed"  # a retry is still allowed


def test_pods_stopped_at_the_jobs_deadline_fail_it_as_timed_out() -> None:
    j = job(failed=1, startTime="2025-01-01T12:00:00Z")
    j["spec"] = {"backoffLimit": 0, "activeDeadlineSeconds": 10}
    late = [_terminated("Failed", 143, T0 + timedelta(seconds=11))]
    st = {"phase": "Running", "error": "terminated: the worker received SIGTERM"}
    out = observe(st, j, late, T0 + timedelta(seconds=12), 1, 600)
    assert (out.new_phase, out.patch["reason"]) == ("Failed", "DeadlineExceeded")
    assert out.patch["message"] == "timed out after 10s: terminated: the worker received SIGTERM"
    early = observe(st, j, [_terminated("Failed", 1, T0 + timedelta(seconds=3))], T0 + timedelta(seconds=4), 1, 600)
    assert early.patch["reason"] == "BackoffLimitExceeded"
