"""Request and response bodies of both surfaces, field for field as the seeds document them."""

from __future__ import annotations

from typing import Any, Literal

from ffmpegjob_model.gpu import Fallback
from ffmpegjob_model.payloads import VGF_DEFAULT_TIMEOUT_SECONDS, VGF_MAX_TIMEOUT_SECONDS
from ffmpegjob_model.probe import ProbeOptions
from ffmpegjob_model.queueing import DEFAULT_PRIORITY, Priority
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
    file: str = Field(min_length=1, max_length=255, description=(
        "Output file name; or a pattern (`thumb_%03d.jpg`: every matching file is uploaded); or a file inside a "
        "folder (`hls/index.m3u8`: every file written under `hls/` is uploaded)"))
    options: list[str] | None = Field(default=None, max_length=128)
    maps: list[str] | None = Field(default=None, max_length=32)


class TemplateRequest(_Req):
    """Extension (docs/presets.md): run an FFmpegJobTemplate with these parameter values."""

    name: str = Field(min_length=1, max_length=253, description="The FFmpegJobTemplate's name (GET /api/templates)")
    parameters: dict[str, Any] = Field(default_factory=dict, description="Parameter values by name")


class Task(_Req):
    inputs: list[TaskInput] = Field(min_length=1, max_length=64)
    outputs: list[TaskOutput] = Field(
        default_factory=list, max_length=64, description="At least one, unless `template` names the outputs")
    filter_complex: str | None = Field(default=None, max_length=16384)
    output_dir_id: str | None = None
    parallel: ParallelRequest | None = Field(default=None, description="Extension: split-and-stitch.")
    template: TemplateRequest | None = Field(
        default=None, description="Extension: an FFmpegJobTemplate; its inputs are this task's inputs in order, "
        "its outputs and commands replace `outputs` and `filter_complex` (docs/presets.md)")

    @model_validator(mode="after")
    def _outputs_or_template(self) -> Task:
        if not self.outputs and self.template is None:
            raise ValueError("outputs: at least one output is required (or a template)")
        return self


FALLBACK_DESCRIPTION = ("Extension: `cpu` runs a job whose GPU encoders, decoders or filters its pool lacks on the CPU "
                        "pool with equivalent software ones (h264_nvenc -> libx264, scale_cuda -> scale, ...); `none` "
                        "refuses it (400); absent: the pool's default (docs/gpu.md)")
PRIORITY_DESCRIPTION = ("Extension: queue priority on Kueue, `low`, `normal` (default) or `high`; no effect on a "
                        "cluster without Kueue (docs/queueing.md)")


class ProcessRequest(_Req):
    task: Task
    webhook_url: str | None = Field(default=None, max_length=2048)
    machine: str | None = Field(default=None, max_length=63,
                                description="Extension: the node pool (default: the API's DEFAULT_MACHINE, `cpu`)")
    priority: Priority | None = Field(default=None, description=PRIORITY_DESCRIPTION)
    fallback: Fallback | None = Field(default=None, description=FALLBACK_DESCRIPTION)


class FallbackOut(BaseModel):
    """Extension: the job ran on the CPU instead of the GPU pool it asked for (docs/gpu.md)."""

    from_machine: str = Field(description="The pool the job asked for")
    machine: str = Field(description="The pool it ran on")
    missing: list[str] = Field(description="The GPU capabilities the asked-for pool lacked")
    commands: list[str] | None = Field(default=None, description="The commands as rewritten for the CPU")


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
    priority: Priority | None = Field(default=None, description="Extension: the job's queue priority")
    queue_position: int | None = Field(
        default=None, description="Extension: while pending on Kueue, 1-based place among the tenant's waiting jobs")
    queue_waiting: int | None = Field(default=None, description="Extension: while pending on Kueue, jobs waiting")
    queue_reason: str | None = Field(default=None, description="Extension: while pending on Kueue, Kueue's reason")
    fallback: FallbackOut | None = Field(default=None, description="Extension: set when the job fell back to the CPU")


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
    file_size: int | None = Field(default=None, ge=0, description=(
        "Extension: the file's size in bytes; over the single-upload limit (5 GiB) the answer is a "
        "400 pointing to a multipart upload (POST /uploads, docs/large-files.md)."))


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
    input_files: dict[str, str] = Field(default_factory=dict, description="input key -> URL")
    output_files: list[str] = Field(default_factory=list, max_length=64, description=(
        "Output file names, at least one unless `template` names the outputs; a pattern "
        "(`thumb_%03d.jpg`) or a folder (`hls/`) uploads every file it produced"))
    ffmpeg_commands: list[str] = Field(
        default_factory=list, max_length=32,
        description="FFmpeg arguments; files as `{{key}}`, `<<key>>`, `inputs/<key>` or `outputs/<name>` "
        "(at least one, unless `template` is given)")
    webhook_url: str | None = Field(default=None, max_length=2048)
    machine: str | None = Field(
        default=None, max_length=63,
        description="cpu, gpu (alias nvidia) or another pool (default: the API's DEFAULT_MACHINE, `cpu`)")
    parallel: ParallelRequest | None = Field(default=None, description="Extension: split-and-stitch.")
    timeout_seconds: int | None = Field(
        default=None, ge=1, le=VGF_MAX_TIMEOUT_SECONDS,
        description=f"Whole-job limit (default {VGF_DEFAULT_TIMEOUT_SECONDS} s, at most 6 h); past it the job fails")
    priority: Priority | None = Field(default=None, description=PRIORITY_DESCRIPTION)
    template: TemplateRequest | None = Field(
        default=None, description="Extension: an FFmpegJobTemplate; `input_files` keys are its input names, "
        "leave `ffmpeg_commands` and `output_files` out (docs/presets.md)")

    fallback: Fallback | None = Field(default=None, description=FALLBACK_DESCRIPTION)

    @model_validator(mode="after")
    def _commands_or_template(self) -> VgfJobRequest:
        if self.template is None and (not self.ffmpeg_commands or not self.output_files):
            raise ValueError("ffmpeg_commands and output_files need at least one entry each (or a template)")
        return self


class VgfJobPatch(_Req):
    """Extension: what may change on a queued job."""

    priority: Priority = Field(description=PRIORITY_DESCRIPTION)


class VgfProgress(BaseModel):
    step: int
    steps: int
    percent: float
    speed: str | None = None
    resumed_from_step: int | None = Field(
        default=None, description="This attempt restored the earlier steps' files from checkpoints and began here")


VgfStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class VgfJob(BaseModel):
    """The service's job object, every key present; then this system's extensions."""

    id: str
    status: VgfStatus
    queued_at: str
    created_at: str
    updated_at: str
    started_at: str | None
    finished_at: str | None
    error_message: str = Field(description='"" unless the job failed or was cancelled')
    ffmpeg_commands: list[str]
    input_files: dict[str, str]
    output_files: dict[str, str] = Field(description="output name -> download URL (7 days); {} until succeeded")
    webhook_url: str | None
    timeout_seconds: int | None
    total_input_bytes: int | None
    total_output_bytes: int | None
    machine: str = Field(description="Extension: the node pool")
    progress: VgfProgress | None = Field(description="Extension: step k of n, percent, speed")
    usage: UsageOut | None = Field(description="Extension: the FFmpeg API's usage figures, once finished")
    result: list[ResultFileOut] = Field(description="Extension: outputs with sizes and media metadata")
    priority: Priority = Field(default=DEFAULT_PRIORITY, description="Extension: the job's queue priority")
    queue_position: int | None = Field(
        default=None, description="Extension: while queued on Kueue, 1-based place among the tenant's waiting jobs "
                                  "in the pool")
    queue_waiting: int | None = Field(default=None, description="Extension: while queued on Kueue, jobs waiting in "
                                                                "the pool")
    queue_reason: str | None = Field(default=None, description="Extension: while queued on Kueue, Kueue's reason")
    fallback: FallbackOut | None = Field(default=None, description="Extension: set when the job fell back to the CPU")


class VgfJobResponse(BaseModel):
    data: VgfJob


class PagingParams(BaseModel):
    limit: int
    offset: int
    total: int
    hasMore: bool  # the service's camelCase name


class VgfJobList(BaseModel):
    data: list[VgfJob]
    pagingParams: PagingParams  # the service's camelCase name


class TmpFileRequest(_Req):
    file_name: str | None = Field(default=None, min_length=1, max_length=255)
    file_size: int | None = Field(default=None, ge=0, description=(
        "Extension: the file's size in bytes; over the single-upload limit (5 GiB) the answer is a "
        "400 pointing to a multipart upload (POST /api/uploads, docs/large-files.md)."))


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
