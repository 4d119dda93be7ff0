"""Run one FFmpeg command: an argument list (no shell) in the job's folder, with FFmpeg's
`-progress` output parsed for percent and speed, a time limit, and the tail of stderr kept for
the error message."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

# Always first: no banner, never read stdin, overwrite (outputs are fresh names), progress on stdout,
# errors only on stderr (no stream listing, no per-frame stats) so that its tail is the reason.
BASE_ARGS = ["-hide_banner", "-nostdin", "-y", "-nostats", "-loglevel", "error", "-progress", "pipe:1"]
STDERR_LINES = 40
ERROR_TAIL_CHARS = 2000


class StepFailed(Exception):
    def __init__(self, step: int, steps: int, why: str, stderr_tail: str = "") -> None:
        self.step, self.steps, self.why, self.stderr_tail = step, steps, why, stderr_tail
        tail = f": {stderr_tail}" if stderr_tail else ""
        super().__init__(f"command {step} of {steps} {why}{tail}")


class InputReadFailed(StepFailed):
    """FFmpeg reported an error on a streamed input (a URL it read itself): the output may be
    cut short even when FFmpeg exited 0, so the step must not count as done."""


@dataclass
class StepProgress:
    fraction: float | None  # 0..1 of this step, None when the length is unknown
    speed: str | None
    out_time: float


ProgressCallback = Callable[[StepProgress], None]
# A command's expected output length, or a callable giving it once known (an ffprobe running
# alongside FFmpeg): percent starts as soon as the length is known.
Expected = float | None | Callable[[], float | None]


def parse_time(value: str) -> float | None:
    """FFmpeg time duration: `[-][HH:]MM:SS[.m...]` or `S[.m...][s|ms|us]`."""
    v = value.strip()
    m = re.fullmatch(r"(\d+(?:\.\d*)?)(s|ms|us)?", v)
    if m:
        return float(m.group(1)) * {"s": 1.0, "ms": 1e-3, "us": 1e-6, None: 1.0}[m.group(2)]
    m = re.fullmatch(r"(?:(\d+):)?(\d+):(\d+(?:\.\d*)?)", v)
    if m:
        return int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    return None


def expected_duration(args: list[str], durations: Mapping[str, float | None]) -> float | None:
    """How long the output of one command should be: the longest input, cut by -t/-to/-ss."""
    inputs = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-i"]
    known = [d for d in (durations.get(p) for p in inputs) if d]
    base = max(known) if known else None
    limit = None
    start = 0.0
    for i, a in enumerate(args[:-1]):
        t = parse_time(args[i + 1])
        if t is None:
            continue
        if a == "-t" or a.startswith("-t:") or a == "-to":
            limit = t if limit is None else min(limit, t)
        elif a == "-ss":
            start = max(start, t)
    if base is not None:
        base = max(base - start, 0.0)
    if limit is not None:
        base = limit if base is None else min(base, limit)
    return base or None


class ProgressParser:
    """FFmpeg's `-progress` output: blocks of key=value lines ending with `progress=...`."""

    def __init__(self, expected: Expected) -> None:
        self.expected = expected
        self.block: dict[str, str] = {}

    def feed(self, line: str) -> StepProgress | None:
        key, sep, value = line.strip().partition("=")
        if not sep:
            return None
        self.block[key] = value.strip()
        if key != "progress":
            return None
        block, self.block = self.block, {}
        out_us = block.get("out_time_us") or block.get("out_time_ms")  # both are microseconds
        try:
            out_time = max(int(out_us or "0"), 0) / 1e6
        except ValueError:
            out_time = 0.0
        fraction = None
        if value.strip() == "end":
            fraction = 1.0
        else:
            expected = self.expected() if callable(self.expected) else self.expected
            if expected:
                fraction = min(out_time / expected, 1.0)
        speed = block.get("speed")
        return StepProgress(fraction, speed if speed and speed != "N/A" else None, out_time)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        proc.wait(timeout=10)


def run_ffmpeg(
    args: list[str],
    *,
    cwd: Path,
    step: int,
    steps: int,
    timeout: float,
    expected: Expected = None,
    on_progress: ProgressCallback | None = None,
    on_start: Callable[[], None] | None = None,
    ffmpeg: str = "ffmpeg",
    global_args: list[str] | None = None,
    redact: Mapping[str, str] | None = None,
) -> float:
    """Run one command; return its wall time in seconds, raise StepFailed otherwise. The child
    is in its own process group and is killed with it on timeout, failure or interruption.

    `on_start` is called once FFmpeg runs (work that must not delay its start goes there).
    `redact` maps streamed input URLs to the names shown instead (no signed URL in an error);
    a stderr line naming one of them raises InputReadFailed, even after exit code 0."""
    cmd = [ffmpeg, *BASE_ARGS, *(global_args or []), *args]
    parser = ProgressParser(expected)
    tail: deque[str] = deque(maxlen=STDERR_LINES)
    read_errors: list[str] = []
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise StepFailed(step, steps, f"could not start {ffmpeg}: {exc}") from None

    def read_stderr() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            for url, shown in (redact or {}).items():
                if url in line:
                    line = line.replace(url, shown)
                    read_errors.append(line)
            tail.append(line)

    def read_progress() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            p = parser.feed(raw.decode("utf-8", "replace"))
            if p is not None and on_progress is not None:
                on_progress(p)

    readers = [threading.Thread(target=t, daemon=True) for t in (read_stderr, read_progress)]
    for r in readers:
        r.start()
    try:
        if on_start is not None:
            on_start()
        try:
            code = _wait(proc, timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            raise StepFailed(step, steps, f"timed out after {timeout:.0f}s", _tail(tail)) from None
    finally:
        if proc.poll() is None:
            _kill(proc)
        for r in readers:
            r.join(timeout=5)
    elapsed = time.monotonic() - started
    if code != 0:
        why = f"was killed by signal {-code}" if code < 0 else f"failed with exit code {code}"
        raise (InputReadFailed if read_errors else StepFailed)(step, steps, why, _tail(tail))
    if read_errors:
        raise InputReadFailed(step, steps, "could not read a streamed input", "\n".join(read_errors[-5:]))
    return elapsed


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """`proc.wait(timeout)`, told of the exit at once: Popen.wait with a timeout polls, sleeping up
    to 50 ms between checks, which every job paid after FFmpeg's exit (issue 15). A pidfd becomes
    readable when the process exits (Linux 5.3+); elsewhere, Popen's own wait."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        return proc.wait(timeout=timeout)
    try:
        ready, _, _ = select.select([fd], [], [], max(timeout, 0))
    finally:
        os.close(fd)
    if not ready:
        raise subprocess.TimeoutExpired(proc.args, timeout)
    return proc.wait()


def _tail(lines: deque[str]) -> str:
    text = "\n".join(line for line in lines if line.strip())
    return text[-ERROR_TAIL_CHARS:]
