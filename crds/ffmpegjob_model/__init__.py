"""What the api, the operator and the worker must agree on: the FFmpegJob model, the storage
layout, the argument-safety and URL rules. It imports none of the three components.

The names below come from `model` (pydantic) when first used: importing a submodule (the
worker's `plain`, `safety`, `commands` ...) does not load pydantic through this package."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model import (
        API_VERSION,
        GROUP,
        KIND,
        PLURAL,
        VERSION,
        FFmpegJob,
        FFmpegJobSpec,
        FFmpegJobStatus,
        Phase,
        Usage,
    )

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "FFmpegJob",
    "FFmpegJobSpec",
    "FFmpegJobStatus",
    "Phase",
    "Usage",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
