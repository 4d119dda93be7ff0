"""Large files in the worker (docs/large-files.md): inputs read in parallel byte ranges, resumed
after a broken connection; the scratch check before FFmpeg starts. The in-process object store
and the flow's helpers are test_worker_loop.py's."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from ffmpeg_worker import ranged, storage
from ffmpegjob_model import exitcodes
from ffmpegjob_model.grants import Grants
from ffmpegjob_model.scratch import parse_quantity, scratch_shortfall
from ffmpegjob_model.storage_layout import file_key
from test_worker_loop import TENANT, Store, expires, make_job, output_grants, run

MiB = 1024**2


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store()
    yield s
    s.server.shutdown()


def test_ranges_cover_the_object() -> None:
    assert ranged.ranges(0) == []
    assert ranged.ranges(10, 4) == [(0, 3), (4, 7), (8, 9)]
    assert ranged.ranges(8, 4) == [(0, 3), (4, 7)]


def test_a_large_input_comes_in_parallel_ranges_and_a_broken_one_resumes(store: Store, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(9 * MiB + 123)
    key = file_key(TENANT, "src", "big.bin")
    store.objects[key] = data
    seen: list[str] = []
    real = storage._request
    broke = []

    def flaky(method: str, url: str, *a: object, **kw: object) -> object:
        rng = (kw.get("headers") or {}).get("Range", "")  # type: ignore[union-attr]
        seen.append(rng)
        resp = real(method, url, *a, **kw)  # type: ignore[arg-type]
        if rng == f"bytes={2 * MiB}-{4 * MiB - 1}" and not broke:  # the second range breaks half-way
            broke.append(rng)

            class Half:
                def __enter__(self) -> Half:
                    return self

                def __exit__(self, *exc: object) -> None:
                    resp.close()

                status, left = 206, MiB

                def read(self, n: int) -> bytes:
                    if self.left <= 0:
                        raise ConnectionResetError("connection reset by peer")
                    chunk: bytes = resp.read(min(n, self.left))
                    self.left -= len(chunk)
                    return chunk

            return Half()
        return resp

    monkeypatch.setattr(storage, "_request", flaky)
    dest = tmp_path / "big.bin"
    n = ranged.download_ranges(store.url(key), dest, len(data), concurrency=4, range_bytes=2 * MiB)
    assert n == len(data)
    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert len([r for r in seen if r.startswith("bytes=")]) == 6  # 5 ranges + one resumed
    assert f"bytes={3 * MiB}-{4 * MiB - 1}" in seen  # resumed at the byte where it stopped


def test_storage_download_uses_ranges_only_for_large_objects(store: Store, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ranged, "RANGED_MIN_BYTES", 4 * MiB)
    monkeypatch.setattr(ranged, "RANGE_BYTES", MiB)
    data = os.urandom(5 * MiB)
    key = file_key(TENANT, "src", "a.bin")
    store.objects[key] = data
    grant = store.grant(key, read=True)
    calls: list[int] = []
    real = ranged.download_ranges
    monkeypatch.setattr(ranged, "download_ranges", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    assert storage.download(grant, tmp_path / "a", size=len(data)) == len(data)
    assert (tmp_path / "a").read_bytes() == data and calls == [1]
    assert storage.download(grant, tmp_path / "b", size=None) == len(data) and calls == [1]
    with pytest.raises(storage.StorageError, match="larger than the limit"):
        storage.download(grant, tmp_path / "c", max_bytes=MiB, size=len(data))


def test_quantities() -> None:
    assert parse_quantity("10Gi") == 10 * 1024**3
    assert parse_quantity("500M") == 500 * 10**6
    assert parse_quantity("1e3") == 1000 and parse_quantity("1536") == 1536
    assert parse_quantity("1.5Ki") == 1536
    for bad in ("", "ten", "10Gb", "100m"):
        with pytest.raises(ValueError):
            parse_quantity(bad)


def test_scratch_shortfall_names_the_sizes_and_the_limit() -> None:
    assert scratch_shortfall({"a.mov": 10}, "1Ki", 10**9) is None
    msg = scratch_shortfall({"a.mov": 3 * MiB, "b.wav": MiB}, "2Mi", 10**9)
    assert msg is not None
    assert "4.0 MiB (4194304 bytes)" in msg and "a.mov 3.0 MiB (3145728 bytes)" in msg
    assert "ephemeralStorage) is 2Mi (2097152 bytes)" in msg
    msg = scratch_shortfall({"a.mov": 3 * MiB}, "10Gi", MiB)
    assert msg is not None and "only 1.0 MiB (1048576 bytes) are free" in msg


def test_inputs_too_big_for_the_scratch_fail_before_anything_is_downloaded(store: Store, tmp_path: Path) -> None:
    data = os.urandom(3 * MiB)
    src = file_key(TENANT, "src", "in.mp4")
    store.objects[src] = data
    grants = Grants(expires_at=expires(), inputs={"in.mp4": store.grant(src, read=True)},
                    outputs=output_grants(store, ["out.mp4"]))
    obj = make_job(["-i {{in.mp4}} -c copy {{out.mp4}}"], ["out.mp4"], {"in.mp4": "src/in.mp4"})
    code, jobs = run(obj, store, grants, tmp_path, stream_inputs=False, scratch_limit="1Mi")
    assert code == exitcodes.EXIT_SCRATCH
    error = jobs.status["error"]
    assert error.startswith("scratch space too small") and "in.mp4 3.0 MiB (3145728 bytes)" in error
    assert "is 1Mi (1048576 bytes)" in error
    assert not any(m == "PUT" for m, _ in store.requests)
    assert not (tmp_path / "work" / "job-1" / "inputs" / "in.mp4").exists()


def test_a_streamed_input_needs_no_scratch(store: Store, tmp_path: Path) -> None:
    """FFmpeg reads it from storage: the small scratch is not in the way (it fails later, on the
    content, which is random bytes)."""
    src = file_key(TENANT, "src", "in.mp4")
    store.objects[src] = os.urandom(3 * MiB)
    grants = Grants(expires_at=expires(), inputs={"in.mp4": store.grant(src, read=True)},
                    outputs=output_grants(store, ["out.mp4"]))
    obj = make_job(["-i {{in.mp4}} -c copy {{out.mp4}}"], ["out.mp4"], {"in.mp4": "src/in.mp4"})
    code, jobs = run(obj, store, grants, tmp_path, scratch_limit="1Mi")
    assert code != exitcodes.EXIT_SCRATCH and "scratch" not in jobs.status["error"]


def test_a_url_input_is_refused_by_its_content_length_before_its_body_is_written(store: Store,
                                                                                 tmp_path: Path) -> None:
    """An https input's size is known from its answer's Content-Length: over the scratch space,
    the download stops before the first byte lands on disk."""
    from ffmpeg_worker.settings import WorkerSettings
    from ffmpeg_worker.worker import Worker
    from ffmpegjob_model.settings import S3Settings
    from ffmpegjob_model.urls import URLRules
    from test_worker_loop import BUCKET, FakeJobs

    store.objects["media/big.mkv"] = os.urandom(3 * MiB)
    url = f"{store.endpoint}/{BUCKET}/media/big.mkv"
    obj = make_job(["-f matroska -i {{in}} -c copy {{out.mkv}}"], ["out.mkv"], {"in": url})
    grants = Grants(expires_at=expires(), outputs=output_grants(store, ["out.mkv"]))
    jobs = FakeJobs(obj)
    s = WorkerSettings.from_env({}, ffmpegjob_name="job-1", workdir=str(tmp_path / "work"), keep_workdir=True,
                                termination_log_path=str(tmp_path / "termination-log"), scratch_limit="2Mi")
    rules = URLRules(allow_hosts="127.0.0.1", allow_http=True)
    code = Worker(s, jobs, S3Settings(endpoint_url="http://s3.invalid", bucket="other"), rules,  # type: ignore[arg-type]
                  grants).run()
    assert code == exitcodes.EXIT_SCRATCH
    error = jobs.status["error"]
    assert "in 3.0 MiB (3145728 bytes)" in error and "is 2Mi (2097152 bytes)" in error, error
    assert (tmp_path / "work" / "job-1" / "inputs" / "in.mkv").stat().st_size == 0  # nothing written
