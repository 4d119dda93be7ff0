"""`ffmpeg-api`: serve the API with uvicorn on API_HOST:API_PORT."""

from __future__ import annotations

import logging

import uvicorn

from .app import create_app
from .settings import ApiSettings

WORKER_HEALTHCHECK_SECONDS = 60


def main() -> None:
    settings = ApiSettings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.api_workers > 1:
        # Several processes on one port: uvicorn imports the app factory in each worker.
        # uvicorn restarts a worker that has not answered its health check in time; importing the
        # app takes seconds on a busy node, so the default 5 s would restart workers in a loop.
        uvicorn.run("ffmpeg_api.app:create_app", factory=True, workers=settings.api_workers,
                    timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
                    host=settings.api_host, port=settings.api_port, log_level=settings.log_level.lower(),
                    proxy_headers=True)
        return
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port,
                log_level=settings.log_level.lower(), proxy_headers=True)


if __name__ == "__main__":
    main()
