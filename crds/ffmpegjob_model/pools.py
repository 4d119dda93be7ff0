"""Node pools: chart values rendered into a ConfigMap that the operator (and the api, to refuse
an unknown `machine`) read. Adding a pool is configuration only.

ConfigMap `<release>-pools`, key `pools.yaml`: a mapping of pool name -> NodePool.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from .gpu import CUDA_FILTERS, NVDEC_CODECS, NVENC_CODECS, Fallback
from .release import DEFAULT_WORKER_IMAGE
from .warm import WarmPool

POOLS_KEY = "pools.yaml"
# "nvidia" is what users of the "Very Good FFmpeg" service call the GPU machine.
MACHINE_ALIASES = {"nvidia": "gpu"}


def _known(values: list[str], known: tuple[str, ...], field: str, what: str) -> list[str]:
    """A capability list of names the GPU rules know (ffmpegjob_model.gpu), else a clear error."""
    bad = [v for v in values if v not in known]
    if bad:
        raise ValueError(f"{field}: unknown {what}(s) {bad}; known: {', '.join(known)}")
    return values


class NodePool(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    image: str = DEFAULT_WORKER_IMAGE
    image_pull_policy: str = "IfNotPresent"
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    resources: dict[str, Any] = Field(default_factory=dict)
    ephemeral_storage: str = Field(default="10Gi", description="Size limit of the job's scratch emptyDir.")
    max_timeout_seconds: int = Field(default=6 * 3600, ge=1)
    env: dict[str, str] = Field(default_factory=dict, description="Extra worker environment, e.g. hwaccel.")
    runtime_class_name: str | None = Field(
        default=None,
        description="RuntimeClass of the worker pods, e.g. gVisor (`gvisor`) or Kata: a sandbox around FFmpeg.")
    # Split-and-stitch (spec.parallel): how many chunk pods run at once, and what `mode: auto` does.
    max_parallel_chunks: int = Field(default=8, ge=1, le=256, description="Chunk pods of one job at a time.")
    split_threshold_seconds: float = Field(
        default=600, ge=0, description="`parallel.mode: auto` splits inputs longer than this."
    )
    min_chunk_seconds: float = Field(default=30, gt=0, description="`mode: auto` makes no chunk shorter than this.")
    cluster_queue: str | None = Field(
        default=None, max_length=253,
        description="Kueue's ClusterQueue for this pool (the chart sets it when `kueue.enabled` gives the pool a "
                    "quota): its Jobs are queued there. None: they run at once.")
    warm: WarmPool | None = Field(
        default=None,
        description="Pre-started worker pods that wait for work (docs/warm-pools.md); absent: none.")

    # GPU capabilities (gpu.py, docs/gpu.md): what the pool's GPUs and its image's FFmpeg can do.
    # None declared (the default): a job asking for NVENC, NVDEC or a CUDA filter is refused here.
    nvenc: list[str] = Field(
        default_factory=list, description=f"Codecs the GPUs encode with NVENC: some of {', '.join(NVENC_CODECS)}.")
    nvdec: bool | list[str] = Field(
        default=False, description=f"NVDEC: true (every codec), false, or some of {', '.join(NVDEC_CODECS)}.")
    cuda_filters: list[str] = Field(
        default_factory=list, description="CUDA/NPP filters the pool's FFmpeg has, e.g. scale_cuda.")
    max_encode_sessions: int | None = Field(
        default=None, ge=1, le=256,
        description=f"NVENC sessions a node allows: set, a job's pods request one `{'kubeffmpeg.io/nvenc-session'}` "
                    "per concurrent NVENC encode, which the nodes must advertise (docs/gpu.md). None: not counted.")
    fallback: Fallback | None = Field(
        default=None, description="`cpu`: a job this pool cannot run is rewritten for the CPU and run on "
                                  "`fallbackPool` unless it says `fallback: none`.")
    fallback_pool: str = Field(default="cpu", description="Where jobs that fall back to the CPU run.")

    @field_validator("nvenc")
    @classmethod
    def _known_nvenc(cls, v: list[str]) -> list[str]:
        return _known(v, NVENC_CODECS, "nvenc", "codec")

    @field_validator("nvdec")
    @classmethod
    def _known_nvdec(cls, v: bool | list[str]) -> bool | list[str]:
        return v if isinstance(v, bool) else _known(v, NVDEC_CODECS, "nvdec", "codec")

    @field_validator("cuda_filters")
    @classmethod
    def _known_filters(cls, v: list[str]) -> list[str]:
        return _known(v, CUDA_FILTERS, "cudaFilters", "filter")

    @field_validator("resources")
    @classmethod
    def _quantities_as_strings(cls, v: dict[str, Any]) -> dict[str, Any]:
        """YAML reads `nvidia.com/gpu: 1` as a number; Kubernetes quantities are strings."""
        return {
            section: {k: str(q) for k, q in values.items()} if isinstance(values, dict) else values
            for section, values in v.items()
        }


def parse_pools(text: str) -> dict[str, NodePool]:
    raw = yaml.safe_load(text) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{POOLS_KEY} must be a mapping of pool name to pool settings")
    return {str(name): NodePool.model_validate(cfg or {}) for name, cfg in raw.items()}


def canonical_machine(machine: str) -> str:
    m = machine.strip().lower()
    return MACHINE_ALIASES.get(m, m)
