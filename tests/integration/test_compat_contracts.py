"""Contract tests of the clients we do not run here: the "Very Good FFmpeg" n8n node (its vendored
TypeScript SDK sends `fetch` requests with a JSON string body and no Content-Type, Bearer auth,
and reads `data`, `pagingParams` and the job object), the "Very Good FFmpeg" error body, and
each "FFmpeg API" behaviour that differed from its documentation (`@{file}` references, a missing
Authorization header, webhook usage and error text)."""
# ruff: noqa: F811 (pytest fixtures imported from the REST suite are parameters here)

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from devstack.stack import StackInfo
from helpers import VGF_TERMINAL, Receiver
from kubernetes import client
from test_api_stack import (  # noqa: F401 (fixtures)
    Api,
    api,
    api_url,
    keys,
    tenant_name,
    upload,
    video,
    wait_job,
)

pytestmark = pytest.mark.stack


class Node:
    """The n8n node's SDK calls, byte for byte as `fetch` sends them."""

    def __init__(self, base_url: str, key: str, tenant: str = "") -> None:
        self.base, self.key, self.tenant = base_url, key, tenant

    def request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.key}"}
        if body is not None:
            headers["Content-Type"] = "text/plain;charset=UTF-8"  # fetch's default for a string body
        return httpx.request(method, f"{self.base}{path}", headers=headers, timeout=400,
                             content=json.dumps(body) if body is not None else None)

    def run(self, params: dict[str, Any], wait: bool = False) -> dict[str, Any]:
        r = self.request("POST", "/ffmpeg" + ("?wait=true" if wait else ""), params)
        assert r.status_code == 200, r.text
        return dict(r.json()["data"])

    def get(self, job_id: str) -> dict[str, Any]:
        r = self.request("GET", f"/jobs/{quote(job_id, safe='')}")
        assert r.status_code == 200, r.text
        return dict(r.json()["data"])

    def poll(self, job_id: str, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.get(job_id)
            if job["status"] in VGF_TERMINAL:
                return job
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} did not finish")

    def upload(self, data: bytes, mime: str) -> str:
        r = self.request("POST", "/tmp-file")
        assert r.status_code == 200, r.text
        urls = r.json()["data"]
        assert httpx.put(urls["upload_url"], content=data, headers={"Content-Type": mime}, timeout=60).is_success
        return str(urls["download_url"])


@pytest.fixture(scope="module")
def node(api_url: str, keys: Callable[..., str], api: Api) -> Node:
    # (`api`, the "FFmpeg API" client, is made first too: a key is seen within a second of the
    # API's last read of the key Secret, and the 401 tests below make it re-read.)
    tenant = tenant_name("n8n")
    return Node(f"{api_url}/api", keys(tenant), tenant)


@pytest.fixture(scope="module")
def node_input(node: Node, video: Path) -> str:
    url = node.upload(video.read_bytes(), "video/mp4")
    assert httpx.get(url, timeout=60).content == video.read_bytes()  # File > Upload: byte for byte
    return url


# ------------------------------------------------------------------------------- the n8n node
def test_credential_check_is_get_jobs_limit_1(node: Node, api_url: str) -> None:
    r = node.request("GET", "/jobs?limit=1")
    assert r.status_code == 200 and set(r.json()) >= {"data", "pagingParams"}
    assert r.json()["pagingParams"]["limit"] == 1 and len(r.json()["data"]) <= 1
    bad = Node(f"{api_url}/api", "wrong-key").request("GET", "/jobs?limit=1")
    assert bad.status_code == 401 and bad.json()["errorCode"] == "badApiKey"


def test_run_with_wait_reaches_succeeded(node: Node, node_input: str, kube_api: client.ApiClient, s3: Any,
                                        stack: StackInfo) -> None:
    job = node.run({"input_files": {"input": node_input}, "output_files": ["output.mp4"],
                    "ffmpeg_commands": ["-i {{input}} -t 5 {{output.mp4}}"], "machine": "cpu"}, wait=True)
    assert job["status"] == "succeeded" and "output.mp4" in job["output_files"]
    assert httpx.get(job["output_files"]["output.mp4"], timeout=60).is_success
    assert "X-Amz-Expires=604800" in job["output_files"]["output.mp4"]  # links valid 7 days
    ffj: Any = client.CustomObjectsApi(kube_api).get_namespaced_custom_object(
        "kubeffmpeg.io", "v1alpha1", stack.namespace, "ffmpegjobs", job["id"])
    meta = json.loads(s3.get_object(Bucket=stack.env["S3_BUCKET"],
                                    Key=f"dirs/{node.tenant}/{ffj['spec']['output']['dirId']}.json")["Body"].read())
    assert meta["ttl"] >= 7 * 24 * 3600  # and the files behind them kept as long


def test_run_without_wait_then_get_until_terminal(node: Node, node_input: str) -> None:
    job = node.run({"input_files": {"input": node_input}, "output_files": ["output.mp4"],
                    "ffmpeg_commands": ["-i {{input}} -t 5 {{output.mp4}}"], "machine": "nvidia"})
    assert job["status"] in ("queued", "running", "succeeded")
    final = node.poll(job["id"])
    assert final["status"] == "succeeded" and "output.mp4" in final["output_files"] and final["machine"] == "gpu"


def test_list_returns_jobs_and_respects_limit(node: Node, node_input: str) -> None:
    node.run({"input_files": {"input": node_input}, "output_files": ["o.mp4"],
              "ffmpeg_commands": ["-i {{input}} -t 1 {{o.mp4}}"], "machine": "cpu"})
    r = node.request("GET", "/jobs?limit=2&offset=0")
    jobs = r.json()["data"]
    assert r.status_code == 200 and 0 < len(jobs) <= 2 and all("id" in j and "status" in j for j in jobs)


def test_cancel_stops_a_queued_job(node: Node, node_input: str) -> None:
    job = node.run({"input_files": {"input": node_input}, "output_files": ["output.mp4"],
                    "ffmpeg_commands": ["-re -stream_loop -1 -i {{input}} -t 600 -c:v libx264 -preset ultrafast "
                                        "{{output.mp4}}"], "machine": "cpu"})
    r = node.request("POST", f"/jobs/{quote(job['id'], safe='')}/cancel")
    assert r.status_code == 200 and r.json()["data"]["status"] in ("cancelled", "cancelling")
    assert node.poll(job["id"], timeout=60)["status"] == "cancelled"


def test_an_input_that_answers_404_is_a_failed_job(node: Node, receiver: Receiver) -> None:
    """Accepted at submission, as on the service; the job says which input could not be fetched.
    (The receiver is on loopback, which the local stack's URL_ALLOW_HOSTS lets through.)"""
    job = node.run({"input_files": {"input": f"{receiver.base}/missing.mp4"}, "output_files": ["o.mp4"],
                    "ffmpeg_commands": ["-i {{input}} {{o.mp4}}"], "machine": "cpu"}, wait=True)
    assert job["status"] == "failed" and "404" in job["error_message"] and job["output_files"] == {}


def test_trigger_receives_the_full_job_object(node: Node, node_input: str, receiver: Receiver) -> None:
    job = node.run({"input_files": {"input": node_input}, "output_files": ["output.mp4"],
                    "ffmpeg_commands": ["-i {{input}} -t 1 {{output.mp4}}"], "machine": "cpu",
                    "webhook_url": f"{receiver.base}/webhook/vgf"})
    body = receiver.wait_post(timeout=120)
    final = node.get(job["id"])
    assert body["id"] == job["id"] and body["status"] == final["status"] == "succeeded"
    assert {k: v for k, v in body.items() if k not in ("output_files", "result")} == \
        {k: v for k, v in final.items() if k not in ("output_files", "result")}
    assert set(body["output_files"]) == {"output.mp4"} and httpx.get(body["output_files"]["output.mp4"]).is_success


# --------------------------------------------------------------- "Very Good FFmpeg" error body
@pytest.mark.parametrize(
    ("method", "path", "body", "code", "error_code", "needle"),
    [
        ("GET", "/jobs/job-0000000000000000", None, 404, "notFound", "not found"),
        ("GET", "/no/such/route", None, 404, "notFound", "not found"),
        ("POST", "/ffmpeg", {"output_files": ["o.mp4"]}, 400, "validationError", "ffmpeg_commands"),
        ("POST", "/ffmpeg", {"output_files": ["o.mp4"], "ffmpeg_commands": ["-i x {{o.mp4}}"], "machine": "tpu"},
         400, "badRequest", "Unknown machine"),
        ("POST", "/ffmpeg", {"input_files": {"in": "https://10.0.0.1/a.mp4"}, "output_files": ["o.mp4"],
                             "ffmpeg_commands": ["-i {{in}} {{o.mp4}}"]}, 400, "badRequest", "private address"),
        ("POST", "/ffmpeg", {"input_files": {"in": "https://does-not-exist.invalid/a.mp4"}, "output_files": ["o.mp4"],
                             "ffmpeg_commands": ["-i inputs/other.mp4 outputs/o.mp4"]}, 400, "badRequest",
         "inputs/other.mp4"),
        ("POST", "/ffmpeg", {"input_files": {}, "output_files": ["o.mp4"], "ffmpeg_commands": ["-i x {{o.mp4}}"],
                             "timeout_seconds": 0}, 400, "validationError", "timeout_seconds"),
    ],
)
def test_vgf_errors_carry_error_code_and_message(node: Node, method: str, path: str, body: Any, code: int,
                                                 error_code: str, needle: str) -> None:
    r = node.request(method, path, body)
    assert r.status_code == code, r.text
    err = r.json()
    assert err["errorCode"] == error_code and needle.lower() in err["message"].lower()
    assert err["ok"] is False and err["error"] == err["message"]


def test_vgf_without_a_key_is_a_401(api_url: str) -> None:
    r = httpx.get(f"{api_url}/api/jobs")
    assert r.status_code == 401 and r.json()["errorCode"] == "badApiKey"


# ------------------------------------------------------------------------------ "FFmpeg API"
@pytest.mark.parametrize(("method", "path"), [("GET", "/directory"), ("POST", "/ffmpeg/process"),
                                              ("GET", "/job/job-0000000000000000")])
def test_missing_authorization_header_is_a_400(api_url: str, method: str, path: str) -> None:
    r = httpx.request(method, f"{api_url}{path}", content="{}")
    assert r.status_code == 400 and r.json() == {"ok": False, "error": "Missing Authorization header"}
    assert "errorCode" not in r.json()


def first_frame_md5(data: bytes) -> str:
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", "pipe:0", "-frames:v", "1", "-f", "md5", "-"],
                         input=data, capture_output=True, check=True).stdout
    return out.decode().strip()


def test_file_references_in_options(api: Api, video: Path, tmp_path: Path) -> None:
    subs = tmp_path / "subs.srt"
    subs.write_text("1\n00:00:00,000 --> 00:00:02,000\nHELLO SUBTITLES\n")
    d = upload(api, video)
    upload(api, subs, name="subs.srt", dir_id=d)
    task = {"task": {"inputs": [{"file_path": f"{d}/video.mp4"}, {"file_path": f"{d}/subs.srt"}],
                     "outputs": [{"file": "plain.mp4", "options": ["-t", "1"], "maps": ["0:v"]},
                                 {"file": "subbed.mp4", "options": ["-t", "1", "-vf", "subtitles=@{subs.srt}"],
                                  "maps": ["0:v"]}]}}
    code, res = api.curl("-X", "POST", "-d", json.dumps(task), path="/ffmpeg/process")
    assert code == 200, res
    out = {r["file_name"]: httpx.get(r["download_url"], timeout=60).content for r in res["result"]}
    assert first_frame_md5(out["subbed.mp4"]) != first_frame_md5(out["plain.mp4"])  # burnt in
    task["task"]["outputs"][1]["options"][-1] = "subtitles=@{other.srt}"
    code, err = api.curl("-X", "POST", "-d", json.dumps(task), path="/ffmpeg/process/async")
    assert code == 400 and err["error"].startswith("Invalid task format") and "@{other.srt}" in err["error"]


def test_webhook_and_job_errors_carry_the_documented_prefix(api: Api, video: Path, receiver: Receiver) -> None:
    d = upload(api, video)
    task = {"task": {"inputs": [{"file_path": f"{d}/video.mp4"}],
                     "outputs": [{"file": "bad.mp4", "options": ["-c:v", "no_such_encoder"]}]},
            "webhook_url": f"{receiver.base}/hook"}
    code, acc = api.curl("-X", "POST", "-d", json.dumps(task), path="/ffmpeg/process/async")
    assert code == 202, acc
    job = wait_job(api, acc["job_id"])
    assert job["status"] == "failed" and job["error"].startswith("FFmpeg processing error: ")
    hook = receiver.wait_post()
    assert hook == {"job_id": acc["job_id"], "status": "failed", "error": job["error"]}
    assert "no_such_encoder" in hook["error"]


def test_success_webhook_has_usage(api: Api, video: Path, receiver: Receiver) -> None:
    d = upload(api, video)
    task = {"task": {"inputs": [{"file_path": f"{d}/video.mp4"}], "outputs": [{"file": "o.mp4"}]},
            "webhook_url": f"{receiver.base}/hook"}
    code, acc = api.curl("-X", "POST", "-d", json.dumps(task), path="/ffmpeg/process/async")
    assert code == 202, acc
    hook = receiver.wait_post(timeout=120)
    assert hook["status"] == "completed" and set(hook["usage"]) == {"time_sec", "input_size_gb", "output_size_gb",
                                                                   "gb_sec"}
    assert hook["usage"]["gb_sec"] > 0 and hook["usage"]["input_size_gb"] > 0
