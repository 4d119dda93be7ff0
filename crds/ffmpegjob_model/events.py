"""Live job events (Server-Sent Events) as the API sends them and the client reads them: the
event names, the data of each event and the event ids that make `Last-Event-ID` resume work.

A job's events are derived from its FFmpegJob object alone, so any API replica can resume any
stream: an event id is the position `rank.step.tenths` in the job's one possible history
(pending -> queue positions -> running -> progress of each step -> terminal phase -> result or
error). A resuming client is sent only what lies after its last id, and the phases it missed are
reconstructed from the status (a job with a start time ran). Progress in between is a sample, not
a history: after a reconnect the client gets the current progress, not every value it missed.

Stream:  `phase` (pending) [`queue` ...] [`phase` (running) `progress` ...] `phase` (terminal)
then `result` (completed) or `error` (failed, cancelled, deleted), then the server closes it.
Heartbeats are SSE comment lines."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from .model import Phase

EVENT_PHASE = "phase"
EVENT_QUEUE = "queue"
EVENT_PROGRESS = "progress"
EVENT_RESULT = "result"
EVENT_ERROR = "error"
EVENT_NAMES = (EVENT_PHASE, EVENT_QUEUE, EVENT_PROGRESS, EVENT_RESULT, EVENT_ERROR)
FINAL_EVENTS = (EVENT_RESULT, EVENT_ERROR)
# The media type of the stream (documented in the OpenAPI document).
MEDIA_TYPE = "text/event-stream"

# Ranks: the coarse position of an event in a job's history.
RANK_PENDING, RANK_RUNNING, RANK_TERMINAL, RANK_FINAL = 0, 1, 2, 3


@dataclass(frozen=True, order=True)
class EventId:
    """`rank.step.tenths`: ordered as tuples; a stream only moves forward."""

    rank: int
    step: int = 0
    tenths: int = 0

    def __str__(self) -> str:
        return f"{self.rank}.{self.step}.{self.tenths}"

    @classmethod
    def parse(cls, text: str | None) -> EventId | None:
        """None for a missing or malformed id (the stream then starts from the beginning)."""
        try:
            parts = [int(p) for p in (text or "").strip().split(".")]
        except ValueError:
            return None
        if len(parts) != 3 or any(p < 0 for p in parts) or parts[0] > RANK_FINAL:
            return None
        return cls(*parts)


class PhaseEvent(BaseModel):
    job_id: str
    phase: Phase = Field(description="The FFmpegJob's phase: Pending, Running, Succeeded, Failed, Cancelled")
    status: str = Field(description="The same as the surface's status word (pending/processing/completed, "
                                    "or queued/running/succeeded on the VGF surface)")
    reason: str | None = None


class QueueEvent(BaseModel):
    job_id: str
    position: int = Field(ge=0, description="Jobs ahead of this one (0: next)")
    estimated_start: str | None = Field(default=None, description="When the queue expects to start it, if known")


class ChunkProgress(BaseModel):
    index: int
    phase: str = "Pending"
    percent: float = 0
    speed: str | None = None


class ProgressEvent(BaseModel):
    job_id: str
    step: int = Field(description="Command being run, 1-based (0 before the first starts)")
    steps: int
    percent: float = Field(description="Of the whole job")
    speed: str | None = Field(default=None, description="FFmpeg's speed, e.g. `2.1x`")
    eta_seconds: float | None = Field(default=None, description="Estimated seconds left, from the time so far")
    stage: Literal["Chunks", "Stitch", "Done"] | None = Field(default=None, description="Split jobs: the stage")
    chunks: list[ChunkProgress] | None = Field(default=None, description="Split jobs: each chunk")
    stitch_percent: float | None = Field(default=None, description="Split jobs: the stitch's own progress")


class FinalEvent(BaseModel):
    """`result` (completed) or `error` (failed, cancelled, or the job was deleted)."""

    job_id: str
    status: str = Field(description="The surface's status word")
    error: str | None = Field(default=None, description="Why it failed, with the tail of FFmpeg's stderr")
    step: int | None = Field(default=None, description="The step that was running when it failed")
    steps: int | None = None
    job: dict[str, Any] | None = Field(default=None, description="The job as the surface's GET returns it "
                                       "(`GET /job/{id}` or the `data` of `GET /api/jobs/{id}`)")


@dataclass(frozen=True)
class Event:
    name: str
    id: EventId
    data: BaseModel


def _status(obj: dict[str, Any]) -> dict[str, Any]:
    st = obj.get("status")
    return st if isinstance(st, dict) else {}


def phase_of(obj: dict[str, Any]) -> Phase:
    try:
        return Phase(_status(obj).get("phase") or Phase.PENDING.value)
    except ValueError:
        return Phase.PENDING


def ran(obj: dict[str, Any]) -> bool:
    """Whether the job was ever Running (a job cancelled while pending never was)."""
    st = _status(obj)
    return phase_of(obj) != Phase.PENDING and bool(
        phase_of(obj) in (Phase.RUNNING, Phase.SUCCEEDED) or st.get("startTime") or st.get("progress"))


def queue_position(obj: dict[str, Any]) -> tuple[int, str | None] | None:
    """The position a queueing system recorded in the status, if any (`queuePosition` or
    `queue.position`), with its estimated start."""
    st = _status(obj)
    q: dict[str, Any] = st["queue"] if isinstance(st.get("queue"), dict) else {}
    pos = st.get("queuePosition", q.get("position"))
    if not isinstance(pos, int) or isinstance(pos, bool) or pos < 0:
        return None
    est = st.get("estimatedStart", q.get("estimatedStart"))
    return pos, str(est) if est else None


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def progress_of(name: str, obj: dict[str, Any], now: datetime | None = None) -> ProgressEvent | None:
    st = _status(obj)
    p = st.get("progress")
    if not isinstance(p, dict):
        return None
    percent = float(p.get("percent") or 0)
    eta = None
    started = _parse_time(st.get("startTime"))
    if started is not None and 0 < percent < 100:
        elapsed = ((now or datetime.now(UTC)) - started).total_seconds()
        if elapsed > 0:
            eta = round(elapsed * (100 - percent) / percent, 1)
    split: dict[str, Any] | None = st["split"] if isinstance(st.get("split"), dict) else None
    chunks = None
    if isinstance(st.get("chunks"), list):
        reports: dict[str, Any] = st["chunkReports"] if isinstance(st.get("chunkReports"), dict) else {}
        chunks = [ChunkProgress(index=int(c.get("index", i)), phase=str(c.get("phase") or "Pending"),
                                percent=float(c.get("percent") or 0),
                                speed=(reports.get(str(c.get("index", i))) or {}).get("speed"))
                  for i, c in enumerate(st["chunks"]) if isinstance(c, dict)]
    stitch = None
    if split is not None and split.get("stage") in ("Stitch", "Done"):
        reports_ = st.get("chunkReports") if isinstance(st.get("chunkReports"), dict) else {}
        report = reports_.get("stitch") if isinstance(reports_, dict) else None
        stitch = 100.0 if split.get("stage") == "Done" else float((report or {}).get("percent") or 0)
    return ProgressEvent(job_id=name, step=int(p.get("step") or 0), steps=int(p.get("steps") or 0),
                         percent=percent, speed=p.get("speed"), eta_seconds=eta,
                         stage=split.get("stage") if split else None, chunks=chunks, stitch_percent=stitch)


def progress_id(p: ProgressEvent) -> EventId:
    return EventId(RANK_RUNNING, p.step, round(p.percent * 10))


def failed_step(obj: dict[str, Any]) -> tuple[int | None, int | None]:
    p = _status(obj).get("progress")
    if not isinstance(p, dict):
        return None, None
    return p.get("step"), p.get("steps")


@dataclass
class Cursor:
    """What one stream has sent: the last id and the last progress/queue data (so that an
    unchanged status sends nothing)."""

    last: EventId | None = None
    progress: ProgressEvent | None = None
    queue: tuple[int, str | None] | None = None
    done: bool = False

    def _after(self, eid: EventId) -> bool:
        return self.last is None or eid > self.last


def advance(cursor: Cursor, name: str, obj: dict[str, Any] | None, word: dict[Phase, str],
            now: datetime | None = None) -> list[Event]:
    """The events that bring a stream at `cursor` up to `obj` (None: the job was deleted).
    `word` maps phases to the surface's status words. The final event's `job` is left for the
    caller to fill in (it needs the surface's view with fresh download links)."""
    if cursor.done:
        return []
    out: list[Event] = []

    def emit(name_: str, eid: EventId, data: BaseModel, force: bool = False) -> None:
        if force or cursor._after(eid):
            out.append(Event(name_, eid if cursor.last is None or eid > cursor.last else cursor.last, data))
            if cursor.last is None or eid > cursor.last:
                cursor.last = eid

    if obj is None or not obj.get("spec"):
        emit(EVENT_ERROR, EventId(RANK_FINAL), FinalEvent(job_id=name, status="deleted",
                                                          error="The job was deleted"), force=True)
        cursor.done = True
        return out
    phase = phase_of(obj)
    emit(EVENT_PHASE, EventId(RANK_PENDING), PhaseEvent(job_id=name, phase=Phase.PENDING, status=word[Phase.PENDING]))
    if phase == Phase.PENDING:
        q = queue_position(obj)
        if q is not None and q != cursor.queue:
            cursor.queue = q
            emit(EVENT_QUEUE, EventId(RANK_PENDING), QueueEvent(job_id=name, position=q[0], estimated_start=q[1]),
                 force=True)
        return out
    if ran(obj):
        emit(EVENT_PHASE, EventId(RANK_RUNNING), PhaseEvent(job_id=name, phase=Phase.RUNNING,
                                                            status=word[Phase.RUNNING]))
        p = progress_of(name, obj, now)
        if p is not None and phase == Phase.RUNNING:
            prev, cursor.progress = cursor.progress, p
            changed = prev is None or p.model_dump(exclude={"eta_seconds"}) != prev.model_dump(exclude={"eta_seconds"})
            # Live, every change is sent (a chunk-only change keeps the id); on resume, only
            # progress beyond the client's last id.
            if changed and (prev is not None or cursor._after(progress_id(p))):
                emit(EVENT_PROGRESS, progress_id(p), p, force=True)
    if not phase.terminal:
        return out
    reason = _status(obj).get("reason")
    emit(EVENT_PHASE, EventId(RANK_TERMINAL), PhaseEvent(job_id=name, phase=phase, status=word[phase],
                                                         reason=str(reason) if reason else None))
    st = _status(obj)
    if phase == Phase.SUCCEEDED:
        emit(EVENT_RESULT, EventId(RANK_FINAL), FinalEvent(job_id=name, status=word[phase]), force=True)
    else:
        step, steps = failed_step(obj)
        error = st.get("error") or st.get("message") or ("Job was cancelled" if phase == Phase.CANCELLED else "")
        emit(EVENT_ERROR, EventId(RANK_FINAL), FinalEvent(job_id=name, status=word[phase], error=str(error) or None,
                                                          step=step if phase == Phase.FAILED else None,
                                                          steps=steps if phase == Phase.FAILED else None),
             force=True)
    cursor.done = True
    return out
