"""Split-and-stitch: one 2-minute 1080p encode (x264 `-preset medium`) as one pod, then split into
2 and 4 chunks, every pod limited to 1 CPU; wall time from submission to Succeeded, speed-up,
efficiency (speed-up / chunks), the overheads (probe, chunk pods beyond FFmpeg, stitch), and the
split outputs' frame count and PSNR against the single-pod output.

The pods run on a pool `bench-1cpu` that this benchmark adds to the pools ConfigMap for the run
(the cpu pool with `limits.cpu: 1`, `maxParallelChunks` 4). `--threads1` also passes `-threads 1`
to the decoder and the encoder, for nodes that do not enforce CPU limits. Runs are one after the
other, so each has the machine to itself (as far as a shared machine allows)."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import yaml
from ffmpegjob_model.model import GROUP, PLURAL, VERSION
from ffmpegjob_model.storage_layout import file_key
from kubernetes import client

from . import media
from .common import CACHE, PREFIX, TENANT, api_client, delete_run, ffmpegjob, machine, run_id, stack_env, write_result

POOL = "bench-1cpu"
POOLS_CM = "kubeffmpeg-pools"
ENCODE = "-c:v libx264 -preset medium -crf 23 -c:a aac -b:a 128k"


def long_clip(seconds: int = 120) -> Path:
    """2 minutes of moving 1920x1080 30 fps with a tone, a keyframe every 2 s (x264 ultrafast)."""
    out = CACHE / f"long-1080p-{seconds}s.mp4"
    if not out.exists():
        media._make(out, ["-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate=30:duration={seconds}",
                          "-f", "lavfi", "-i", f"sine=frequency=440:beep_factor=4:duration={seconds}",
                          "-c:v", "libx264", "-preset", "ultrafast", "-g", "60", "-pix_fmt", "yuv420p",
                          "-c:a", "aac", "-shortest"])
    return out


def set_pool(core: client.CoreV1Api, ns: str, present: bool) -> None:
    cm = core.read_namespaced_config_map(POOLS_CM, ns)
    pools = yaml.safe_load((cm.data or {})["pools.yaml"]) or {}
    if present:
        base = dict(pools["cpu"])
        resources = dict(base.get("resources") or {})
        resources["requests"] = {**(resources.get("requests") or {}), "cpu": "1"}
        resources["limits"] = {**(resources.get("limits") or {}), "cpu": "1"}
        pools[POOL] = {**base, "resources": resources, "maxParallelChunks": 4}
    else:
        pools.pop(POOL, None)
    core.patch_namespaced_config_map(POOLS_CM, ns, {"data": {"pools.yaml": yaml.safe_dump(pools)}})


class CpuMeter:
    """Busy cores of the whole machine over an interval, from /proc/stat."""

    def __init__(self) -> None:
        self.t0 = self._read()

    @staticmethod
    def _read() -> tuple[float, float]:
        fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    def busy_cores(self) -> float:
        busy0, total0 = self.t0
        busy1, total1 = self._read()
        return round((busy1 - busy0) / max(total1 - total0, 1e-9) * (os.cpu_count() or 1), 2)


def run_one(api: client.ApiClient, ns: str, rid: str, source: str, dir_id: str, chunks: int | None,
            command: str, timeout: float) -> dict[str, Any]:
    custom = client.CustomObjectsApi(api)
    label = f"{chunks}chunks" if chunks else "single"
    name = f"{PREFIX}split-{rid}-{label}"
    body = ffmpegjob(name, rid, source=source, command=command, dir_id=dir_id, machine=POOL)
    body["spec"]["timeoutSeconds"] = int(timeout)
    if chunks:
        body["spec"]["parallel"] = {"chunks": chunks}
    meter = CpuMeter()
    t0 = time.monotonic()
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    stitch_at: float | None = None
    deadline = t0 + timeout
    while True:
        obj = cast(dict[str, Any], custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name))
        st: dict[str, Any] = obj.get("status") or {}
        if stitch_at is None and (st.get("split") or {}).get("stage") in ("Stitch", "Done"):
            stitch_at = time.monotonic()
        if st.get("phase") in ("Succeeded", "Failed", "Cancelled"):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not finish in {timeout}s")
        time.sleep(0.25)
    wall = time.monotonic() - t0
    if st["phase"] != "Succeeded":
        raise RuntimeError(f"{name} {st['phase']}: {st.get('message')}")
    out: dict[str, Any] = {"wall_s": round(wall, 2), "host_busy_cores": meter.busy_cores(),
                           "ffmpeg_time_s": st["usage"]["timeSec"]}
    if chunks:
        reports = st.get("chunkReports") or {}
        chunk_times = [float(reports[str(i)]["timeSec"]) for i in range(chunks)]
        split = st["split"]
        out.update(
            chunks=chunks,
            probe_s=split.get("probeSeconds"),
            chunk_ffmpeg_s=[round(x, 2) for x in chunk_times],
            chunk_frames=[c["frames"] for c in st["chunkRanges"]],
            chunk_stage_s=round((stitch_at or t0) - t0, 2),
            stitch_stage_s=round(t0 + wall - (stitch_at or t0), 2),
            stitch_ffmpeg_s=reports.get("stitch", {}).get("timeSec"),
            attempts=st.get("attempts"),
        )
        # what the chunk stage cost beyond the slowest chunk's FFmpeg: probe, pod starts, segment upload
        out["chunk_stage_overhead_s"] = round(out["chunk_stage_s"] - max(chunk_times), 2)
        out["stitch_overhead_s"] = round(out["stitch_stage_s"] - float(out["stitch_ffmpeg_s"] or 0), 2)
    return out


def psnr(a: Path, b: Path, workdir: Path) -> list[float]:
    log = workdir / "psnr.log"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(a), "-i", str(b), "-lavfi",
                    f"[0:v][1:v]psnr=stats_file={log.name}", "-f", "null", "-"], check=True, cwd=workdir)
    values = []
    for line in log.read_text().splitlines():
        m = re.search(r"psnr_avg:(\S+)", line)
        if m:
            values.append(100.0 if m.group(1) == "inf" else float(m.group(1)))
    return values


def frames(path: Path) -> int:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries",
                          "stream=nb_read_packets", "-of", "csv=p=0", str(path)], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.strip())


def run(chunk_counts: tuple[int, ...] = (2, 4), threads1: bool = False, timeout: float = 1800,
        seconds: int = 120) -> dict[str, Any]:
    started = machine()
    env = stack_env()
    ns, bucket = env["FFMPEG_NAMESPACE"], env["S3_BUCKET"]
    api = api_client(env)
    core = client.CoreV1Api(api)
    s3 = media.s3_client(env)
    rid = run_id()
    dir_id = f"bench_split_{rid}"
    clip = long_clip(seconds)
    source = media.upload(s3, bucket, clip, dir_id)
    threads = "-threads 1 " if threads1 else ""
    command = f"{threads}-i {{{{in.mp4}}}} {ENCODE} {threads}{{{{out.mp4}}}}"
    runs: dict[str, Any] = {}
    set_pool(core, ns, True)
    time.sleep(6)  # the operator re-reads the pools every 5 s
    try:
        with tempfile.TemporaryDirectory(prefix="bench-split-") as tmp:
            work = Path(tmp)
            for chunks in (None, *chunk_counts):
                key = f"{chunks}_chunks" if chunks else "single"
                runs[key] = run_one(api, ns, rid, source, dir_id, chunks, command, timeout)
                local = work / f"{key}.mp4"
                s3.download_file(bucket, file_key(TENANT, dir_id, "out.mp4"), str(local))
                runs[key]["frames"] = frames(local)
                print(key, runs[key], flush=True)
            single = runs["single"]
            for chunks in chunk_counts:
                r = runs[f"{chunks}_chunks"]
                values = psnr(work / f"{chunks}_chunks.mp4", work / "single.mp4", work)
                seams, first = [], 0
                for n in r["chunk_frames"][:-1]:
                    first += n
                    seams += [values[first - 1], values[first]]
                speedup = single["wall_s"] / r["wall_s"]
                r.update(
                    speedup=round(speedup, 3),
                    efficiency=round(speedup / chunks, 3),
                    frames_equal_single=r["frames"] == single["frames"],
                    psnr_avg_db=round(sum(values) / len(values), 2),
                    psnr_min_db=round(min(values), 2),
                    psnr_seam_min_db=round(min(seams), 2),
                )
    finally:
        set_pool(core, ns, False)
        delete_run(api, ns, rid)
        media.delete_prefix(s3, bucket, dir_id)
    eff2 = runs.get("2_chunks", {}).get("efficiency")
    figures = {
        "input": {"file": clip.name, "seconds": seconds, "size": "1920x1080", "fps": 30,
                  "mb": round(clip.stat().st_size / 1e6, 1)},
        "encode": ENCODE, "threads1": threads1, "pod_cpu_limit": "1", **runs,
        "targets": {"efficiency_2_chunks": {"target": "speed-up / chunks >= 0.8 at 2 chunks", "value": eff2,
                                            "met": eff2 is not None and eff2 >= 0.8}},
    }
    return write_result("split_encode", figures, started)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench.split_encode")
    p.add_argument("--chunks", type=int, nargs="*", default=[2, 4])
    p.add_argument("--threads1", action="store_true", help="-threads 1 (nodes that do not enforce CPU limits)")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--seconds", type=int, default=120, help="input length (120: the issue's figure)")
    a = p.parse_args(argv)
    run(tuple(a.chunks), a.threads1, a.timeout, a.seconds)


if __name__ == "__main__":
    main()
