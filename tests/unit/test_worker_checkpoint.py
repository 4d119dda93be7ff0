"""Checkpoints of a chain's steps: what counts as saved, and what a new attempt restores."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from ffmpeg_worker.checkpoint import S3Checkpoints, Snapshot
from ffmpegjob_model.storage_layout import checkpoint_step_prefix


class FakeS3:
    """The few S3 calls the store makes, over a dict."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def get_paginator(self, _: str) -> Any:
        objects = self.objects

        class Pages:
            def paginate(self, Bucket: str, Prefix: str) -> list[dict[str, Any]]:
                return [{"Contents": [{"Key": k} for k in sorted(objects) if k.startswith(Prefix)]}]
        return Pages()

    def upload_file(self, path: str, bucket: str, key: str) -> None:
        self.objects[key] = Path(path).read_bytes()

    def put_object(self, Bucket: str, Key: str, Body: bytes, ContentType: str) -> None:
        self.objects[Key] = Body

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        return {"Body": io.BytesIO(self.objects[Key])}

    def download_file(self, bucket: str, key: str, path: str) -> None:
        Path(path).write_bytes(self.objects[key])


def test_saved_steps_restore_and_a_step_without_its_marker(tmp_path: Path) -> None:
    s3 = FakeS3()
    store = S3Checkpoints(s3, "b", "t", "uid")
    (tmp_path / "a.mp4").write_bytes(b"one")
    store.save(1, [tmp_path / "a.mp4"])
    (tmp_path / "a.mp4").write_bytes(b"two")  # step 2 rewrites a.mp4 and writes b.mp4
    (tmp_path / "b.mp4").write_bytes(b"bee")
    store.save(2, [tmp_path / "a.mp4", tmp_path / "b.mp4"])
    s3.objects[checkpoint_step_prefix("t", "uid", 3) + "c.mp4"] = b"partial"  # no done.json: not saved
    assert store.saved_steps(4) == 2
    fresh = tmp_path / "attempt2"
    fresh.mkdir()
    assert store.restore(2, fresh) == ["a.mp4", "b.mp4"]
    assert (fresh / "a.mp4").read_bytes() == b"two"  # the later step's copy
    assert S3Checkpoints(s3, "b", "t", "other").saved_steps(4) == 0


def test_snapshot_names_what_a_step_wrote(tmp_path: Path) -> None:
    (tmp_path / "in.mp4").write_bytes(b"x")
    (tmp_path / "a.mp4").write_bytes(b"x")
    before = Snapshot.take(tmp_path, ["a.mp4", "b.mp4"])
    (tmp_path / "b.mp4").write_bytes(b"new")
    os.utime(tmp_path / "a.mp4", ns=(1, 1))
    assert before.written_since(Snapshot.take(tmp_path, ["a.mp4", "b.mp4"])) == ["a.mp4", "b.mp4"]
    assert before.written_since(before) == []
