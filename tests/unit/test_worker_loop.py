"""The worker's whole flow (validate -> fetch -> run steps -> publish) without the stack: real
FFmpeg and ffprobe, the worker's real storage client against a small in-process object store
that answers presigned-style URLs (GET with ranges, PUT, DELETE), and a fake FFmpegJob client
that records the status patches. tests/integration/test_worker.py runs the same flow against
the API server and MinIO."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from ffmpeg_worker import main as worker_main
from ffmpeg_worker.settings import WorkerSettings
from ffmpeg_worker.worker import Worker
from ffmpegjob_model import exitcodes
from ffmpegjob_model.grants import Grants, ObjectGrant
from ffmpegjob_model.lenient import read_ffmpegjob
from ffmpegjob_model.model import FFmpegJob
from ffmpegjob_model.settings import S3Settings
from ffmpegjob_model.storage_layout import CHECKPOINT_DONE, checkpoint_grant_name, file_key
from ffmpegjob_model.urls import URLRules

TENANT, BUCKET, SIG = "t1", "ffmpeg", "X-Amz-Signature=fake"


class Store:
    """Objects by key, served over HTTP as a bucket would serve presigned URLs."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.refuse_puts = False  # answer every PUT with 403 (a grant that no longer works)
        self.requests: list[tuple[str, str]] = []
        store = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _key(self) -> str:
                path = self.path.split("?", 1)[0]
                assert path.startswith(f"/{BUCKET}/")
                return path[len(BUCKET) + 2:]

            def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self) -> None:
                key = self._key()
                store.requests.append(("GET", key))
                data = store.objects.get(key)
                if data is None:
                    return self._send(404, b"<Error><Code>NoSuchKey</Code></Error>")
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    first, _, last = rng[6:].partition("-")
                    start = int(first or 0)
                    if start >= len(data):
                        return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                    end = min(int(last), len(data) - 1) if last else len(data) - 1
                    return self._send(206, data[start:end + 1],
                                      {"Content-Range": f"bytes {start}-{end}/{len(data)}", "Accept-Ranges": "bytes"})
                self._send(200, data, {"Accept-Ranges": "bytes"})

            def do_PUT(self) -> None:
                key = self._key()
                store.requests.append(("PUT", key))
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if store.refuse_puts:
                    return self._send(403, b"<Error><Code>AccessDenied</Code></Error>")
                store.objects[key] = body
                self._send(200, b"", {"ETag": '"etag"'})

            def do_DELETE(self) -> None:
                key = self._key()
                store.requests.append(("DELETE", key))
                store.objects.pop(key, None)
                self._send(204)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, key: str) -> str:
        return f"{self.endpoint}/{BUCKET}/{key}?{SIG}"

    def grant(self, key: str, read: bool = False, write: bool = False) -> ObjectGrant:
        return ObjectGrant(key=key, get_url=self.url(key) if read else None, put_url=self.url(key) if write else None,
                           delete_url=self.url(key) if write else None)


class FakeJobs:
    """The worker's FFmpegJob client: the object is held here, status patches merged into it."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self.patches: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def get_object(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.obj))

    def get(self) -> FFmpegJob:
        return read_ffmpegjob(self.get_object())

    def patch_status(self, status: dict[str, Any]) -> None:
        with self.lock:
            self.patches.append(status)
            merged = self.obj.setdefault("status", {})
            for k, v in status.items():  # a merge patch, one level deep is enough here
                if v is None:
                    merged.pop(k, None)
                elif isinstance(v, dict) and isinstance(merged.get(k), dict):
                    merged[k] = {**merged[k], **{a: b for a, b in v.items() if b is not None}}
                else:
                    merged[k] = v

    def try_patch_status(self, status: dict[str, Any]) -> bool:
        self.patch_status(status)
        return True

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.obj.get("status") or {})


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A 2 s test clip (testsrc + sine), H.264/AAC in MP4."""
    path = tmp_path_factory.mktemp("media") / "in.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=2:size=160x120:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:v", "libx264", "-preset", "ultrafast",
         "-c:a", "aac", "-shortest", str(path)],
        check=True,
    )  # fmt: skip
    return path.read_bytes()


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store()
    yield s
    s.server.shutdown()


def make_job(commands: list[str], outputs: list[str], inputs: dict[str, str] | None = None,
             uid: str = "uid-1") -> dict[str, Any]:
    return {
        "apiVersion": "kubeffmpeg.io/v1alpha1", "kind": "FFmpegJob",
        "metadata": {"name": "job-1", "namespace": "ns", "uid": uid},
        "spec": {"tenant": TENANT, "inputs": [{"name": n, "source": s} for n, s in (inputs or {}).items()],
                 "outputs": [{"name": o} for o in outputs], "commands": commands, "output": {"dirId": "out"}},
    }


def run(obj: dict[str, Any], store: Store, grants: Grants, tmp: Path, **settings: Any) -> tuple[int, FakeJobs]:
    jobs = FakeJobs(obj)
    s = WorkerSettings.from_env({}, ffmpegjob_name="job-1", workdir=str(tmp / "work"),
                                termination_log_path=str(tmp / "termination-log"), progress_interval=0.1, **settings)
    s3 = S3Settings(endpoint_url=store.endpoint, bucket=BUCKET)
    code = Worker(s, jobs, s3, URLRules(), grants).run()  # type: ignore[arg-type]
    return code, jobs


def output_grants(store: Store, names: list[str]) -> dict[str, ObjectGrant]:
    return {n: store.grant(file_key(TENANT, "out", n), write=True) for n in names}


def expires() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


def ffprobe(data: bytes, tmp: Path) -> dict[str, Any]:
    path = tmp / "probe.mp4"
    path.write_bytes(data)
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_name,width",
                          "-of", "json", str(path)], capture_output=True, check=True)
    return dict(json.loads(out.stdout))


def test_a_streamed_input_is_transcoded_uploaded_and_recorded(store: Store, clip: bytes, tmp_path: Path) -> None:
    src = file_key(TENANT, "src", "in.mp4")
    store.objects[src] = clip
    grants = Grants(expires_at=expires(), inputs={"in.mp4": store.grant(src, read=True)},
                    outputs=output_grants(store, ["out.mp4"]))
    obj = make_job(["-i {{in.mp4}} -vf scale=80:-2 -c:v libx264 -preset ultrafast -an {{out.mp4}}"], ["out.mp4"],
                   {"in.mp4": "src/in.mp4"})
    code, jobs = run(obj, store, grants, tmp_path)

    assert code == 0, jobs.status.get("error")
    out = store.objects[file_key(TENANT, "out", "out.mp4")]
    info = ffprobe(out, tmp_path)
    assert info["streams"][0]["codec_name"] == "h264" and info["streams"][0]["width"] == 80
    assert abs(float(info["format"]["duration"]) - 2.0) < 0.2
    (result,) = jobs.status["result"]
    assert result["fileName"] == "out.mp4" and result["sizeBytes"] == len(out)
    assert result["storagePath"] == "out/out.mp4" and result["media"]["width"] == 80
    usage = jobs.status["usage"]
    assert usage["inputBytes"] == len(clip) and usage["outputBytes"] == len(out) and usage["timeSec"] > 0
    assert jobs.status["progress"]["percent"] == 100 and "error" not in jobs.status
    # FFmpeg read the input itself (range requests), nothing was downloaded to disk first
    assert [r for r in store.requests if r == ("GET", src)], store.requests
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())  # work folder removed


def test_a_chain_saves_a_checkpoint_and_a_new_attempt_resumes_after_it(store: Store, clip: bytes,
                                                                       tmp_path: Path) -> None:
    src = file_key(TENANT, "src", "in.mp4")
    store.objects[src] = clip
    commands = ["-i {{in.mp4}} -t 1 -c copy {{mid.mp4}}", "-i {{mid.mp4}} -c:v libx264 -preset ultrafast {{out.mp4}}"]
    scratch = {n: store.grant(f"scratch/{TENANT}/uid-1/{n}", read=True, write=True)
               for n in (checkpoint_grant_name(1, "mid.mp4"), checkpoint_grant_name(1, CHECKPOINT_DONE))}
    grants = Grants(expires_at=expires(), inputs={"in.mp4": store.grant(src, read=True)},
                    outputs=output_grants(store, ["mid.mp4", "out.mp4"]), scratch=scratch)
    obj = make_job(commands, ["mid.mp4", "out.mp4"], {"in.mp4": "src/in.mp4"})
    code, jobs = run(obj, store, grants, tmp_path)
    assert code == 0, jobs.status.get("error")
    assert jobs.status["progress"].get("resumedFromStep") is None
    marker = store.objects[f"scratch/{TENANT}/uid-1/{checkpoint_grant_name(1, CHECKPOINT_DONE)}"]
    assert json.loads(marker) == {"step": 1, "files": ["mid.mp4"]}

    # A second attempt (the pod was evicted after step 1, say): step 1 is restored, not run.
    code, jobs = run(obj, store, grants, tmp_path)
    assert code == 0, jobs.status.get("error")
    assert jobs.status["progress"]["resumedFromStep"] == 2


def test_a_failing_command_reports_ffmpegs_reason_and_uploads_nothing(store: Store, clip: bytes,
                                                                      tmp_path: Path) -> None:
    src = file_key(TENANT, "src", "in.mp4")
    store.objects[src] = clip
    grants = Grants(expires_at=expires(), inputs={"in.mp4": store.grant(src, read=True)},
                    outputs=output_grants(store, ["out.mp4"]))
    obj = make_job(["-i {{in.mp4}} -c:v no_such_encoder {{out.mp4}}"], ["out.mp4"], {"in.mp4": "src/in.mp4"})
    code, jobs = run(obj, store, grants, tmp_path)
    assert code == exitcodes.EXIT_STEP
    assert "command 1 of 1 failed" in jobs.status["error"] and "no_such_encoder" in jobs.status["error"]
    assert "result" not in jobs.status and not any(m == "PUT" for m, _ in store.requests)
    assert "command 1 of 1 failed" in (tmp_path / "termination-log").read_text()


def test_an_unsafe_command_is_refused_before_anything_is_read_or_run(store: Store, tmp_path: Path) -> None:
    grants = Grants(expires_at=expires(), outputs=output_grants(store, ["out.mp4"]))
    obj = make_job(["-f lavfi -i testsrc=d=1 -i /etc/passwd {{out.mp4}}"], ["out.mp4"])
    code, jobs = run(obj, store, grants, tmp_path)
    assert code == exitcodes.EXIT_INVALID
    assert jobs.status["error"].startswith("invalid job:") and "/etc/passwd" in jobs.status["error"]
    assert store.requests == [] and not any("progress" in p for p in jobs.patches)


def test_a_missing_input_is_a_clear_error(store: Store, tmp_path: Path) -> None:
    src = file_key(TENANT, "src", "gone.mp4")
    grants = Grants(expires_at=expires(), inputs={"in.mp4": store.grant(src, read=True)},
                    outputs=output_grants(store, ["out.mp4"]))
    obj = make_job(["-i {{in.mp4}} -c copy {{out.mp4}}"], ["out.mp4"], {"in.mp4": "src/gone.mp4"})
    code, jobs = run(obj, store, grants, tmp_path)
    assert code == exitcodes.EXIT_IO
    assert jobs.status["error"] == "input 'in.mp4': storage path src/gone.mp4 does not exist"


def test_a_failed_upload_takes_back_the_result_written_beside_it(store: Store, tmp_path: Path) -> None:
    """The result is written while the outputs upload: when an upload fails, the status must not
    keep a result whose files are not in storage."""
    store.refuse_puts = True
    grants = Grants(expires_at=expires(), outputs=output_grants(store, ["out.mp4"]))
    obj = make_job(["-f lavfi -i testsrc=d=1:s=64x48 -c:v libx264 -preset ultrafast {{out.mp4}}"], ["out.mp4"])
    code, jobs = run(obj, store, grants, tmp_path)
    assert code == exitcodes.EXIT_IO
    assert "upload failed" in jobs.status["error"] and "AccessDenied" in jobs.status["error"]
    assert "result" not in jobs.status and "usage" not in jobs.status
    assert file_key(TENANT, "out", "out.mp4") not in store.objects


def test_the_entry_points_exit_codes_are_the_contracts() -> None:
    assert (worker_main.EXIT_INVALID, worker_main.EXIT_IO, worker_main.EXIT_TERMINATED) == (
        exitcodes.EXIT_INVALID, exitcodes.EXIT_IO, exitcodes.EXIT_TERMINATED)


def test_a_job_that_fell_back_runs_its_gpu_commands_rewritten_for_the_cpu(store: Store, clip: bytes,
                                                                          tmp_path: Path) -> None:
    """FFMPEG_FALLBACK=cpu (set by the operator): the worker runs gpu.cpu_fallback_spec of the spec."""
    src = file_key(TENANT, "src", "in.mp4")
    store.objects[src] = clip
    grants = Grants(expires_at=expires(), inputs={"in.mp4": store.grant(src, read=True)},
                    outputs=output_grants(store, ["out.mp4"]))
    obj = make_job(["-hwaccel cuda -hwaccel_output_format cuda -i {{in.mp4}} -vf scale_cuda=80:60 "
                    "-c:v h264_nvenc -preset p1 -cq 30 -an {{out.mp4}}"], ["out.mp4"], {"in.mp4": "src/in.mp4"})
    code, jobs = run(obj, store, grants, tmp_path, fallback="cpu")
    assert code == 0, jobs.status.get("error")
    info = ffprobe(store.objects[file_key(TENANT, "out", "out.mp4")], tmp_path)
    assert info["streams"][0]["codec_name"] == "h264" and info["streams"][0]["width"] == 80
