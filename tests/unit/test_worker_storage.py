"""The worker's grant client, the parts of it that need no store (tests/integration/test_worker.py
runs it against MinIO)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from ffmpeg_worker import storage
from ffmpegjob_model.grants import GRANTS_FILE_ENV, MIN_PART_BYTES, Grants, ObjectGrant


def test_a_form_body_streams_head_file_slice_and_tail(tmp_path: Path) -> None:
    f = io.BytesIO(b"0123456789")
    body = storage._Concat(b"<head>", storage._Slice(f, 2, 5), b"<tail>")
    chunks = []
    while chunk := body.read(4):
        chunks.append(chunk)
    assert b"".join(chunks) == b"<head>23456<tail>"
    assert all(len(c) <= 4 for c in chunks)
    assert storage._Concat(b"a", storage._Slice(io.BytesIO(b"xyz"), 0, 3), b"b").read() == b"axyzb"


def test_grants_file_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "grants.json"
    path.write_text(Grants.model_validate({"expires_at": "2030-01-01T00:00:00Z", "inputs": {
        "in": {"key": "files/t/d/in.mp4", "get_url": "http://s3/b/files/t/d/in.mp4?X-Amz-Signature=x"}}}).dump())
    monkeypatch.setenv(GRANTS_FILE_ENV, str(path))
    g = storage.load_grants()
    assert g.inputs["in"].key == "files/t/d/in.mp4" and g.outputs == {}


def test_nothing_is_requested_without_a_grant(tmp_path: Path) -> None:
    out = tmp_path / "o.mp4"
    out.write_bytes(b"x")
    grant = ObjectGrant(key="files/t/d/o.mp4")
    with pytest.raises(storage.StorageError, match="no write grant"):
        storage.upload(grant, out)
    with pytest.raises(storage.StorageError, match="no read grant"):
        storage.object_size(grant)


def test_the_multipart_threshold_is_the_contracts_smallest_part() -> None:
    assert storage.MULTIPART_THRESHOLD == MIN_PART_BYTES
