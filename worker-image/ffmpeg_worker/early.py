"""What start-up reads over the network, begun before the worker imports its models: the
FFmpegJob from the API server and the size of each input the grants allow it to read (FFmpeg
streams those, and the worker checks first that they exist and fit the size limit). The
requests wait on the network while the main thread imports; FFmpeg starts sooner by as much.

Nothing here decides anything: the main thread still reads the job and the grants through their
models, and a size is used only for the very URL it was read from (fetch.Fetcher.stat).
Standard library only."""

from __future__ import annotations

import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from . import storage
from .kube import JobClient

log = logging.getLogger("ffmpeg_worker.early")


class EarlyReads:
    def __init__(self, jobs: JobClient, grants_file: str | None) -> None:
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="early")
        self.sizes: dict[str, Future[int]] = {}  # presigned GET URL -> the object's size
        self.job: Future[dict[str, Any]] = self.pool.submit(jobs.get_object)
        if grants_file:
            self.pool.submit(self._sizes, grants_file)

    def _sizes(self, grants_file: str) -> None:
        try:
            inputs = json.loads(Path(grants_file).read_text()).get("inputs") or {}
            urls = [g.get("get_url") for g in inputs.values() if isinstance(g, dict)]
        except Exception as exc:  # the main thread reads the file again and reports what is wrong
            log.debug("grants not read early: %s", exc)
            return
        for url in urls:
            if isinstance(url, str) and url:
                self.sizes[url] = self.pool.submit(storage.size_at, url)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
