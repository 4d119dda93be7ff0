"""GPU capabilities on the real stack (docs/gpu.md). The devstack's `gpu` pool is declared like an
H100: NVDEC and CUDA filters, no NVENC. A job naming an NVENC encoder there is refused, naming the
capability and the pool (400 on both REST surfaces, ValidationFailed for a kubectl-applied
FFmpegJob); the same job with `fallback: cpu` is rewritten for the CPU, runs on the cpu pool's
node with real FFmpeg, and says so (condition FellBack, status.fallback, the REST `fallback`).

No NVIDIA GPU exists on this machine: the GPU path itself (NVENC/NVDEC/scale_cuda) is not run."""

# ruff: noqa: F811 (pytest fixtures imported from the REST suite are parameters here)
from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from devstack.stack import StackInfo
from ffmpegjob_model.model import GROUP, PLURAL, VERSION
from ffmpegjob_model.storage_layout import file_key
from helpers import unique, wait_phase
from kubernetes import client
from test_api_stack import Api, api, api_url, keys, put, upload, video, wait_job  # noqa: F401

pytestmark = pytest.mark.stack
DIR = "dir_gputest"
GPU_COMMAND = ("-hwaccel cuda -hwaccel_output_format cuda -i {{in.mp4}} -vf scale_cuda=96:64 "
               "-c:v h264_nvenc -preset p4 -rc vbr -cq 28 -b:v 0 {{out.mp4}}")


def playable(data: bytes) -> dict[str, Any]:
    """The file decodes from start to end with FFmpeg; its video stream as ffprobe sees it."""
    with tempfile.NamedTemporaryFile(suffix=".mp4") as f:
        f.write(data)
        f.flush()
        subprocess.run(["ffmpeg", "-v", "error", "-xerror", "-i", f.name, "-f", "null", "-"], check=True)
        out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                              "stream=codec_name,width,height", "-of", "csv=p=0", f.name],
                             capture_output=True, text=True, check=True).stdout.strip()
    codec, width, height = out.split(",")
    return {"codec": codec, "width": int(width), "height": int(height)}


@pytest.fixture(scope="module")
def clip(stack: StackInfo, s3: Any) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "clip.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=1",
                        "-pix_fmt", "yuv420p", str(out)], check=True)
        s3.upload_file(str(out), stack.env["S3_BUCKET"], file_key("default", DIR, "clip.mp4"))
    return f"{DIR}/clip.mp4"


def manifest(name: str, source: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FFmpegJob", "metadata": {"name": name},
            "spec": {"inputs": [{"name": "in.mp4", "source": source}], "outputs": [{"name": "out.mp4"}],
                     "commands": [GPU_COMMAND], "output": {"dirId": DIR}, "timeoutSeconds": 300,
                     "machine": "gpu", **spec}}


def test_kubectl_job_is_refused_or_falls_back(stack: StackInfo, kube_api: client.ApiClient, custom: Any, s3: Any,
                                              clip: str) -> None:
    ns = stack.namespace
    refused = unique("nvenc")
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, manifest(refused, clip))
    fb = unique("nvenc-fb")
    obj = custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, manifest(fb, clip, fallback="cpu"))

    st = wait_phase(custom, ns, refused, timeout=60)["status"]
    assert (st["phase"], st["reason"]) == ("Failed", "ValidationFailed"), st
    assert "machine 'gpu' lacks" in st["message"] and "NVENC encoding of h264 (h264_nvenc" in st["message"]
    assert "fallback: cpu" in st["message"]

    st = wait_phase(custom, ns, fb)["status"]
    assert st["phase"] == "Succeeded", st
    cond = next(c for c in st["conditions"] if c["type"] == "FellBack")
    assert cond["status"] == "True" and "NVENC encoding of h264" in cond["message"]
    assert (st["fallback"]["fromMachine"], st["fallback"]["machine"]) == ("gpu", "cpu")
    assert "libx264" in st["fallback"]["commands"][0] and "cuda" not in st["fallback"]["commands"][0]
    pods = client.CoreV1Api(kube_api).list_namespaced_pod(
        ns, label_selector=f"{GROUP}/ffmpegjob-uid={obj['metadata']['uid']}").items
    assert [p.spec.node_name for p in pods if p.spec] == ["devstack-cpu"]
    body = s3.get_object(Bucket=stack.env["S3_BUCKET"], Key=file_key("default", DIR, "out.mp4"))["Body"].read()
    assert playable(body) == {"codec": "h264", "width": 96, "height": 64}


def test_vgf_surface_refuses_then_falls_back(api: Api, video: Path) -> None:
    urls = api.call("POST", "/api/tmp-file", json={"file_name": "in.mp4"}).json()["data"]
    assert put(urls["upload_url"], video) == 200
    req = {"input_files": {"in": urls["download_url"]}, "output_files": ["o.mp4"], "machine": "gpu",
           "ffmpeg_commands": ["-hwaccel cuda -i {{in}} -t 1 -c:v hevc_nvenc -preset p1 -tune ll -c:a copy {{o.mp4}}"]}
    r = api.call("POST", "/api/ffmpeg", json=req)
    assert r.status_code == 400, r.text
    assert "machine 'gpu' lacks" in r.text and "NVENC encoding of hevc" in r.text
    r = api.call("POST", "/api/ffmpeg?wait=true", json={**req, "fallback": "cpu"})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["status"] == "succeeded", data
    assert data["fallback"]["from_machine"] == "gpu" and data["fallback"]["machine"] == "cpu"
    assert any("NVENC encoding of hevc" in m for m in data["fallback"]["missing"])
    assert "libx265" in data["fallback"]["commands"][0]
    assert playable(httpx.get(data["output_files"]["o.mp4"], timeout=60).content)["codec"] == "hevc"


def test_ffmpeg_api_surface_refuses_then_falls_back(api: Api, video: Path) -> None:
    d = upload(api, video, "gpu-in.mp4")
    task = {"inputs": [{"file_path": f"{d}/gpu-in.mp4", "options": ["-hwaccel", "cuda"]}],
            "outputs": [{"file": "small.mp4", "options": ["-c:v", "av1_nvenc", "-preset", "p4", "-cq", "40", "-an"]}],
            "filter_complex": "[0:v]scale_cuda=128:96"}
    code, body = api.curl("-X", "POST", "-d", json.dumps({"task": task, "machine": "gpu"}),
                          path="/ffmpeg/process/async")
    assert code == 400, body
    assert "NVENC encoding of av1" in body["error"] and "machine 'gpu'" in body["error"]
    code, body = api.curl("-X", "POST", "-d", json.dumps(
        {"task": task, "machine": "gpu", "fallback": "cpu"}), path="/ffmpeg/process/async")
    assert code == 202, body
    done = wait_job(api, body["job_id"])
    assert done["status"] == "completed", done
    assert done["fallback"]["machine"] == "cpu" and "libsvtav1" in done["fallback"]["commands"][0]
    media = playable(httpx.get(done["result"][0]["download_url"], timeout=60).content)
    assert media == {"codec": "av1", "width": 128, "height": 96}


def test_split_job_falls_back_with_its_chunks(stack: StackInfo, kube_api: client.ApiClient, custom: Any,
                                              s3: Any) -> None:
    """spec.parallel + fallback: cpu: the chunk and stitch pods run the rewritten encode on the cpu node."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "long.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=duration=6:size=160x120:rate=10",
                        "-c:v", "libx264", "-preset", "ultrafast", "-g", "20", "-pix_fmt", "yuv420p", str(src)],
                       check=True)
        s3.upload_file(str(src), stack.env["S3_BUCKET"], file_key("default", DIR, "long.mp4"))
    ns, name = stack.namespace, unique("nvenc-split")
    body = manifest(name, f"{DIR}/long.mp4", fallback="cpu", parallel={"chunks": 2},
                    outputs=[{"name": "split.mp4"}],
                    commands=["-i {{in.mp4}} -c:v h264_nvenc -preset p1 -cq 30 {{split.mp4}}"])
    obj = custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    st = wait_phase(custom, ns, name, timeout=400)["status"]
    assert st["phase"] == "Succeeded", st
    assert st["split"]["chunks"] == 2
    assert "FellBack" in {c["type"] for c in st["conditions"]} and st["fallback"]["machine"] == "cpu"
    pods = client.CoreV1Api(kube_api).list_namespaced_pod(
        ns, label_selector=f"{GROUP}/ffmpegjob-uid={obj['metadata']['uid']}").items
    assert pods and {p.spec.node_name for p in pods if p.spec} == {"devstack-cpu"}
    out = s3.get_object(Bucket=stack.env["S3_BUCKET"], Key=file_key("default", DIR, "split.mp4"))["Body"].read()
    assert playable(out) == {"codec": "h264", "width": 160, "height": 120}
