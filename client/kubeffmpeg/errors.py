"""Typed exceptions: every REST error becomes one of these, carrying the API's own message."""

from __future__ import annotations

from typing import Any


class KubeFFmpegError(Exception):
    """Anything this client raises."""


class ConfigError(KubeFFmpegError):
    """No API URL or key (set API_URL and API_KEY, or run inside a checkout with `make dev`)."""


class ConnectionFailed(KubeFFmpegError):
    """The API could not be reached."""


class ApiError(KubeFFmpegError):
    """The API answered with an error: `status`, the API's `message`, and the VGF surface's
    `error_code` where it sends one."""

    status: int = 0

    def __init__(self, status: int, message: str, error_code: str | None = None, body: Any = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.error_code, self.body = status, message, error_code, body
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.status}: {self.message}"


class BadRequest(ApiError):
    pass


class Unauthorized(ApiError):
    pass


class Forbidden(ApiError):
    """403: the tenant's quota."""


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    """409: for example cancelling a job that already finished."""


class Gone(ApiError):
    pass


class RateLimited(ApiError):
    """429: the key's rate limit or its open event streams; `retry_after` in seconds."""


class ServerError(ApiError):
    """500 and other 5xx answers."""


class ServiceUnavailable(ServerError):
    """503: busy or a dependency is down; `retry_after` in seconds when the API sent one."""


BY_STATUS: dict[int, type[ApiError]] = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound,
                                        409: Conflict, 410: Gone, 429: RateLimited, 503: ServiceUnavailable}


def api_error(status: int, message: str, error_code: str | None = None, body: Any = None,
              retry_after: float | None = None) -> ApiError:
    cls = BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(status, message, error_code, body, retry_after)


class JobFailed(KubeFFmpegError):
    """The job ended failed (or cancelled: `JobCancelled`). `error` is the API's text, which
    ends with the tail of FFmpeg's stderr; `step`/`steps` say which command was running."""

    def __init__(self, job_id: str, status: str, error: str | None, step: int | None = None,
                 steps: int | None = None, job: Any = None) -> None:
        super().__init__(error or f"job {job_id} {status}")
        self.job_id, self.status, self.error, self.step, self.steps, self.job = job_id, status, error, step, steps, job


class JobCancelled(JobFailed):
    pass


class WaitTimeout(KubeFFmpegError):
    """The job did not finish within the time given to `wait`."""
