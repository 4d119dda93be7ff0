"""GPU capabilities in the operator (ffmpegjob_model.gpu): a job that asks its pool for an NVENC
codec, NVDEC or a CUDA filter the pool lacks fails ValidationFailed with the message the api
answers, or, with `fallback: cpu` (the job's or the pool's), runs rewritten on the fallback pool,
recorded in the `FellBack` condition and `status.fallback`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ffmpegjob_model.gpu import FELL_BACK_CONDITION, GpuRefused, Placement, fallback_commands, place
from ffmpegjob_model.model import FallbackStatus, FFmpegJobSpec
from ffmpegjob_model.pools import NodePool

from .status import set_condition


def placement(model: FFmpegJobSpec, pool_name: str, pools: dict[str, NodePool]) -> Placement:
    """Where the job runs and as what; GpuRefused (the caller's ValidationFailed) when it cannot."""
    return place(model, pool_name, pools)


def record(st: dict[str, Any], placed: Placement, now: datetime, generation: int | None) -> dict[str, Any]:
    """The status fields of a job that fell back (empty when it did not)."""
    if not placed.fell_back:
        return {}
    missing = [n.describe() for n in placed.missing]
    message = (f"machine {placed.from_machine!r} lacks {'; '.join(missing)}: rewritten for the CPU and run on "
               f"pool {placed.machine!r}")
    fb = FallbackStatus(from_machine=placed.from_machine or "", machine=placed.machine, missing=missing,
                        commands=fallback_commands(placed.spec))
    return {"conditions": set_condition(st.get("conditions"), FELL_BACK_CONDITION, "True", "GpuCapabilityMissing",
                                        message, now, generation),
            "fallback": fb.to_k8s()}


__all__ = ["GpuRefused", "placement", "record"]
