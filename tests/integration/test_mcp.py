"""The MCP server (`ffmpeg-mcp`, mcp-server/ffmpeg_mcp) with the `mcp` package's own client, over
stdio and over streamable HTTP, against the API of this tree on the local stack: the tools
listed, a job run end to end from a local file, and hostile requests refused with exactly the
message the REST API gives for the same request."""
# ruff: noqa: F811 (pytest fixtures imported from the REST suite are parameters here)

from __future__ import annotations

import base64
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest

# The stack's API process and helpers of the REST suite (fixtures are found by name).
from helpers import free_port
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from test_api_stack import Api, api_url, keys, probe_file, tenant_name, video  # noqa: F401

pytestmark = pytest.mark.stack
TOOLS = {"run_ffmpeg", "upload_file", "get_job", "wait_job", "cancel_job", "list_jobs", "probe_file", "list_files"}


@pytest.fixture(scope="module")
def key(keys: Callable[..., str]) -> str:
    return keys(tenant_name("mcp"))


@pytest.fixture(scope="module")
def rest(api_url: str, key: str) -> Api:
    return Api(api_url, key)


def stdio(api_url: str, key: str) -> Client:
    """The server as an MCP client configuration starts it: a command with the key in its environment."""
    return Client(StdioServerParameters(command=sys.executable, args=["-m", "ffmpeg_mcp"],
                                        env={"KUBEFFMPEG_API_URL": api_url, "KUBEFFMPEG_API_KEY": key}))


@pytest.fixture(scope="module")
def mcp_http(api_url: str) -> Iterator[str]:
    """`ffmpeg-mcp --transport http` with no key of its own: each client sends its own."""
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="mcp-test-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "ffmpeg_mcp", "--transport", "http", "--port", str(port),
                             "--api-url", api_url], stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/mcp", timeout=1)
            break
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the MCP server did not start; see {log.name}") from None
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}/mcp"
    proc.terminate()
    proc.wait(10)


@asynccontextmanager
async def http_client(url: str, key: str | None) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(300, read=300)) as http, \
            Client(streamable_http_client(url, http_client=http)) as c:
        yield c


def result(r: Any) -> Any:
    assert not r.is_error, r.content
    if r.structured_content is not None:
        sc = r.structured_content
        return sc.get("result", sc) if isinstance(sc, dict) and set(sc) == {"result"} else sc
    return json.loads(r.content[0].text)


def error_text(r: Any) -> str:
    assert r.is_error, r.content
    return str(r.content[0].text)


async def test_tools_listed_and_a_job_run_end_to_end_over_stdio(api_url: str, key: str, video: Path,
                                                                 rest: Api) -> None:
    async with stdio(api_url, key) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        assert set(tools) == TOOLS
        assert "commands" in tools["run_ffmpeg"].input_schema["properties"]

        # A local file as input (uploaded through the API's presigned URL), run and waited for.
        job = result(await c.call_tool("run_ffmpeg", {
            "commands": ["-i {{video}} -vf scale=160:-2 -c:a copy {{small.mp4}}"], "outputs": ["small.mp4"],
            "files": {"video": str(video)}}))
        assert job["status"] == "succeeded", job
        assert job["usage"]["time_sec"] > 0 and job["outputs"][0]["file_name"] == "small.mp4"
        out = httpx.get(job["outputs"][0]["download_url"], timeout=60).content
        assert probe_file(out)["streams"][0]["width"] == 160

        # The same job seen over REST with the same key: it is the tenant's job.
        assert rest.call("GET", f"/api/jobs/{job['id']}").json()["data"]["status"] == "succeeded"
        assert result(await c.call_tool("get_job", {"job_id": job["id"]}))["status"] == "succeeded"
        assert job["id"] in [j["id"] for j in result(await c.call_tool("list_jobs", {"status": "succeeded"}))]

        # Probe the uploaded input by its URL, and list the files.
        up = result(await c.call_tool("upload_file", {"file_name": "again.mp4", "path": str(video)}))
        probed = result(await c.call_tool("probe_file", {"file": up["url"]}))
        assert float(probed["format"]["duration"]) == pytest.approx(2.0, abs=0.1)
        dirs = result(await c.call_tool("list_files", {}))["directories"]
        assert dirs
        listed = [result(await c.call_tool("list_files", {"dir_id": d["id"]}))["files"] for d in dirs]
        assert any(f["file_name"] == "again.mp4" for files in listed for f in files)

        # Cancel: a long job submitted without waiting, then cancelled.
        long = result(await c.call_tool("run_ffmpeg", {
            "commands": ["-re -stream_loop 20 -i {{v}} -c:v libx264 -preset ultrafast {{long.mp4}}"],
            "outputs": ["long.mp4"], "inputs": {"v": up["url"]}, "wait": False}))
        assert long["status"] in ("queued", "running")
        assert result(await c.call_tool("cancel_job", {"job_id": long["id"]}))["status"] == "cancelled"
        done = result(await c.call_tool("wait_job", {"job_id": long["id"], "wait_seconds": 120}))
        assert done["status"] == "cancelled"


HOSTILE = [
    # (tool arguments, the same request over REST)
    ({"commands": ["-i /etc/passwd {{out.mp4}}"], "outputs": ["out.mp4"]},
     {"input_files": {}, "output_files": ["out.mp4"], "ffmpeg_commands": ["-i /etc/passwd {{out.mp4}}"]}),
    ({"commands": ["-f concat -safe 0 -i {{in}} {{out.mp4}}"], "outputs": ["out.mp4"],
      "inputs": {"in": "https://example.com/list.txt"}},
     {"input_files": {"in": "https://example.com/list.txt"}, "output_files": ["out.mp4"],
      "ffmpeg_commands": ["-f concat -safe 0 -i {{in}} {{out.mp4}}"]}),
    ({"commands": ["-i {{in}} {{out.mp4}}"], "outputs": ["out.mp4"],
      "inputs": {"in": "https://169.254.169.254/latest/meta-data"}},
     {"input_files": {"in": "https://169.254.169.254/latest/meta-data"}, "output_files": ["out.mp4"],
      "ffmpeg_commands": ["-i {{in}} {{out.mp4}}"]}),
    ({"commands": ["-i {{in}} {{out.mp4}}"], "outputs": ["out.mp4"], "inputs": {"in": "https://example.com/a.mp4"},
      "machine": "quantum"},
     {"input_files": {"in": "https://example.com/a.mp4"}, "output_files": ["out.mp4"],
      "ffmpeg_commands": ["-i {{in}} {{out.mp4}}"], "machine": "quantum"}),
]


async def test_hostile_requests_are_refused_exactly_as_over_rest(api_url: str, key: str, rest: Api) -> None:
    before = rest.call("GET", "/api/jobs").json()["pagingParams"]["total"]
    async with stdio(api_url, key) as c:
        for args, body in HOSTILE:
            over_rest = rest.call("POST", "/api/ffmpeg", json={**body, "machine": body.get("machine", "cpu")})
            assert over_rest.status_code == 400, over_rest.text
            refused = error_text(await c.call_tool("run_ffmpeg", {**args, "wait": False}))
            assert refused == f"Error executing tool run_ffmpeg: HTTP 400: {over_rest.json()['message']}"
        # A job this key does not own is a 404, as over REST.
        assert "HTTP 404: Job not found" in error_text(await c.call_tool("get_job", {"job_id": "job-0000000000000000"}))
        assert rest.call("GET", "/api/jobs/job-0000000000000000").status_code == 404
    assert rest.call("GET", "/api/jobs").json()["pagingParams"]["total"] == before  # nothing was created


async def test_streamable_http_passes_each_clients_key_and_reads_no_local_files(
        mcp_http: str, key: str, video: Path, keys: Callable[..., str]) -> None:
    async with http_client(mcp_http, key) as c:
        assert {t.name for t in (await c.list_tools()).tools} == TOOLS
        # Over HTTP a remote caller cannot make the server read this machine's files.
        refused = error_text(await c.call_tool("upload_file", {"file_name": "x", "path": str(video)}))
        assert "does not read local files" in refused
        up = result(await c.call_tool("upload_file", {"file_name": "v.mp4",
                                                      "content_base64": base64.b64encode(video.read_bytes()).decode()}))
        job = result(await c.call_tool("run_ffmpeg", {"commands": ["-i {{v}} -t 1 {{o.mp4}}"], "outputs": ["o.mp4"],
                                                      "inputs": {"v": up["url"]}}))
        assert job["status"] == "succeeded", job
    # Another key sees none of it; no key at all is refused.
    async with http_client(mcp_http, keys(tenant_name("mcp-other"))) as c:
        assert "HTTP 404" in error_text(await c.call_tool("get_job", {"job_id": job["id"]}))
    async with http_client(mcp_http, None) as c:
        assert "Authorization: Bearer" in error_text(await c.call_tool("list_jobs", {}))
    async with http_client(mcp_http, "wrong-key") as c:
        assert "HTTP 401: Invalid API key" in error_text(await c.call_tool("list_jobs", {}))
