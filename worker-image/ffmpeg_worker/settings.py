"""The worker's environment (set by the operator on the Job's pod, see docs/CONTRACTS.md)."""

from __future__ import annotations

import tempfile

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    ffmpegjob_name: str = Field(validation_alias="FFMPEGJOB_NAME")
    ffmpegjob_namespace: str = Field(default="default", validation_alias="FFMPEGJOB_NAMESPACE")
    workdir: str = Field(default_factory=tempfile.gettempdir, validation_alias="FFMPEG_WORKDIR")
    termination_log_path: str = Field(default="/dev/termination-log", validation_alias="TERMINATION_LOG_PATH")
    ffmpeg_bin: str = Field(default="ffmpeg", validation_alias="FFMPEG_BIN")
    ffprobe_bin: str = Field(default="ffprobe", validation_alias="FFPROBE_BIN")
    # Extra arguments put before every command's own, e.g. `-hwaccel cuda` on a GPU pool.
    ffmpeg_global_args: str = Field(default="", validation_alias="FFMPEG_GLOBAL_ARGS")
    progress_interval: float = Field(default=1.0, ge=0.1, validation_alias="PROGRESS_INTERVAL_SECONDS")
    fetch_concurrency: int = Field(default=4, ge=1, le=64, validation_alias="FETCH_CONCURRENCY")
    upload_concurrency: int = Field(default=8, ge=1, le=64, validation_alias="UPLOAD_CONCURRENCY")
    max_input_bytes: int | None = Field(default=None, ge=1, validation_alias="MAX_INPUT_BYTES")
    # FFmpeg reads suitable storage inputs itself (presigned GET) instead of waiting for a download.
    stream_inputs: bool = Field(default=True, validation_alias="STREAM_INPUTS")
    keep_workdir: bool = Field(default=False, validation_alias="KEEP_WORKDIR")
