"""kubeffmpeg's MCP server: FFmpeg jobs as tools for AI agents, over stdio or streamable HTTP.

Every tool is one or a few calls of the REST API with a tenant's API key, so an agent can do
nothing that key's holder could not, and everything the API refuses (an unsafe command, a
private URL, an unknown pool, a quota) is refused here with the API's own message.

    ffmpeg-mcp                       # stdio; KUBEFFMPEG_API_URL and KUBEFFMPEG_API_KEY from the environment
    ffmpeg-mcp --transport http --port 8765
                                     # streamable HTTP at /mcp; each client sends its own
                                     # `Authorization: Bearer <key>`, which is passed on

Tools: run_ffmpeg, upload_file, get_job, cancel_job, probe_file, list_files, list_jobs.
A local file is read by path (`files=` of run_ffmpeg, `path=` of upload_file) only over stdio,
where the server runs as the user beside the agent; over HTTP a remote caller must not make the
server read its own disk, so files come as base64 content instead (or `--allow-local-files`)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

TERMINAL = ("succeeded", "failed", "cancelled")
DEFAULT_URL = "http://127.0.0.1:18080"
MAX_INLINE_BYTES = 64 * 1024 * 1024  # base64 content of one upload_file call


class Config:
    """Where the API is, the key for stdio, and whether tools may read local files."""

    def __init__(self, api_url: str, api_key: str | None, local_files: bool, timeout: float = 60.0) -> None:
        self.api_url, self.api_key, self.local_files, self.timeout = api_url.rstrip("/"), api_key, local_files, timeout

    @classmethod
    def from_env(cls, local_files: bool = True) -> Config:
        url = os.environ.get("KUBEFFMPEG_API_URL") or os.environ.get("API_URL") or DEFAULT_URL
        key = os.environ.get("KUBEFFMPEG_API_KEY") or os.environ.get("API_KEY")
        return cls(url, key, local_files)


class Api:
    """The REST API with one caller's key. Errors become ToolErrors carrying the API's message."""

    def __init__(self, cfg: Config, authorization: str) -> None:
        self.cfg = cfg
        self.client = httpx.AsyncClient(base_url=cfg.api_url, timeout=cfg.timeout,
                                        headers={"Authorization": authorization})

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def call(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        try:
            r = await self.client.request(method, path, json=body, params=params)
        except httpx.HTTPError as e:
            raise ToolError(f"The kubeffmpeg API at {self.cfg.api_url} did not answer: {e}") from None
        try:
            data = r.json()
        except ValueError:
            data = {"error": r.text}
        if r.status_code >= 400:
            msg = data.get("message") or data.get("error") if isinstance(data, dict) else None
            raise ToolError(f"HTTP {r.status_code}: {msg or r.reason_phrase}")
        return data

    async def put(self, url: str, content: bytes) -> None:
        try:
            async with httpx.AsyncClient(timeout=max(self.cfg.timeout, 300.0)) as c:
                r = await c.put(url, content=content)
        except httpx.HTTPError as e:
            raise ToolError(f"Upload failed: {e}") from None
        if r.status_code >= 300:
            raise ToolError(f"Upload refused by the store: HTTP {r.status_code}")


def authorization(cfg: Config, ctx: Context | None) -> str:
    """The caller's own `Authorization` header over HTTP; the configured key over stdio."""
    headers: Mapping[str, str] | None = None
    if ctx is not None:
        try:
            headers = ctx.headers
        except ValueError:
            headers = None
    if headers is not None:
        given = headers.get("authorization") or headers.get("Authorization")
        if given:
            return given
        raise ToolError("Send your kubeffmpeg API key as `Authorization: Bearer <key>` with each MCP request")
    if not cfg.api_key:
        raise ToolError("No API key: set KUBEFFMPEG_API_KEY in the MCP server's environment")
    return f"Bearer {cfg.api_key}"


def job_summary(job: dict[str, Any]) -> dict[str, Any]:
    """What an agent needs of a job: status, progress, error, outputs (download URLs), usage."""
    out: dict[str, Any] = {
        "id": job["id"], "status": job["status"], "machine": job.get("machine"),
        "created_at": job.get("created_at"), "started_at": job.get("started_at"), "finished_at": job.get("finished_at"),
    }
    if job.get("progress"):
        out["progress"] = job["progress"]
    if job.get("error_message"):
        out["error"] = job["error_message"]
    if job.get("result"):
        out["outputs"] = [{"file_name": r["file_name"], "size_bytes": r["size_bytes"],
                           "download_url": r["download_url"], "media": r.get("media")} for r in job["result"]]
    if job.get("usage"):
        out["usage"] = job["usage"]
    return out


async def upload(api: Api, name: str, content: bytes) -> str:
    """A temporary file (one hour) through the API's presigned PUT; returns its download URL,
    which is then a job input read from storage directly."""
    tmp = (await api.call("POST", "/api/tmp-file", {"file_name": name}))["data"]
    await api.put(tmp["upload_url"], content)
    return str(tmp["download_url"])


def read_local(cfg: Config, path: str) -> tuple[str, bytes]:
    if not cfg.local_files:
        raise ToolError("This server does not read local files (HTTP transport); send content_base64 instead")
    p = Path(path).expanduser()
    if not p.is_file():
        raise ToolError(f"No such file: {path}")
    return p.name, p.read_bytes()


async def wait_for(api: Api, job_id: str, seconds: float, ctx: Context | None) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    job: dict[str, Any] = (await api.call("GET", f"/api/jobs/{job_id}"))["data"]
    while job["status"] not in TERMINAL and time.monotonic() < deadline:
        if ctx is not None and job.get("progress"):
            # A client that sent no progress token has nothing to report to.
            with contextlib.suppress(Exception):
                await ctx.report_progress(float(job["progress"]["percent"]), 100.0)
        await asyncio.sleep(1.0)
        job = (await api.call("GET", f"/api/jobs/{job_id}"))["data"]
    return job


def build(cfg: Config) -> MCPServer:
    server = MCPServer(
        name="kubeffmpeg",
        instructions=(
            "Run FFmpeg on a kubeffmpeg cluster. Write commands without the `ffmpeg` word, naming files only "
            "as placeholders: inputs {{key}} and outputs {{output.mp4}} (each output also listed in `outputs`). "
            "Inputs are HTTPS URLs, or files sent with upload_file first. Absolute paths, '..', protocols "
            "(file:, concat:, http: inside arguments) and file-reading filters are refused, as by the REST API."),
    )

    @server.tool()
    async def run_ffmpeg(commands: list[str], outputs: list[str], inputs: dict[str, str] | None = None,
                         files: dict[str, str] | None = None, machine: str = "cpu",
                         timeout_seconds: int | None = None, wait: bool = True, wait_seconds: float = 300.0,
                         ctx: Context | None = None) -> dict[str, Any]:
        """Run FFmpeg commands as one job (POST /api/ffmpeg) and, unless wait is false, wait for it.

        commands: FFmpeg arguments, one string per command, run in order in one folder;
          e.g. ["-i {{video}} -vf scale=640:-2 {{output.mp4}}"].
        outputs: the output file names the commands write, e.g. ["output.mp4"].
        inputs: input key -> HTTPS URL (or a URL returned by upload_file).
        files: input key -> a local file path, uploaded first (stdio transport only).
        machine: the node pool, "cpu" or "gpu" (or another pool of the cluster).
        Returns the job: id, status, progress, error, outputs with download URLs, usage."""
        async with Api(cfg, authorization(cfg, ctx)) as api:
            input_files = dict(inputs or {})
            for key, path in (files or {}).items():
                name, content = read_local(cfg, path)
                input_files[key] = await upload(api, name, content)
            body: dict[str, Any] = {"input_files": input_files, "output_files": outputs, "ffmpeg_commands": commands,
                                    "machine": machine}
            if timeout_seconds is not None:
                body["timeout_seconds"] = timeout_seconds
            job = (await api.call("POST", "/api/ffmpeg", body))["data"]
            if wait:
                job = await wait_for(api, job["id"], wait_seconds, ctx)
            return job_summary(job)

    @server.tool()
    async def upload_file(file_name: str, content_base64: str | None = None, path: str | None = None,
                          ctx: Context | None = None) -> dict[str, Any]:
        """Upload a file for use as a job input; returns its URL (valid one hour) for run_ffmpeg's inputs.
        Give the bytes as content_base64, or (stdio transport only) a local path."""
        if (content_base64 is None) == (path is None):
            raise ToolError("Give exactly one of content_base64 or path")
        if path is not None:
            _, content = read_local(cfg, path)
        else:
            if len(content_base64 or "") > MAX_INLINE_BYTES * 4 // 3 + 4:
                raise ToolError(f"content_base64 is larger than {MAX_INLINE_BYTES // 2**20} MiB")
            try:
                content = base64.b64decode(content_base64 or "", validate=True)
            except ValueError:
                raise ToolError("content_base64 is not valid base64") from None
        async with Api(cfg, authorization(cfg, ctx)) as api:
            return {"url": await upload(api, file_name, content), "size_bytes": len(content)}

    @server.tool()
    async def get_job(job_id: str, ctx: Context | None = None) -> dict[str, Any]:
        """A job's status, progress, error (with FFmpeg's stderr tail), outputs (download URLs) and usage."""
        async with Api(cfg, authorization(cfg, ctx)) as api:
            return job_summary((await api.call("GET", f"/api/jobs/{job_id}"))["data"])

    @server.tool()
    async def wait_job(job_id: str, wait_seconds: float = 300.0, ctx: Context | None = None) -> dict[str, Any]:
        """Wait (at most wait_seconds) for a job to finish, then return it as get_job does."""
        async with Api(cfg, authorization(cfg, ctx)) as api:
            return job_summary(await wait_for(api, job_id, wait_seconds, ctx))

    @server.tool()
    async def cancel_job(job_id: str, ctx: Context | None = None) -> dict[str, Any]:
        """Cancel a queued or running job."""
        async with Api(cfg, authorization(cfg, ctx)) as api:
            return job_summary((await api.call("POST", f"/api/jobs/{job_id}/cancel"))["data"])

    @server.tool()
    async def list_jobs(status: str | None = None, limit: int = 20, ctx: Context | None = None) -> list[dict[str, Any]]:
        """Your jobs, newest first; status filters: queued, running, succeeded, failed, cancelled."""
        params: dict[str, Any] = {"limit": limit, **({"status": status} if status else {})}
        async with Api(cfg, authorization(cfg, ctx)) as api:
            return [job_summary(j) for j in (await api.call("GET", "/api/jobs", params=params))["data"]]

    @server.tool()
    async def probe_file(file: str, ctx: Context | None = None) -> dict[str, Any]:
        """ffprobe a file: an HTTPS URL (or an upload_file URL) or a stored `dir_id/file_name`.
        Returns the format and the streams."""
        async with Api(cfg, authorization(cfg, ctx)) as api:
            return dict((await api.call("POST", "/ffprobe/analyze", {"file_path": file}))["result"])

    @server.tool()
    async def list_files(dir_id: str | None = None, ctx: Context | None = None) -> dict[str, Any]:
        """Your directories; with dir_id, the files in that directory (name, size, date)."""
        async with Api(cfg, authorization(cfg, ctx)) as api:
            if dir_id is None:
                return {"directories": (await api.call("GET", "/directory"))["directories"]}
            return {"dir_id": dir_id, "files": (await api.call("GET", f"/directory/{dir_id}"))["files"]}

    return server


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="ffmpeg-mcp", description="kubeffmpeg's MCP server")
    p.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    p.add_argument("--host", default="127.0.0.1", help="HTTP: address to listen on")
    p.add_argument("--port", type=int, default=8765, help="HTTP: port to listen on")
    p.add_argument("--api-url", default=None, help="the kubeffmpeg API (default $KUBEFFMPEG_API_URL)")
    p.add_argument("--allow-local-files", action="store_true",
                   help="HTTP: let tools read files of this machine by path (stdio always may)")
    args = p.parse_args(argv)
    cfg = Config.from_env(local_files=args.transport == "stdio" or args.allow_local_files)
    if args.api_url:
        cfg.api_url = args.api_url.rstrip("/")
    server = build(cfg)
    if args.transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host=args.host, port=args.port)


if __name__ == "__main__":
    main()
