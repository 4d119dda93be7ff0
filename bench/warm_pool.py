"""Warm pools (issue 15.2, docs/warm-pools.md): submission -> FFmpeg start for a tiny job, with a
warm pool and without one (a Job per job, as the stack runs it: Kueue admission included).

Two pools are added to the pools ConfigMap for the run, both the cpu pool with `FFMPEG_BIN`
pointing at bench/ffmpeg_timer.py (records when FFmpeg started, wall clock; the stack's pods are
processes on this host, so the clocks agree): `benchwarm` (warm: 2 pods, 20 jobs each) and
`benchcold` (no warm pods). Jobs run one at a time: the time is from just before the create
request to FFmpeg's start; a warm job is submitted once an idle warm pod is seen, and whether it
really ran warm is read back from `status.warm`. Both pools are removed at the end.

    .venv/bin/python -m bench.warm_pool [-n 20]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import yaml
from ffmpegjob_model import warm as contract
from ffmpegjob_model.model import GROUP, PLURAL, VERSION
from ffmpegjob_model.storage_layout import file_key
from kubernetes import client

from . import media
from .common import (
    CACHE,
    PREFIX,
    TENANT,
    api_client,
    delete_run,
    ffmpegjob,
    machine,
    pct,
    run_id,
    stack_env,
    target,
    write_result,
)
from .workerrun import timer_bin

WARM, COLD = "benchwarm", "benchcold"
COMMAND = "-i {{in.mp4}} -c:v libx264 -preset ultrafast {{out.mp4}}"
DIR = "bench_warm"
TERMINAL = ("Succeeded", "Failed", "Cancelled")


def set_pools(core: Any, ns: str, timing_file: Path | None) -> None:
    cm = core.read_namespaced_config_map("kubeffmpeg-pools", ns)
    pools = yaml.safe_load(cm.data["pools.yaml"])
    if timing_file is None:
        pools.pop(WARM, None)
        pools.pop(COLD, None)
    else:
        env = {**(pools["cpu"].get("env") or {}), "FFMPEG_BIN": str(timer_bin()),
               "BENCH_TIMING_FILE": str(timing_file), "BENCH_REAL_FFMPEG": "ffmpeg"}
        pools[COLD] = {**pools["cpu"], "env": env}
        pools[WARM] = {**pools["cpu"], "env": env, "warm": {"replicas": 2, "maxJobsPerPod": 20}}
    core.patch_namespaced_config_map("kubeffmpeg-pools", ns, {"data": {"pools.yaml": yaml.safe_dump(pools)}})


def idle_warm_pod(core: Any, ns: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    sel = f"{contract.WARM_POOL_LABEL}={WARM},{contract.WARM_STATE_LABEL}={contract.IDLE}"
    while time.monotonic() < deadline:
        for p in core.list_namespaced_pod(ns, label_selector=sel).items:
            if p.status.phase == "Running" and not p.metadata.deletion_timestamp:
                return str(p.metadata.name)
        time.sleep(0.2)
    raise RuntimeError("no idle warm pod")


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def one(custom: Any, ns: str, rid: str, pool: str, i: int, timing: Path) -> dict[str, Any]:
    before = len(records(timing))
    name = f"{PREFIX}warm-{rid}-{pool}-{i}"
    body = ffmpegjob(name, rid, source=f"{DIR}/tiny.mp4", command=COMMAND, dir_id=DIR, machine=pool)
    t0 = time.time()
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    deadline = time.monotonic() + 180
    start = None
    while time.monotonic() < deadline:
        recs = records(timing)
        if len(recs) > before:
            start = recs[before]["start"]
            break
        time.sleep(0.01)
    st: dict[str, Any] = {}
    while time.monotonic() < deadline:
        st = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name).get("status") or {}
        if st.get("phase") in TERMINAL:
            break
        time.sleep(0.1)
    if start is None or st.get("phase") != "Succeeded":
        raise RuntimeError(f"{name}: {st.get('phase')} {st.get('message')}")
    return {"submit_to_ffmpeg_start": start - t0, "warm": bool(st.get("warm"))}


def summary(values: list[float]) -> dict[str, Any]:
    ms = [v * 1000 for v in values]
    r = lambda v: None if v is None else round(v, 1)  # noqa: E731
    return {"n": len(ms), "p50_ms": r(pct(ms, 50)), "p90_ms": r(pct(ms, 90)), "max_ms": r(max(ms) if ms else None),
            "min_ms": r(min(ms) if ms else None)}


def run(n: int = 20) -> dict[str, Any]:
    started = machine()
    env = stack_env()
    ns = env["FFMPEG_NAMESPACE"]
    api = api_client(env)
    core: Any = client.CoreV1Api(api)
    custom: Any = client.CustomObjectsApi(api)
    import boto3

    s3 = boto3.client("s3", endpoint_url=env["S3_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name=env.get("S3_REGION", "us-east-1"))
    s3.upload_file(str(media.tiny_clip()), env["S3_BUCKET"], file_key(TENANT, DIR, "tiny.mp4"))
    rid = run_id()
    CACHE.mkdir(parents=True, exist_ok=True)
    timing = CACHE / f"warm-timing-{rid}.jsonl"
    set_pools(core, ns, timing)
    results: dict[str, list[dict[str, Any]]] = {WARM: [], COLD: []}
    try:
        time.sleep(6)  # the operator re-reads the pools every 5 s
        one(custom, ns, rid, COLD, -1, timing)  # first use of the pool: its LocalQueue is created
        for i in range(n):
            results[COLD].append(one(custom, ns, rid, COLD, i, timing))
        for i in range(n):
            idle_warm_pod(core, ns)
            time.sleep(0.3)  # the operator's watch sees it idle too
            results[WARM].append(one(custom, ns, rid, WARM, i, timing))
    finally:
        set_pools(core, ns, None)
        delete_run(api, ns, rid)
        timing.unlink(missing_ok=True)
    warm = [r["submit_to_ffmpeg_start"] for r in results[WARM] if r["warm"]]
    cold = [r["submit_to_ffmpeg_start"] for r in results[COLD]]
    figures = {
        "what": "submission (create request sent) -> FFmpeg started (bench/ffmpeg_timer.py), a tiny job, one at a "
                "time; cold: a Job per job (with the stack's Kueue admission); warm: an idle warm pod claimed",
        "warm": {**summary(warm), "ran_warm": f"{len(warm)}/{len(results[WARM])}"},
        "cold": summary(cold),
        "targets": [target(pct([v * 1000 for v in warm], 50), 150, "warm submission -> FFmpeg start p50 ms")],
        "load_avg_during": [round(x, 2) for x in os.getloadavg()],
    }
    return write_result("warm_pool", figures, started)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=20, help="jobs per mode")
    run(p.parse_args().n)


if __name__ == "__main__":
    main()
