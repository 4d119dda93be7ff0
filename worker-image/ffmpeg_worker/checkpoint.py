"""Checkpoints of a chain of commands, so that an attempt after a disruption (eviction, drain,
a deleted pod) resumes from the first step whose files were not yet saved.

After command k of n (k < n) finishes, the declared outputs it wrote are copied to the job's
scratch prefix (`storage_layout.checkpoint_step_prefix`), then a `done.json` listing them: a
step counts as saved only once its marker exists, so a disruption during the copy re-runs that
step. A new attempt restores the files of every saved leading step and skips those steps. The
operator deletes the whole scratch prefix when the job ends, whatever the outcome.

Storage access is behind `CheckpointStore` (three operations on one job's checkpoints), so the
store can change without touching the worker's flow: `S3Checkpoints` uses the worker's S3 client
today; a store that is handed presigned URLs (a per-job Secret, no bucket credentials in the pod)
only has to implement the same three methods.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ffmpegjob_model.storage_layout import CHECKPOINT_DONE, checkpoint_prefix, checkpoint_step_prefix

log = logging.getLogger("ffmpeg_worker.checkpoint")


class CheckpointStore(Protocol):
    def saved_steps(self, steps: int) -> int:
        """How many leading steps (1..k) are saved; 0 when none."""

    def save(self, step: int, files: list[Path]) -> None:
        """Save what `step` wrote; the step counts as saved only when this returns."""

    def restore(self, upto: int, workdir: Path) -> list[str]:
        """Put the files of steps 1..upto into `workdir` (a later step's copy wins); their names."""


@dataclass
class S3Checkpoints:
    """Checkpoints in the job's scratch prefix of the bucket, with the worker's S3 client."""

    s3: Any
    bucket: str
    tenant: str
    job_uid: str

    def _marker(self, step: int) -> str:
        return checkpoint_step_prefix(self.tenant, self.job_uid, step) + CHECKPOINT_DONE

    def saved_steps(self, steps: int) -> int:
        markers: set[str] = set()
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=checkpoint_prefix(self.tenant, self.job_uid))
        for page in pages:
            markers.update(o["Key"] for o in page.get("Contents", []) if o["Key"].endswith("/" + CHECKPOINT_DONE))
        k = 0
        while k < steps and self._marker(k + 1) in markers:
            k += 1
        return k

    def save(self, step: int, files: list[Path]) -> None:
        prefix = checkpoint_step_prefix(self.tenant, self.job_uid, step)
        for f in files:
            self.s3.upload_file(str(f), self.bucket, prefix + f.name)
        body = json.dumps({"step": step, "files": [f.name for f in files]}).encode()
        self.s3.put_object(Bucket=self.bucket, Key=self._marker(step), Body=body, ContentType="application/json")

    def restore(self, upto: int, workdir: Path) -> list[str]:
        placed: set[str] = set()
        for step in range(upto, 0, -1):  # the latest copy of a file is the one a later step saw
            marker = json.loads(self.s3.get_object(Bucket=self.bucket, Key=self._marker(step))["Body"].read())
            prefix = checkpoint_step_prefix(self.tenant, self.job_uid, step)
            for name in marker.get("files") or []:
                if name in placed:
                    continue
                self.s3.download_file(self.bucket, prefix + name, str(workdir / name))
                placed.add(name)
        return sorted(placed)


@dataclass(frozen=True)
class Snapshot:
    """What the declared outputs looked like before a step: (mtime, size) by name."""

    files: dict[str, tuple[int, int]]

    @classmethod
    def take(cls, workdir: Path, names: Iterable[str]) -> Snapshot:
        out: dict[str, tuple[int, int]] = {}
        for n in names:
            try:
                st = (workdir / n).stat()
            except OSError:
                continue
            out[n] = (st.st_mtime_ns, st.st_size)
        return cls(out)

    def written_since(self, after: Snapshot) -> list[str]:
        """Names that are new or changed in `after`."""
        return sorted(n for n, v in after.files.items() if self.files.get(n) != v)
