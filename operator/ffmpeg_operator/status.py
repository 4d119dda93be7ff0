"""What an FFmpegJob's status should say, computed from its Job and pods (pure functions).

Only the fields the operator owns are produced (phase, reason, message, conditions,
observedGeneration, startTime, completionTime, attempts, duration); what the worker writes
(progress, result, usage, error) is never part of a patch built here, except that a Succeeded
job's progress is completed to 100%.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ffmpegjob_model.model import TERMINAL, Phase
from ffmpegjob_model.queueing import QUEUE_NAME_LABEL, QUEUED_REASON
from ffmpegjob_model.times import format_time, parse_time

from .jobs import COUNT, FAIL_JOB, FINAL_EXIT_REASONS, IGNORE, disrupted, exit_code, failure_action

# Container states that keep a pod from ever starting without outside help.
STUCK_WAITING = frozenset({
    "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
    "CreateContainerError", "RunContainerError", "CrashLoopBackOff",
})
MESSAGE_MAX = 4096


def fmt_duration(seconds: float) -> str:
    """kubectl's style: 45s, 3m12s, 2h5m, 3d4h."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


def set_condition(conditions: list[dict[str, Any]] | None, type_: str, status: str, reason: str,
                  message: str, now: datetime, generation: int | None) -> list[dict[str, Any]]:
    """Upsert one condition; lastTransitionTime moves only when `status` flips."""
    out = [dict(c) for c in conditions or []]
    for c in out:
        if c.get("type") == type_:
            if c.get("status") != status:
                c["lastTransitionTime"] = format_time(now)
            c.update(status=status, reason=reason, message=message[:MESSAGE_MAX])
            if generation is not None:
                c["observedGeneration"] = generation
            return out
    new: dict[str, Any] = {"type": type_, "status": status, "reason": reason, "message": message[:MESSAGE_MAX],
           "lastTransitionTime": format_time(now)}
    if generation is not None:
        new["observedGeneration"] = generation
    return [*out, new]


def get_condition(conditions: list[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)


@dataclass
class Outcome:
    """The computed status patch and what the caller must do about it."""

    patch: dict[str, Any] = field(default_factory=dict)
    old_phase: str | None = None
    new_phase: str | None = None
    # The pod cannot start: the Job must go (its pods with it) and the FFmpegJob is Failed.
    stop_job: bool = False

    @property
    def transitioned(self) -> bool:
        return self.new_phase is not None and self.new_phase != self.old_phase


def _diff(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in desired.items() if current.get(k) != v}


def terminal_patch(status: dict[str, Any], phase: Phase, reason: str, message: str, now: datetime,
                   generation: int | None, completion: datetime | None = None) -> dict[str, Any]:
    """Failed/Cancelled/Succeeded, whatever the Job says (validation, unknown pool, cancel)."""
    conds = status.get("conditions")
    if get_condition(conds, "Running"):
        conds = set_condition(conds, "Running", "False", reason, message, now, generation)
    conds = set_condition(conds, phase.value, "True", reason, message, now, generation)
    end = completion or now
    desired: dict[str, Any] = {
        "phase": phase.value,
        "reason": reason,
        "message": message[:MESSAGE_MAX],
        "conditions": conds,
        "observedGeneration": generation,
        "completionTime": format_time(end),
    }
    start = parse_time(status.get("startTime"))
    if start is not None:
        desired["duration"] = fmt_duration((end - start).total_seconds())
    return _diff(status, desired)


def _pod_time(pod: dict[str, Any]) -> datetime | None:
    return parse_time((pod.get("metadata") or {}).get("creationTimestamp"))


def _failure_message(status: dict[str, Any], pods: list[dict[str, Any]], fallback: str) -> str:
    """The worker's own error first (it carries FFmpeg's stderr tail), then what the pod said."""
    if status.get("error"):
        return str(status["error"])
    for pod in sorted(pods, key=lambda p: _pod_time(p) or datetime.min.replace(tzinfo=UTC), reverse=True):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or {}
            if term and term.get("exitCode", 0) != 0:
                detail = (term.get("message") or "").strip() or term.get("reason") or "Error"
                return f"worker exited with code {term.get('exitCode')}: {detail}"
    return fallback


def _pod_blocker(pod: dict[str, Any]) -> tuple[str, str, str] | None:
    """(condition type, reason, message) of what keeps a pending pod from running."""
    st = pod.get("status") or {}
    for c in st.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False":
            return "PodScheduled", c.get("reason") or "Unschedulable", c.get("message") or "pod not scheduled"
    for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in STUCK_WAITING:
            return "Running", str(waiting["reason"]), waiting.get("message") or str(waiting["reason"])
    return None


def _container_end(pod: dict[str, Any]) -> datetime | None:
    ends = [parse_time(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
            for cs in (pod.get("status") or {}).get("containerStatuses") or []]
    return max((e for e in ends if e is not None), default=None)


# How a job ended: phase, reason, message, and when.
Ending = tuple[Phase, str, str, datetime | None]
SUCCESS_MESSAGE = "all outputs uploaded"


def _ended_by_job(status: dict[str, Any], job: dict[str, Any], pods: list[dict[str, Any]],
                  now: datetime) -> Ending | None:
    """What the Job controller recorded: its Complete or Failed condition."""
    jst = job.get("status") or {}
    conds = {c.get("type"): c for c in jst.get("conditions") or [] if c.get("status") == "True"}
    if "Complete" in conds:
        end = parse_time(jst.get("completionTime")) or parse_time(conds["Complete"].get("lastTransitionTime"))
        return Phase.SUCCEEDED, "Completed", SUCCESS_MESSAGE, end
    if "Failed" in conds:
        c = conds["Failed"]
        reason = c.get("reason") or "JobFailed"
        msg = _failure_message(status, pods, c.get("message") or "the Job failed")
        if reason == "PodFailurePolicy":  # the FailJob rule: say which
            final = [p for p in pods if failure_action(p) == FAIL_JOB]
            reason = FINAL_EXIT_REASONS.get(exit_code(final[0]) or 0, reason) if final else reason
        if reason == "DeadlineExceeded":
            msg = f"timed out after {job.get('spec', {}).get('activeDeadlineSeconds')}s: {msg}"
        return Phase.FAILED, reason, msg, parse_time(c.get("lastTransitionTime")) or now
    return None


def _finished_by_pods(status: dict[str, Any], job: dict[str, Any], pods: list[dict[str, Any]]) -> Ending | None:
    """The outcome the Job controller is about to record, read from the pods themselves.

    Waiting for the Job's Complete/Failed condition costs most of a second (the controller's
    sync); the pods already say it. A Succeeded pod of a one-completion Job whose worker recorded
    its result means success. A Failed pod is judged as the Job's podFailurePolicy judges it
    (jobs.failure_action): one whose command failed ends the job at once, a disrupted one does not
    count, and as many counted ones as the back-off limit allows plus one mean failure."""
    spec = job.get("spec") or {}
    if int(spec.get("completions") or 1) != 1:
        return None
    done = [p for p in pods if (p.get("status") or {}).get("phase") == "Succeeded"]
    if done and status.get("result") is not None:
        return Phase.SUCCEEDED, "Completed", SUCCESS_MESSAGE, _container_end(done[0])
    failed = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
    deadline, start = spec.get("activeDeadlineSeconds"), parse_time((job.get("status") or {}).get("startTime"))
    if failed and deadline and start:
        last = max(failed, key=lambda p: _container_end(p) or datetime.min.replace(tzinfo=UTC))
        end = _container_end(last)
        if end and (end - start).total_seconds() >= int(deadline):
            # The Job controller stopped the pod at its deadline; say so rather than "SIGTERM".
            msg = _failure_message(status, pods, "the worker pod failed")
            return Phase.FAILED, "DeadlineExceeded", f"timed out after {deadline}s: {msg}", end
    final = [p for p in failed if failure_action(p) == FAIL_JOB]
    if final:
        msg = _failure_message(status, final, "the worker's command failed")
        reason = FINAL_EXIT_REASONS.get(exit_code(final[0]) or 0, "CommandFailed")
        return Phase.FAILED, reason, msg, _container_end(final[0])
    failed = [p for p in failed if failure_action(p) == COUNT]
    limit = spec.get("backoffLimit")
    if failed and len(failed) > (6 if limit is None else int(limit)):  # 6: the Job API's default
        last = max(failed, key=lambda p: _container_end(p) or datetime.min.replace(tzinfo=UTC))
        msg = _failure_message(status, pods, "the worker pod failed")
        return Phase.FAILED, "BackoffLimitExceeded", msg, _container_end(last)
    return None


def observe(status: dict[str, Any], job: dict[str, Any], pods: list[dict[str, Any]], now: datetime,
            generation: int | None, pod_start_timeout: float) -> Outcome:
    """The status an FFmpegJob should have given its live Job and that Job's pods."""
    old = status.get("phase")
    out = Outcome(old_phase=old)
    if old in TERMINAL:
        return out  # terminal is final; late Job/pod events change nothing
    jst = job.get("status") or {}
    conds = status.get("conditions")
    start = parse_time(jst.get("startTime")) or parse_time(status.get("startTime"))
    attempts = sum(int(jst.get(k) or 0) for k in ("active", "succeeded", "failed"))
    desired: dict[str, Any] = {"observedGeneration": generation}
    if start is not None:
        desired["startTime"] = format_time(start)
    if attempts:
        desired["attempts"] = attempts

    ending = _ended_by_job(status, job, pods, now) or _finished_by_pods(status, job, pods)
    if ending is not None:
        phase, reason, message, end = ending
        patch = terminal_patch({**status, **desired}, phase, reason, message, now, generation, end)
        progress = status.get("progress")
        if phase is Phase.SUCCEEDED and progress and progress.get("percent", 0) < 100:
            # the last progress report may predate the end
            patch["progress"] = {**progress, "percent": 100, "step": progress.get("steps", progress.get("step"))}
        out.patch, out.new_phase = {**_diff(status, desired), **patch}, phase.value
        return out

    if (job.get("spec") or {}).get("suspend") and QUEUE_NAME_LABEL in ((job.get("metadata") or {}).get("labels") or {}):
        # Waiting for Kueue's admission: the queueing loop writes the `Queued` condition.
        desired.update(phase=Phase.PENDING.value, reason=QUEUED_REASON,
                       message=f"queued in LocalQueue {job['metadata']['labels'][QUEUE_NAME_LABEL]}")
    elif (job.get("spec") or {}).get("suspend"):
        conds = set_condition(conds, "Suspended", "True", "JobSuspended", "the Job is suspended", now, generation)
        desired.update(phase=Phase.PENDING.value, reason="Suspended", message="the Job is suspended")
    else:
        if get_condition(conds, "Suspended"):
            conds = set_condition(conds, "Suspended", "False", "JobResumed", "the Job is not suspended",
                                  now, generation)
        live = [p for p in pods if (p.get("status") or {}).get("phase") in ("Pending", "Running", None)]
        running = [p for p in live if (p.get("status") or {}).get("phase") == "Running"]
        if running:
            pod = running[0]
            conds = set_condition(conds, "PodScheduled", "True", "Scheduled",
                                  f"pod {pod['metadata']['name']} on node {pod.get('spec', {}).get('nodeName')}",
                                  now, generation)
            conds = set_condition(conds, "Running", "True", "PodRunning", "FFmpeg is running", now, generation)
            desired.update(phase=Phase.RUNNING.value, reason="Running", message="FFmpeg is running")
        else:
            desired.update(phase=Phase.PENDING.value, reason="Pending", message="waiting for the worker pod")
            spared = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"
                      and failure_action(p) == IGNORE]
            if spared:
                last = max(spared, key=lambda p: _pod_time(p) or datetime.min.replace(tzinfo=UTC))
                why = "disrupted" if disrupted(last) else "terminated from outside (SIGTERM)"
                desired.update(reason="Disrupted",
                               message=f"pod {last['metadata']['name']} was {why}; a new pod takes over")
            for pod in live:
                blocker = _pod_blocker(pod)
                if blocker is None:
                    continue
                ctype, reason, msg = blocker
                conds = set_condition(conds, ctype, "False", reason, msg, now, generation)
                created = _pod_time(pod) or now
                waited = (now - created).total_seconds()
                if waited >= pod_start_timeout:
                    text = f"pod {pod['metadata']['name']} did not start within {int(pod_start_timeout)}s: {msg}"
                    patch = terminal_patch({**status, **desired, "conditions": conds}, Phase.FAILED,
                                           reason, text, now, generation)
                    out.patch = {**_diff(status, {**desired, "conditions": conds}), **patch}
                    out.new_phase, out.stop_job = Phase.FAILED.value, True
                    return out
                desired.update(reason=reason, message=msg)
                break
    desired["conditions"] = conds
    out.patch = _diff(status, desired)
    out.new_phase = desired["phase"]
    return out
