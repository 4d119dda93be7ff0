"""What the client returns: one `Job` for both surfaces, and the live events, whose data are the
contract package's models (`ffmpegjob_model.events`, the same the API sends)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ffmpegjob_model.events import (
    EVENT_ERROR,
    EVENT_PHASE,
    EVENT_PROGRESS,
    EVENT_QUEUE,
    EVENT_RESULT,
    FINAL_EVENTS,
    FinalEvent,
    PhaseEvent,
    ProgressEvent,
    QueueEvent,
)
from ffmpegjob_model.model import Phase
from ffmpegjob_model.payloads import VGF_STATUS
from pydantic import BaseModel, ConfigDict, Field

Surface = Literal["vgf", "ffmpeg-api"]
VGF: Surface = "vgf"
FFMPEG_API: Surface = "ffmpeg-api"

# Both surfaces' status words -> the FFmpegJob phase.
PHASE_OF_WORD: dict[str, Phase] = {**{p.rest_status: p for p in Phase}, **{w: p for p, w in VGF_STATUS.items()}}


class ResultFile(BaseModel):
    model_config = ConfigDict(extra="allow")

    file_name: str
    size_bytes: int | None = None
    download_url: str
    media: dict[str, Any] | None = None


class Usage(BaseModel):
    model_config = ConfigDict(extra="allow")

    time_sec: float = 0
    input_size_gb: float = 0
    output_size_gb: float = 0
    gb_sec: float = 0


class Progress(BaseModel):
    model_config = ConfigDict(extra="allow")

    step: int = 0
    steps: int = 0
    percent: float = 0
    speed: str | None = None


class Job(BaseModel):
    """A job as either surface reports it. `status` is the surface's own word, `phase` the
    FFmpegJob phase it stands for (the same for both surfaces)."""

    model_config = ConfigDict(extra="allow")

    id: str
    surface: Surface
    status: str
    phase: Phase
    error: str | None = None
    result: list[ResultFile] = Field(default_factory=list)
    usage: Usage | None = None
    progress: Progress | None = None
    raw: dict[str, Any] = Field(default_factory=dict, description="The surface's JSON as received")

    @property
    def done(self) -> bool:
        return Phase(self.phase).terminal

    @property
    def succeeded(self) -> bool:
        return self.phase == Phase.SUCCEEDED

    @classmethod
    def from_vgf(cls, data: dict[str, Any]) -> Job:
        word = str(data.get("status", "queued"))
        result = data.get("result") or [{"file_name": n, "download_url": u}
                                        for n, u in (data.get("output_files") or {}).items()]
        return cls(id=data["id"], surface=VGF, status=word, phase=PHASE_OF_WORD.get(word, Phase.PENDING),
                   error=data.get("error_message") or None, result=result, usage=data.get("usage"),
                   progress=data.get("progress"), raw=data)

    @classmethod
    def from_ffmpeg_api(cls, data: dict[str, Any]) -> Job:
        word = str(data.get("status", "pending"))
        return cls(id=data["job_id"], surface=FFMPEG_API, status=word, phase=PHASE_OF_WORD.get(word, Phase.PENDING),
                   error=data.get("error"), result=data.get("result") or [], usage=data.get("usage"), raw=data)

    @classmethod
    def parse(cls, surface: Surface, data: dict[str, Any]) -> Job:
        return cls.from_vgf(data) if surface == VGF else cls.from_ffmpeg_api(data)


EventData = PhaseEvent | QueueEvent | ProgressEvent | FinalEvent
MODELS: dict[str, type[BaseModel]] = {EVENT_PHASE: PhaseEvent, EVENT_QUEUE: QueueEvent,
                                      EVENT_PROGRESS: ProgressEvent, EVENT_RESULT: FinalEvent,
                                      EVENT_ERROR: FinalEvent}


@dataclass(frozen=True)
class JobEvent:
    """One event of a job's stream: `name` (phase, queue, progress, result, error), its `id`
    (for `Last-Event-ID`) and its typed `data`."""

    name: str
    id: str | None
    data: EventData

    @property
    def final(self) -> bool:
        return self.name in FINAL_EVENTS


@dataclass(frozen=True)
class Upload:
    """A local file stored for a job: `url` is what a VGF job takes as input, `file_path`
    (`dir_id/file_name`) what an "FFmpeg API" task takes."""

    url: str
    file_path: str | None = None
