"""Which files a job's directory and pattern outputs produced, and under which names they are
stored (`ffmpegjob_model.outputs`): listing and bounds only; the upload itself is `storage`'s.

- a pattern output (`seg_%05d.ts`): the files of the working folder whose names match, stored
  under the same names in the output directory;
- a directory output (`hls/`): every regular file under that folder, subfolders included,
  stored as `hls/<relative path>`, so that relative URIs between them stay valid.

Symbolic links are never followed or uploaded (a command cannot make one, but the rule costs
nothing). The count and the total size are bounded: beyond either, `OutputsRefused` names the
limit and how to raise it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ffmpegjob_model.outputs import (
    MAX_OUTPUT_BYTES_ENV,
    MAX_OUTPUT_FILES_ENV,
    OutputKind,
    local_path,
    output_kind,
    pattern_regex,
    relative_output_path,
)

if TYPE_CHECKING:
    from ffmpegjob_model.plain import PrefixGrantView as PrefixGrant


class OutputsRefused(Exception):
    """A directory or pattern output produced nothing, or more than the job may upload."""


@dataclass(frozen=True)
class Produced:
    output: str  # the declared output (`hls/`, `seg_%05d.ts`)
    name: str  # the stored file name, relative to the output directory (`hls/v0/seg_001.ts`)
    path: Path
    size: int


def collect(workdir: Path, outputs: list[str], max_files: int, max_bytes: int) -> list[Produced]:
    """Every file the directory and pattern outputs among `outputs` name, sorted by stored name.
    File outputs are skipped (the caller handles them)."""
    found: dict[str, Produced] = {}
    total = 0
    named = {o for o in outputs if output_kind(o) == OutputKind.FILE}  # uploaded as declared files
    for out in outputs:
        kind = output_kind(out)
        if kind == OutputKind.FILE:
            continue
        files = _directory(workdir, out) if kind == OutputKind.DIRECTORY else _pattern(workdir, out)
        if not files:
            what = "no file under its folder" if kind == OutputKind.DIRECTORY else "no file matching it"
            raise OutputsRefused(f"{kind} output {out!r}: the commands wrote {what}")
        for name, path in files:
            if name in found or name in named:
                continue  # two patterns may match the same file, or a pattern a declared file: once
            size = path.stat().st_size
            total += size
            found[name] = Produced(out, name, path, size)
            if len(found) > max_files:
                raise OutputsRefused(
                    f"directory and pattern outputs produced more than {max_files} files (the limit; "
                    f"a pool raises it with {MAX_OUTPUT_FILES_ENV} in its env)")
            if total > max_bytes:
                raise OutputsRefused(
                    f"directory and pattern outputs produced more than {max_bytes} bytes (the limit; "
                    f"a pool raises it with {MAX_OUTPUT_BYTES_ENV} in its env)")
    return sorted(found.values(), key=lambda p: p.name)


def _directory(workdir: Path, out: str) -> list[tuple[str, Path]]:
    folder = workdir / local_path(out)
    if not folder.is_dir() or folder.is_symlink():
        return []
    files: list[tuple[str, Path]] = []
    for root, dirs, names in os.walk(folder):  # os.walk does not follow links into folders
        dirs.sort()
        for n in sorted(names):
            p = Path(root) / n
            if p.is_symlink() or not p.is_file():
                continue
            rel = p.relative_to(workdir).as_posix()
            if not relative_output_path(rel):
                raise OutputsRefused(f"directory output {out!r}: FFmpeg wrote {rel!r}, a name storage paths "
                                     "do not allow (letters, digits, '_', '.', '-')")
            files.append((rel, p))
    return files


def _pattern(workdir: Path, out: str) -> list[tuple[str, Path]]:
    rx = pattern_regex(out)
    return [(p.name, p) for p in sorted(workdir.iterdir())
            if rx.fullmatch(p.name) and p.is_file() and not p.is_symlink()]


def limits_from_env(env: dict[str, str] | None = None) -> tuple[int, int]:
    """(max files, max bytes): the pool's `MAX_OUTPUT_FILES`/`MAX_OUTPUT_BYTES`, else the defaults."""
    from ffmpegjob_model.outputs import DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_MAX_OUTPUT_FILES

    e = os.environ if env is None else env

    def one(var: str, default: int) -> int:
        raw = (e.get(var) or "").strip()
        if not raw:
            return default
        if not raw.isdigit() or int(raw) < 1:
            raise OutputsRefused(f"the pool's {var}={raw!r} is not a positive whole number")
        return int(raw)

    return one(MAX_OUTPUT_FILES_ENV, DEFAULT_MAX_OUTPUT_FILES), one(MAX_OUTPUT_BYTES_ENV, DEFAULT_MAX_OUTPUT_BYTES)


def upload_produced(grant: PrefixGrant | None, produced: list[Produced], concurrency: int = 8) -> list[str]:
    """Upload every produced file under the output directory's prefix grant (one POST each,
    several at a time, with `storage.upload_under_prefix`); returns the keys. A failure names
    every file that did not go up; the files already written stay (a POST policy grants no
    DELETE) and no result lists them."""
    from concurrent.futures import ThreadPoolExecutor

    from . import storage
    from .upload import UploadFailed

    if not produced:
        return []
    if grant is None:
        raise UploadFailed("upload failed: no grant for directory or pattern outputs (an operator older than "
                           "this worker?)")
    keys: list[str] = []
    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, min(len(produced), concurrency))) as pool:
        futures = [(p, pool.submit(storage.upload_under_prefix, grant, p.name, p.path)) for p in produced]
        for p, fut in futures:
            try:
                keys.append(fut.result())
            except Exception as exc:
                errors.append(f"{p.name}: {exc}")
    if errors:
        shown = "; ".join(errors[:5]) + (f"; and {len(errors) - 5} more" if len(errors) > 5 else "")
        raise UploadFailed(f"upload failed: {shown}")
    return keys
