"""Multipart uploads of large files (docs/large-files.md): parts PUT straight to storage,
several at a time, each retried; an upload that still fails stays open, and `resume` finishes
it later with only the parts storage lacks."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from ffmpegjob_model.multipart import MAX_URL_BATCH, PartPlan

__all__ = ["MAX_URL_BATCH", "MULTIPART_THRESHOLD", "UploadIncomplete", "put_parts", "upload_parts"]

from .errors import ConnectionFailed, KubeFFmpegError

# Files at least this big go up in parts (`Client.upload`); smaller ones in one PUT.
MULTIPART_THRESHOLD = 256 * 1024**2
PART_ATTEMPTS = 4


class UploadIncomplete(KubeFFmpegError):
    """Some parts could not be uploaded; `upload_id` names the upload `Client.resume_upload` finishes."""

    def __init__(self, message: str, upload_id: str) -> None:
        super().__init__(message)
        self.upload_id = upload_id


def base(surface: str) -> str:
    return "/api/uploads" if surface == "vgf" else "/uploads"


def unwrap(body: Any, surface: str) -> Any:
    return body["data"] if surface == "vgf" else body


def put_parts(path: Path, part_size: int, urls: dict[int, str], workers: int) -> dict[int, str]:
    """PUT the given parts of `path`, `workers` at a time; part number -> ETag."""
    plan = PartPlan(path.stat().st_size, part_size)

    def one(n: int) -> tuple[int, str]:
        offset, length = plan.part_range(n)
        with path.open("rb") as f:
            f.seek(offset)
            body = f.read(length)
        last: str = ""
        for _ in range(PART_ATTEMPTS):
            try:
                r = httpx.put(urls[n], content=body, timeout=None)
            except httpx.TransportError as e:
                last = str(e)
                continue
            if r.status_code < 300:
                return n, r.headers["ETag"]
            last = f"HTTP {r.status_code} {r.text[:200]}"
            if r.status_code < 500:
                break
        raise ConnectionFailed(f"part {n} of {path}: {last}")

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(urls) or 1))) as pool:
        return dict(pool.map(one, sorted(urls)))


def upload_parts(request: Callable[..., Any], path: Path, surface: str, upload_id: str, part_size: int,
                 numbers: list[int], first_urls: dict[int, str], workers: int) -> None:
    """Upload parts `numbers` (URLs from `first_urls`, else asked for in batches)."""
    for i in range(0, len(numbers), MAX_URL_BATCH):
        batch = numbers[i:i + MAX_URL_BATCH]
        urls = {n: first_urls[n] for n in batch if n in first_urls}
        want = [n for n in batch if n not in urls]
        if want:
            got = unwrap(request("POST", f"{base(surface)}/{upload_id}/urls", json={"part_numbers": want}), surface)
            urls |= {p["part_number"]: p["url"] for p in got["parts"]}
        try:
            put_parts(path, part_size, urls, workers)
        except KubeFFmpegError as e:
            raise UploadIncomplete(f"upload {upload_id} of {path} is incomplete ({e}); "
                                   f"Client.resume_upload({upload_id!r}, ...) finishes it", upload_id) from None
