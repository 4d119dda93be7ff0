"""Split-and-stitch on the real local stack with real FFmpeg: a split encode gives the single-pod
encode's output (frame count, duration, audio, PSNR at the seams), a killed chunk pod is retried
alone, cancel leaves no pod and no scratch object, unsplittable work is refused with the reason.

The fast tests use a 20 s 640x360 clip; `test_issue_spec_60s_1080p_in_4_chunks` runs the issue's
own figures (60 s of 1080p with audio, 4 chunks) and is marked `slow` (it still runs in make test).
"""

from __future__ import annotations

import array
import functools
import re
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helpers
import pytest
from devstack.stack import StackInfo
from ffmpegjob_model.grants import grants_secret_name
from ffmpegjob_model.model import GROUP, PLURAL, VERSION
from ffmpegjob_model.storage_layout import file_key
from helpers import get_ffmpegjob, unique, wait_for
from kubernetes import client

pytestmark = pytest.mark.stack
DIR = "dir_splittest"
ENCODE = "-c:v libx264 -preset ultrafast -crf 23 -c:a aac -b:a 128k"


# ------------------------------------------------------------------------------------- helpers
def make_clip(path: Path, seconds: int, size: str, rate: int = 30, preset: str = "veryfast") -> None:
    """Moving test pattern plus a sine tone; keyframe every 2 s, with B-frames (veryfast)."""
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=duration={seconds}:size={size}:rate={rate}",
         "-f", "lavfi", "-i", f"sine=frequency=440:beep_factor=4:duration={seconds}",
         "-c:v", "libx264", "-preset", preset, "-g", str(2 * rate), "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "128k", "-shortest", str(path)], check=True)


@pytest.fixture(scope="module")
def clip(stack: StackInfo, s3: Any) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "clip.mp4"
        make_clip(out, 20, "640x360")
        s3.upload_file(str(out), stack.env["S3_BUCKET"], file_key("default", DIR, "clip.mp4"))
    return f"{DIR}/clip.mp4"


def manifest(name: str, source: str, out: str, command: str, parallel: dict[str, Any] | None,
             **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "FFmpegJob", "metadata": {"name": name},
        "spec": {"inputs": [{"name": "in", "source": source}], "outputs": [{"name": out}],
                 "commands": [command], "output": {"dirId": DIR}, "timeoutSeconds": 900, **spec},
    }
    if parallel is not None:
        body["spec"]["parallel"] = parallel
    return body


def create(custom: client.CustomObjectsApi, ns: str, body: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    return obj


# A split encode on this loaded machine may take minutes.
wait_phase = functools.partial(helpers.wait_phase, timeout=600)


def pods_of(kube_api: client.ApiClient, ns: str, uid: str) -> list[Any]:
    sel = f"{GROUP}/ffmpegjob-uid={uid}"
    return list(client.CoreV1Api(kube_api).list_namespaced_pod(ns, label_selector=sel).items)


def scratch_keys(s3: Any, bucket: str, uid: str) -> list[str]:
    resp = s3.list_objects_v2(Bucket=bucket, Prefix="scratch/")
    return [o["Key"] for o in resp.get("Contents", []) if f"/{uid}/" in o["Key"]]


def frames(path: Path) -> int:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries",
                          "stream=nb_read_packets", "-of", "csv=p=0", str(path)], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.strip())


def duration(path: Path, stream: str) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", stream, "-show_entries", "stream=duration",
                          "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def psnr_per_frame(a: Path, b: Path, workdir: Path) -> list[float]:
    log = workdir / f"psnr-{uuid.uuid4().hex[:6]}.log"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(a), "-i", str(b), "-lavfi",
                    f"[0:v][1:v]psnr=stats_file={log.name}", "-f", "null", "-"], check=True, cwd=workdir)
    values = []
    for line in log.read_text().splitlines():
        m = re.search(r"psnr_avg:(\S+)", line)
        assert m, line
        values.append(float("inf") if m.group(1) == "inf" else float(m.group(1)))
    return values


def pcm(path: Path) -> array.array[int]:
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "s16le", "-ac", "1",
                          "-"], capture_output=True, check=True)
    samples = array.array("h")
    samples.frombytes(out.stdout)
    return samples


def download(s3: Any, bucket: str, name: str, dest: Path) -> Path:
    s3.download_file(bucket, file_key("default", DIR, name), str(dest))
    return dest


def compare_to_single_pod(single: Path, split: Path, st: dict[str, Any], workdir: Path) -> dict[str, float]:
    """The issue's checks; returns the figures."""
    n_single, n_split = frames(single), frames(split)
    assert n_split == n_single, f"frame count {n_split} != single-pod {n_single}"
    fps = n_single / duration(single, "v:0")
    assert abs(duration(split, "v:0") - duration(single, "v:0")) <= 1 / fps
    # audio: encoded once over the whole input with the same options, so the same samples
    a, b = pcm(single), pcm(split)
    assert len(a) == len(b), f"audio samples {len(b)} != single-pod {len(a)}"
    worst_audio = max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0)
    assert worst_audio <= 1, f"audio differs from the single-pod encode by up to {worst_audio}"
    psnr = psnr_per_frame(split, single, workdir)
    assert len(psnr) == n_single
    finite = [p if p != float("inf") else 100.0 for p in psnr]
    average = sum(finite) / len(finite)
    assert average > 40, f"average PSNR {average:.1f} dB"
    seams = []
    first = 0
    for ch in st["chunks"][:-1]:
        first += int(ch["frames"])
        seams += [first - 1, first]  # the last frame of a chunk and the first of the next
    seam_psnr = [finite[i] for i in seams]
    assert min(seam_psnr) > 35, f"PSNR at the seams {seam_psnr}"
    return {"frames": n_split, "psnr_avg": round(average, 2), "psnr_seam_min": round(min(seam_psnr), 2),
            "psnr_min": round(min(finite), 2)}


def _gone(call: Any) -> bool:
    try:
        call()
        return False
    except client.ApiException as e:
        return e.status == 404


def assert_no_credentials_and_identity_released(kube_api: client.ApiClient, ns: str, uid: str, identity: str,
                                               chunks: int) -> None:
    """Chunk and stitch pods ran as the job's own ServiceAccount, with its grants Secret and no
    storage credentials; the identity and the grants are gone once the graph ended."""
    core = client.CoreV1Api(kube_api)
    pods = pods_of(kube_api, ns, uid)
    roles = {p.metadata.labels.get(f"{GROUP}/split-role") for p in pods}
    assert len(pods) >= chunks + 1 and {"chunk", "stitch"} <= roles, [(p.metadata.name, roles) for p in pods]
    for pod in pods:
        assert pod.spec.service_account_name == identity
        c = pod.spec.containers[0]
        assert not c.env_from, f"{pod.metadata.name} has envFrom {c.env_from}"
        names = {e.name for e in c.env or []}
        assert not {n for n in names if n.startswith("AWS_") or "SECRET" in n}, names
        secrets = {v.secret.secret_name for v in pod.spec.volumes if v.secret}
        assert secrets == {grants_secret_name(identity)}, secrets
    wait_for(lambda: _gone(lambda: core.read_namespaced_secret(grants_secret_name(identity), ns))
             and _gone(lambda: core.read_namespaced_service_account(identity, ns)), 30,
             "identity and grants released")


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def run_pair(stack: StackInfo, custom: Any, kube_api: Any, s3: Any, source: str, encode: str, chunks: int,
             workdir: Path, timeout: float = 600) -> tuple[dict[str, Any], dict[str, float]]:
    """The same encode single-pod and split into `chunks`, one after the other (2 cores)."""
    ns, bucket = stack.namespace, stack.env["S3_BUCKET"]
    tag = uuid.uuid4().hex[:6]
    single_name, split_name = f"single-{tag}.mp4", f"split-{tag}.mp4"
    single = create(custom, ns, manifest(unique("single"), source, single_name,
                                         f"-i {{{{in}}}} {encode} {{{{{single_name}}}}}", None))
    done = wait_phase(custom, ns, single["metadata"]["name"], timeout=timeout)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    job = create(custom, ns, manifest(unique("split"), source, split_name,
                                      f"-i {{{{in}}}} {encode} {{{{{split_name}}}}}", {"chunks": chunks}))
    done = wait_phase(custom, ns, job["metadata"]["name"], timeout=timeout)
    st = done["status"]
    assert st["phase"] == "Succeeded", st
    assert st["split"]["chunks"] == chunks and len(st["chunks"]) == chunks
    assert all(c["phase"] == "Succeeded" and c["attempts"] == 1 for c in st["chunks"]), st["chunks"]
    assert sum(c["frames"] for c in st["chunkRanges"]) == st["split"]["frames"]
    assert st["progress"]["percent"] == 100
    assert st["result"][0]["fileName"] == split_name
    assert st["usage"]["timeSec"] > 0
    assert {c["type"] for c in st["conditions"]} >= {"Split", "Succeeded"}
    # every chunk's FFmpeg time plus the stitch's
    reports = st["chunkReports"]
    assert st["usage"]["timeSec"] == pytest.approx(sum(r["timeSec"] for r in reports.values()), abs=0.01)
    uid = job["metadata"]["uid"]
    wait_for(lambda: not scratch_keys(s3, bucket, uid), 30, "scratch segments deleted")
    assert_no_credentials_and_identity_released(kube_api, ns, uid, st["jobName"], chunks)
    figures = compare_to_single_pod(download(s3, bucket, single_name, workdir / "single.mp4"),
                                    download(s3, bucket, split_name, workdir / "split.mp4"), st, workdir)
    return st, figures


# --------------------------------------------------------------------------------------- tests
def test_split_output_matches_the_single_pod_encode(stack: StackInfo, custom: Any, kube_api: Any, s3: Any,
                                                    clip: str, workdir: Path) -> None:
    _, figures = run_pair(stack, custom, kube_api, s3, clip, ENCODE, 4, workdir)
    print("split vs single-pod, 20 s 640x360, 4 chunks:", figures)
    assert figures["frames"] == 600


@pytest.mark.slow
def test_issue_spec_60s_1080p_in_4_chunks(stack: StackInfo, custom: Any, kube_api: Any, s3: Any,
                                          workdir: Path) -> None:
    """The issue's own clip: 60 s of moving 1080p with a tone, 4 chunks, ultrafast for CI time."""
    src = workdir / "long.mp4"
    make_clip(src, 60, "1920x1080", preset="ultrafast")
    s3.upload_file(str(src), stack.env["S3_BUCKET"], file_key("default", DIR, "long1080.mp4"))
    _, figures = run_pair(stack, custom, kube_api, s3, f"{DIR}/long1080.mp4", ENCODE, 4, workdir, timeout=900)
    print("split vs single-pod, 60 s 1920x1080, 4 chunks:", figures)
    assert figures["frames"] == 1800


def _running_chunk(kube_api: Any, ns: str, uid: str, index: int) -> Any:
    for p in pods_of(kube_api, ns, uid):
        ann = p.metadata.annotations or {}
        if ann.get("batch.kubernetes.io/job-completion-index") == str(index) and p.status.phase == "Running":
            return p
    return None


SLOW_ENCODE = "-c:v libx264 -preset slow -threads 1 -c:a aac"


def test_killed_chunk_pod_is_retried_alone(stack: StackInfo, custom: Any, kube_api: Any, s3: Any,
                                           clip: str, workdir: Path) -> None:
    ns = stack.namespace
    command = f"-i {{{{in}}}} {SLOW_ENCODE} {{{{killed.mp4}}}}"
    job = create(custom, ns, manifest(unique("kill"), clip, "killed.mp4", command, {"chunks": 2}))
    uid = job["metadata"]["uid"]

    def encoding() -> Any:
        obj = get_ffmpegjob(custom, ns, job["metadata"]["name"])
        report = ((obj.get("status") or {}).get("chunkReports") or {}).get("1") or {}
        return _running_chunk(kube_api, ns, uid, 1) if 0 < float(report.get("percent") or 0) < 80 else None

    victim = wait_for(encoding, 300, "chunk 1 encoding")
    client.CoreV1Api(kube_api).delete_namespaced_pod(victim.metadata.name, ns)
    done = wait_phase(custom, ns, job["metadata"]["name"])
    st = done["status"]
    assert st["phase"] == "Succeeded", st
    attempts = {c["index"]: c["attempts"] for c in st["chunks"]}
    assert attempts[1] >= 2 and attempts[0] == 1, attempts
    out = download(s3, stack.env["S3_BUCKET"], "killed.mp4", workdir / "killed.mp4")
    assert frames(out) == 600
    wait_for(lambda: not scratch_keys(s3, stack.env["S3_BUCKET"], uid), 30, "scratch segments deleted")


def test_cancel_mid_run_leaves_no_pod_and_no_scratch(stack: StackInfo, custom: Any, kube_api: Any, s3: Any,
                                                    clip: str) -> None:
    ns, bucket = stack.namespace, stack.env["S3_BUCKET"]
    name = unique("cancel")
    job = create(custom, ns, manifest(name, clip, "cancelled.mp4", f"-i {{{{in}}}} {SLOW_ENCODE} {{{{cancelled.mp4}}}}",
                                      {"chunks": 4}))
    uid = job["metadata"]["uid"]
    # wait until a segment exists in scratch (a chunk finished) or chunks are running
    wait_for(lambda: scratch_keys(s3, bucket, uid) or _running_chunk(kube_api, ns, uid, 0), 300, "chunks running")
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, {"spec": {"cancel": True}})
    done = wait_phase(custom, ns, name)
    assert done["status"]["phase"] == "Cancelled"
    wait_for(lambda: not pods_of(kube_api, ns, uid), 60, "every pod gone")
    wait_for(lambda: not scratch_keys(s3, bucket, uid), 30, "scratch segments deleted")
    time.sleep(2)  # a chunk pod that was uploading as it was killed must not leave one behind either
    assert not scratch_keys(s3, bucket, uid)


def test_a_chunk_that_ffmpeg_refuses_fails_the_job_without_retries(stack: StackInfo, custom: Any, kube_api: Any,
                                                                   s3: Any, clip: str) -> None:
    ns, name = stack.namespace, unique("badopt")
    job = create(custom, ns, manifest(name, clip, "bad.mp4", "-i {{in}} -c:v libx264 -preset nosuchpreset {{bad.mp4}}",
                                      {"chunks": 2}))
    st = wait_phase(custom, ns, name, timeout=120)["status"]
    assert st["phase"] == "Failed", st
    assert "chunk" in st["message"] and "nosuchpreset" in st["error"], st
    assert all(c["attempts"] <= 1 for c in st["chunks"]), st["chunks"]  # FFmpeg's refusal is not retried
    wait_for(lambda: not [p for p in pods_of(kube_api, ns, job["metadata"]["uid"])
                          if p.status.phase in ("Pending", "Running")], 60, "no pod left running")
    assert not scratch_keys(s3, stack.env["S3_BUCKET"], job["metadata"]["uid"])


@pytest.mark.parametrize(("command", "named"), [
    ("-i {{in}} -vf reverse {{out.mp4}}", "reverse"),
    ("-i {{in}} -ss 5 -c:v libx264 {{out.mp4}}", "-ss"),
])
def test_unsplittable_job_fails_with_the_reason(stack: StackInfo, custom: Any, clip: str, command: str,
                                                named: str) -> None:
    ns, name = stack.namespace, unique("nosplit")
    create(custom, ns, manifest(name, clip, "out.mp4", command, {"chunks": 4}))
    st = wait_phase(custom, ns, name, timeout=60)["status"]
    assert st["phase"] == "Failed" and st["reason"] == "NotSplittable", st
    assert named in st["message"]


def test_auto_mode_runs_single_pod_and_says_why(stack: StackInfo, custom: Any, clip: str) -> None:
    ns = stack.namespace
    short = unique("auto")
    create(custom, ns, manifest(short, clip, "auto.mp4", f"-i {{{{in}}}} {ENCODE} {{{{auto.mp4}}}}", {"mode": "auto"}))
    unsplittable = unique("autorev")
    create(custom, ns, manifest(unsplittable, clip, "autorev.mp4", "-i {{in}} -vf reverse {{autorev.mp4}}",
                                {"mode": "auto"}))
    for name, reason in ((short, "ShortInput"), (unsplittable, "NotSplittable")):
        st = wait_phase(custom, ns, name)["status"]
        assert st["phase"] == "Succeeded", st
        cond = next(c for c in st["conditions"] if c["type"] == "Split")
        assert cond["status"] == "False" and cond["reason"] == reason, cond
        assert "split" not in st


@pytest.fixture
def auto_pool(stack: StackInfo, kube_api: Any) -> Iterator[str]:
    """A pool like cpu whose `mode: auto` splits anything longer than 5 s, at most 3 chunks."""
    import yaml

    core = client.CoreV1Api(kube_api)
    name = "splitauto"

    def set_pool(present: bool) -> None:
        cm = core.read_namespaced_config_map("kubeffmpeg-pools", stack.namespace)
        pools = yaml.safe_load(cm.data["pools.yaml"])
        if present:
            pools[name] = {**pools["cpu"], "splitThresholdSeconds": 5, "maxParallelChunks": 3, "minChunkSeconds": 4}
        else:
            pools.pop(name, None)
        core.patch_namespaced_config_map("kubeffmpeg-pools", stack.namespace,
                                         {"data": {"pools.yaml": yaml.safe_dump(pools)}})

    set_pool(True)
    time.sleep(6)  # the operator re-reads the pools every 5 s
    yield name
    set_pool(False)


def test_auto_mode_and_chunk_seconds_size_the_split(stack: StackInfo, custom: Any, clip: str,
                                                    auto_pool: str) -> None:
    ns = stack.namespace
    auto, by_length = unique("autolong"), unique("chunksecs")
    create(custom, ns, manifest(auto, clip, "autolong.mp4", f"-i {{{{in}}}} {ENCODE} {{{{autolong.mp4}}}}",
                                {"mode": "auto"}, machine=auto_pool))
    create(custom, ns, manifest(by_length, clip, "chunksecs.mp4", f"-i {{{{in}}}} {ENCODE} {{{{chunksecs.mp4}}}}",
                                {"chunkSeconds": 8}))
    st = wait_phase(custom, ns, auto)["status"]
    assert st["phase"] == "Succeeded", st
    assert st["split"]["chunks"] == 3 and st["split"]["parallelism"] == 3  # the pool's maxParallelChunks
    st = wait_phase(custom, ns, by_length)["status"]
    assert st["phase"] == "Succeeded", st
    assert st["split"]["chunks"] == 3  # ceil(20 s / 8 s), cut at the 2 s keyframes


def test_crd_refuses_a_malformed_parallel_section(stack: StackInfo, custom: Any, clip: str) -> None:
    for bad in ({"chunks": 1}, {"chunks": 300}, {"chunks": 4, "mode": "auto"}, {}):
        with pytest.raises(client.ApiException) as err:
            create(custom, stack.namespace, manifest(unique("bad"), clip, "o.mp4", "-i {{in}} {{o.mp4}}", bad))
        assert err.value.status == 422
