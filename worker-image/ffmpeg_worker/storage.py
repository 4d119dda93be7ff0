"""Storage through the job's grants only: presigned URLs from the grants file
(`ffmpegjob_model.grants`), plain HTTP with the standard library. The worker holds no storage
credentials; what a URL does not allow, it cannot do.

The reusable client of the grants file: `load_grants`, `object_size`, `download`, `upload`
(single PUT or the granted multipart upload), `upload_under_prefix` (a POST policy), `delete`."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from xml.sax.saxutils import escape

if TYPE_CHECKING:  # imported where used: this module is on the way to FFmpeg, the model is not
    # The grants as the worker reads them (plain.py: no pydantic before FFmpeg starts).
    from ffmpegjob_model.plain import GrantsView as Grants
    from ffmpegjob_model.plain import MultipartGrantView as MultipartGrant
    from ffmpegjob_model.plain import ObjectGrantView as ObjectGrant
    from ffmpegjob_model.plain import PrefixGrantView as PrefixGrant

CHUNK = 1024 * 1024
TIMEOUT = 60.0
ATTEMPTS = 4
# Outputs up to this size go up in one PUT; bigger ones in parts, several at a time
# (ffmpegjob_model.grants.MIN_PART_BYTES, S3's smallest part; test_worker_storage.py keeps them equal).
MULTIPART_THRESHOLD = 16 * 1024 * 1024


class StorageError(Exception):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # storage never redirects a signed request; don't follow one elsewhere


_opener = urllib.request.build_opener(_NoRedirect)


def load_grants(path: str | None = None) -> Grants:
    """The grants file named by `$GRANTS_FILE` (the operator mounts it from the job's Secret)."""
    from ffmpegjob_model.plain import load_grants

    return load_grants(path)


def is_missing(exc: BaseException) -> bool:
    return isinstance(exc, StorageError) and exc.status == 404


class _Slice:
    """`length` bytes of an open file from `offset`: a part's body, read as it is sent."""

    def __init__(self, f: IO[bytes], offset: int, length: int) -> None:
        self.f, self.left = f, length
        f.seek(offset)

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.f.read(n) if n else b""
        self.left -= len(data)
        return data


def _request(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
             ok: tuple[int, ...] = (200,), stream: bool = False) -> Any:
    """One request, retried on connection errors and 5xx. Returns the open response when
    `stream`, else (status, headers, body bytes)."""
    shown = url.split("?", 1)[0]
    for attempt in range(1, ATTEMPTS + 1):
        data = body() if callable(body) else body
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            resp = _opener.open(req, timeout=TIMEOUT)
        except urllib.error.HTTPError as e:
            detail = e.read(2000).decode("utf-8", "replace")
            if e.code in ok:
                return e if stream else (e.code, e.headers, detail.encode())
            if e.code >= 500 and attempt < ATTEMPTS:
                time.sleep(0.2 * 2**attempt)
                continue
            code = _s3_code(detail)
            raise StorageError(f"{method} {shown}: HTTP {e.code}{f' {code}' if code else ''}", e.code) from None
        except OSError as e:  # connection refused/reset, timeout
            if attempt < ATTEMPTS:
                time.sleep(0.2 * 2**attempt)
                continue
            raise StorageError(f"{method} {shown}: {e}") from None
        if stream:
            return resp
        with resp:
            return resp.status, resp.headers, resp.read()
    raise AssertionError("unreachable")


def _s3_code(body: str) -> str:
    start = body.find("<Code>")
    end = body.find("</Code>")
    return body[start + 6 : end] if 0 <= start < end else ""


def object_size(g: ObjectGrant) -> int:
    """The size of a readable object (a one-byte range GET: a presigned GET cannot HEAD)."""
    if not g.get_url:
        raise StorageError(f"no read grant for {g.key}")
    return size_at(g.get_url)


def size_at(get_url: str) -> int:
    """The size of the object a presigned GET URL reads."""
    status, headers, _ = _request("GET", get_url, headers={"Range": "bytes=0-0"}, ok=(200, 206, 416))
    if status == 206:
        return int(str(headers.get("Content-Range", "")).rsplit("/", 1)[-1])
    if status == 416:
        return 0  # an empty object has no byte 0
    return int(headers.get("Content-Length", 0))


def download(g: ObjectGrant, dest: Path, max_bytes: int | None = None, size: int | None = None,
             concurrency: int = 4) -> int:
    """Stream the object to `dest` (never whole in memory); a large one whose `size` is known
    comes in byte ranges, several at a time, each resumed where a broken connection left it
    (ranged.py)."""
    if not g.get_url:
        raise StorageError(f"no read grant for {g.key}")
    if size is not None:
        if max_bytes is not None and size > max_bytes:
            raise StorageError(f"larger than the limit of {max_bytes} bytes")
        from . import ranged

        if size >= ranged.RANGED_MIN_BYTES:
            try:
                return ranged.download_ranges(g.get_url, dest, size, concurrency)
            except ranged.RangesUnsupported:
                pass  # one GET after all
    written = 0
    with _request("GET", g.get_url, stream=True) as resp, open(dest, "wb") as f:
        while chunk := resp.read(CHUNK):
            written += len(chunk)
            if max_bytes is not None and written > max_bytes:
                raise StorageError(f"larger than the limit of {max_bytes} bytes")
            f.write(chunk)
    return written


def delete(g: ObjectGrant) -> None:
    if g.delete_url:
        _request("DELETE", g.delete_url, ok=(200, 204, 404))


def upload(g: ObjectGrant, path: Path, concurrency: int = 8) -> int:
    """Write `path` to the granted key: one PUT when small, else the granted multipart upload,
    and one PUT after all when that fails (an upload a failed earlier attempt left aborted is
    refused with 404, often before its body is read, so as a broken connection)."""
    from ffmpegjob_model.plain import MAX_PART_BYTES

    size = path.stat().st_size
    if g.multipart is not None and size > MULTIPART_THRESHOLD:
        try:
            _multipart(g.multipart, path, size, concurrency)
            return size
        except StorageError:
            if not g.put_url or size > MAX_PART_BYTES:
                raise
    if not g.put_url:
        raise StorageError(f"no write grant for {g.key}")
    if size > MAX_PART_BYTES:
        raise StorageError(f"{path.name} is {size} bytes: over 5 GiB, and no multipart upload was granted")
    headers = {"Content-Length": str(size), "Content-Type": g.content_type or "application/octet-stream"}
    with open(path, "rb") as f:
        _request("PUT", g.put_url, body=lambda: _Slice(f, 0, size), headers=headers)
    return size


def _multipart(mp: MultipartGrant, path: Path, size: int, concurrency: int) -> None:
    from ffmpegjob_model.plain import MAX_PART_BYTES, MIN_PART_BYTES

    parts = len(mp.part_urls)
    part = max(MIN_PART_BYTES, -(-size // parts))
    if part > MAX_PART_BYTES:
        raise StorageError(f"{path.name} is {size} bytes: more than {parts} parts of 5 GiB")
    count = -(-size // part)

    def one(n: int) -> str:
        offset = (n - 1) * part
        length = min(part, size - offset)
        with open(path, "rb") as f:
            _, headers, _ = _request("PUT", mp.part_urls[n - 1], body=lambda: _Slice(f, offset, length),
                                     headers={"Content-Length": str(length)})
        return str(headers.get("ETag", ""))

    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, count))) as pool:
        etags = list(pool.map(one, range(1, count + 1)))
    xml = "<CompleteMultipartUpload>" + "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(e)}</ETag></Part>" for n, e in enumerate(etags, 1)
    ) + "</CompleteMultipartUpload>"
    _, _, body = _request("POST", mp.complete_url, body=xml.encode(), headers={"Content-Type": "application/xml"})
    if b"<Error>" in body:  # S3 may answer 200 and report the failure in the body
        raise StorageError(f"completing the upload of {path.name} failed: {_s3_code(body.decode('utf-8', 'replace'))}")


def upload_under_prefix(g: PrefixGrant, name: str, path: Path) -> str:
    """Write `path` as `<prefix><name>` through a presigned POST policy (outputs or scratch
    objects whose names were not known when the grants were made); returns the key."""
    size = path.stat().st_size
    if size > g.max_bytes:
        raise StorageError(f"{path.name} is {size} bytes, over the policy's {g.max_bytes}")
    key = g.prefix + name
    boundary = f"----kubeffmpeg{os.urandom(8).hex()}"
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in [*g.fields.items(), ("key", key)]
    ) + f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n\r\n'.encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}",
               "Content-Length": str(len(head) + size + len(tail))}
    with open(path, "rb") as f:
        _request("POST", g.url, body=lambda: _Concat(head, _Slice(f, 0, size), tail), headers=headers,
                 ok=(200, 201, 204))
    return key


class _Concat:
    """bytes, a file slice, bytes: a form upload's body, read as it is sent."""

    def __init__(self, head: bytes, middle: _Slice, tail: bytes) -> None:
        self.parts: list[Any] = [head, middle, tail]

    def read(self, n: int = -1) -> bytes:
        out = b""
        while self.parts and (n < 0 or len(out) < n):
            part = self.parts[0]
            want = -1 if n < 0 else n - len(out)
            if isinstance(part, bytes):
                chunk, rest = (part, b"") if want < 0 else (part[:want], part[want:])
                self.parts[0] = rest
            else:
                chunk = part.read(want)
            out += chunk
            if not chunk or (isinstance(part, bytes) and not self.parts[0]):
                self.parts.pop(0)
        return out
