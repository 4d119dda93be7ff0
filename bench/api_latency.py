"""API submission latency p50/p99 at a fixed request rate (open loop, separate load generator
process), with the error count.

The requests are tiny valid jobs submitted through the "Very Good FFmpeg" surface
(`POST /api/ffmpeg`, which lets the request choose `machine`) to a node pool `bench-parked`
that this benchmark adds to the pools ConfigMap for the run: its nodeSelector matches no node,
so the Jobs are created but their pods are never scheduled and nothing runs. The jobs belong to
a `bench` tenant whose API key has no active-job quota (the default quota of 50 active jobs
would refuse most of a 200 req/s burst by design). Afterwards the FFmpegJobs are deleted and the
pool removed. Skipped when the stack has no API (API_URL missing)."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import yaml
from ffmpegjob_model.model import GROUP, PLURAL, VERSION
from kubernetes import client

from . import media
from .common import CACHE, TENANT, api_client, machine, process_env, run_id, stack_env, summary_ms, target, write_result

POOL = "bench-parked"
POOLS_CM = "kubeffmpeg-pools"


def bench_key(env: dict[str, str]) -> str:
    """An API key of tenant `bench` without quota or rate limit, created once and cached (gitignored)."""
    path = CACHE / "api-key"
    # No quota, no rate limit: the benchmark measures the API, not its admission control.
    limits = ["--tenant", TENANT, "--max-active-jobs", "0", "--max-gb-sec", "0", "--requests-per-second", "0"]
    if path.exists():
        subprocess.run([sys.executable, "-m", "ffmpeg_api.keys", "set-limits", *limits],
                       env=process_env(), capture_output=True, text=True, check=True)
        return path.read_text().strip()
    out = subprocess.run([sys.executable, "-m", "ffmpeg_api.keys", "create", *limits],
                         env=process_env(), capture_output=True, text=True, check=True).stdout
    key = out.strip().splitlines()[-1]
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(key)
    path.chmod(0o600)
    return key


def set_parked_pool(core: client.CoreV1Api, ns: str, present: bool) -> None:
    cm = core.read_namespaced_config_map(POOLS_CM, ns)
    pools = yaml.safe_load((cm.data or {})["pools.yaml"]) or {}
    if present:
        pools[POOL] = {**pools["cpu"], "nodeSelector": {f"{GROUP}/pool": POOL}}
    else:
        pools.pop(POOL, None)
    core.patch_namespaced_config_map(POOLS_CM, ns, {"data": {"pools.yaml": yaml.safe_dump(pools)}})


def pin(cpus: set[int] | None) -> Callable[[], None] | None:
    """A child's preexec_fn that keeps it on `cpus` (None: anywhere)."""
    if not cpus:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_api(workers: int, cpus: set[int] | None) -> tuple[subprocess.Popen[bytes], str]:
    """The API as `ffmpeg-api` with API_WORKERS processes on a free port, with the stack's
    settings (its own process, so the benchmark chooses how many workers and which cores)."""
    port = free_port()
    env = {**process_env(), "API_HOST": "127.0.0.1", "API_PORT": str(port), "API_WORKERS": str(workers),
           "MALLOC_ARENA_MAX": "2"}
    CACHE.mkdir(parents=True, exist_ok=True)
    log = (CACHE / "api_latency-api.log").open("wb")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "ffmpeg-api")], env=env, stdout=log,
                            stderr=subprocess.STDOUT, preexec_fn=pin(cpus))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ffmpeg-api exited with {proc.returncode}: see {log.name}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).is_success:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("ffmpeg-api did not answer /healthz in 120 s")


def one_rate(endpoint: str, headers: dict[str, str], body: dict[str, Any], rate: float, duration_s: float,
             warmup_s: float, cpus: set[int] | None) -> tuple[dict[str, Any], list[str]]:
    """One open-loop run of the load generator (its own process): figures and the job ids."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"url": endpoint, "headers": headers, "body": body, "rate": rate,
                   "duration_s": duration_s, "warmup_s": warmup_s}, f)
    gen = subprocess.run([sys.executable, "-m", "bench.loadgen", f.name], env=process_env(),
                         capture_output=True, text=True, cwd=Path(__file__).parent.parent, timeout=900,
                         preexec_fn=pin(cpus))
    os.unlink(f.name)
    if gen.returncode != 0:
        raise RuntimeError(f"load generator failed: {gen.stderr[-2000:]}")
    out = json.loads(gen.stdout)
    measured = [r for r in out["results"] if r[0] >= warmup_s]
    ok = [r for r in measured if r[3] in (200, 201, 202)]
    errors = [r for r in measured if r[3] not in (200, 201, 202)]
    lat = summary_ms([r[1] for r in ok])
    figures = {
        "rate_rps": rate,
        "requests": len(measured),
        "achieved_rps": round(len(measured) / duration_s if duration_s else 0, 1),
        "errors": len(errors),
        "error_samples": sorted({str(r[3])[:160] for r in errors})[:5],
        "p50_ms": lat["p50_ms"],
        "p99_ms": lat["p99_ms"],
        "latency": lat,
        "send_lag": summary_ms([r[2] for r in measured]),
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
    }
    return figures, list(out["job_ids"])


def delete_jobs(custom: client.CustomObjectsApi, ns: str, ids: list[str]) -> None:
    def one(name: str) -> None:
        try:
            custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        except client.ApiException as e:
            if e.status != 404:
                raise

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, ids))


def run(rates: tuple[float, ...] = (50, 100, 200), modes: tuple[str, ...] = ("parked", "running"),
        workers: int = 2, duration_s: float = 10, warmup_s: float = 2, running_duration_s: float = 5,
        api_url: str | None = None) -> dict[str, Any]:
    started = machine()
    env = stack_env()
    if not env.get("API_URL") and not api_url:
        return write_result("api_latency", {"skipped": "API_URL is not in .devstack/env: the stack runs no API"},
                            started)
    ns, bucket = env["FFMPEG_NAMESPACE"], env["S3_BUCKET"]
    api = api_client(env)
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    s3 = media.s3_client(env)
    rid = run_id()
    dir_id = f"bench_api_{rid}"
    media.upload(s3, bucket, media.tiny_clip(), dir_id)
    pub = media.s3_client({**env, "S3_ENDPOINT_URL": env.get("S3_PUBLIC_ENDPOINT_URL") or env["S3_ENDPOINT_URL"]})
    url = pub.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": f"files/{TENANT}/{dir_id}/in.mp4"},
                                     ExpiresIn=3600)
    key = bench_key(env)
    headers = {"Authorization": f"Bearer {key}"}
    # The load generator on a core of its own where the machine has cores to spare (>= 4), the
    # API's processes on the others; on fewer, everything shares all cores (recorded).
    cores = sorted(os.sched_getaffinity(0))
    gen_cpus, api_cpus = ({cores[0]}, set(cores[1:])) if len(cores) >= 4 else (None, None)
    proc: subprocess.Popen[bytes] | None = None
    runs: list[dict[str, Any]] = []
    set_parked_pool(core, ns, True)
    t_clean = 0.0
    try:
        if api_url:
            base = api_url
        else:
            proc, base = start_api(workers, api_cpus)
        endpoint = f"{base}/api/ffmpeg"
        for mode in modes:
            pool = POOL if mode == "parked" else "cpu"
            body = {"input_files": {"in": url}, "output_files": ["out.mp4"], "machine": pool,
                    "ffmpeg_commands": ["-i {{in}} -c copy {{out.mp4}}"]}
            # The API caches the pools (30 s) and keys (10 s): wait until the bench job is accepted.
            deadline, probe = time.monotonic() + 90, None
            while time.monotonic() < deadline:
                probe = httpx.post(endpoint, json=body, headers=headers, timeout=30)
                if probe.is_success:
                    delete_jobs(custom, ns, [probe.json()["data"]["id"]])
                    break
                time.sleep(2)
            if probe is None or not probe.is_success:
                raise RuntimeError(f"the API does not accept the bench job: {probe and probe.text}")
            for rate in rates:
                figures, ids = one_rate(endpoint, headers, body, rate,
                                        duration_s if mode == "parked" else running_duration_s, warmup_s, gen_cpus)
                runs.append({"mode": mode, **figures})
                print(json.dumps({"mode": mode, "rate": rate, "p50_ms": figures["p50_ms"], "p99_ms": figures["p99_ms"],
                                  "errors": figures["errors"]}), file=sys.stderr, flush=True)
                t0 = time.monotonic()
                delete_jobs(custom, ns, ids)
                t_clean += time.monotonic() - t0
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        set_parked_pool(core, ns, False)
        media.delete_prefix(s3, bucket, dir_id)
    top = next((r for r in runs if r["mode"] == "parked" and r["rate_rps"] == max(rates)), None)
    figures = {
        "endpoint": "POST /api/ffmpeg",
        "api": api_url or f"ffmpeg-api, API_WORKERS={workers}",
        "api_workers": None if api_url else workers,
        "cpu_pinning": {"loadgen": sorted(gen_cpus), "api": sorted(api_cpus)} if gen_cpus and api_cpus
        else f"none ({len(cores)} cores: all processes share them)",
        "duration_s": {"parked": duration_s, "running": running_duration_s},
        "warmup_s": warmup_s,
        "runs": runs,
        "note": f"open loop from a separate process; parked: jobs on pool {POOL!r} (no node matches: Jobs exist, "
                "nothing runs); running: on pool 'cpu' (each job's pod runs FFmpeg on the stack's process "
                "node while the load goes on); each rate's jobs deleted after it",
        "cleanup_s": round(t_clean, 1),
        "targets": {
            "p99_ms": target(top["p99_ms"] if top else None, 30, f"p99 ms at {max(rates):g} req/s, pods parked"),
            "errors": target(sum(r["errors"] for r in runs), 1, "errors"),
        },
    }
    return write_result("api_latency", figures, started)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench.api_latency")
    p.add_argument("--rates", default="50,100,200", help="requests/s, comma-separated")
    p.add_argument("--modes", default="parked,running", help="parked (no pod runs) and/or running")
    p.add_argument("--workers", type=int, default=2, help="API_WORKERS of the API this benchmark starts")
    p.add_argument("--duration", type=float, default=10, help="seconds measured per rate, pods parked")
    p.add_argument("--running-duration", type=float, default=5, help="seconds measured per rate, pods running")
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument("--api-url", default=None, help="measure this API (e.g. the stack's) instead of starting one")
    a = p.parse_args(argv)
    run(tuple(float(r) for r in a.rates.split(",")), tuple(a.modes.split(",")), a.workers, a.duration, a.warmup,
        a.running_duration, a.api_url)


if __name__ == "__main__":
    main()
