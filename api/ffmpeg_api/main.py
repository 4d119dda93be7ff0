"""`ffmpeg-api`: serve the API with uvicorn on API_HOST:API_PORT."""

from __future__ import annotations

import logging

import uvicorn

from .app import create_app
from .settings import ApiSettings


def main() -> None:
    settings = ApiSettings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port,
                log_level=settings.log_level.lower(),
                proxy_headers=True)


if __name__ == "__main__":
    main()
