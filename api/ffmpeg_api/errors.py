"""One error shape everywhere: `{"ok": false, "error": "..."}` with the seeds' status codes, and
under /api/ the "Very Good FFmpeg" service's `errorCode` and `message` beside them.

FastAPI's own 422 validation errors become 400s (the seeds have no 422), worded
"Invalid task format: ..." on the processing endpoints as the "FFmpeg API" seed documents."""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, EndpointConnectionError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kubernetes.client.rest import ApiException
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from urllib3.exceptions import HTTPError as Urllib3Error

log = logging.getLogger("ffmpeg_api")

TASK_PATHS = ("/ffmpeg/process", "/ffmpeg/process/async", "/api/ffmpeg")


class ErrorResponse(BaseModel):
    ok: bool = False
    error: str
    errorCode: str | None = Field(default=None, description="Under /api/ only: validationError, badRequest, "
                                  "badApiKey, forbidden, notFound, tooManyRequests or unknownError")
    message: str | None = Field(default=None, description="Under /api/ only: the same text as `error`")


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def error_json(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"ok": False, "error": message, **extra}, status_code=status, headers=headers)


VGF_PREFIX = "/api/"


def vgf_error_code(status: int, validation: bool = False) -> str:
    """The "Very Good FFmpeg" service's `errorCode` for a status."""
    if status == 400:
        return "validationError" if validation else "badRequest"
    return {401: "badApiKey", 403: "forbidden", 404: "notFound", 409: "badRequest",
            429: "tooManyRequests"}.get(status, "badRequest" if status < 500 else "unknownError")


def error_response(request: Request, status: int, message: str, headers: dict[str, str] | None = None,
                   validation: bool = False) -> JSONResponse:
    """The seeds' `{"ok": false, "error": ...}`; under /api/ also the VGF service's
    `{"errorCode": ..., "message": ...}` (its SDKs read `message`)."""
    if request.url.path.startswith(VGF_PREFIX):
        body = {"ok": False, "error": message, "errorCode": vgf_error_code(status, validation), "message": message}
        return JSONResponse(body, status_code=status, headers=headers)
    return error_json(status, message, headers)


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def describe_validation(exc: RequestValidationError) -> str:
    msgs: list[str] = []
    for e in exc.errors()[:5]:
        if e.get("type") == "json_invalid":
            return "Invalid JSON body"
        if e.get("type") == "missing" and list(e.get("loc", ())) == ["body"]:
            return "Missing JSON body"
        msgs.append(f"{_loc(e.get('loc', ()))}: {e.get('msg', 'invalid')}")
    return "; ".join(msgs) or "invalid request"


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(request, exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = describe_validation(exc)
        prefix = "Invalid task format" if request.url.path.rstrip("/") in TASK_PATHS else "Invalid request"
        return error_response(request, 400, f"{prefix}: {detail}", validation=True)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(request, exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(ApiException)
    async def _kube(request: Request, exc: ApiException) -> JSONResponse:
        log.error("Kubernetes API error: %s %s", exc.status, exc.reason)
        return error_response(request, 503, "Service unavailable: the job store did not answer; retry shortly")

    @app.exception_handler(Urllib3Error)
    async def _kube_conn(request: Request, exc: Urllib3Error) -> JSONResponse:
        log.error("Kubernetes API unreachable: %s", exc)
        return error_response(request, 503, "Service unavailable: the job store is unreachable; retry shortly")

    @app.exception_handler(EndpointConnectionError)
    async def _s3_conn(request: Request, exc: EndpointConnectionError) -> JSONResponse:
        log.error("S3 unreachable: %s", exc)
        return error_response(request, 503, "Service unavailable: storage is unreachable; retry shortly")

    @app.exception_handler(BotoCoreError)
    async def _s3(request: Request, exc: BotoCoreError) -> JSONResponse:
        log.error("S3 error: %s", exc)
        return error_response(request, 502, "Bad gateway: storage failed to answer")

    @app.exception_handler(Exception)
    async def _any(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(request, 500, "Internal error")


# Documented on every route so that generated clients know the shape.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": desc}
    for code, desc in (
        (400, "Bad request"),
        (401, "Invalid API key"),
        (403, "Quota exceeded"),
        (404, "Not found"),
        (429, "Too many requests: the key's rate limit (see Retry-After)"),
        (500, "Processing failed"),
        (503, "Service unavailable"),
    )
}
