"""The `parallel` extension on both REST surfaces, on the real local stack: a split job submitted
over REST runs as chunks and completes with one webhook; unsplittable work is a 400 naming why.

The API runs as its own uvicorn process from this tree (as in test_api_stack.py)."""

from __future__ import annotations

import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from devstack.stack import StackInfo
from ffmpeg_api.keys import create_key
from ffmpegjob_model.model import GROUP, PLURAL, VERSION, Phase
from ffmpegjob_model.payloads import VGF_STATUS, VGF_TERMINAL
from helpers import Receiver, api_process
from kubernetes import client

pytestmark = pytest.mark.stack
WAIT = 240.0


@pytest.fixture(scope="module")
def api(stack: StackInfo, stack_env: dict[str, str], kube_api: client.ApiClient) -> Iterator[tuple[str, str]]:
    """(url, key) of an API process with a fresh tenant."""
    key = create_key(client.CoreV1Api(kube_api), stack.namespace, "kubeffmpeg-api-keys",
                     f"split-{uuid.uuid4().hex[:8]}")
    with api_process(stack_env, WAIT, log_prefix="api-split-") as url:
        yield url, key


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s with audio, a keyframe every second."""
    out = tmp_path_factory.mktemp("media") / "long.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=12",
                    "-f", "lavfi", "-i", "sine=frequency=440:duration=12", "-c:v", "libx264", "-preset",
                    "veryfast", "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(out)], check=True)
    return out


def call(api: tuple[str, str], method: str, path: str, scheme: str = "Bearer", **kw: Any) -> httpx.Response:
    url, key = api
    return httpx.request(method, f"{url}{path}", headers={"Authorization": f"{scheme} {key}"}, timeout=WAIT + 30,
                         **kw)


def upload(api: tuple[str, str], video: Path) -> str:
    reg = call(api, "POST", "/file", scheme="Basic", json={"file_name": "long.mp4"})
    assert reg.status_code == 200, reg.text
    assert httpx.put(reg.json()["upload"]["url"], content=video.read_bytes(), timeout=60).status_code == 200
    return str(reg.json()["file"]["dir_id"])


def count_frames(data: bytes) -> int:
    with tempfile.NamedTemporaryFile(suffix=".mp4") as f:
        f.write(data)
        f.flush()
        out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries",
                              "stream=nb_read_packets", "-of", "csv=p=0", f.name], capture_output=True, text=True,
                             check=True)
    return int(out.stdout.strip())


def test_ffmpeg_api_task_parallel_runs_split_and_completes(api: tuple[str, str], video: Path,
                                                          stack: StackInfo, kube_api: client.ApiClient) -> None:
    dir_id = upload(api, video)
    task = {"inputs": [{"file_path": f"{dir_id}/long.mp4"}],
            "outputs": [{"file": "split.mp4", "options": ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"]}],
            "parallel": {"chunks": 3}}
    r = call(api, "POST", "/ffmpeg/process", scheme="Basic", json={"task": task})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] and body["result"][0]["file_name"] == "split.mp4"
    data = httpx.get(body["result"][0]["download_url"], timeout=60).content
    assert count_frames(data) == 300
    # it really ran as chunks
    custom = client.CustomObjectsApi(kube_api)
    jobs = custom.list_namespaced_custom_object(GROUP, VERSION, stack.namespace, PLURAL)["items"]
    mine = [j for j in jobs if (j["spec"]["output"]["dirId"] == dir_id)]
    assert mine and mine[0]["status"]["split"]["chunks"] == 3


@pytest.fixture(scope="module")
def tmp_url(api: tuple[str, str], video: Path) -> str:
    """The clip as a VGF temporary file: its download URL."""
    tmp = call(api, "POST", "/api/tmp-file")
    assert tmp.status_code == 200, tmp.text
    assert httpx.put(tmp.json()["data"]["upload_url"], content=video.read_bytes(), timeout=60).status_code == 200
    return str(tmp.json()["data"]["download_url"])


def test_vgf_parallel_with_one_webhook(api: tuple[str, str], tmp_url: str, receiver: Receiver) -> None:
    r = call(api, "POST", "/api/ffmpeg", json={
        "input_files": {"input": tmp_url}, "output_files": ["out.mp4"],
        "ffmpeg_commands": ["-i {{input}} -c:v libx264 -preset ultrafast -c:a aac {{out.mp4}}"],
        "webhook_url": receiver.url, "parallel": {"chunks": 2}})
    assert r.status_code in (200, 201, 202), r.text
    job_id = r.json()["data"]["id"]
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        data = call(api, "GET", f"/api/ffmpeg/{job_id}").json()["data"]
        if data["status"] in VGF_TERMINAL:
            break
        time.sleep(0.5)
    assert data["status"] == VGF_STATUS[Phase.SUCCEEDED], data
    receiver.wait(1, timeout=30)
    time.sleep(2)  # a second delivery would arrive now
    assert len(receiver.posts) == 1, receiver.posts


@pytest.mark.parametrize(("command", "named"), [
    ("-i {{input}} -vf reverse {{out.mp4}}", "reverse"),
    ("-i {{input}} -t 5 {{out.mp4}}", "-t"),
    ("-i {{input}} -c:v libx264 -pass 1 {{out.mp4}}", "-pass"),
])
def test_vgf_unsplittable_is_a_400_naming_the_option(api: tuple[str, str], tmp_url: str, command: str,
                                                     named: str) -> None:
    r = call(api, "POST", "/api/ffmpeg", json={
        "input_files": {"input": tmp_url}, "output_files": ["out.mp4"],
        "ffmpeg_commands": [command], "parallel": {"chunks": 4}})
    assert r.status_code == 400, r.text
    assert "splittable" in r.text.lower() and named in r.text


def test_ffmpeg_api_unsplittable_and_malformed_parallel_are_400(api: tuple[str, str], video: Path) -> None:
    dir_id = upload(api, video)
    task = {"inputs": [{"file_path": f"{dir_id}/long.mp4"}],
            "outputs": [{"file": "o.mp4", "options": ["-vf", "fade=t=in:st=0:d=1"]}], "parallel": {"chunks": 4}}
    r = call(api, "POST", "/ffmpeg/process/async", scheme="Basic", json={"task": task})
    assert r.status_code == 400 and "fade" in r.text, r.text
    task["outputs"] = [{"file": "o.mp4"}]
    for bad in ({"chunks": 1}, {"chunks": 2, "mode": "auto"}, {"mode": "sometimes"}):
        task["parallel"] = bad
        r = call(api, "POST", "/ffmpeg/process/async", scheme="Basic", json={"task": task})
        assert r.status_code == 400, (bad, r.text)
