"""kubeffmpeg's Python client (`Client`, `AsyncClient`) and its command line (`kubeffmpeg`)."""

from .client import AsyncClient, Client
from .errors import (
    ApiError,
    BadRequest,
    ConfigError,
    Conflict,
    ConnectionFailed,
    Forbidden,
    JobCancelled,
    JobFailed,
    KubeFFmpegError,
    NotFound,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
    WaitTimeout,
)
from .models import FFMPEG_API, VGF, Job, JobEvent, ResultFile, Upload

__all__ = [
    "FFMPEG_API", "VGF", "ApiError", "AsyncClient", "BadRequest", "Client", "ConfigError", "Conflict",
    "ConnectionFailed", "Forbidden", "Job", "JobCancelled", "JobEvent", "JobFailed", "KubeFFmpegError", "NotFound",
    "RateLimited", "ResultFile", "ServerError", "ServiceUnavailable", "Unauthorized", "Upload", "WaitTimeout",
]
