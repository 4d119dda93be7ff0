"""Large files on the real stack (docs/large-files.md): multipart uploads over REST on both
surfaces, a job reading the file, the worker's multipart output, resume, abort, tenant isolation,
the single-PUT limit, and the scratch check.

The API runs as a process of this module's own with a single-PUT limit of 10 MiB and 5 MiB parts
(S3's smallest), so a file of a few tens of MB stands in for one over S3's 5 GiB."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from devstack.stack import StackInfo
from ffmpeg_api.keys import create_key
from ffmpegjob_model.multipart import PartPlan
from ffmpegjob_model.storage_layout import file_key
from helpers import api_process, wait_for
from kubernetes import client
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from test_dashboard import browser, sign_in, text_of, visible, wait_until  # noqa: F401 (a fixture)

pytestmark = pytest.mark.stack
MiB = 1024**2
LIMIT = 10 * MiB  # the single-PUT limit of this module's API
PART = 5 * MiB
JOB_WAIT = 240.0


class Client:
    """What a user's program does: JSON calls with its key, part PUTs straight to storage."""

    def __init__(self, url: str, key: str, tenant: str) -> None:
        self.url, self.key, self.tenant = url, key, tenant

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, f"{self.url}{path}", headers={"Authorization": f"Bearer {self.key}"},
                             timeout=JOB_WAIT + 30, **kw)

    def put_parts(self, path: Path, part_size: int, urls: dict[int, str], workers: int = 4) -> dict[int, str]:
        """PUT the given parts of `path` in parallel; part number -> the ETag storage answered."""
        plan = PartPlan(path.stat().st_size, part_size)

        def one(n: int) -> tuple[int, str]:
            offset, length = plan.part_range(n)
            with open(path, "rb") as f:
                f.seek(offset)
                body = f.read(length)
            r = httpx.put(urls[n], content=body, timeout=120)
            assert r.status_code == 200, r.text
            return n, r.headers["ETag"]

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return dict(pool.map(one, sorted(urls)))


@pytest.fixture(scope="module")
def api_url(stack_env: dict[str, str]) -> Iterator[str]:
    env = {**stack_env, "SINGLE_PUT_MAX_BYTES": str(LIMIT), "MULTIPART_PART_BYTES": str(PART),
           "POOLS_CACHE_SECONDS": "1"}
    with api_process(env, JOB_WAIT, log_prefix="api-large-") as url:
        yield url


@pytest.fixture(scope="module")
def new_client(api_url: str, kube_api: client.ApiClient, stack: StackInfo) -> Callable[[], Client]:
    core = client.CoreV1Api(kube_api)

    def make() -> Client:
        tenant = f"big-{uuid.uuid4().hex[:8]}"
        return Client(api_url, create_key(core, stack.namespace, "kubeffmpeg-api-keys", tenant), tenant)

    return make


@pytest.fixture(scope="module")
def user(new_client: Callable[[], Client]) -> Client:
    return new_client()


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~27 MB of uncompressed video in Matroska (quick to make, over the limit, 6 parts of 5 MiB)."""
    out = tmp_path_factory.mktemp("large") / "master.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=10:duration=24",
                    "-c:v", "rawvideo", "-pix_fmt", "yuv420p", str(out)], check=True)
    assert 2 * LIMIT < out.stat().st_size < 40 * MiB
    return out


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def framemd5(path_or_url: str) -> list[str]:
    """The per-frame hashes of the video (identical when frames were copied, whatever the muxer did)."""
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", path_or_url, "-map", "0:v", "-c", "copy", "-f", "framemd5",
                          "-"], capture_output=True, text=True, check=True).stdout
    return [line.rsplit(",", 1)[-1].strip() for line in out.splitlines() if line and not line.startswith("#")]


def etag_parts(s3: Any, bucket: str, key: str) -> int:
    """How many parts an object was uploaded in (S3's ETag of a multipart object ends in -N)."""
    etag = s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    return int(etag.rsplit("-", 1)[1]) if "-" in etag else 1


# ------------------------------------------------------------------------------ the whole path
def test_a_file_over_the_single_put_limit_goes_through_the_whole_path(user: Client, big: Path, s3: Any,
                                                                      stack: StackInfo,
                                                                      kube_api: client.ApiClient) -> None:
    size = big.stat().st_size
    # The single-PUT flow refuses it, saying what to do instead.
    r = user.call("POST", "/file", json={"file_name": "master.mkv", "file_size": size})
    assert r.status_code == 400 and "multipart upload (POST /uploads" in r.json()["error"], r.text
    assert str(LIMIT) in r.json()["error"]

    # Initiate: upload id, part size and count, every part's presigned URL.
    r = user.call("POST", "/uploads", json={"file_name": "master.mkv", "file_size": size, "part_size": PART})
    assert r.status_code == 200, r.text
    up = r.json()["upload"]
    count = -(-size // PART)
    assert up["part_size"] == PART and up["part_count"] == count == len(up["parts"])
    # Parts go straight to storage, four at a time.
    etags = user.put_parts(big, PART, {p["part_number"]: p["url"] for p in up["parts"]})
    r = user.call("POST", f"/uploads/{up['upload_id']}/complete",
                  json={"parts": [{"part_number": n, "etag": e} for n, e in sorted(etags.items())]})
    assert r.status_code == 200, r.text
    done = r.json()["file"]
    assert done["file_size"] == size and done["file_path"] == f"{up['dir_id']}/master.mkv"
    # It is an ordinary stored file now: listed, downloadable, byte for byte; the upload is gone.
    info = user.call("GET", f"/file/{done['file_path']}").json()["file_info"]
    assert info["file_size"] == size
    dl = user.call("GET", f"/file/download/{done['file_path']}").json()["download"]["url"]
    assert sha256(httpx.get(dl, timeout=60).content) == sha256(big.read_bytes())
    assert user.call("GET", f"/uploads/{up['upload_id']}").status_code == 404

    # A job reads it and writes an output over the worker's multipart threshold (16 MiB).
    task = {"task": {"inputs": [{"file_path": done["file_path"]}],
                     "outputs": [{"file": "copy.mkv", "options": ["-c", "copy"]}]}}
    r = user.call("POST", "/ffmpeg/process", json=task)
    assert r.status_code == 200, r.text
    (out,) = r.json()["result"]
    assert out["size_bytes"] > 16 * MiB
    # The worker uploaded it in parts, concurrently (S3's ETag of a multipart object: "<md5>-N").
    ffj: Any = client.CustomObjectsApi(kube_api).get_namespaced_custom_object(
        "kubeffmpeg.io", "v1alpha1", stack.namespace, "ffmpegjobs", r.json()["job_id"])
    key = file_key(ffj["spec"]["tenant"], *ffj["status"]["result"][0]["storagePath"].split("/"))
    assert etag_parts(s3, stack.env["S3_BUCKET"], key) >= 2
    # Download and verify: the frames are the master's, bit for bit.
    data = httpx.get(out["download_url"], timeout=60).content
    assert len(data) == out["size_bytes"]
    local = big.parent / "copy.mkv"
    local.write_bytes(data)
    frames = framemd5(str(local))
    assert len(frames) == 240 and frames == framemd5(str(big))


# ---------------------------------------------------------------------- resume, abort, isolation
def test_vgf_upload_resumes_from_the_listed_parts_and_a_job_reads_it(user: Client, big: Path) -> None:
    size = big.stat().st_size
    r = user.call("POST", "/api/tmp-file", json={"file_name": "master.mkv", "file_size": size})
    assert r.status_code == 400 and "/api/uploads" in r.json()["message"], r.text

    r = user.call("POST", "/api/uploads", json={"file_name": "master.mkv", "file_size": size})
    assert r.status_code == 200, r.text
    up = r.json()["data"]
    assert up["part_size"] == PART  # the server's default here (MULTIPART_PART_BYTES)
    urls = {p["part_number"]: p["url"] for p in up["parts"]}
    # A client uploads three parts and stops.
    first = user.put_parts(big, PART, {n: urls[n] for n in (1, 2, 4)})
    # Later (with fresh URLs) it asks what storage holds ...
    r = user.call("GET", f"/api/uploads/{up['upload_id']}")
    assert r.status_code == 200, r.text
    state = r.json()["data"]
    assert [(p["part_number"], p["etag"], p["size"]) for p in state["uploaded_parts"]] == [
        (n, first[n], PART) for n in (1, 2, 4)]
    missing = state["missing_parts"]
    assert missing == [n for n in range(1, up["part_count"] + 1) if n not in (1, 2, 4)]
    # ... completing now is refused with what is missing ...
    r = user.call("POST", f"/api/uploads/{up['upload_id']}/complete")
    assert r.status_code == 400 and "missing parts 3, 5-6" in r.json()["message"], r.text
    # ... and uploads the rest, then completes without listing ETags (storage's list is used).
    fresh = user.call("POST", f"/api/uploads/{up['upload_id']}/urls", json={"part_numbers": missing})
    assert fresh.status_code == 200, fresh.text
    user.put_parts(big, PART, {p["part_number"]: p["url"] for p in fresh.json()["data"]["parts"]})
    r = user.call("POST", f"/api/uploads/{up['upload_id']}/complete")
    assert r.status_code == 200, r.text
    done = r.json()["data"]
    assert done["file_size"] == size
    assert sha256(httpx.get(done["download_url"], timeout=60).content) == sha256(big.read_bytes())

    # The download_url is a job input, as a tmp-file's is.
    req = {"input_files": {"in": done["download_url"]}, "output_files": ["first.mkv"],
           "ffmpeg_commands": ["-i {{in}} -t 2 -c copy {{first.mkv}}"]}
    r = user.call("POST", "/api/ffmpeg?wait=true", json=req)
    assert r.status_code == 200, r.text
    job = r.json()["data"]
    assert job["status"] == "succeeded", job
    (res,) = job["result"]
    assert len(framemd5(res["download_url"])) == 20


def test_abort_deletes_the_parts(user: Client, big: Path, s3: Any, stack: StackInfo) -> None:
    r = user.call("POST", "/uploads", json={"file_name": "dropped.mkv", "file_size": big.stat().st_size})
    assert r.status_code == 200, r.text
    up = r.json()["upload"]
    user.put_parts(big, PART, {1: up["parts"][0]["url"]})
    bucket = stack.env["S3_BUCKET"]

    def open_uploads() -> list[str]:
        key = file_key(user.tenant, up["dir_id"], "dropped.mkv")
        return [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket, Prefix=key).get("Uploads", [])]

    assert open_uploads()
    r = user.call("DELETE", f"/uploads/{up['upload_id']}")
    assert r.status_code == 200 and r.json() == {"ok": True, "upload_id": up["upload_id"], "aborted": True}
    assert open_uploads() == []
    for method, path in (("GET", ""), ("POST", "/complete"), ("DELETE", "")):
        assert user.call(method, f"/uploads/{up['upload_id']}{path}").status_code == 404
    # The late part PUT is refused by storage: the upload no longer exists.
    assert httpx.put(up["parts"][1]["url"], content=b"x" * 10, timeout=30).status_code == 404
    assert user.call("GET", f"/file/{up['dir_id']}/dropped.mkv").status_code == 404


def test_another_tenants_upload_is_not_found(user: Client, new_client: Callable[[], Client], big: Path) -> None:
    r = user.call("POST", "/uploads", json={"file_name": "mine.mkv", "file_size": big.stat().st_size})
    upload_id = r.json()["upload"]["upload_id"]
    other = new_client()
    for surface in ("/uploads", "/api/uploads"):
        for method, path, body in (("GET", "", None), ("POST", "/urls", {"part_numbers": [1]}),
                                   ("POST", "/complete", None), ("DELETE", "", None)):
            got = other.call(method, f"{surface}/{upload_id}{path}", json=body)
            assert got.status_code == 404, (surface, method, path, got.text)
    assert user.call("GET", f"/uploads/{upload_id}").status_code == 200  # still there, untouched
    assert user.call("DELETE", f"/uploads/{upload_id}").status_code == 200


def test_bad_requests_are_400s(user: Client) -> None:
    r = user.call("POST", "/uploads", json={"file_name": "x.mkv", "file_size": 100 * MiB, "part_size": MiB})
    assert r.status_code == 400 and "part_size" in r.json()["error"]
    r = user.call("POST", "/uploads", json={"file_name": "a/b", "file_size": 10})
    assert r.status_code == 400
    r = user.call("POST", "/uploads", json={"file_name": "x.mkv", "file_size": 10, "dir_id": "dir_nosuchdir"})
    assert r.status_code == 404
    up = user.call("POST", "/uploads", json={"file_name": "x.mkv", "file_size": 12 * MiB}).json()["upload"]
    r = user.call("POST", f"/uploads/{up['upload_id']}/urls", json={"part_numbers": [4]})
    assert r.status_code == 400 and "outside 1..3" in r.json()["error"]
    # Under the limit, the single PUT is fine, with or without a declared size.
    assert user.call("POST", "/file", json={"file_name": "small.mkv", "file_size": LIMIT}).status_code == 200
    assert user.call("DELETE", f"/uploads/{up['upload_id']}").status_code == 200


# ----------------------------------------------------------------------------------- scratch
@pytest.fixture
def tiny_pool(stack: StackInfo, kube_api: client.ApiClient) -> Iterator[str]:
    """A pool like cpu whose scratch (ephemeralStorage) is 8 MiB."""
    import yaml

    core = client.CoreV1Api(kube_api)
    name = "tinyscratch"

    def set_pool(present: bool) -> None:
        cm = core.read_namespaced_config_map("kubeffmpeg-pools", stack.namespace)
        pools = yaml.safe_load((cm.data or {})["pools.yaml"])
        if present:
            pools[name] = {**pools["cpu"], "ephemeralStorage": "8Mi"}
        else:
            pools.pop(name, None)
        core.patch_namespaced_config_map("kubeffmpeg-pools", stack.namespace,
                                         {"data": {"pools.yaml": yaml.safe_dump(pools)}})

    set_pool(True)
    time.sleep(6)  # the operator re-reads the pools every 5 s (this module's API every 1 s)
    yield name
    set_pool(False)


def test_an_input_larger_than_the_pools_scratch_fails_before_ffmpeg_starts(
        user: Client, big: Path, tiny_pool: str, kube_api: client.ApiClient, stack: StackInfo) -> None:
    size = big.stat().st_size
    up = user.call("POST", "/uploads", json={"file_name": "master.nut", "file_size": size}).json()["upload"]
    user.put_parts(big, up["part_size"], {p["part_number"]: p["url"] for p in up["parts"]})
    assert user.call("POST", f"/uploads/{up['upload_id']}/complete").status_code == 200
    # `.nut` is not a container FFmpeg may stream from storage: the worker would download it.
    task = {"task": {"inputs": [{"file_path": up["file_path"]}],
                     "outputs": [{"file": "small.mp4", "options": ["-t", "1", "-c:v", "libx264"]}]},
            "machine": tiny_pool}
    r = user.call("POST", "/ffmpeg/process/async", json=task)
    assert r.status_code in (200, 202), r.text
    job_id = r.json()["job_id"]
    job = wait_for(lambda: (j := user.call("GET", f"/job/{job_id}").json()).get("status") in ("failed", "completed")
                   and j, timeout=JOB_WAIT, what="the job to end")
    assert job["status"] == "failed", job
    ffj: Any = client.CustomObjectsApi(kube_api).get_namespaced_custom_object(
        "kubeffmpeg.io", "v1alpha1", stack.namespace, "ffmpegjobs", job_id)
    st = ffj["status"]
    failed = next(c for c in st["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "ScratchTooSmall", st
    assert st["error"].startswith("scratch space too small"), st
    assert f"({size} bytes)" in st["error"] and "ephemeralStorage) is 8Mi (8388608 bytes)" in st["error"], st
    # Failed at once, not retried (one pod); FFmpeg never ran, nothing was written.
    pods = client.CoreV1Api(kube_api).list_namespaced_pod(
        stack.namespace, label_selector=f"job-name={st['jobName']}").items
    assert len(pods) == 1
    assert (st.get("progress") or {}).get("percent", 0) == 0 and not st.get("result")
    assert "error" in job or "message" in json.dumps(job)


# ------------------------------------------------------------------------------ the docs' examples
def test_the_docs_examples_run_as_written(user: Client, big: Path, tmp_path: Path, stack_env: dict[str, str]) -> None:
    """docs/large-files.md's Python and curl examples, pasted: the file arrives byte for byte."""
    import re

    from devstack.paths import REPO_ROOT

    text = (REPO_ROOT / "docs" / "large-files.md").read_text()
    python, bash = re.findall(r"<!-- large-files-test -->\s*```(?:python|bash)\n(.*?)```", text, re.S)
    (tmp_path / "upload_large.py").write_text(python)
    (tmp_path / "master.mov").write_bytes(big.read_bytes())
    env = {**stack_env, "API_URL": user.url, "API_KEY": user.key}
    out = subprocess.run([sys.executable, "upload_large.py", "master.mov"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    file_path, size = out.stdout.split()
    assert file_path.endswith("/master.mov") and int(size) == big.stat().st_size
    dl = user.call("GET", f"/file/download/{file_path}").json()["download"]["url"]
    assert sha256(httpx.get(dl, timeout=60).content) == sha256(big.read_bytes())

    out = subprocess.run(["bash", "-c", "set -euo pipefail\n" + bash], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    done = json.loads(out.stdout)
    assert done["file_size"] == big.stat().st_size
    assert sha256(httpx.get(done["download_url"], timeout=60).content) == sha256(big.read_bytes())


def test_the_python_client_uploads_in_parts_and_resumes(user: Client, big: Path) -> None:
    from kubeffmpeg import Client as KubeFFmpeg

    with KubeFFmpeg(user.url, user.key) as kf:
        stored = kf.upload(big, "ffmpeg-api", multipart_threshold=LIMIT, part_size=PART)
        assert stored.file_path and stored.file_path.endswith("/master.mkv")
        dl = user.call("GET", f"/file/download/{stored.file_path}").json()["download"]["url"]
        assert sha256(httpx.get(dl, timeout=60).content) == sha256(big.read_bytes())

        # An upload another program started and left with two parts: the client finishes it.
        up = user.call("POST", "/api/uploads", json={"file_name": "left.mkv", "file_size": big.stat().st_size})
        data = up.json()["data"]
        user.put_parts(big, data["part_size"], {p["part_number"]: p["url"] for p in data["parts"][:2]})
        done = kf.resume_upload(data["upload_id"], big, "vgf")
        assert sha256(httpx.get(done.url, timeout=60).content) == sha256(big.read_bytes())


def test_the_cli_and_the_async_client_upload_in_parts(user: Client, big: Path, tmp_path: Path) -> None:
    import asyncio
    import os

    from kubeffmpeg import AsyncClient

    cli = str(Path(sys.executable).parent / "kubeffmpeg")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("API_", "KUBECONFIG"))},
           "API_URL": user.url, "API_KEY": user.key}
    out = subprocess.run([cli, "--json", "files", "put", str(big), "--parts-from", str(LIMIT)], env=env,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    file_path = json.loads(out.stdout)["file_path"]
    dl = user.call("GET", f"/file/download/{file_path}").json()["download"]["url"]
    assert sha256(httpx.get(dl, timeout=60).content) == sha256(big.read_bytes())

    # An upload left with one part: `files put --resume` finishes it.
    up = user.call("POST", "/uploads", json={"file_name": "master.mkv", "file_size": big.stat().st_size}).json()
    user.put_parts(big, PART, {1: up["upload"]["parts"][0]["url"]})
    out = subprocess.run([cli, "files", "put", str(big), "--resume", up["upload"]["upload_id"]], env=env,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0 and out.stdout.strip() == up["upload"]["file_path"], out.stderr

    async def with_async_client() -> str:
        async with AsyncClient(user.url, user.key) as kf:
            return (await kf.upload(big, "vgf", multipart_threshold=LIMIT, workers=3)).url

    url = asyncio.run(with_async_client())
    assert sha256(httpx.get(url, timeout=60).content) == sha256(big.read_bytes())


@pytest.mark.browser
def test_the_dashboard_uploads_a_large_input_in_parts(browser: WebDriver, user: Client, big: Path, s3: Any,  # noqa: F811
                                                      stack: StackInfo, kube_api: client.ApiClient) -> None:
    """The submit page stores a file over the API's single-upload limit in parts (the browser
    PUTs them to storage itself), then the job runs on it."""
    sign_in(browser, user.url, user.key)
    browser.get(f"{user.url}/ui/submit")
    visible(browser, "#vgf-form")
    browser.find_element(By.CSS_SELECTOR, "#vgf-inputs .in-file").send_keys(str(big))
    cmds = browser.find_element(By.ID, "vgf-commands")
    cmds.clear()
    cmds.send_keys("-i {{input}} -t 1 -c:v libx264 -preset ultrafast {{output.mp4}}")
    browser.find_element(By.CSS_SELECTOR, "#vgf-form button[type=submit]").click()
    wait_until(browser, ec.url_contains("/ui/jobs/job-"), timeout=120, what="the job page after submitting")
    job_id = browser.current_url.rsplit("/", 1)[1]
    wait_until(browser, lambda d: text_of(d, "#job-status") in ("succeeded", "failed"), timeout=JOB_WAIT,
               what="the job")
    assert text_of(browser, "#job-status") == "succeeded", text_of(browser, "#main")
    ffj: Any = client.CustomObjectsApi(kube_api).get_namespaced_custom_object(
        "kubeffmpeg.io", "v1alpha1", stack.namespace, "ffmpegjobs", job_id)
    source = ffj["spec"]["inputs"][0]["source"]
    if "://" in source:
        key = httpx.URL(source).path.split("/", 2)[2]
    else:
        key = file_key(ffj["spec"]["tenant"], *source.split("/"))
    assert etag_parts(s3, stack.env["S3_BUCKET"], key) == -(-big.stat().st_size // PART)  # 6 parts
    assert s3.head_object(Bucket=stack.env["S3_BUCKET"], Key=key)["ContentLength"] == big.stat().st_size
