"""Checkpoints of a chain's steps: what counts as saved, and what a new attempt restores."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from ffmpeg_worker.checkpoint import GrantCheckpoints, NotGranted, Snapshot
from ffmpegjob_model.grants import ObjectGrant
from ffmpegjob_model.storage_layout import CHECKPOINT_DONE, checkpoint_grant_name


class Bucket(BaseHTTPRequestHandler):
    """PUT and GET of objects by URL path, over a dict: what presigned URLs do, unsigned."""

    objects: dict[str, bytes] = {}

    def do_PUT(self) -> None:
        self.objects[self.path] = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        body = self.objects.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def bucket() -> Iterator[str]:
    Bucket.objects = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), Bucket)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def grants(base: str, uid: str, steps: int, names: list[str]) -> dict[str, ObjectGrant]:
    out = {}
    for step in range(1, steps):
        for n in [*names, CHECKPOINT_DONE]:
            g = checkpoint_grant_name(step, n)
            out[g] = ObjectGrant(key=g, get_url=f"{base}/{uid}/{g}", put_url=f"{base}/{uid}/{g}")
    return out


def test_saved_steps_restore_and_a_step_without_its_marker(tmp_path: Path, bucket: str) -> None:
    store = GrantCheckpoints(grants(bucket, "uid", 4, ["a.mp4", "b.mp4", "c.mp4"]))
    (tmp_path / "a.mp4").write_bytes(b"one")
    store.save(1, [tmp_path / "a.mp4"])
    (tmp_path / "a.mp4").write_bytes(b"two")  # step 2 rewrites a.mp4 and writes b.mp4
    (tmp_path / "b.mp4").write_bytes(b"bee")
    store.save(2, [tmp_path / "a.mp4", tmp_path / "b.mp4"])
    Bucket.objects["/uid/" + checkpoint_grant_name(3, "c.mp4")] = b"partial"  # no done.json: not saved
    assert store.saved_steps(4) == 2
    fresh = tmp_path / "attempt2"
    fresh.mkdir()
    assert store.restore(2, fresh) == ["a.mp4", "b.mp4"]
    assert (fresh / "a.mp4").read_bytes() == b"two"  # the later step's copy
    assert GrantCheckpoints(grants(bucket, "other", 4, ["a.mp4"])).saved_steps(4) == 0


def test_a_step_past_the_granted_ones_is_not_saved_and_ends_the_saved_run(tmp_path: Path, bucket: str) -> None:
    store = GrantCheckpoints(grants(bucket, "uid", 2, ["a.mp4"]))  # only step 1 is granted
    (tmp_path / "a.mp4").write_bytes(b"one")
    store.save(1, [tmp_path / "a.mp4"])
    with pytest.raises(NotGranted):
        store.save(2, [tmp_path / "a.mp4"])
    with pytest.raises(NotGranted):
        store.save(1, [tmp_path / "undeclared.mp4"])
    assert store.saved_steps(5) == 1
    assert len(Bucket.objects) == 2  # a.mp4 and the marker of step 1: nothing of the refused saves


def test_snapshot_names_what_a_step_wrote(tmp_path: Path) -> None:
    (tmp_path / "in.mp4").write_bytes(b"x")
    (tmp_path / "a.mp4").write_bytes(b"x")
    before = Snapshot.take(tmp_path, ["a.mp4", "b.mp4"])
    (tmp_path / "b.mp4").write_bytes(b"new")
    os.utime(tmp_path / "a.mp4", ns=(1, 1))
    assert before.written_since(Snapshot.take(tmp_path, ["a.mp4", "b.mp4"])) == ["a.mp4", "b.mp4"]
    assert before.written_since(before) == []
