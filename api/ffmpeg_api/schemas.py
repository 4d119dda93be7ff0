"""Request and response bodies of both surfaces, field for field as the seeds document them."""

from __future__ import annotations

from typing import Any, Literal

from ffmpegjob_model.probe import ProbeOptions
from pydantic import BaseModel, ConfigDict, Field, model_validator

JobStatus = Literal["pending", "processing", "completed", "failed", "cancelled"]


class _Req(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently ignored


# ------------------------------------------------------------------------------ shared pieces
class UsageOut(BaseModel):
    time_sec: float
    input_size_gb: float
    output_size_gb: float
    gb_sec: float


class ResultFileOut(BaseModel):
    file_name: str
    size_bytes: int
    download_url: str
    media: dict[str, Any] | None = Field(default=None, description="Duration, codecs, resolution, bit rate.")


class OkMessage(BaseModel):
    ok: bool = True
    message: str


class ParallelRequest(_Req):
    """Extension of both surfaces: split one long encode across several pods (split-and-stitch).
    Exactly one of `chunks`, `chunk_seconds` or `mode: "auto"`."""

    chunks: int | None = Field(default=None, ge=2, le=256, description="Number of chunks, 2..256.")
    chunk_seconds: float | None = Field(default=None, ge=1, le=86400, description="Target length of a chunk.")
    mode: Literal["auto"] | None = Field(
        default=None, description="`auto`: split long inputs as the pool allows; run single-pod otherwise."
    )

    @model_validator(mode="after")
    def _one(self) -> ParallelRequest:
        if sum(v is not None for v in (self.chunks, self.chunk_seconds, self.mode)) != 1:
            raise ValueError("parallel takes exactly one of chunks (2..256), chunk_seconds or mode: auto")
        return self


# ------------------------------------------------------------------------ "FFmpeg API" (001)
class TaskInput(_Req):
    file_path: str = Field(min_length=1, max_length=4096, description="`dir_id/filename` or HTTPS URL")
    options: list[str] | None = Field(default=None, max_length=64)


class TaskOutput(_Req):
    file: str = Field(min_length=1, max_length=255)
    options: list[str] | None = Field(default=None, max_length=128)
    maps: list[str] | None = Field(default=None, max_length=32)


class Task(_Req):
    inputs: list[TaskInput] = Field(min_length=1, max_length=64)
    outputs: list[TaskOutput] = Field(min_length=1, max_length=64)
    filter_complex: str | None = Field(default=None, max_length=16384)
    output_dir_id: str | None = None
    parallel: ParallelRequest | None = Field(default=None, description="Extension: split-and-stitch.")


class ProcessRequest(_Req):
    task: Task
    webhook_url: str | None = Field(default=None, max_length=2048)


class ProcessResponse(BaseModel):
    ok: bool = True
    job_id: str
    result: list[ResultFileOut]
    usage: UsageOut | None = None


class AsyncAccepted(BaseModel):
    ok: bool = True
    job_id: str


class JobResponse(BaseModel):
    ok: bool
    job_id: str
    status: JobStatus
    result: list[ResultFileOut] | None = None
    usage: UsageOut | None = None
    error: str | None = None


class AnalyzeRequest(_Req):
    file_path: str = Field(min_length=1, max_length=4096)
    probe: ProbeOptions | None = None


class AnalyzeResponse(BaseModel):
    ok: bool = True
    result: dict[str, Any]
    usage: UsageOut


class RegisterFileRequest(_Req):
    file_name: str = Field(min_length=1, max_length=255)
    dir_id: str | None = None


class FileRecord(BaseModel):
    dir_id: str
    file_name: str
    file_path: str
    added_on: str


class UploadInfo(BaseModel):
    url: str
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str] = Field(default_factory=dict)
    expiresInSeconds: int  # the seed's camelCase name


class RegisterFileResponse(BaseModel):
    ok: bool = True
    file: FileRecord
    upload: UploadInfo


class FileInfo(BaseModel):
    file_path: str
    file_type: str
    file_size: int


class FileInfoResponse(BaseModel):
    ok: bool = True
    file_info: FileInfo


class DownloadInfo(BaseModel):
    url: str
    method: Literal["GET"] = "GET"
    expiresInSeconds: int  # the seed's camelCase name
    file_path: str
    file_size: int
    file_type: str


class DownloadResponse(BaseModel):
    ok: bool = True
    download: DownloadInfo


class DeletedInfo(BaseModel):
    file_path: str


class DeleteFileResponse(BaseModel):
    ok: bool = True
    deleted: DeletedInfo


class CreateDirectoryRequest(_Req):
    ttl: int | None = Field(default=None, ge=60, le=30 * 24 * 3600, description="seconds (default 24 h)")


class DirectoryOut(BaseModel):
    id: str
    ttl: int
    added_on: str | None = None


class CreateDirectoryResponse(BaseModel):
    ok: bool = True
    directory: DirectoryOut


class DirectoriesResponse(BaseModel):
    ok: bool = True
    directories: list[DirectoryOut]


class DirFileOut(BaseModel):
    file_name: str
    added_on: str
    size_bytes: int | None = None


class DirectoryFilesResponse(BaseModel):
    ok: bool = True
    files: list[DirFileOut]


# ----------------------------------------------------------------------- "Very Good FFmpeg" (000)
class VgfJobRequest(_Req):
    input_files: dict[str, str] = Field(default_factory=dict, description="placeholder name -> URL")
    output_files: list[str] = Field(min_length=1, max_length=64)
    ffmpeg_commands: list[str] = Field(min_length=1, max_length=32)
    webhook_url: str | None = Field(default=None, max_length=2048)
    machine: str = Field(default="cpu", max_length=63, description="cpu, gpu (alias nvidia) or another pool")
    parallel: ParallelRequest | None = Field(default=None, description="Extension: split-and-stitch.")


class VgfProgress(BaseModel):
    step: int
    steps: int
    percent: float
    speed: str | None = None


class VgfJob(BaseModel):
    id: str
    status: JobStatus
    machine: str
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    progress: VgfProgress | None = None
    result: list[ResultFileOut] | None = None
    usage: UsageOut | None = None
    error: str | None = None
    webhook_url: str | None = None


class VgfJobResponse(BaseModel):
    data: VgfJob


class VgfJobList(BaseModel):
    data: list[VgfJob]
    total: int
    limit: int
    offset: int


class TmpFileRequest(_Req):
    file_name: str | None = Field(default=None, min_length=1, max_length=255)


class TmpFileUrls(BaseModel):
    upload_url: str
    download_url: str
    expires_in_seconds: int


class TmpFileResponse(BaseModel):
    data: TmpFileUrls


# --------------------------------------------------------------------------------------- usage
class UsageTotals(BaseModel):
    jobs: int
    jobs_by_status: dict[str, int]
    time_sec: float
    input_size_gb: float
    output_size_gb: float
    gb_sec: float


class UsageResponse(BaseModel):
    ok: bool = True
    tenant: str
    usage: UsageTotals
