"""The data path: S3 -> FFmpeg -> S3 through the worker against the same FFmpeg command on local
files, for an input of about 100 MB, as a ratio measured in one run.

Two commands: `transcode` (decode, scale, x264: the usual job, CPU-bound) and `remux`
(`-c copy`: I/O-bound, the worst case for fetch/upload overhead). The worker runs as a Job's
pod would (see workerrun.py) on an FFmpegJob created suspended."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from . import media
from .common import PREFIX, api_client, delete_run, machine, run_id, stack_env, target, write_result
from .workerrun import run_local, run_worker

COMMANDS = {
    "transcode": "-i {{in.mp4}} -vf scale=640:-2 -c:v libx264 -preset ultrafast -c:a copy {{out.mp4}}",
    "remux": "-i {{in.mp4}} -c copy {{out.mp4}}",
}


def run(variants: list[str] | None = None) -> dict[str, Any]:
    started = machine()
    env = stack_env()
    ns, bucket = env["FFMPEG_NAMESPACE"], env["S3_BUCKET"]
    api = api_client(env)
    s3 = media.s3_client(env)
    rid = run_id()
    dir_id = f"bench_data_{rid}"
    big = media.big_clip()
    source = media.upload(s3, bucket, big, dir_id)
    out: dict[str, Any] = {"input_mb": round(big.stat().st_size / 1e6, 1)}
    try:
        for variant in variants or list(COMMANDS):
            cmd = COMMANDS[variant]
            # Local before and after the worker, averaged: the shared machine's load drifts.
            with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
                local_runs = [run_local(big, cmd, Path(tmp))]
                out_mb = (Path(tmp) / "out.mp4").stat().st_size / 1e6
            w = run_worker(api, ns, rid, f"{PREFIX}data-{rid}-{variant}", source, cmd, dir_id)
            with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
                local_runs.append(run_local(big, cmd, Path(tmp)))
            local_s = sum(local_runs) / len(local_runs)
            if w.rc != 0:
                raise RuntimeError(f"worker failed ({w.rc}): {w.stderr}")
            ff = w.ffmpeg[0]
            worker_s = w.exit - w.start
            out[variant] = {
                "command": cmd,
                "output_mb": round(out_mb, 1),
                "local_ffmpeg_s": round(local_s, 2),
                "local_runs_s": [round(x, 2) for x in local_runs],
                "worker_total_s": round(worker_s, 2),
                "ratio": round(worker_s / local_s, 3),
                "worker_breakdown_s": {
                    "start_to_ffmpeg (imports, API read, fetch, ffprobe)": round(ff["start"] - w.start, 2),
                    "ffmpeg": round(ff["exit"] - ff["start"], 2),
                    "ffmpeg_exit_to_worker_exit (ffprobe, upload, status)": round(w.exit - ff["exit"], 2),
                },
            }
    finally:
        delete_run(api, ns, rid)
        media.delete_prefix(s3, bucket, dir_id)
    main_ratio = out.get("transcode", out.get("remux", {})).get("ratio")
    figures = {
        **out,
        "targets": {"transcode_ratio": target(main_ratio, 1.10, "worker time / local FFmpeg time")},
        "note": "remux is I/O-bound: there the fixed fetch+upload cost of 2x100 MB dominates by nature",
    }
    return write_result("data_path", figures, started)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench.data_path")
    p.add_argument("variants", nargs="*", help=f"any of {sorted(COMMANDS)} (default: all)")
    a = p.parse_args(argv)
    run(a.variants or None)


if __name__ == "__main__":
    main()
