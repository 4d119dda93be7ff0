"""Directory and pattern outputs on the real stack (issue 19.1): the 3-rung HLS ladder of
examples/hls-ladder.yaml through `kubectl apply` and through both REST surfaces, then opened
from storage with ffprobe the way a user would: every result file fetched through its presigned
download URL (or the bucket prefix copied) into a folder, ffprobe on the master playlist there,
and every relative URI of every playlist naming an uploaded object."""

from __future__ import annotations

import json
import posixpath
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from devstack.stack import StackInfo
from ffmpeg_api.keys import create_key
from helpers import api_process, kubectl, wait_phase
from kubernetes import client
from test_worker import TENANT, Jobs, worker_env

pytestmark = pytest.mark.stack
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "hls-ladder.yaml"
JOB_WAIT = 300.0


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s of 640x360 video at 24 fps with audio: two 2 s segments per rung."""
    out = tmp_path_factory.mktemp("media") / "input.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=24:duration=4",
                    "-f", "lavfi", "-i", "sine=frequency=440:duration=4", "-c:v", "libx264", "-preset",
                    "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def api_url(stack_env: dict[str, str]) -> Iterator[str]:
    with api_process(stack_env, JOB_WAIT) as url:
        yield url


@pytest.fixture(scope="module")
def key(kube_api: client.ApiClient, stack: StackInfo) -> str:
    return create_key(client.CoreV1Api(kube_api), stack.namespace, "kubeffmpeg-api-keys",
                      f"hls-{uuid.uuid4().hex[:8]}")


def example_spec() -> dict[str, Any]:
    return dict(yaml.safe_load(EXAMPLE.read_text())["spec"])


def playlist_uris(text: str) -> list[str]:
    """The URIs of an m3u8: its non-comment lines and `URI="..."` attributes (keys, maps)."""
    uris = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    for ln in text.splitlines():
        if 'URI="' in ln:
            uris.append(ln.split('URI="', 1)[1].split('"', 1)[0])
    return uris


def check_ladder(folder: Path, names: set[str], prefix: str = "hls/") -> None:
    """The ladder as a player sees it: ffprobe opens the master playlist (variants, segments
    through relative URIs), three renditions at the example's heights, and every URI of every
    playlist names an uploaded file."""
    master = folder / prefix / "master.m3u8"
    for name in [n for n in names if n.endswith(".m3u8")]:
        for uri in playlist_uris((folder / name).read_text()):
            assert "://" not in uri and not uri.startswith("/"), uri
            target = posixpath.normpath(posixpath.join(posixpath.dirname(name), uri))
            assert target in names, f"{name} names {uri}, which was not uploaded"
    out = subprocess.run(["ffprobe", "-v", "error", "-of", "json", "-show_entries",
                          "stream=codec_type,width,height", str(master)],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    streams = json.loads(out)["streams"]
    heights = sorted({s["height"] for s in streams if s["codec_type"] == "video"})
    assert heights == [360, 540, 720], streams
    assert any(s["codec_type"] == "audio" for s in streams)
    variants = [u for u in playlist_uris(master.read_text())]
    assert sorted(variants) == ["v0/index.m3u8", "v1/index.m3u8", "v2/index.m3u8"]
    assert {n for n in names if n.endswith(".ts")} >= {f"hls/v{i}/seg_000.ts" for i in range(3)}


def fetch_results(result: list[dict[str, Any]], folder: Path) -> set[str]:
    """What a user does with a result: fetch each file by its download URL into its path."""
    for r in result:
        target = folder / r["file_name"]
        target.parent.mkdir(parents=True, exist_ok=True)
        resp = httpx.get(r["download_url"], timeout=60)
        assert resp.status_code == 200, (r["file_name"], resp.status_code)
        target.write_bytes(resp.content)
        assert target.stat().st_size == r["size_bytes"] > 0
    return {r["file_name"] for r in result}


# --------------------------------------------------------------------------------- kubectl
def test_kubectl_apply_of_the_example_ladder_uploads_every_file_next_to_the_playlists(
        stack: StackInfo, stack_env: dict[str, str], kube_api: client.ApiClient, s3: Any, clip: Path,
        tmp_path: Path) -> None:
    tenant, dir_id, name = f"hls-{uuid.uuid4().hex[:6]}", f"dir_{uuid.uuid4().hex[:8]}", f"hls-{uuid.uuid4().hex[:6]}"
    bucket = stack.env["S3_BUCKET"]
    s3.upload_file(str(clip), bucket, f"files/{tenant}/{dir_id}/input.mp4")
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["metadata"] = {"name": name, "namespace": stack.namespace}
    doc["spec"].update(tenant=tenant, output={"dirId": dir_id})
    doc["spec"]["inputs"][0]["source"] = f"{dir_id}/input.mp4"
    kubectl(stack_env, "apply", "-f", "-", stdin=json.dumps(doc))
    custom = client.CustomObjectsApi(kube_api)
    obj = wait_phase(custom, stack.namespace, name, timeout=JOB_WAIT)
    st = obj["status"]
    assert st["phase"] == "Succeeded", st.get("error") or st
    result = {r["fileName"]: r for r in st["result"]}
    assert "hls/master.m3u8" in result and all(r["storagePath"] == f"{dir_id}/{n}" for n, r in result.items())
    # The prefix in storage holds exactly the listed files, with the listed sizes.
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"files/{tenant}/{dir_id}/hls/")["Contents"]
    stored = {o["Key"].split(f"{dir_id}/", 1)[1]: o["Size"] for o in listed}
    assert stored == {n: r["sizeBytes"] for n, r in result.items()}
    assert st["usage"]["outputBytes"] == sum(stored.values())
    for n in stored:  # copy the prefix to a folder, as `aws s3 cp --recursive` would
        (tmp_path / n).parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, f"files/{tenant}/{dir_id}/{n}", str(tmp_path / n))
    check_ladder(tmp_path, set(stored))


def test_kubectl_apply_refuses_bad_output_names_and_commands_leaving_their_folder(
        stack: StackInfo, stack_env: dict[str, str], kube_api: client.ApiClient) -> None:
    base = {"apiVersion": "kubeffmpeg.io/v1alpha1", "kind": "FFmpegJob",
            "spec": {"inputs": [{"name": "in", "source": "dir_x/in.mp4"}], "output": {"dirId": "dir_x"}}}
    for bad in ("../up/", "a/b/", "seg_%s.ts"):
        doc = {**base, "metadata": {"name": unique_name(), "namespace": stack.namespace},
               "spec": {**base["spec"], "outputs": [{"name": bad}], "commands": ["-i {{in}} out.mp4"]}}
        out = subprocess.run(["kubectl", "apply", "--dry-run=server", "-f", "-"], input=json.dumps(doc),
                             capture_output=True, text=True, env=stack_env, timeout=60)
        assert out.returncode != 0 and "spec.outputs[0].name" in out.stderr, (bad, out.stderr)
    name = unique_name()
    doc = {**base, "metadata": {"name": name, "namespace": stack.namespace},
           "spec": {**base["spec"], "outputs": [{"name": "hls/"}],
                    "commands": ["-i {{in}} -f hls {{hls}}/../../escape.m3u8"]}}
    kubectl(stack_env, "apply", "-f", "-", stdin=json.dumps(doc))
    st = wait_phase(client.CustomObjectsApi(kube_api), stack.namespace, name, timeout=60)["status"]
    assert st["phase"] == "Failed" and st["reason"] == "ValidationFailed" and "'..'" in st["message"], st


def unique_name() -> str:
    return f"hls-bad-{uuid.uuid4().hex[:6]}"


# ------------------------------------------------------------------------------------ REST
def test_vgf_ladder_result_lists_every_file_with_a_download_url(api_url: str, key: str, clip: Path,
                                                                 tmp_path: Path) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    tmp = httpx.post(f"{api_url}/api/tmp-file", headers=auth, timeout=30).json()["data"]
    assert httpx.put(tmp["upload_url"], content=clip.read_bytes(), timeout=60).status_code == 200
    req = json.loads((ROOT / "examples" / "hls-ladder-vgf.json").read_text())
    req["input_files"]["input.mp4"] = tmp["download_url"]
    r = httpx.post(f"{api_url}/api/ffmpeg?wait=true", headers=auth, json=req, timeout=JOB_WAIT + 30)
    assert r.status_code == 200, r.text
    job = r.json()["data"]
    assert job["status"] == "succeeded", job
    names = fetch_results(job["result"], tmp_path)
    assert set(job["output_files"]) == names and "hls/master.m3u8" in names
    assert job["total_output_bytes"] == sum(x["size_bytes"] for x in job["result"])
    check_ladder(tmp_path, names)
    # One URL for a player: ffprobe opens the master playlist over HTTP, variants and segments
    # through their relative URIs (playlists served by the API, segments redirected to storage).
    r = httpx.post(f"{api_url}/playback", headers=auth, timeout=30,
                   json={"job_id": job["id"], "file_name": "hls/master.m3u8"})
    assert r.status_code == 200, r.text
    url = r.json()["url"]
    out = subprocess.run(["ffprobe", "-v", "error", "-of", "json", "-show_entries", "stream=codec_type,height", url],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    heights = sorted({s["height"] for s in json.loads(out.stdout)["streams"] if s["codec_type"] == "video"})
    assert heights == [360, 540, 720]
    seg = httpx.get(url.replace("master.m3u8", "v2/seg_000.ts"), timeout=30, follow_redirects=True)
    assert [h.status_code for h in seg.history] == [307]
    assert seg.content == (tmp_path / "hls/v2/seg_000.ts").read_bytes()
    # The token reaches only the playlist's folder, and only as signed.
    base, _, _ = url.partition("/hls/")
    assert httpx.get(f"{base}/input.mp4", timeout=30).status_code == 404
    token = base.rsplit("/", 1)[1]
    forged = base.replace(token, token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    assert httpx.get(f"{forged}/hls/master.m3u8", timeout=30).status_code == 404


@pytest.fixture(scope="module")
def stored_input(api_url: str, key: str, clip: Path) -> str:
    """The clip as an "FFmpeg API" stored file (POST /file, then PUT); its `dir_id/file_name`."""
    reg = httpx.post(f"{api_url}/file", headers={"Authorization": f"Basic {key}"}, json={"file_name": "input.mp4"},
                     timeout=30).json()
    assert httpx.put(reg["upload"]["url"], content=clip.read_bytes(), timeout=60).status_code == 200
    return str(reg["file"]["file_path"])


def test_ffmpeg_api_folder_and_pattern_outputs(api_url: str, key: str, stored_input: str, tmp_path: Path) -> None:
    auth = {"Authorization": f"Basic {key}"}
    task = {"inputs": [{"file_path": stored_input}],
            "outputs": [
                {"file": "hls/index.m3u8", "options": ["-c:v", "libx264", "-preset", "ultrafast", "-g", "24",
                                                       "-c:a", "aac", "-f", "hls", "-hls_time", "1",
                                                       "-hls_segment_filename", "hls/seg_%03d.ts"]},
                {"file": "thumb_%02d.jpg", "options": ["-vf", "fps=1"], "maps": ["0:v"]}]}
    r = httpx.post(f"{api_url}/ffmpeg/process", headers=auth, json={"task": task}, timeout=JOB_WAIT + 30)
    assert r.status_code == 200, r.text
    body = r.json()
    names = fetch_results(body["result"], tmp_path)
    assert {f"thumb_{i:02d}.jpg" for i in range(1, 5)} <= names
    segments = sorted(n for n in names if n.startswith("hls/seg_"))
    assert "hls/index.m3u8" in names and len(segments) >= 3
    assert sorted(playlist_uris((tmp_path / "hls/index.m3u8").read_text())) == [s[4:] for s in segments]
    out = subprocess.run(["ffprobe", "-v", "error", "-of", "json", "-show_entries", "format=duration",
                          str(tmp_path / "hls/index.m3u8")], capture_output=True, text=True, check=True).stdout
    assert float(json.loads(out)["format"]["duration"]) == pytest.approx(4, abs=0.5)
    # The playlist by its storage path, played from one URL.
    index = next(x for x in body["result"] if x["file_name"] == "hls/index.m3u8")
    dir_id = stored_input.split("/")[0]
    play = httpx.post(f"{api_url}/playback", headers=auth, json={"file_path": f"{dir_id}/hls/index.m3u8"}, timeout=30)
    assert play.status_code == 200, play.text
    out = subprocess.run(["ffprobe", "-v", "error", "-of", "json", "-show_entries", "format=duration",
                          play.json()["url"]], capture_output=True, text=True, check=True, timeout=120).stdout
    assert float(json.loads(out)["format"]["duration"]) == pytest.approx(4, abs=0.5) and index["size_bytes"] > 0
    # GET /job/{id} of the async form lists the same shape.
    job_id = httpx.post(f"{api_url}/ffmpeg/process/async", headers=auth, json={"task": task}, timeout=30).json()
    deadline = time.monotonic() + JOB_WAIT
    while True:
        got = httpx.get(f"{api_url}/job/{job_id['job_id']}", headers=auth, timeout=30).json()
        if got["status"] not in ("pending", "processing") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert got["status"] == "completed" and {x["file_name"] for x in got["result"]} == names


@pytest.mark.parametrize(("task", "needle"), [
    ({"outputs": [{"file": "../hls/index.m3u8"}]}, "outputs[0].file"),
    ({"outputs": [{"file": "hls/index.m3u8", "options": ["-hls_segment_filename", "elsewhere/seg_%d.ts"]}]},
     "directory output's folder"),
])
def test_ffmpeg_api_refuses_outputs_leaving_their_folder(api_url: str, key: str, stored_input: str,
                                                         task: dict[str, Any], needle: str) -> None:
    auth = {"Authorization": f"Basic {key}"}
    task = {"inputs": [{"file_path": stored_input}], **task}
    r = httpx.post(f"{api_url}/ffmpeg/process/async", headers=auth, json={"task": task}, timeout=30)
    assert r.status_code == 400 and needle in r.json()["error"], r.text


def test_split_of_a_directory_output_is_refused_with_the_reason(api_url: str, key: str) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    req = {**json.loads((ROOT / "examples" / "hls-ladder-vgf.json").read_text()), "parallel": {"chunks": 2}}
    req["input_files"]["input.mp4"] = "https://example.com/input.mp4"
    r = httpx.post(f"{api_url}/api/ffmpeg", headers=auth, json=req, timeout=30)
    assert r.status_code == 400 and "'hls/' is a directory output" in r.text, r.text



def test_vgf_chain_reads_its_own_directory_output_and_writes_a_pattern(api_url: str, key: str, clip: Path) -> None:
    """A later command reads what an earlier one wrote into the folder (`outputs/hls/...`, the
    SDK's path style); a pattern output collects an image sequence."""
    auth = {"Authorization": f"Bearer {key}"}
    tmp = httpx.post(f"{api_url}/api/tmp-file", headers=auth, timeout=30).json()["data"]
    assert httpx.put(tmp["upload_url"], content=clip.read_bytes(), timeout=60).status_code == 200
    req = {"input_files": {"in": tmp["download_url"]}, "output_files": ["hls/", "frame_%02d.png"],
           "ffmpeg_commands": [
               "-i inputs/in -c:v libx264 -preset ultrafast -g 24 -c:a aac -f hls -hls_time 1 "
               "-hls_segment_filename outputs/hls/seg_%03d.ts outputs/hls/index.m3u8",
               "-i outputs/hls/index.m3u8 -vf fps=1,scale=64:-2 outputs/frame_%02d.png"]}
    r = httpx.post(f"{api_url}/api/ffmpeg?wait=true", headers=auth, json=req, timeout=JOB_WAIT + 30)
    assert r.status_code == 200, r.text
    job = r.json()["data"]
    assert job["status"] == "succeeded", job
    names = {x["file_name"]: x["size_bytes"] for x in job["result"]}
    assert "hls/index.m3u8" in names and {f"frame_{i:02d}.png" for i in range(1, 5)} <= set(names)
    assert all(size > 0 for size in names.values())


def test_worker_refuses_more_files_than_its_pool_allows_and_uploads_nothing(
        kube_api: client.ApiClient, stack: StackInfo, stack_env: dict[str, str], s3: Any, clip: Path,
        tmp_path: Path) -> None:
    """The bound as a pool's `env` sets it (MAX_OUTPUT_FILES), on the real worker: a clear error,
    exit 1 (no retry: the same command makes the same files), not one object written."""
    bucket, src, out = stack.env["S3_BUCKET"], f"src_{uuid.uuid4().hex[:8]}", f"out_{uuid.uuid4().hex[:8]}"
    s3.upload_file(str(clip), bucket, f"files/{TENANT}/{src}/in.mp4")
    jobs = Jobs(kube_api, stack.namespace)
    name = jobs.create({"inputs": [{"name": "in", "source": f"{src}/in.mp4"}],
                        "outputs": [{"name": "frame_%02d.png"}, {"name": "poster.png"}],
                        "commands": ["-i {{in}} -vf fps=2,scale=64:-2 {{frame_%02d.png}}",
                                     "-i {{in}} -frames:v 1 {{poster.png}}"],
                        "output": {"dirId": out}})
    try:
        env = {**worker_env(stack_env, stack.namespace, name, tmp_path), "MAX_OUTPUT_FILES": "3"}
        proc = subprocess.run([sys.executable, "-m", "ffmpeg_worker.main"], env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 1, proc.stderr
        error = jobs.status(name)["error"]
        assert "more than 3 files" in error and "MAX_OUTPUT_FILES" in error, error
        assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=f"files/{TENANT}/{out}/")
    finally:
        jobs.custom.delete_namespaced_custom_object("kubeffmpeg.io", "v1alpha1", stack.namespace, "ffmpegjobs", name)
