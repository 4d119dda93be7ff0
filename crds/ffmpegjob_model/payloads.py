"""What each REST surface shows of an FFmpegJob: the "Very Good FFmpeg" job object and the
"FFmpeg API" webhook body. Shared by the api (responses) and the operator (webhook payloads), so
that a webhook carries exactly what a GET of the job returns on the surface that submitted it.

The surface is the FFmpegJob's `kubeffmpeg.io/surface` label (set by the api). A job written with
kubectl has none and gets the "FFmpeg API" body, as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .lenient import read_status
from .model import GROUP, FFmpegJobStatus, Phase, Usage
from .queueing import DEFAULT_PRIORITY
from .times import format_time, parse_time

SURFACE_LABEL = f"{GROUP}/surface"
SURFACE_VGF = "vgf"
SURFACE_FFMPEG_API = "ffmpeg-api"
# The original `input_files` and `ffmpeg_commands` of a VGF submission (JSON), so that the job
# object shows what the client sent (the spec holds storage paths and `{{placeholders}}`).
VGF_REQUEST_ANNOTATION = f"{GROUP}/vgf-request"
# The VGF docs: output download URLs are valid for 7 days (also S3's longest presign).
VGF_OUTPUT_URL_SECONDS = 7 * 24 * 3600
# The VGF docs: jobs run 300 s by default, 6 h at most.
VGF_DEFAULT_TIMEOUT_SECONDS = 300
VGF_MAX_TIMEOUT_SECONDS = 6 * 3600

VGF_STATUS: dict[Phase, str] = {
    Phase.PENDING: "queued",
    Phase.RUNNING: "running",
    Phase.SUCCEEDED: "succeeded",
    Phase.FAILED: "failed",
    Phase.CANCELLED: "cancelled",
}
VGF_STATUSES = tuple(VGF_STATUS.values())
VGF_TERMINAL = ("succeeded", "failed", "cancelled")

FFMPEG_API_ERROR_PREFIX = "FFmpeg processing error: "
CANCELLED_MESSAGE = "Job was cancelled"

# presign(storage_path, expires_seconds) -> a download URL of one of the job's tenant's files
Presign = Callable[[str, int], str]


def status_of(obj: dict[str, Any]) -> FFmpegJobStatus:
    try:
        return read_status(obj.get("status") or {})  # leniently: a newer release's fields are ignored
    except ValueError:
        return FFmpegJobStatus()


def phase_of(obj: dict[str, Any]) -> Phase:
    phase = (obj.get("status") or {}).get("phase")
    try:
        return Phase(phase) if phase else Phase.PENDING
    except ValueError:
        return Phase.PENDING


def surface_of(obj: dict[str, Any]) -> str:
    return str(((obj.get("metadata") or {}).get("labels") or {}).get(SURFACE_LABEL) or SURFACE_FFMPEG_API)


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return format_time(value)
    return str(value)


def _parse(value: str | None) -> datetime | None:
    try:
        return parse_time(value)
    except ValueError:
        return None


def failure_detail(st: FFmpegJobStatus) -> str:
    """Why a job failed, in one readable message: the worker's error, or the operator's message
    when that says more (`timed out after 10s: <the worker's error>`)."""
    if st.error and st.message and st.error in st.message:
        return st.message
    return st.error or st.message or "the job failed"


def usage_or_estimate(obj: dict[str, Any]) -> Usage:
    """The worker's usage; for a job that ended without one (killed, or written by another
    engine), what is known: run time from the status times and the outputs' sizes."""
    st = status_of(obj)
    if st.usage is not None:
        return st.usage
    seconds = 0.0
    if st.start_time is not None and st.completion_time is not None:
        seconds = max(0.0, (st.completion_time - st.start_time).total_seconds())
    return Usage.compute(seconds, 0, sum(r.size_bytes for r in st.result or []))


def usage_dict(u: Usage) -> dict[str, float]:
    """The four fields both seeds document (no byte counts)."""
    return {"time_sec": u.time_sec, "input_size_gb": u.input_size_gb, "output_size_gb": u.output_size_gb,
            "gb_sec": u.gb_sec}


def queue_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """Extensions of both surfaces' job views: the job's priority and, while Kueue holds it, its
    place in the tenant's queue for the pool (docs/queueing.md); null when not queued."""
    spec, st = obj.get("spec") or {}, status_of(obj)
    queue = st.queue if phase_of(obj) == Phase.PENDING else None
    return {
        "priority": str(spec.get("priority") or DEFAULT_PRIORITY),
        "queue_position": queue.position if queue is not None else None,
        "queue_waiting": queue.waiting if queue is not None else None,
        "queue_reason": (queue.message or queue.reason) if queue is not None else None,
    }


def fallback_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """Extension of both surfaces' job views: `fallback`, set once the operator ran a GPU job on
    the CPU (status.fallback, docs/gpu.md); null otherwise."""
    fb = status_of(obj).fallback
    return {"fallback": None if fb is None else {"from_machine": fb.from_machine, "machine": fb.machine,
                                                 "missing": list(fb.missing), "commands": fb.commands}}


# ------------------------------------------------------------------------------ "FFmpeg API"
def ffmpeg_api_error(obj: dict[str, Any]) -> str:
    """The documented failure text: `FFmpeg processing error: <detail>`."""
    st = status_of(obj)
    if phase_of(obj) == Phase.CANCELLED:
        return CANCELLED_MESSAGE
    detail = failure_detail(st)
    return detail if detail.startswith(FFMPEG_API_ERROR_PREFIX) else FFMPEG_API_ERROR_PREFIX + detail


def ffmpeg_api_webhook(job_id: str, obj: dict[str, Any], download_url: Callable[[str], str]) -> dict[str, Any]:
    """The seed's webhook bodies (success with result and usage, failure with error)."""
    st, phase = status_of(obj), phase_of(obj)
    if phase == Phase.SUCCEEDED:
        return {
            "job_id": job_id,
            "status": "completed",
            "result": [
                {"file_name": r.file_name, "size_bytes": r.size_bytes, "download_url": download_url(r.storage_path)}
                for r in st.result or []
            ],
            "usage": usage_dict(usage_or_estimate(obj)),
        }
    if not phase.terminal:
        phase = Phase.FAILED
    return {"job_id": job_id, "status": phase.rest_status, "error": ffmpeg_api_error(obj)}


# ------------------------------------------------------------------------- "Very Good FFmpeg"
def vgf_request(obj: dict[str, Any]) -> dict[str, Any]:
    """The submission as the client wrote it: from the annotation, else from the spec."""
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(VGF_REQUEST_ANNOTATION)
    if raw:
        try:
            data = json.loads(raw)
            if isinstance(data, dict):
                return data
        except ValueError:
            pass
    spec = obj.get("spec") or {}
    return {
        "input_files": {i.get("name", ""): i.get("source", "") for i in spec.get("inputs") or []},
        "ffmpeg_commands": list(spec.get("commands") or []),
    }


def vgf_error_message(obj: dict[str, Any]) -> str:
    phase = phase_of(obj)
    if phase == Phase.CANCELLED:
        return CANCELLED_MESSAGE
    if phase == Phase.FAILED:
        return failure_detail(status_of(obj))
    return ""


def vgf_job(obj: dict[str, Any], presign: Presign, job_id: str | None = None) -> dict[str, Any]:
    """The job object of `GET /api/jobs/{id}` (and of VGF webhooks), every documented key present
    (null or empty when unknown), then this system's extensions: machine, progress, usage, result."""
    meta, spec, st, phase = obj.get("metadata") or {}, obj.get("spec") or {}, status_of(obj), phase_of(obj)
    req = vgf_request(obj)
    created = _iso(meta.get("creationTimestamp"))
    times = [t for t in (_parse(created), st.start_time, st.completion_time,
                         *(c.last_transition_time for c in st.conditions or [])) if t is not None]
    updated = _iso(max(times)) if times else created
    results = (st.result or []) if phase == Phase.SUCCEEDED else []
    urls = {r.file_name: presign(r.storage_path, VGF_OUTPUT_URL_SECONDS) for r in results}
    usage = st.usage
    input_bytes = usage.input_bytes if usage is not None else None
    output_bytes: int | None = sum(r.size_bytes for r in results) if results else None
    if output_bytes is None and usage is not None:
        output_bytes = usage.output_bytes
    job: dict[str, Any] = {
        "id": job_id or str(meta.get("name", "")),
        "status": VGF_STATUS[phase],
        "queued_at": created,
        "created_at": created,
        "updated_at": updated,
        "started_at": _iso(st.start_time),
        "finished_at": _iso(st.completion_time) if phase.terminal else None,
        "error_message": vgf_error_message(obj),
        "ffmpeg_commands": list(req.get("ffmpeg_commands") or []),
        "input_files": dict(req.get("input_files") or {}),
        "output_files": urls,
        "webhook_url": (spec.get("webhook") or {}).get("url"),
        "timeout_seconds": spec.get("timeoutSeconds"),
        "total_input_bytes": input_bytes,
        "total_output_bytes": output_bytes,
        # extensions
        "machine": str(spec.get("machine", "cpu")),
        "progress": st.progress.model_dump(mode="json") if st.progress else None,
        "usage": usage_dict(usage_or_estimate(obj)) if phase.terminal else None,
        "result": [
            {"file_name": r.file_name, "size_bytes": r.size_bytes, "download_url": urls[r.file_name],
             "media": r.media}
            for r in results
        ],
        **queue_fields(obj),
        **fallback_fields(obj),
    }
    return job


# --------------------------------------------------------------------------------- webhooks
def webhook_body(obj: dict[str, Any], job_id: str, presign: Presign, default_expiry: int) -> dict[str, Any]:
    """The webhook body of a finished job, in the shape of the surface that submitted it."""
    if surface_of(obj) == SURFACE_VGF:
        return vgf_job(obj, presign, job_id)
    return ffmpeg_api_webhook(job_id, obj, lambda path: presign(path, default_expiry))
