"""Fetch a job's inputs into its working folder: concurrently, streamed to disk.

Storage paths and presigned URLs of our own bucket are read from storage directly, through the
read grants the operator presigned for this job (storage.py: the worker holds no credentials);
other URLs are fetched over HTTPS under the URL rules (`ffmpegjob_model.fetch.download`: each
redirect checked and the connected address checked again, against DNS rebinding)."""

from __future__ import annotations

import posixpath
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ffmpegjob_model.fetch import DownloadFailed, download

# The worker reads the job, its grants and settings as plain views (no pydantic before FFmpeg).
from ffmpegjob_model.plain import GrantsView as Grants
from ffmpegjob_model.plain import InputView as InputFile
from ffmpegjob_model.plain import ObjectGrantView as ObjectGrant
from ffmpegjob_model.plain import S3Location as S3Settings
from ffmpegjob_model.plain import SpecView as FFmpegJobSpec
from ffmpegjob_model.plain import URLRulesView as URLRules
from ffmpegjob_model.urls import BadInputSource, InputNotFound, input_storage_key

from . import storage
from .storage import StorageError, is_missing


class FetchError(Exception):
    """An input that could not be fetched; the message names it."""


class ScratchFull(FetchError):
    """The inputs to download do not fit the scratch space (docs/large-files.md)."""


class ScratchBudget:
    """The scratch space the downloads may fill: the pool's limit (`SCRATCH_LIMIT`) and the free
    space of the work folder. Each input to download is reserved with its size before any of its
    bytes are written (storage inputs: their probed size; https inputs: their Content-Length)."""

    def __init__(self, limit: str | None, free: int | None) -> None:
        self.limit, self.free = limit, free
        self.sizes: dict[str, int] = {}
        self.lock = threading.Lock()

    def reserve(self, sizes: Mapping[str, int]) -> None:
        if not sizes:
            return
        from ffmpegjob_model.scratch import scratch_shortfall

        with self.lock:
            self.sizes.update(sizes)
            problem = scratch_shortfall(self.sizes, self.limit, self.free)
        if problem:
            raise ScratchFull(problem)


@dataclass(frozen=True)
class FetchedInput:
    name: str
    path: Path  # where it is (or, when streamed, would be) on disk
    size: int
    streamed: bool = False  # FFmpeg reads it from storage itself: not on disk


def local_name(inp: InputFile) -> str:
    """`inputs/<name>`, keeping the source's extension when the name has none: FFmpeg guesses
    some formats (raw subtitles, image sequences) from it."""
    name = inp.name
    if not posixpath.splitext(name)[1]:
        ext = posixpath.splitext(urlsplit(inp.source).path)[1]
        if ext and len(ext) <= 10 and ext[1:].isalnum():
            name += ext
    return f"inputs/{name}"


class Fetcher:
    def __init__(
        self,
        grants: Grants,
        s3_settings: S3Settings,
        url_rules: URLRules,
        concurrency: int = 4,
        max_bytes: int | None = None,
        early_sizes: Mapping[str, Future[int]] | None = None,
    ) -> None:
        self.grants, self.s3_settings, self.rules = grants, s3_settings, url_rules
        self.concurrency, self.max_bytes = concurrency, max_bytes
        # Sizes already asked for at start-up (early.py), by the presigned GET URL they read.
        self.early_sizes = early_sizes or {}
        self.budget: ScratchBudget | None = None  # set by the worker's scratch check

    def fetch_all(
        self, spec: FFmpegJobSpec, workdir: Path, streamed: frozenset[str] = frozenset()
    ) -> dict[str, FetchedInput]:
        """Download every input but those in `streamed`, which are only checked (exist, size)."""
        (workdir / "inputs").mkdir(parents=True, exist_ok=True)
        if not spec.inputs:
            return {}

        def one(i: InputFile) -> FetchedInput:
            dest = workdir / local_name(i)
            if i.name in streamed:
                return FetchedInput(i.name, dest, self.stat(spec.tenant, i), streamed=True)
            return self.fetch_one(spec.tenant, i, dest)

        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(spec.inputs))) as pool:
            futures = {i.name: pool.submit(one, i) for i in spec.inputs}
            return {name: f.result() for name, f in futures.items()}

    def storage_key(self, tenant: str, inp: InputFile) -> str | None:
        """The object key of an input held in our bucket (a storage path, or a URL into the
        bucket), None for another URL; FetchError for a key outside the tenant or a bad path."""
        try:
            return input_storage_key(inp.name, inp.source, tenant, self.s3_settings)
        except (InputNotFound, BadInputSource) as e:
            raise FetchError(str(e)) from None

    def grant(self, inp: InputFile) -> ObjectGrant:
        """The read grant of a storage input (the operator presigned one for each)."""
        g = self.grants.inputs.get(inp.name)
        if g is None or not g.get_url:
            raise FetchError(f"input {inp.name!r}: {inp.source.split('?', 1)[0]} is not readable by this job")
        return g

    def stat(self, tenant: str, inp: InputFile) -> int:
        """Size of an input FFmpeg will stream from storage (it must exist and be within the limit)."""
        key = self.storage_key(tenant, inp)
        assert key is not None
        shown = inp.source.split("?", 1)[0]
        try:
            grant = self.grant(inp)
            early = self.early_sizes.get(grant.get_url or "")
            size = early.result() if early is not None else storage.object_size(grant)
        except FetchError:
            raise
        except Exception as exc:
            if is_missing(exc):
                raise FetchError(f"input {inp.name!r}: storage path {shown} does not exist") from None
            raise FetchError(f"input {inp.name!r}: cannot read {shown} from storage: {exc}") from exc
        if self.max_bytes is not None and size > self.max_bytes:
            raise FetchError(f"input {inp.name!r} is {size} bytes, over the limit of {self.max_bytes}")
        return size

    def fetch_one(self, tenant: str, inp: InputFile, dest: Path) -> FetchedInput:
        key = self.storage_key(tenant, inp)
        if key is None:
            self._http(inp.name, inp.source, dest)
        else:
            self._storage(inp, dest, shown=inp.source.split("?", 1)[0])
        size = dest.stat().st_size
        if self.max_bytes is not None and size > self.max_bytes:
            raise FetchError(f"input {inp.name!r} is {size} bytes, over the limit of {self.max_bytes}")
        return FetchedInput(inp.name, dest, size)

    def _storage(self, inp: InputFile, dest: Path, shown: str) -> None:
        name = inp.name
        try:
            grant = self.grant(inp)
            early = self.early_sizes.get(grant.get_url or "")
            # The size read at start-up (if any) lets a large input come in parallel ranges.
            size = early.result() if early is not None and early.done() and early.exception() is None else None
            storage.download(grant, dest, self.max_bytes, size=size, concurrency=self.concurrency)
        except StorageError as exc:
            if is_missing(exc):
                raise FetchError(f"input {name!r}: storage path {shown} does not exist") from None
            if exc.status is None and str(exc).startswith("larger than"):
                raise FetchError(f"input {name!r} is {exc}") from None
            raise FetchError(f"input {name!r}: cannot read {shown} from storage: {exc}") from exc
        except FetchError:
            raise
        except Exception as exc:
            if is_missing(exc):
                raise FetchError(f"input {name!r}: storage path {shown} does not exist") from None
            raise FetchError(f"input {name!r}: cannot read {shown} from storage: {exc}") from exc

    def _http(self, name: str, url: str, dest: Path) -> None:
        budget = self.budget
        on_length = None if budget is None else (lambda n: budget.reserve({name: n}))
        try:
            with open(dest, "wb") as f:
                download(url, f, self.rules, max_bytes=self.max_bytes, user_agent="kubeffmpeg-worker",
                         on_length=on_length)
        except DownloadFailed as exc:
            raise FetchError(f"input {name!r}: {exc}") from None
