"""The worker on the local stack: a real FFmpegJob in the API server, real MinIO, real FFmpeg.

The FFmpegJobs are created suspended so that the operator does not start a pod of its own; the
worker runs as a subprocess with the environment a Job's pod gets: no storage credentials, only
the grants file the operator presigns for the job (and, in one test, as a real Job's pod on a
process node, with the identity and Secret the operator makes)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ffmpeg_operator.grants import Signer, job_grants
from ffmpegjob_model.grants import GRANTS_FILE, GRANTS_FILE_ENV, GRANTS_MOUNT, grants_secret_name
from ffmpegjob_model.model import GROUP, PLURAL, VERSION, FFmpegJobSpec
from ffmpegjob_model.settings import S3Settings
from kubernetes import client, watch

pytestmark = pytest.mark.stack
TENANT = "itest"


@pytest.fixture(scope="module")
def source_dir(s3: Any, stack: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 4 s test clip (testsrc + sine) stored at `<dir>/in.mp4` of the test tenant."""
    clip = tmp_path_factory.mktemp("media") / "in.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=4:size=320x240:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=440:duration=4", "-c:v", "libx264", "-preset", "ultrafast",
         "-c:a", "aac", "-shortest", str(clip)],
        check=True,
    )  # fmt: skip
    dir_id = "src_" + uuid.uuid4().hex[:8]
    s3.upload_file(str(clip), stack.env["S3_BUCKET"], f"files/{TENANT}/{dir_id}/in.mp4")
    return dir_id


class Jobs:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.ns = namespace
        self.created: list[str] = []

    def create(self, spec: dict[str, Any], suspend: bool = True) -> str:
        name = "wk-" + uuid.uuid4().hex[:10]
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "FFmpegJob",
            "metadata": {"name": name},
            "spec": {"tenant": TENANT, "suspend": suspend, **spec},
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body)
        self.created.append(name)
        return name

    def status(self, name: str) -> dict[str, Any]:
        obj: Any = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)
        return dict(obj.get("status") or {})


@pytest.fixture
def jobs(kube_api: client.ApiClient, stack: Any) -> Iterator[Jobs]:
    j = Jobs(kube_api, stack.namespace)
    yield j
    for name in j.created:
        with contextlib.suppress(client.ApiException):
            j.custom.delete_namespaced_custom_object(GROUP, VERSION, j.ns, PLURAL, name)


def grants_file(stack_env: dict[str, str], namespace: str, name: str, tmp: Path, parts: int = 4) -> Path:
    """The job's storage grants, as the operator presigns them, in a file."""
    obj: Any = client.CustomObjectsApi(_api(stack_env)).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name)
    s3 = S3Settings.model_validate({**{k[3:].lower(): v for k, v in stack_env.items() if k.startswith("S3_")},
                                    **{k: v for k, v in stack_env.items() if k.startswith("AWS_")}})
    grants = job_grants(Signer(s3), FFmpegJobSpec.model_validate(obj["spec"]), s3, 3600, parts)
    path = tmp / "grants.json"
    path.write_text(grants.dump())
    return path


def _api(stack_env: dict[str, str]) -> client.ApiClient:
    from kubernetes import config

    return config.new_client_from_config(config_file=stack_env["KUBECONFIG"])


def worker_env(stack_env: dict[str, str], namespace: str, name: str, tmp: Path) -> dict[str, str]:
    """A pod's environment: where storage is, never a credential; the grants file."""
    return {
        **{k: v for k, v in stack_env.items() if not k.startswith("AWS_")},
        "FFMPEGJOB_NAME": name,
        "FFMPEGJOB_NAMESPACE": namespace,
        "FFMPEG_WORKDIR": str(tmp / "scratch"),
        "TERMINATION_LOG_PATH": str(tmp / "termination-log"),
        GRANTS_FILE_ENV: str(grants_file(stack_env, namespace, name, tmp)),
    }


def run_worker(stack_env: dict[str, str], namespace: str, name: str, tmp: Path) -> tuple[int, str, str]:
    """Run `ffmpeg-worker` as a pod would; return (exit code, termination log, stderr)."""
    term = tmp / "termination-log"
    env = worker_env(stack_env, namespace, name, tmp)
    proc = subprocess.run(
        [sys.executable, "-m", "ffmpeg_worker.main"], env=env, capture_output=True, text=True, timeout=300
    )
    return proc.returncode, term.read_text() if term.exists() else "", proc.stderr


def objects(s3: Any, bucket: str, dir_id: str) -> dict[str, int]:
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=f"files/{TENANT}/{dir_id}/")
    return {o["Key"].rsplit("/", 1)[1]: o["Size"] for o in listing.get("Contents", [])}


def new_dir() -> str:
    return "out_" + uuid.uuid4().hex[:8]


class ProgressWatch(threading.Thread):
    """Every `status.progress` the API server stored while the worker ran."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str) -> None:
        super().__init__(daemon=True)
        self.api, self.ns, self.name = api, namespace, name
        self.seen: list[dict[str, Any]] = []
        self.w = watch.Watch()
        self.ready = threading.Event()

    def run(self) -> None:
        custom = client.CustomObjectsApi(self.api)
        self.ready.set()
        with contextlib.suppress(Exception):  # the watch ends when the test stops it
            self._watch(custom)

    def _watch(self, custom: client.CustomObjectsApi) -> None:
        for ev in self.w.stream(
            custom.list_namespaced_custom_object, GROUP, VERSION, self.ns, PLURAL,
            field_selector=f"metadata.name={self.name}", timeout_seconds=120,
        ):  # fmt: skip
            progress = (ev["object"].get("status") or {}).get("progress")
            if progress and (not self.seen or self.seen[-1] != progress):
                self.seen.append(progress)


def test_two_step_chain_uploads_declared_outputs_with_result_usage_and_progress(
    jobs: Jobs, s3: Any, stack: Any, stack_env: dict[str, str], kube_api: client.ApiClient, source_dir: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    out_dir = new_dir()
    name = jobs.create(
        {
            "inputs": [{"name": "in", "source": f"{source_dir}/in.mp4"}],
            "outputs": [{"name": "small.mp4"}, {"name": "thumb.jpg"}],
            "commands": [
                "-i {{in}} -t 2 -c copy trimmed.mp4",  # an intermediate file: used, never uploaded
                "-i trimmed.mp4 -vf scale=160:-2 -c:v libx264 -preset ultrafast {{small.mp4}} "
                "-frames:v 1 <<thumb.jpg>>",
            ],
            "output": {"dirId": out_dir},
        }
    )
    watcher = ProgressWatch(kube_api, stack.namespace, name)
    watcher.start()
    watcher.ready.wait(10)
    time.sleep(0.5)
    code, term, stderr = run_worker(stack_env, stack.namespace, name, tmp_path)
    assert code == 0, stderr
    bucket = stack.env["S3_BUCKET"]
    stored = objects(s3, bucket, out_dir)
    assert set(stored) == {"small.mp4", "thumb.jpg"}

    status = jobs.status(name)
    assert "error" not in status
    result = {r["fileName"]: r for r in status["result"]}
    assert {n: r["sizeBytes"] for n, r in result.items()} == stored
    assert result["small.mp4"]["storagePath"] == f"{out_dir}/small.mp4"
    media = result["small.mp4"]["media"]
    assert (media["width"], media["height"], media["video_codec"]) == (160, 120, "h264")
    assert media["duration"] == pytest.approx(2.0, abs=0.15)

    usage = status["usage"]
    in_size = s3.head_object(Bucket=bucket, Key=f"files/{TENANT}/{source_dir}/in.mp4")["ContentLength"]
    assert usage["inputSizeGb"] == pytest.approx(in_size / 1e9, abs=1e-6)
    assert usage["outputSizeGb"] == pytest.approx(sum(stored.values()) / 1e9, abs=1e-6)
    assert 0 < usage["timeSec"] < 60
    assert usage["gbSec"] == pytest.approx(usage["timeSec"] * (usage["inputSizeGb"] + usage["outputSizeGb"]), abs=1e-6)

    assert status["progress"] == {"step": 2, "steps": 2, "percent": 100}
    time.sleep(1)
    watcher.w.stop()
    steps_seen = {p["step"] for p in watcher.seen}
    assert {1, 2} <= steps_seen, watcher.seen
    percents = [p["percent"] for p in watcher.seen]
    assert percents == sorted(percents), watcher.seen  # progress never goes backwards
    assert term == ""


def test_structured_task_with_filter_complex_and_maps(
    jobs: Jobs, s3: Any, stack: Any, stack_env: dict[str, str], source_dir: str, tmp_path: Path
) -> None:
    out_dir = new_dir()
    name = jobs.create(
        {
            "inputs": [{"name": "in", "source": f"{source_dir}/in.mp4", "options": ["-ss", "1", "-t", "2"]}],
            "outputs": [
                {"name": "wide.mp4", "options": ["-c:v", "libx264", "-preset", "ultrafast"], "maps": ["[v]", "0:a"]},
                {"name": "audio.m4a", "options": ["-vn", "-c:a", "aac"], "maps": ["0:a"]},
            ],
            "filterComplex": "[0:v]scale=256:144[v]",
            "output": {"dirId": out_dir},
        }
    )
    code, _, stderr = run_worker(stack_env, stack.namespace, name, tmp_path)
    assert code == 0, stderr
    assert set(objects(s3, stack.env["S3_BUCKET"], out_dir)) == {"wide.mp4", "audio.m4a"}
    result = {r["fileName"]: r["media"] for r in jobs.status(name)["result"]}
    assert (result["wide.mp4"]["width"], result["wide.mp4"]["height"]) == (256, 144)
    assert result["wide.mp4"]["audio_codec"] == "aac"
    assert "video_codec" not in result["audio.m4a"]
    assert result["audio.m4a"]["duration"] == pytest.approx(2.0, abs=0.15)


def test_failing_command_gives_a_readable_error_non_zero_exit_and_uploads_nothing(
    jobs: Jobs, s3: Any, stack: Any, stack_env: dict[str, str], source_dir: str, tmp_path: Path
) -> None:
    out_dir = new_dir()
    name = jobs.create(
        {
            "inputs": [{"name": "in", "source": f"{source_dir}/in.mp4"}],
            "outputs": [{"name": "ok.mp4"}, {"name": "bad.mp4"}],
            "commands": ["-i {{in}} -t 1 {{ok.mp4}}", "-i {{in}} -vf nosuchfilter=1 {{bad.mp4}}"],
            "output": {"dirId": out_dir},
        }
    )
    code, term, _ = run_worker(stack_env, stack.namespace, name, tmp_path)
    assert code == 1
    error = jobs.status(name)["error"]
    assert error.startswith("command 2 of 2 failed with exit code")
    assert "No such filter: 'nosuchfilter'" in error
    assert term.startswith("command 2 of 2 failed") and "nosuchfilter" in term
    assert objects(s3, stack.env["S3_BUCKET"], out_dir) == {}  # not even the first step's output


def test_hostile_command_is_refused_before_anything_runs(
    jobs: Jobs, s3: Any, stack: Any, stack_env: dict[str, str], source_dir: str, tmp_path: Path
) -> None:
    out_dir = new_dir()
    name = jobs.create(
        {
            "inputs": [{"name": "in", "source": f"{source_dir}/in.mp4"}],
            "outputs": [{"name": "o.mp4"}, {"name": "leak.txt"}],
            "commands": ["-i {{in}} -t 1 {{o.mp4}}", "-f lavfi -i movie=/etc/passwd -f data {{leak.txt}}"],
            "output": {"dirId": out_dir},
        }
    )
    code, term, _ = run_worker(stack_env, stack.namespace, name, tmp_path)
    assert code == 2
    status = jobs.status(name)
    assert "command 2" in status["error"] and "absolute path" in status["error"]
    assert "progress" not in status  # nothing started: no step ran, nothing was fetched
    assert "absolute path" in term
    assert objects(s3, stack.env["S3_BUCKET"], out_dir) == {}


def test_missing_input_is_a_clear_error(
    jobs: Jobs, stack: Any, stack_env: dict[str, str], source_dir: str, tmp_path: Path
) -> None:
    name = jobs.create(
        {
            "inputs": [{"name": "in", "source": f"{source_dir}/nope.mp4"}],
            "outputs": [{"name": "o.mp4"}],
            "commands": ["-i {{in}} {{o.mp4}}"],
            "output": {"dirId": new_dir()},
        }
    )
    code, _, _ = run_worker(stack_env, stack.namespace, name, tmp_path)
    assert code == 3
    assert jobs.status(name)["error"] == f"input 'in': storage path {source_dir}/nope.mp4 does not exist"


def test_presigned_url_of_our_bucket_is_read_from_storage(
    jobs: Jobs, s3: Any, stack: Any, stack_env: dict[str, str], source_dir: str, tmp_path: Path
) -> None:
    """The local store is plain http on loopback: the worker can only succeed by recognising the
    URL and reading the object directly."""
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": stack.env["S3_BUCKET"], "Key": f"files/{TENANT}/{source_dir}/in.mp4"}
    )
    out_dir = new_dir()
    name = jobs.create(
        {
            "inputs": [{"name": "in", "source": url}],
            "outputs": [{"name": "o.mp4"}],
            "commands": ["-i {{in}} -t 1 -c copy {{o.mp4}}"],
            "output": {"dirId": out_dir},
        }
    )
    env = {k: v for k, v in stack_env.items() if not k.startswith("URL_")}  # no dev allow-list
    code, _, stderr = run_worker(env, stack.namespace, name, tmp_path)
    assert code == 0, stderr
    assert set(objects(s3, stack.env["S3_BUCKET"], out_dir)) == {"o.mp4"}


def test_worker_runs_as_a_jobs_pod_on_a_process_node(
    jobs: Jobs, s3: Any, stack: Any, kube_api: client.ApiClient, source_dir: str
) -> None:
    out_dir = new_dir()
    name = jobs.create(
        {
            "inputs": [{"name": "in", "source": f"{source_dir}/in.mp4"}],
            "outputs": [{"name": "pod.mp4"}],
            "commands": ["-i {{in}} -t 1 -vf scale=64:-2 -c:v libx264 -preset ultrafast {{pod.mp4}}"],
            "output": {"dirId": out_dir},
        }
    )
    batch = client.BatchV1Api(kube_api)
    job_name = f"{name}-pod"
    # The identity and grants the operator made for this (suspended) FFmpegJob: its own
    # ServiceAccount and Secret, named after the Job it would have created.
    uid = client.CustomObjectsApi(kube_api).get_namespaced_custom_object(
        GROUP, VERSION, stack.namespace, PLURAL, name)["metadata"]["uid"]  # type: ignore[index]
    ident = f"ffj-{uid}"
    core, deadline = client.CoreV1Api(kube_api), time.monotonic() + 60
    while True:  # made before the operator's own (suspended) Job; the pod must not come first
        try:
            core.read_namespaced_secret(grants_secret_name(ident), stack.namespace)
            break
        except client.ApiException:
            assert time.monotonic() < deadline, "the operator made no grants Secret"
            time.sleep(0.2)
    s3_env = [{"name": k, "value": stack.env[k]} for k in ("S3_ENDPOINT_URL", "S3_BUCKET", "S3_REGION")]
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": ident,
                    "nodeSelector": {"kubeffmpeg.io/pool": "cpu"},
                    "containers": [
                        {
                            "name": "worker",
                            "image": "ghcr.io/kubeffmpeg/worker:0.1.0",
                            "command": [os.path.join(os.path.dirname(sys.executable), "ffmpeg-worker")],
                            "env": [
                                {"name": "FFMPEGJOB_NAME", "value": name},
                                {"name": "FFMPEGJOB_NAMESPACE", "value": stack.namespace},
                                {"name": "FFMPEG_WORKDIR", "value": "/scratch"},
                                {"name": GRANTS_FILE_ENV, "value": f"{GRANTS_MOUNT}/{GRANTS_FILE}"},
                                *s3_env,
                            ],
                            "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"},
                                             {"name": "grants", "mountPath": GRANTS_MOUNT, "readOnly": True}],
                        }
                    ],
                    "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}},
                                {"name": "grants", "secret": {"secretName": grants_secret_name(ident)}}],
                }
            },
        },
    }
    batch.create_namespaced_job(stack.namespace, job)  # type: ignore[arg-type]  # a plain manifest
    try:
        deadline = time.monotonic() + 180
        job_status: Any = None
        while time.monotonic() < deadline:
            job_status = batch.read_namespaced_job_status(job_name, stack.namespace).status
            if job_status.succeeded or job_status.failed:
                break
            time.sleep(1)
        status = jobs.status(name)
        assert job_status is not None and job_status.succeeded == 1, status.get("error")
        assert [r["fileName"] for r in status["result"]] == ["pod.mp4"]
        assert set(objects(s3, stack.env["S3_BUCKET"], out_dir)) == {"pod.mp4"}
        assert status["usage"]["outputSizeGb"] > 0
    finally:
        batch.delete_namespaced_job(job_name, stack.namespace, propagation_policy="Background")


def test_sigterm_kills_ffmpeg_and_uploads_nothing(
    jobs: Jobs, s3: Any, stack: Any, stack_env: dict[str, str], tmp_path: Path
) -> None:
    out_dir = new_dir()
    name = jobs.create(
        {
            "outputs": [{"name": "long.mp4"}],
            "commands": ["-re -f lavfi -i testsrc=size=64x64:rate=5 -t 60 {{long.mp4}}"],
            "output": {"dirId": out_dir},
        }
    )
    env = worker_env(stack_env, stack.namespace, name, tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "ffmpeg_worker.main"], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while "progress" not in jobs.status(name) or jobs.status(name)["progress"]["step"] < 1:
        assert time.monotonic() < deadline, "the worker never started its command"
        time.sleep(0.2)
    proc.terminate()
    assert proc.wait(timeout=20) == 143
    assert jobs.status(name)["error"].startswith("terminated")
    assert objects(s3, stack.env["S3_BUCKET"], out_dir) == {}
    assert not (tmp_path / "scratch" / name).exists()  # the working folder is cleaned up


def test_a_large_output_goes_up_in_parts_of_the_granted_multipart_upload(
    jobs: Jobs, s3: Any, stack: Any, stack_env: dict[str, str], tmp_path: Path
) -> None:
    """Above 16 MiB an output is uploaded through the part URLs of the upload the operator
    initiated (the worker holds no credentials to initiate one)."""
    out_dir = new_dir()
    name = jobs.create(
        {
            "outputs": [{"name": "big.mkv"}],
            "commands": ["-f lavfi -i testsrc=size=640x360:rate=25 -t 4 -c:v rawvideo -pix_fmt yuv420p {{big.mkv}}"],
            "output": {"dirId": out_dir},
        }
    )
    code, _, stderr = run_worker(stack_env, stack.namespace, name, tmp_path)
    assert code == 0, stderr
    key = f"files/{TENANT}/{out_dir}/big.mkv"
    head = s3.head_object(Bucket=stack.env["S3_BUCKET"], Key=key)
    assert head["ContentLength"] > 32 * 1024 * 1024
    assert head["ETag"].strip('"').endswith("-3")  # three parts: 16 MiB, 16 MiB and the rest
    assert head["ContentType"] == "video/x-matroska"
    result = jobs.status(name)["result"][0]
    assert result["sizeBytes"] == head["ContentLength"]
    assert result["media"]["width"] == 640


def _stack_s3(stack_env: dict[str, str]) -> S3Settings:
    return S3Settings.model_validate({**{k[3:].lower(): v for k, v in stack_env.items() if k.startswith("S3_")},
                                      **{k: v for k, v in stack_env.items() if k.startswith("AWS_")}})


def test_a_prefix_grant_writes_under_its_prefix_and_nowhere_else(
    s3: Any, stack: Any, stack_env: dict[str, str], tmp_path: Path
) -> None:
    """The POST policy for names not known in advance (scratch objects, chunk segments)."""
    from ffmpeg_worker import storage

    prefix = f"scratch/{TENANT}/{uuid.uuid4().hex}/"
    grant = Signer(_stack_s3(stack_env)).post_policy(prefix, 600, max_bytes=1 << 20)
    seg = tmp_path / "seg-0.ts"
    seg.write_bytes(os.urandom(100_000))
    key = storage.upload_under_prefix(grant, "seg-0.ts", seg)
    assert key == prefix + "seg-0.ts"
    assert s3.get_object(Bucket=stack.env["S3_BUCKET"], Key=key)["Body"].read() == seg.read_bytes()
    outside = grant.model_copy(update={"prefix": f"files/{TENANT}/"})
    with pytest.raises(storage.StorageError) as refused:
        storage.upload_under_prefix(outside, "evil.mp4", seg)
    assert refused.value.status == 403
    big = grant.model_copy(update={"max_bytes": 10 << 20})
    seg.write_bytes(os.urandom(2 << 20))  # over the signed content-length-range
    with pytest.raises(storage.StorageError):
        storage.upload_under_prefix(big, "seg-1.ts", seg)


def test_an_upload_whose_multipart_upload_is_gone_falls_back_to_one_put(
    s3: Any, stack: Any, stack_env: dict[str, str], tmp_path: Path
) -> None:
    """A retried pod finds the upload its predecessor left aborted: one PUT (<= 5 GiB) instead."""
    from ffmpeg_operator.grants import Write, presign_grants
    from ffmpeg_worker import storage

    signer = Signer(_stack_s3(stack_env))
    key = f"files/{TENANT}/{new_dir()}/big.bin"
    grant = presign_grants(signer, {}, {"big.bin": Write(key, parts=2)}, 600)["big.bin"]
    assert grant.multipart is not None and signer.abort(key, grant.multipart.upload_id)
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(17 << 20))
    assert storage.upload(grant, path) == 17 << 20
    head = s3.head_object(Bucket=stack.env["S3_BUCKET"], Key=key)
    assert head["ContentLength"] == 17 << 20 and "-" not in head["ETag"]
