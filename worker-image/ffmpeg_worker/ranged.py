"""Download a large object in byte ranges, several at a time (docs/large-files.md).

One GET of a multi-gigabyte input is one TCP stream, and a connection lost at 90% starts over.
Here the object is cut into ranges fetched concurrently through the same presigned GET (a Range
header is not part of the signature), each written at its offset in the destination file, and a
range whose connection breaks is asked again from the byte where it stopped. Memory stays at one
read buffer per thread. Standard library only (the worker's start-up, worker-image/README.md)."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import storage

RANGE_BYTES = 32 * 1024 * 1024
# Smaller objects come in one GET: ranges pay off only when there are several of them.
RANGED_MIN_BYTES = 2 * RANGE_BYTES
ATTEMPTS = 5


class RangesUnsupported(Exception):
    """The server answered a range request with the whole object (then one GET is used)."""


def ranges(size: int, range_bytes: int = RANGE_BYTES) -> list[tuple[int, int]]:
    """(first, last) byte of each range, inclusive, covering `size` bytes."""
    return [(start, min(start + range_bytes, size) - 1) for start in range(0, size, range_bytes)]


def download_ranges(get_url: str, dest: Path, size: int, concurrency: int = 4,
                    range_bytes: int = RANGE_BYTES) -> int:
    """Write the `size`-byte object at `get_url` to `dest`; returns the bytes written."""
    with open(dest, "wb") as f:
        f.truncate(size)
    fd = os.open(dest, os.O_WRONLY)
    try:
        todo = ranges(size, range_bytes)
        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(todo)))) as pool:
            list(pool.map(lambda r: _one(get_url, fd, *r), todo))
    finally:
        os.close(fd)
    return size


def _one(url: str, fd: int, first: int, last: int) -> None:
    """Fetch bytes first..last into `fd`, resuming after a broken connection."""
    pos = first
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with storage._request("GET", url, headers={"Range": f"bytes={pos}-{last}"}, ok=(206,),
                                  stream=True) as resp:
                if getattr(resp, "status", 206) != 206:
                    raise RangesUnsupported(f"HTTP {resp.status} to a range request")
                while pos <= last and (chunk := resp.read(min(storage.CHUNK, last - pos + 1))):
                    os.pwrite(fd, chunk, pos)
                    pos += len(chunk)
            if pos > last:
                return
            raise OSError(f"connection closed at byte {pos} of range {first}-{last}")
        except (OSError, storage.StorageError) as exc:
            if isinstance(exc, storage.StorageError) and exc.status is not None and exc.status < 500:
                raise
            if attempt == ATTEMPTS:
                raise storage.StorageError(f"GET {url.split('?', 1)[0]} bytes {pos}-{last}: {exc}") from None
            time.sleep(0.2 * 2**attempt)
