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
import subprocess
import sys
import tempfile
import time
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


def run(rate: float = 200, duration_s: float = 10, warmup_s: float = 2) -> dict[str, Any]:
    started = machine()
    env = stack_env()
    if not env.get("API_URL"):
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
    body = {"input_files": {"in": url}, "output_files": ["out.mp4"], "machine": POOL,
            "ffmpeg_commands": ["-i {{in}} -c copy {{out.mp4}}"]}
    endpoint = f"{env['API_URL']}/api/ffmpeg"
    ids: list[str] = []
    set_parked_pool(core, ns, True)
    try:
        # The API caches the pools (30 s) and keys (10 s): wait until the parked pool is accepted.
        deadline, probe = time.monotonic() + 90, None
        while time.monotonic() < deadline:
            probe = httpx.post(endpoint, json=body, headers=headers, timeout=30)
            if probe.is_success:
                ids.append(probe.json()["data"]["id"])
                break
            time.sleep(2)
        if probe is None or not probe.is_success:
            raise RuntimeError(f"the API does not accept the bench job: {probe and probe.text}")
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump({"url": endpoint, "headers": headers, "body": body, "rate": rate,
                       "duration_s": duration_s, "warmup_s": warmup_s}, f)
        gen = subprocess.run([sys.executable, "-m", "bench.loadgen", f.name], env=process_env(),
                             capture_output=True, text=True, cwd=Path(__file__).parent.parent, timeout=600)
        os.unlink(f.name)
        if gen.returncode != 0:
            raise RuntimeError(f"load generator failed: {gen.stderr[-2000:]}")
        out = json.loads(gen.stdout)
        ids += out["job_ids"]
    finally:
        t_clean = time.monotonic()
        for name in ids:
            try:
                custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
            except client.ApiException as e:
                if e.status != 404:
                    raise
        set_parked_pool(core, ns, False)
        media.delete_prefix(s3, bucket, dir_id)
        cleanup_s = time.monotonic() - t_clean
    measured = [r for r in out["results"] if r[0] >= warmup_s]
    ok = [r for r in measured if r[3] in (200, 201, 202)]
    errors = [r for r in measured if r[3] not in (200, 201, 202)]
    lat = summary_ms([r[1] for r in ok])
    sample_errors = sorted({str(r[3])[:160] for r in errors})[:5]
    achieved = len(measured) / duration_s if duration_s else 0
    figures = {
        "endpoint": "POST /api/ffmpeg",
        "rate_rps": rate,
        "duration_s": duration_s,
        "warmup_s": warmup_s,
        "requests": len(measured),
        "achieved_rps": round(achieved, 1),
        "errors": len(errors),
        "error_samples": sample_errors,
        "latency": lat,
        "send_lag": summary_ms([r[2] for r in measured]),
        "note": f"open loop from a separate process; jobs on pool {POOL!r} (no node matches: nothing runs), "
                "deleted afterwards",
        "cleanup_s": round(cleanup_s, 1),
        "targets": {
            "p99_ms": target(lat["p99_ms"], 30, f"p99 ms at {rate:g} req/s"),
            "errors": target(len(errors), 1, "errors"),
        },
    }
    return write_result("api_latency", figures, started)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench.api_latency")
    p.add_argument("--rate", type=float, default=200)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--warmup", type=float, default=2)
    a = p.parse_args(argv)
    run(a.rate, a.duration, a.warmup)


if __name__ == "__main__":
    main()
