"""Live event streams: what 200 open SSE streams cost an API process, and that they add no watch
on the Kubernetes API server (DESIGN.md: "200 open event streams cost < 50 MB and no extra
watches").

An API process of its own (so that its memory is this benchmark's alone) against the stack;
tenant `bench` (unlimited key, `bench_key`); 10 suspended FFmpegJobs, 20 streams on each. RSS
(`VmRSS`) of the API after one stream (the shared watch started), with all streams open and idle,
and at peak while the 10 jobs run and every stream follows them to its final event. Open WATCH
requests on ffmpegjobs come from the API server's own metrics (`apiserver_longrunning_requests`).

    .venv/bin/python -m bench.sse [--streams 200] [--jobs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import httpx
from ffmpegjob_model.model import GROUP, PLURAL, VERSION
from kubernetes import client

from .api_latency import bench_key
from .common import (
    BENCH_LABEL,
    PREFIX,
    TENANT,
    api_client,
    delete_run,
    machine,
    process_env,
    rss_mb,
    run_id,
    stack_env,
    target,
    write_result,
)

COMMAND = "-f lavfi -i testsrc=size=160x120:rate=25 -t 2 -c:v libx264 -preset ultrafast {{out.mp4}}"


def apiserver_watches(api: client.ApiClient) -> float:
    """Open WATCH requests on ffmpegjobs, from the API server's own metrics."""
    r = api.call_api("GET", api.configuration.host + "/metrics")
    r.read()
    total = 0.0
    for line in (r.data or b"").decode().splitlines():
        if line.startswith("apiserver_longrunning_requests{") and 'resource="ffmpegjobs"' in line \
                and 'verb="WATCH"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_api(streams: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**process_env(), "API_HOST": "127.0.0.1", "API_PORT": str(port),
           "EVENTS_MAX_STREAMS_PER_KEY": str(streams + 10), "MALLOC_ARENA_MAX": "2"}
    log = tempfile.NamedTemporaryFile(prefix="bench-sse-api-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "ffmpeg_api.main"], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"API did not start; see {log.name}")
        time.sleep(0.2)


def job_body(name: str, run: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FFmpegJob",
            "metadata": {"name": name, "labels": {BENCH_LABEL: run, f"{GROUP}/tenant": TENANT}},
            "spec": {"tenant": TENANT, "machine": "cpu", "inputs": [], "outputs": [{"name": "out.mp4"}],
                     "commands": [COMMAND], "output": {"dirId": f"bench_sse_{run}"}, "timeoutSeconds": 600,
                     "suspend": True}}


class Streams:
    """`n` SSE connections in one asyncio loop on a thread: counts first events and final events."""

    def __init__(self, url: str, key: str, names: list[str], n: int) -> None:
        self.url, self.key, self.names, self.n = url, key, names, n
        self.opened = self.finished = self.errors = 0
        self.events = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.main(),), daemon=True)

    async def one(self, http: httpx.AsyncClient, name: str) -> None:
        try:
            async with http.stream("GET", f"/api/jobs/{name}/events") as r:
                if r.status_code != 200:
                    self.errors += 1
                    return
                first = True
                async for line in r.aiter_lines():
                    if line.startswith("event:"):
                        self.events += 1
                        if first:
                            self.opened, first = self.opened + 1, False
                        if line.split(":", 1)[1].strip() in ("result", "error"):
                            self.finished += 1
        except httpx.HTTPError:
            self.errors += 1

    async def main(self) -> None:
        limits = httpx.Limits(max_connections=self.n + 10, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"},
                                     timeout=httpx.Timeout(30, read=600), limits=limits) as http:
            await asyncio.gather(*(self.one(http, self.names[i % len(self.names)]) for i in range(self.n)))

    def wait(self, what: str, cond: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return True
            time.sleep(0.2)
        print(f"timed out waiting for {what}", file=sys.stderr)
        return False


def settle(pid: int, seconds: float = 3.0) -> float:
    time.sleep(seconds)
    return rss_mb(pid)


def run(streams: int, jobs: int) -> dict[str, Any]:
    started = machine()
    env = stack_env()
    api = api_client(env)
    ns = env["FFMPEG_NAMESPACE"]
    key = bench_key(env)
    custom = client.CustomObjectsApi(api)
    run = run_id()
    names = [f"{PREFIX}sse-{run}-{i}" for i in range(jobs)]
    proc, url = start_api(streams)
    try:
        for n in names:
            custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, job_body(n, run))
        watches_before = apiserver_watches(api)
        one = Streams(url, key, names[:1], 1)  # the first stream starts the API's shared watch
        one.thread.start()
        one.wait("the first stream", lambda: one.opened == 1, 60)
        baseline = settle(proc.pid)
        watches_one = apiserver_watches(api)
        many = Streams(url, key, names, streams)
        many.thread.start()
        all_open = many.wait("all streams", lambda: many.opened >= streams, 120)
        idle = settle(proc.pid, 5.0)
        watches_many = apiserver_watches(api)
        peak = idle
        for n in names:  # let the jobs run: every stream follows its job to the end
            custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, n, {"spec": {"suspend": False}})
        deadline = time.monotonic() + 600
        while many.finished < streams and time.monotonic() < deadline and many.thread.is_alive():
            peak = max(peak, rss_mb(proc.pid))
            time.sleep(0.1)
        one.wait("the first stream's end", lambda: one.finished == 1, 60)
        figures = {
            "streams": streams, "jobs": jobs, "streams_opened": many.opened, "streams_finished": many.finished,
            "stream_errors": many.errors, "events_received": many.events,
            "api_rss_mb": {"one_stream": round(baseline, 1), "streams_idle": round(idle, 1),
                           "peak_while_jobs_ran": round(peak, 1)},
            "extra_mb_idle": round(idle - baseline, 1), "extra_mb_peak": round(peak - baseline, 1),
            "apiserver_ffmpegjob_watches": {"before_api_streams": watches_before, "one_stream": watches_one,
                                            "all_streams": watches_many},
            "extra_watches": watches_many - watches_one,
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
            "targets": [target(peak - baseline, 50, f"extra API RSS with {streams} streams (MB)"),
                        target(watches_many - watches_one, 1, "extra watches on the API server")],
        }
        if not all_open:
            figures["note"] = "not every stream opened in time"
        return write_result("sse", figures, started)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        delete_run(api, ns, run)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench.sse", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=int, default=200)
    p.add_argument("--jobs", type=int, default=10)
    a = p.parse_args(argv)
    run(a.streams, a.jobs)


if __name__ == "__main__":
    main()
