"""Upload a job's declared outputs through their write grants: several files at a time, a big
one in parts. All or nothing: when one upload fails, the ones already written are deleted again
(with their granted DELETE)."""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ffmpegjob_model.plain import ObjectGrantView as ObjectGrant  # the grants as the worker reads them

from . import storage


class UploadFailed(Exception):
    pass


@dataclass(frozen=True)
class Uploaded:
    name: str
    key: str
    size: int


def upload_outputs(grants: dict[str, ObjectGrant], files: list[Path], concurrency: int = 8) -> list[Uploaded]:
    missing = [p.name for p in files if p.name not in grants]
    if missing:
        raise UploadFailed(f"upload failed: no write grant for {', '.join(missing)}")

    def one(path: Path) -> Uploaded:
        g = grants[path.name]
        return Uploaded(path.name, g.key, storage.upload(g, path, concurrency))

    done: list[Uploaded] = []
    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, min(len(files), 4))) as pool:
        for path, fut in [(p, pool.submit(one, p)) for p in files]:
            try:
                done.append(fut.result())
            except Exception as exc:
                errors.append(f"{path.name}: {exc}")
    if errors:
        for u in done:  # no partial result: remove what was written
            with contextlib.suppress(Exception):
                storage.delete(grants[u.name])
        raise UploadFailed("upload failed: " + "; ".join(errors))
    return done
