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
record = {"start": start, "spawn": spawn, "first_progress": first, "progress_end": end, "exit": time.time(), "rc": rc}
with open(os.environ["BENCH_TIMING_FILE"], "a") as f:
    f.write(json.dumps(record) + "\n")
sys.exit(rc)
