"""Checkpoints of a chain of commands, so that an attempt after a disruption (eviction, drain,
a deleted pod, a deleted Job) resumes from the first step whose files were not yet saved.

After command k of n (k < n) finishes, the declared outputs it wrote are copied to the job's
scratch prefix (`storage_layout.checkpoint_step_prefix`), then a `done.json` listing them: a
step counts as saved only once its marker exists, so a disruption during the copy re-runs that
step. A new attempt restores the files of every saved leading step and skips those steps. The
operator deletes the whole scratch prefix when the job ends, whatever the outcome.

Storage access is behind `CheckpointStore` (three operations on one job's checkpoints).
`GrantCheckpoints` implements it with the presigned URLs of the pod's grants (`Grants.scratch`,
named by `storage_layout.checkpoint_grant_name`): a PUT and a GET for each declared output of
each step but the last and for each marker. The pod holds no storage credentials, so it cannot
list: which steps are saved it learns by GETting the markers in order (404: not saved).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ffmpegjob_model.plain import ObjectGrantView as ObjectGrant  # the grants as the worker reads them
from ffmpegjob_model.storage_layout import CHECKPOINT_DONE, checkpoint_grant_name

from . import storage

log = logging.getLogger("ffmpeg_worker.checkpoint")


class CheckpointStore(Protocol):
    def saved_steps(self, steps: int) -> int:
        """How many leading steps (1..k) are saved; 0 when none."""

    def save(self, step: int, files: list[Path]) -> None:
        """Save what `step` wrote; the step counts as saved only when this returns."""

    def restore(self, upto: int, workdir: Path) -> list[str]:
        """Put the files of steps 1..upto into `workdir` (a later step's copy wins); their names."""


class NotGranted(Exception):
    """The grants name no such checkpoint object (a step past the granted ones)."""


@dataclass
class GrantCheckpoints:
    """Checkpoints in the job's scratch prefix, through the presigned URLs of `Grants.scratch`."""

    scratch: dict[str, ObjectGrant]

    def _grant(self, step: int, name: str) -> ObjectGrant:
        g = self.scratch.get(checkpoint_grant_name(step, name))
        if g is None:
            raise NotGranted(f"no checkpoint grant for {name} of step {step}")
        return g

    def _marker(self, step: int) -> dict[str, object] | None:
        """The marker of `step`, or None when the step is not saved (or has no grant)."""
        g = self.scratch.get(checkpoint_grant_name(step, CHECKPOINT_DONE))
        if g is None or not g.get_url:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            dest = Path(tmp) / CHECKPOINT_DONE
            try:
                storage.download(g, dest, max_bytes=1 << 20)
            except storage.StorageError as exc:
                if storage.is_missing(exc):
                    return None
                raise
            marker = json.loads(dest.read_text())
        return marker if isinstance(marker, dict) else None

    def saved_steps(self, steps: int) -> int:
        k = 0
        while k < steps and self._marker(k + 1) is not None:
            k += 1
        return k

    def save(self, step: int, files: list[Path]) -> None:
        grants = [(f, self._grant(step, f.name)) for f in files]  # all granted, or nothing is sent
        marker_grant = self._grant(step, CHECKPOINT_DONE)
        for f, g in grants:
            storage.upload(g, f)
        with tempfile.TemporaryDirectory() as tmp:
            body = Path(tmp) / CHECKPOINT_DONE
            body.write_text(json.dumps({"step": step, "files": [f.name for f in files]}))
            storage.upload(marker_grant, body)

    def restore(self, upto: int, workdir: Path) -> list[str]:
        placed: set[str] = set()
        for step in range(upto, 0, -1):  # the latest copy of a file is the one a later step saw
            marker = self._marker(step)
            if marker is None:
                raise NotGranted(f"the marker of step {step} is gone")
            names = marker.get("files")
            for name in names if isinstance(names, list) else []:
                name = str(name)
                if name in placed:
                    continue
                storage.download(self._grant(step, name), workdir / name)
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
