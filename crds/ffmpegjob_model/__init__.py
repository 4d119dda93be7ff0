"""What the api, the operator and the worker must agree on: the FFmpegJob model, the storage
layout, the argument-safety and URL rules. It imports none of the three components."""

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
