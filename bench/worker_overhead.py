"""The worker's fixed overhead per job, on a tiny input: process start -> FFmpeg started ->
FFmpeg's first `-progress` line, and FFmpeg's last frame (`progress=end`) -> result recorded in
status (seen by a watch) and -> worker exit. Median and max over N runs, and the CPU time the
worker used until FFmpeg started (what its start-up costs on a quiet machine, whatever the load).

`--baseline REF` also runs the worker (and contract package) of git commit REF, one run of each
in turn, so that both see the same load: the shared machine's load moves the absolute figures
several-fold from one minute to the next, the comparison much less."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from . import media
from .common import PREFIX, api_client, delete_run, machine, run_id, stack_env, target, write_result
from .workerrun import WorkerRun, run_worker

COMMAND = "-i {{in.mp4}} -c:v libx264 -preset ultrafast {{out.mp4}}"
SPANS = ("start_to_ffmpeg_start", "ffmpeg_start_to_first_progress", "start_to_first_progress",
         "last_frame_to_result_recorded", "last_frame_to_worker_exit", "worker_total", "worker_cpu_to_ffmpeg_start")
ROOT = Path(__file__).resolve().parents[1]


def _record(spans: dict[str, list[float]], w: WorkerRun) -> None:
    if w.rc != 0:
        raise RuntimeError(f"worker failed ({w.rc}): {w.stderr}")
    ff = w.ffmpeg[0]
    spans["start_to_ffmpeg_start"].append(ff["start"] - w.start)
    if ff.get("worker_cpu_at_start") is not None:
        spans["worker_cpu_to_ffmpeg_start"].append(ff["worker_cpu_at_start"])
    spans["ffmpeg_start_to_first_progress"].append(ff["first_progress"] - ff["start"])
    spans["start_to_first_progress"].append(ff["first_progress"] - w.start)
    if w.result_seen is not None:
        spans["last_frame_to_result_recorded"].append(w.result_seen - ff["progress_end"])
    spans["last_frame_to_worker_exit"].append(w.exit - ff["progress_end"])
    spans["worker_total"].append(w.exit - w.start)


def _summary(spans: dict[str, list[float]]) -> dict[str, Any]:
    return {k: {"median_ms": round(statistics.median(v) * 1000, 1), "max_ms": round(max(v) * 1000, 1)}
            for k, v in spans.items() if v}


def _checkout(ref: str, dest: Path) -> dict[str, str]:
    """The worker and contract package of `ref`, importable ahead of the installed ones."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "worker-image", "crds"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return {"PYTHONPATH": f"{dest}/worker-image:{dest}/crds"}


def run(n: int = 5, baseline: str | None = None) -> dict[str, Any]:
    started = machine()
    env = stack_env()
    ns, bucket = env["FFMPEG_NAMESPACE"], env["S3_BUCKET"]
    api = api_client(env)
    s3 = media.s3_client(env)
    rid = run_id()
    dir_id = f"bench_ovh_{rid}"
    source = media.upload(s3, bucket, media.tiny_clip(), dir_id)
    spans: dict[str, list[float]] = {k: [] for k in SPANS}
    base_spans: dict[str, list[float]] = {k: [] for k in SPANS}
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        base_env = _checkout(baseline, Path(tmp)) if baseline else None
        try:
            for i in range(n):
                if base_env is not None:
                    _record(base_spans, run_worker(api, ns, rid, f"{PREFIX}ovh-{rid}-b{i}", source, COMMAND, dir_id,
                                                   extra_env=base_env))
                _record(spans, run_worker(api, ns, rid, f"{PREFIX}ovh-{rid}-{i}", source, COMMAND, dir_id))
        finally:
            delete_run(api, ns, rid)
            media.delete_prefix(s3, bucket, dir_id)
    figures: dict[str, Any] = {
        "runs": n,
        "input": "1 s 160x120 H.264 clip, one command (x264 ultrafast)",
        **_summary(spans),
        "note": "FFmpeg writes its first -progress block after its stats period (0.5 s) or at the end "
                "for a short input, so ffmpeg_start_to_first_progress is FFmpeg's, not the worker's; "
                "worker_cpu_to_ffmpeg_start is the CPU time (user + system, 10 ms ticks) the worker process "
                "used until FFmpeg started: about what start_to_ffmpeg_start is on a quiet machine, "
                "whatever the load while measured",
    }
    if baseline:
        figures["baseline"] = {"git_ref": baseline, "runs": n, "note": "run in turn with the figures above",
                               **_summary(base_spans)}
    med = {k: statistics.median(spans[k]) * 1000 for k in ("start_to_ffmpeg_start", "last_frame_to_worker_exit")}
    figures["targets"] = {  # issue 15: each under 100 ms median
        "start_to_ffmpeg_start": target(med["start_to_ffmpeg_start"], 100, "median ms, worker start -> FFmpeg start"),
        "last_frame_to_worker_exit": target(med["last_frame_to_worker_exit"], 100,
                                            "median ms, FFmpeg's last frame -> worker exit"),
    }
    return write_result("worker_overhead", figures, started)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench.worker_overhead")
    p.add_argument("-n", type=int, default=5)
    p.add_argument("--baseline", metavar="GIT_REF", help="also run this commit's worker, in turn with this one's")
    a = p.parse_args(argv)
    run(a.n, a.baseline)


if __name__ == "__main__":
    main()
