"""Live job events over Server-Sent Events, on both surfaces: `GET /job/{id}/events` ("FFmpeg
API") and `GET /api/jobs/{id}/events` with its alias `GET /api/ffmpeg/{id}/events` ("Very Good
FFmpeg"). The event names, data and ids are `ffmpegjob_model.events`; the streams share the
process's one FFmpegJob watch (`..streams`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request
from ffmpegjob_model import events as ev
from ffmpegjob_model import payloads
from ffmpegjob_model.model import Phase
from ffmpegjob_model.storage_layout import split_result_path
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sse_starlette.sse import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from ..errors import ERROR_RESPONSES, VGF_PREFIX
from ..jobs import error_of, results, usage_of
from ..schemas import JobResponse, VgfJob
from ..services import Auth, Caller, Services, Svc
from ..streams import DELETED_MARK, RESYNC, Slot, StreamHub

router = APIRouter(responses=ERROR_RESPONSES)
JobId = Annotated[str, Path(description="The job id", min_length=1, max_length=253)]
SEND_TIMEOUT_SECONDS = 30.0


class EventSettings(BaseSettings):
    """`EVENTS_*` environment variables of the API."""

    model_config = SettingsConfigDict(env_prefix="EVENTS_", extra="ignore")

    # Open event streams per API key (per API replica); one more is a 429. 0 = unlimited.
    max_streams_per_key: int = Field(default=20, ge=0)
    # Seconds between heartbeat comments on an idle stream.
    heartbeat_seconds: float = Field(default=15.0, gt=0)
    # A stream is closed after this long (the client reconnects with Last-Event-ID).
    max_stream_seconds: float = Field(default=3600.0, gt=0)
    # The reconnection delay the stream asks clients for (SSE `retry:`), milliseconds.
    retry_ms: int = Field(default=2000, ge=0)


WORDS: dict[str, dict[Phase, str]] = {
    payloads.SURFACE_FFMPEG_API: {p: p.rest_status for p in Phase},
    payloads.SURFACE_VGF: dict(payloads.VGF_STATUS),
}

DESCRIPTION = """Server-Sent Events (`text/event-stream`) of one job until it ends, then the
server closes the stream. Events, in order:

- `phase`: `{job_id, phase, status, reason}` - Pending, then Running (if it ran), then the final phase
- `queue`: `{job_id, position, estimated_start}` - while queued, when the status carries a position
- `progress`: `{job_id, step, steps, percent, speed, eta_seconds, stage, chunks}` - while running
  (`stage` and `chunks` for split jobs)
- `result` (completed) or `error` (failed, cancelled, deleted): `{job_id, status, error, step, steps,
  job}` where `job` is the job as the surface's `GET` returns it, with fresh download links

Every event has an `id`; reconnect with `Last-Event-ID` to get only what came after it (phases
missed meanwhile are reconstructed from the job's status; progress is its current value).
Idle streams carry a comment line every 15 s (heartbeat). Open streams per API key are bounded
(429 beyond). The same job checks as its `GET`: another tenant's job is a 404."""

EXAMPLE = ('id: 0.0.0\nevent: phase\ndata: {"job_id":"job-1","phase":"Pending","status":"pending"}\n\n'
           'id: 1.0.0\nevent: phase\ndata: {"job_id":"job-1","phase":"Running","status":"processing"}\n\n'
           'id: 1.1.455\nevent: progress\ndata: {"job_id":"job-1","step":1,"steps":1,"percent":45.5,'
           '"speed":"2.1x","eta_seconds":3.2}\n\n'
           'id: 2.0.0\nevent: phase\ndata: {"job_id":"job-1","phase":"Succeeded","status":"completed"}\n\n'
           'id: 3.0.0\nevent: result\ndata: {"job_id":"job-1","status":"completed","job":{...}}\n\n')

STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The job's events", "content": {ev.MEDIA_TYPE: {"schema": {"type": "string"},
                                                                          "example": EXAMPLE}}},
    429: {"description": "Rate limit, or too many open event streams for this key (see Retry-After)"},
}
LastEventId = Annotated[str | None, Header(alias="Last-Event-ID", description="Resume after this event id")]


def hub_of(request: Request, svc: Services) -> tuple[StreamHub, EventSettings]:
    state = request.app.state
    hub: StreamHub | None = getattr(state, "stream_hub", None)
    if hub is None:
        settings = EventSettings()
        hub = StreamHub(svc.watcher, settings.max_streams_per_key)
        state.stream_hub, state.event_settings = hub, settings
    return hub, state.event_settings


def ffmpeg_api_view(svc: Services, obj: dict[str, Any]) -> dict[str, Any]:
    name = obj["metadata"]["name"]
    status = payloads.phase_of(obj).rest_status
    if status == "completed":
        presign = lambda t, d, f: svc.storage.presign_get(t, d, f, svc.settings.result_url_seconds)  # noqa: E731
        out = JobResponse(ok=True, job_id=name, status="completed", result=results(obj, presign), usage=usage_of(obj))
    elif status in ("failed", "cancelled"):
        out = JobResponse(ok=False, job_id=name, status=status, error=error_of(obj))
    else:
        out = JobResponse(ok=True, job_id=name, status=status)
    return out.model_dump(mode="json", exclude_none=True)


def vgf_view(svc: Services, obj: dict[str, Any]) -> dict[str, Any]:
    tenant = str((obj.get("spec") or {}).get("tenant", "default"))

    def presign(storage_path: str, expires: int) -> str:
        parts = split_result_path(storage_path)
        if parts is None:
            raise ValueError(f"not a storage path: {storage_path!r}")
        return svc.storage.presign_get(tenant, parts[0], parts[1], expires)

    return VgfJob.model_validate(payloads.vgf_job(obj, presign)).model_dump(mode="json")


def key_of(svc: Services, authorization: str | None) -> str:
    found = svc.keys.get().match(authorization)
    return found[1] if found is not None else ""


def _sse(e: ev.Event, retry: int | None = None) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(e.data.model_dump(mode="json", exclude_none=True), separators=(",", ":")),
                           event=e.name, id=str(e.id), retry=retry)


async def _stream(svc: Services, sub_hub: StreamHub, settings: EventSettings, slot: Slot, surface: str,
                  name: str, first: dict[str, Any], last_id: str | None, request: Request) -> AsyncIterator[Any]:
    """Subscribed before `first` was read, so nothing between the read and the watch is lost."""
    word = WORDS[surface]
    view = vgf_view if surface == payloads.SURFACE_VGF else ffmpeg_api_view
    cursor = ev.Cursor(last=ev.EventId.parse(last_id))
    sub = sub_hub.subscribe(name)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.max_stream_seconds
    retry: int | None = settings.retry_ms
    try:
        obj: dict[str, Any] | None = await run_in_threadpool(svc.kube.get_ffmpegjob, name)
        if obj is not None and obj["metadata"].get("uid") != first["metadata"].get("uid"):
            obj = None  # deleted and created again under the same name: not the job asked for
        while True:
            for e in ev.advance(cursor, name, obj, word):
                if e.name in ev.FINAL_EVENTS and obj is not None and obj.get("spec"):
                    data = e.data.model_copy(update={"job": await run_in_threadpool(view, svc, obj)})
                    e = ev.Event(e.name, e.id, data)
                yield _sse(e, retry)
                retry = None
            if cursor.done:
                return
            left = deadline - loop.time()
            if left <= 0:
                return
            try:
                item = await asyncio.wait_for(sub.queue.get(), timeout=min(left, 30.0))
            except TimeoutError:
                if await request.is_disconnected():
                    return
                continue
            while not sub.queue.empty():  # only the newest state matters
                item = sub.queue.get_nowait()
            if item is RESYNC:
                obj = await run_in_threadpool(svc.kube.get_ffmpegjob, name)
            elif item.get(DELETED_MARK):
                obj = None
            else:
                obj = item
    finally:
        sub_hub.unsubscribe(sub)
        slot.release()


async def open_stream(request: Request, svc: Services, who: Caller, job_id: str, last_id: str | None,
                      authorization: str | None) -> EventSourceResponse:
    hub, settings = hub_of(request, svc)
    obj = await run_in_threadpool(svc.jobs.get, who.tenant, job_id)  # 404 for another tenant's
    surface = payloads.SURFACE_VGF if request.url.path.startswith(VGF_PREFIX) else payloads.SURFACE_FFMPEG_API
    slot = hub.acquire(key_of(svc, authorization))
    try:
        gen = _stream(svc, hub, settings, slot, surface, job_id, obj, last_id, request)
        # send_timeout: a client that stops reading is dropped (and its slot freed) instead of held.
        return EventSourceResponse(gen, ping=settings.heartbeat_seconds, background=BackgroundTask(slot.release),
                                   send_timeout=SEND_TIMEOUT_SECONDS,
                                   headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
    except BaseException:
        slot.release()
        raise


Authorization = Annotated[str | None, Header(include_in_schema=False)]


@router.get("/job/{jobId}/events", tags=["Jobs"], responses=STREAM_RESPONSES, response_class=EventSourceResponse,
            summary="Live events of a job (Server-Sent Events)", description=DESCRIPTION)
async def job_events(request: Request, who: Auth, svc: Svc, jobId: JobId, last_event_id: LastEventId = None,
                     authorization: Authorization = None) -> EventSourceResponse:
    return await open_stream(request, svc, who, jobId, last_event_id, authorization)


@router.get("/api/jobs/{job_id}/events", tags=["Very Good FFmpeg"], responses=STREAM_RESPONSES,
            response_class=EventSourceResponse, summary="Live events of a job (Server-Sent Events)",
            description=DESCRIPTION)
async def vgf_job_events(request: Request, who: Auth, svc: Svc, job_id: JobId, last_event_id: LastEventId = None,
                         authorization: Authorization = None) -> EventSourceResponse:
    return await open_stream(request, svc, who, job_id, last_event_id, authorization)


@router.get("/api/ffmpeg/{job_id}/events", tags=["Very Good FFmpeg"], responses=STREAM_RESPONSES,
            response_class=EventSourceResponse, summary="Live events of a job (alias)", description=DESCRIPTION)
async def vgf_job_events_alias(request: Request, who: Auth, svc: Svc, job_id: JobId,
                               last_event_id: LastEventId = None,
                               authorization: Authorization = None) -> EventSourceResponse:
    return await open_stream(request, svc, who, job_id, last_event_id, authorization)

