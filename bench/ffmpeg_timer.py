"""Stand-in for the ffmpeg binary (the worker's FFMPEG_BIN) that records when FFmpeg started, when
its first and last `-progress` lines came, and when it exited, as one JSON line appended to
$BENCH_TIMING_FILE (wall-clock seconds). It runs the real ffmpeg, passing stdout through; stdlib
only and started with `python3 -S -E` to keep its own start-up small (measured, see `spawn`)."""

import json
import os
import subprocess
import sys
import time

start = time.time()


def parent_cpu() -> float | None:
    """CPU seconds the worker (this process's parent) has used so far: what its start-up costs
    on a quiet machine, whatever the load when measured."""
    try:
        with open(f"/proc/{os.getppid()}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


worker_cpu_at_start = parent_cpu()
proc = subprocess.Popen([os.environ.get("BENCH_REAL_FFMPEG", "ffmpeg"), *sys.argv[1:]], stdout=subprocess.PIPE)
spawn = time.time()
first = end = None
assert proc.stdout is not None
for line in proc.stdout:
    now = time.time()
    if first is None:
        first = now
    if line.startswith(b"progress=end"):
        end = now
    sys.stdout.buffer.write(line)
    sys.stdout.buffer.flush()
rc = proc.wait()
record = {"start": start, "spawn": spawn, "worker_cpu_at_start": worker_cpu_at_start, "first_progress": first,
          "progress_end": end, "exit": time.time(), "rc": rc}
with open(os.environ["BENCH_TIMING_FILE"], "a") as f:
    f.write(json.dumps(record) + "\n")
sys.exit(rc)
