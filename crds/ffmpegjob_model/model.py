"""The FFmpegJob resource: one model of spec and status shared by the api, operator and worker.

Field names are snake_case in Python and camelCase on the wire (Kubernetes convention); build
objects with ``Model.model_validate(obj)`` and serialise them with ``to_k8s()``.
The CRD in ``crds/ffmpegjobs.yaml`` is generated from these classes (see ``crd.py``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from .outputs import OUTPUT_ENTRY_PATTERN, OUTPUT_NAME_PATTERN
from .plain import DIR_ID_PATTERN, MACHINE_PATTERN, NAME_PATTERN, usage_figures
from .queueing import Priority

GROUP = "kubeffmpeg.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "FFmpegJob"
PLURAL = "ffmpegjobs"
SINGULAR = "ffmpegjob"
SHORT_NAMES = ["ffj"]
# Set by the operator when an FFmpegJob reaches a terminal phase, so that clients can select the
# unfinished ones server-side (`kubeffmpeg.io/finished!=true`) instead of listing every job.
FINISHED_LABEL = f"{GROUP}/finished"
# The FFmpegJob's `spec.tenant`, as a label on the FFmpegJobs the api creates (it lists a tenant's
# jobs by it) and on the operator's Jobs and pods.
TENANT_LABEL = f"{GROUP}/tenant"

# NAME_PATTERN (placeholder/file names), DIR_ID_PATTERN (storage directory ids) and MACHINE_PATTERN
# (pool names) are defined in plain.py, which the worker reads jobs with before pydantic is loaded.

# Bounded strings: the API server cost-checks the CRD's CEL rules and needs every string that a
# rule compares to have a maximum length.
CommandArgs = Annotated[str, Field(min_length=1, max_length=32768)]
Option = Annotated[str, Field(max_length=4096)]
StreamMap = Annotated[str, Field(min_length=1, max_length=256)]
# Split-and-stitch bounds (spec.parallel.chunks).
MIN_CHUNKS, MAX_CHUNKS = 2, 256


class _Wire(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are refused."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", use_enum_values=True
    )

    def to_k8s(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class Phase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED, Phase.CANCELLED)

    @property
    def rest_status(self) -> str:
        """The status word both REST surfaces use for this phase."""
        return REST_STATUS[self]


# The phase values of a finished FFmpegJob (status.phase as written): one home for api and operator.
TERMINAL: frozenset[str] = frozenset(p.value for p in Phase if p.terminal)

REST_STATUS: dict[Phase, str] = {
    Phase.PENDING: "pending",
    Phase.RUNNING: "processing",
    Phase.SUCCEEDED: "completed",
    Phase.FAILED: "failed",
    Phase.CANCELLED: "cancelled",
}


# ----------------------------------------------------------------------------------------- spec
class InputFile(_Wire):
    """One input: an HTTPS URL or a storage path `dir_id/file_name` of the job's tenant."""

    name: str = Field(
        pattern=NAME_PATTERN, max_length=255, description="Placeholder name: `{{name}}` in commands."
    )
    source: str = Field(min_length=1, max_length=4096, description="HTTPS URL or `dir_id/file_name`.")
    options: list[Option] | None = Field(
        default=None, max_length=64, description="FFmpeg input options (structured form only)."
    )


class OutputFile(_Wire):
    """One declared output. Only declared outputs are uploaded: a file, a pattern (`seg_%05d.ts`:
    every matching file) or a directory (`hls/`: every file under it); see `ffmpegjob_model.outputs`."""

    name: str = Field(
        pattern=OUTPUT_NAME_PATTERN,
        max_length=256,
        description="File name (`out.mp4`), pattern (`seg_%05d.ts`) or folder (`hls/`); its placeholder is "
        "`{{name}}` (a folder's without the `/`: `{{hls}}/index.m3u8`).",
    )
    entry: str | None = Field(
        default=None,
        pattern=OUTPUT_ENTRY_PATTERN,
        max_length=255,
        description="Structured form, directory output only: the file FFmpeg writes inside the folder "
        "(`stream_%v.m3u8`); the output argument becomes `{{folder}}/<entry>`.",
    )
    options: list[Option] | None = Field(
        default=None, max_length=128, description="FFmpeg output options (structured form only)."
    )
    maps: list[StreamMap] | None = Field(
        default=None, max_length=32, description="Stream maps, each becomes `-map X` (structured form only)."
    )


class SecretKeyRef(_Wire):
    name: str = Field(min_length=1, max_length=253)
    key: str = Field(default="secret", min_length=1, max_length=253)


class Webhook(_Wire):
    url: str = Field(min_length=1, max_length=2048, description="HTTPS URL that receives the result.")
    secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret whose key signs deliveries with HMAC-SHA256."
    )


class OutputLocation(_Wire):
    dir_id: str = Field(pattern=DIR_ID_PATTERN, description="Storage directory that receives the outputs.")


class Parallel(_Wire):
    """Split-and-stitch: encode keyframe-aligned ranges of the one input in parallel pods, then
    join them and encode the audio once (see `ffmpegjob_model.split`). Exactly one of `chunks`,
    `chunkSeconds` or `mode: auto`."""

    chunks: int | None = Field(default=None, ge=MIN_CHUNKS, le=MAX_CHUNKS, description="Number of chunks.")
    chunk_seconds: float | None = Field(
        default=None, ge=1, le=24 * 3600, description="Target length of one chunk; the count follows."
    )
    mode: Literal["auto"] | None = Field(
        default=None,
        description="`auto`: split only inputs longer than the pool's `splitThresholdSeconds`, into as many "
        "chunks as the pool's `maxParallelChunks` allows; run single-pod (with a condition saying why) when "
        "the work cannot be split.",
    )


# A Kubernetes object name (DNS subdomain): what `spec.template.name` may hold.
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"


class TemplateRef(_Wire):
    """The FFmpegJobTemplate (same namespace) this job is made from, and its parameter values.
    See `ffmpegjob_model.templates`: the operator (kubectl-applied jobs) or the api (REST) fills
    `commands` and `outputs` from it once, and they are what runs."""

    name: str = Field(pattern=OBJECT_NAME_PATTERN, max_length=253, description="FFmpegJobTemplate name.")
    parameters: dict[str, Any] | None = Field(
        default=None, max_length=64, description="Parameter values by name (strings, numbers or booleans)."
    )


class FFmpegJobSpec(_Wire):
    """What to run. Free form: `commands` with placeholders. Structured form (the "FFmpeg API"
    task): no `commands`, options on inputs/outputs and an optional `filterComplex`; it is compiled
    to one command by `ffmpegjob_model.commands.effective_commands`."""

    tenant: str = Field(
        default="default", pattern=DIR_ID_PATTERN, description="Owner; storage paths resolve inside it."
    )
    inputs: list[InputFile] = Field(default_factory=list, max_length=64)
    outputs: list[OutputFile] = Field(
        default_factory=list, max_length=64,
        description="Declared outputs (at least one; filled from the template when `template` is used).",
    )
    commands: list[CommandArgs] | None = Field(
        default=None,
        max_length=32,
        description="FFmpeg argument strings (without `ffmpeg`), run in order in one folder.",
    )
    filter_complex: str | None = Field(default=None, max_length=16384)
    machine: str = Field(default="cpu", pattern=MACHINE_PATTERN, description="Node pool: cpu, gpu, ...")
    output: OutputLocation
    webhook: Webhook | None = None
    timeout_seconds: int = Field(default=3600, ge=1, le=7 * 24 * 3600, description="Whole-job deadline.")
    step_timeout_seconds: int | None = Field(default=None, ge=1, le=7 * 24 * 3600)
    backoff_limit: int = Field(default=0, ge=0, le=10, description="Retries of a failed pod.")
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, description="Delete the FFmpegJob this long after it finishes."
    )
    suspend: bool = False
    cancel: bool = Field(default=False, description="Set true to cancel without deleting.")
    parallel: Parallel | None = Field(
        default=None, description="Split one long encode across several pods (absent: one pod)."
    )
    priority: Priority | None = Field(
        default=None,
        description="Queue priority on Kueue (`low`, `normal`, `high`; absent: `normal`); may change while queued.",
    )
    template: TemplateRef | None = Field(
        default=None,
        description="Made from an FFmpegJobTemplate: leave `commands` and `outputs` out, they are filled from it.",
    )

    @model_validator(mode="after")
    def _outputs_or_template(self) -> FFmpegJobSpec:
        if not self.outputs and self.template is None:
            raise ValueError("outputs: at least one output is required (or a template that declares them)")
        return self


# --------------------------------------------------------------------------------------- status
class Condition(_Wire):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    last_transition_time: datetime | None = None
    observed_generation: int | None = None


class Progress(_Wire):
    step: int = Field(ge=0, description="Command being run, 1-based.")
    steps: int = Field(ge=0)
    percent: float = Field(ge=0, le=100, description="Of the whole job.")
    speed: str | None = Field(default=None, description="FFmpeg's speed, e.g. `2.1x`.")
    resumed_from_step: int | None = Field(
        default=None, ge=1,
        description="This attempt restored the earlier steps' files from checkpoints and began at this step.",
    )


class ResultFile(_Wire):
    file_name: str
    size_bytes: int = Field(ge=0)
    storage_path: str = Field(description="`dir_id/file_name`; never a presigned URL.")
    media: dict[str, Any] | None = Field(
        default=None, description="ffprobe summary: duration, codecs, resolution, bit rate."
    )


class Usage(_Wire):
    time_sec: float = Field(ge=0)
    input_size_gb: float = Field(ge=0)
    output_size_gb: float = Field(ge=0)
    gb_sec: float = Field(ge=0)
    input_bytes: int | None = Field(default=None, ge=0, description="Exact input size (the GB figures are rounded).")
    output_bytes: int | None = Field(default=None, ge=0, description="Exact output size.")

    @classmethod
    def compute(cls, time_sec: float, input_bytes: int, output_bytes: int) -> Usage:
        """The seed's definition: gb_sec = time_sec x (input GB + output GB), GB = 1e9 bytes."""
        return cls(**usage_figures(time_sec, input_bytes, output_bytes))


class WebhookAttempt(_Wire):
    time: datetime
    delivery_id: str | None = Field(default=None, max_length=64, description="`X-Webhook-Id` of the try.")
    attempt: int | None = Field(default=None, ge=1, description="`X-Webhook-Attempt`: 1, 2, ... per delivery.")
    status_code: int | None = None
    error: str | None = None


class WebhookStatus(_Wire):
    """The delivery record the operator keeps (and resumes from after a restart)."""

    delivered: bool = False
    delivered_at: datetime | None = None
    gave_up: bool = Field(default=False, description="No more attempts: retries spent or a final answer.")
    delivery_id: str | None = Field(default=None, max_length=64, description="The current delivery's id.")
    attempt_count: int | None = Field(default=None, ge=0, description="Attempts of the current delivery.")
    next_attempt_at: datetime | None = Field(
        default=None, description="When the next attempt of the current delivery is due (retry schedule)."
    )
    redelivery: str | None = Field(
        default=None, max_length=256, description="The redelivery request the current delivery answers."
    )
    attempts: list[WebhookAttempt] = Field(
        default_factory=list, description="The latest attempts over all deliveries, oldest first (bounded)."
    )


class ChunkRange(_Wire):
    """One chunk of a split job: input times in seconds (exact to the microsecond), as cut."""

    index: int = Field(ge=0)
    start: float = Field(ge=0, description="First frame's time (a keyframe), seconds from the input's start.")
    end: float | None = Field(default=None, description="Time of the next chunk's first frame; none for the last.")
    frames: int = Field(ge=0, description="Video frames of the input in this range.")
    seek: str | None = Field(
        default=None, description="FFmpeg's input `-ss` for this range (at or just before `start`); none for the first."
    )
    length: str | None = Field(default=None, description="FFmpeg's input `-t` (ends half a frame before `end`).")


class SplitStatus(_Wire):
    """What the operator decided for a split job (written before any chunk pod starts)."""

    chunks: int = Field(ge=1)
    parallelism: int = Field(ge=1)
    duration: float = Field(ge=0, description="Probed length of the input's video, seconds.")
    frames: int = Field(ge=0, description="Probed video frames of the input.")
    stage: Literal["Chunks", "Stitch", "Done"] = "Chunks"
    stitch_job_name: str | None = None
    scratch_prefix: str = Field(description="Bucket prefix of the segments (deleted when the job ends).")
    probe_seconds: float | None = Field(default=None, ge=0, description="How long the keyframe probe took.")


class ChunkStatus(_Wire):
    """One chunk as the operator sees it (pods of its index) and as its worker reported it."""

    index: int = Field(ge=0)
    start: float = Field(ge=0)
    end: float | None = None
    phase: Literal["Pending", "Running", "Succeeded", "Failed"] = "Pending"
    percent: float = Field(default=0, ge=0, le=100)
    attempts: int = Field(default=0, ge=0)
    time_sec: float | None = Field(default=None, ge=0)
    frames: int | None = Field(default=None, ge=0, description="Frames in the encoded segment.")


class ChunkReport(_Wire):
    """What a chunk (or the stitch) pod writes under `status.chunkReports.<index|stitch>`: a map,
    so that pods patching at the same time never overwrite each other (merge patch)."""

    percent: float = Field(default=0, ge=0, le=100)
    speed: str | None = None
    time_sec: float | None = Field(default=None, ge=0, description="FFmpeg's run time of the finished attempt.")
    frames: int | None = Field(default=None, ge=0)
    size_bytes: int | None = Field(default=None, ge=0)
    pod: str | None = None


class QueueStatus(_Wire):
    """Where a job waiting for admission by Kueue stands (absent once admitted, or without Kueue)."""

    local_queue: str = Field(description="The tenant's LocalQueue for the pool.")
    cluster_queue: str | None = Field(default=None, description="The pool's ClusterQueue.")
    position: int | None = Field(
        default=None, ge=1, description="1-based place among the waiting jobs of the LocalQueue (the tenant's)."
    )
    waiting: int | None = Field(default=None, ge=0, description="Jobs waiting in the ClusterQueue altogether.")
    reason: str | None = Field(default=None, description="Kueue's reason (`Pending`, `Inactive`, ...).")
    message: str | None = Field(
        default=None, max_length=1024, description="Kueue's message, e.g. which quota is short."
    )
    priority: str | None = Field(default=None, description="The WorkloadPriorityClass Kueue applies.")


class FFmpegJobStatus(_Wire):
    phase: Phase | None = None
    reason: str | None = None
    message: str | None = None
    conditions: list[Condition] | None = None
    observed_generation: int | None = None
    job_name: str | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None
    duration: str | None = Field(default=None, description="Run time, e.g. `1m5s` (printer column).")
    attempts: int | None = None
    job_restarts: int | None = Field(
        default=None, ge=0, description="Jobs re-created because the previous one was deleted before it finished."
    )
    progress: Progress | None = None
    result: list[ResultFile] | None = None
    usage: Usage | None = None
    error: str | None = None
    webhook: WebhookStatus | None = None
    split: SplitStatus | None = Field(default=None, description="Split-and-stitch plan (spec.parallel).")
    chunks: list[ChunkStatus] | None = Field(default=None, description="Per chunk of a split job.")
    chunk_ranges: list[ChunkRange] | None = Field(default=None, description="The cut: one range per chunk.")
    chunk_reports: dict[str, ChunkReport] | None = Field(
        default=None, description="Written by chunk/stitch pods, keyed by chunk index or `stitch`."
    )
    queue: QueueStatus | None = Field(default=None, description="Queued on Kueue: position and Kueue's reason.")


class FFmpegJob(_Wire):
    """A whole object as read from the API server (metadata kept as a plain dict)."""

    model_config = ConfigDict(extra="ignore")

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    kind: str = KIND
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: FFmpegJobSpec
    status: FFmpegJobStatus = Field(default_factory=FFmpegJobStatus)

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace", "default"))
