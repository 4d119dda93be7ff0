"""The FastAPI application: both surfaces, one error shape, JSON bodies whatever the Content-Type."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from ffmpegjob_model.release import RELEASE
from starlette.types import ASGIApp, Receive, Scope, Send

from . import dashboard, errors, presets
from .routers import common, events, ffmpeg_api, playback, uploads, vgf, webhooks
from .services import Services
from .settings import ApiSettings

DESCRIPTION = """Self-hosted FFmpeg jobs on Kubernetes. Two API surfaces share one job model:
the "FFmpeg API" (`/ffmpeg/*`, `/job/*`, `/ffprobe/*`, `/file*`, `/directory*`) and
"Very Good FFmpeg" (`/api/*`). Authenticate with `Authorization: Basic <key>` or `Bearer <key>`.
Errors are always `{"ok": false, "error": "..."}`."""


class JsonBodyMiddleware:
    """The seeds' curl examples send JSON with `-d` and no header, i.e. as form data; treat any
    body that is not multipart as JSON so that those requests work as documented."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH", "DELETE"):
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            ctype = next((v for k, v in scope["headers"] if k == b"content-type"), b"")
            if not ctype.startswith(b"multipart/"):
                scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)


def _openapi_without_422(app: FastAPI) -> None:
    """FastAPI documents a 422 on every route; this API answers validation errors with 400."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            for ops in schema.get("paths", {}).values():
                for op in ops.values():
                    op.get("responses", {}).pop("422", None)
            comps = schema.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                comps.pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _routes(app: FastAPI) -> FastAPI:
    app.include_router(ffmpeg_api.router)
    app.include_router(vgf.router)
    app.include_router(uploads.router)
    app.include_router(uploads.vgf_router)
    app.include_router(presets.router)
    app.include_router(common.router)
    app.include_router(webhooks.router)
    app.include_router(events.router)
    app.include_router(dashboard.router)
    app.include_router(playback.router)
    _openapi_without_422(app)
    return app


def create_app(settings: ApiSettings | None = None, services: Services | None = None) -> FastAPI:
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.services.watcher.stop()

    app = FastAPI(title="kubeffmpeg API", version=RELEASE, description=DESCRIPTION, lifespan=lifespan)
    app.state.services = services if services is not None else Services.build(settings)
    errors.install(app)
    _routes(app)
    app.add_middleware(JsonBodyMiddleware)
    return app


def spec_app() -> FastAPI:
    """The app without clients, for writing the OpenAPI document."""
    return _routes(FastAPI(title="kubeffmpeg API", version=RELEASE, description=DESCRIPTION))
