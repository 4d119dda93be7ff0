"""An ffprobe request's options (probe.py runs them; a module of its own so that probe.py loads
no pydantic for the worker's fixed requests)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ProbeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: list[str] | None = None
    streams: list[str] | None = None
    chapters: list[str] | None = None
    programs: list[str] | None = None
    frames: list[str] | None = None
    packets: list[str] | None = None
    select_streams: str | None = None
    read_intervals: str | None = None
    count_frames: bool = False
    analyzeduration: str | int | None = Field(default=None, description='e.g. "10s" or microseconds')
    probesize: str | int | None = Field(default=None, description='e.g. "10M" or bytes')
