"""The worker's FFmpeg runner on real FFmpeg: progress parsing, time limits, readable failures."""

from __future__ import annotations

from pathlib import Path

import pytest
from ffmpeg_worker.run import ProgressParser, StepFailed, StepProgress, expected_duration, parse_time, run_ffmpeg

LAVFI = ["-f", "lavfi", "-i", "testsrc=duration=3:size=160x120:rate=25"]


@pytest.mark.parametrize(
    ("text", "seconds"), [("5", 5.0), ("1.5", 1.5), ("00:01:02.5", 62.5), ("01:00", 60.0), ("250ms", 0.25), ("x", None)]
)
def test_parse_time(text: str, seconds: float | None) -> None:
    assert parse_time(text) == seconds


def test_expected_duration_uses_inputs_and_cuts() -> None:
    d = {"inputs/a.mp4": 10.0, "inputs/b.mp4": 4.0}
    assert expected_duration(["-i", "inputs/a.mp4", "-i", "inputs/b.mp4", "o.mp4"], d) == 10.0
    assert expected_duration(["-i", "inputs/a.mp4", "-t", "3", "o.mp4"], d) == 3.0
    assert expected_duration(["-ss", "4", "-i", "inputs/a.mp4", "o.mp4"], d) == 6.0
    assert expected_duration(["-i", "unknown.mp4", "o.mp4"], d) is None


def test_progress_parser_reports_fraction_and_speed_per_block() -> None:
    p = ProgressParser(expected=4.0)
    lines = ["frame=50", "out_time_us=2000000", "speed=2.5x", "progress=continue"]
    got = [p.feed(line) for line in lines]
    assert got[:3] == [None, None, None]
    assert got[3] == StepProgress(fraction=0.5, speed="2.5x", out_time=2.0)
    assert p.feed("out_time_us=N/A") is None and p.feed("progress=end") == StepProgress(1.0, None, 0.0)


def test_run_ffmpeg_reports_progress_and_returns_wall_time(tmp_path: Path) -> None:
    seen: list[StepProgress] = []
    secs = run_ffmpeg(
        [*LAVFI, "-c:v", "libx264", "-preset", "ultrafast", "out.mp4"],
        cwd=tmp_path, step=1, steps=1, timeout=60, expected=3.0, on_progress=seen.append,
    )  # fmt: skip
    assert secs > 0 and (tmp_path / "out.mp4").stat().st_size > 0
    assert seen and seen[-1].fraction == 1.0


def test_failed_command_carries_the_tail_of_stderr(tmp_path: Path) -> None:
    with pytest.raises(StepFailed) as err:
        run_ffmpeg([*LAVFI, "-vf", "nosuchfilter", "out.mp4"], cwd=tmp_path, step=2, steps=3, timeout=60)
    assert str(err.value).startswith("command 2 of 3 failed with exit code")
    assert "No such filter: 'nosuchfilter'" in err.value.stderr_tail


def test_step_time_limit_kills_ffmpeg(tmp_path: Path) -> None:
    endless = ["-re", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=5", "-f", "null", "-"]
    with pytest.raises(StepFailed, match="command 1 of 1 timed out after 1s"):
        run_ffmpeg(endless, cwd=tmp_path, step=1, steps=1, timeout=1.0)


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[dict[str, object]] = []

    def try_patch_status(self, status: dict[str, object]) -> bool:
        self.sent.append(status)
        return True


def test_progress_patches_are_rate_limited_and_the_last_value_is_flushed() -> None:
    from ffmpeg_worker.worker import ProgressReporter

    rec = _Recorder()
    reporter = ProgressReporter(rec, steps=2, interval=60)  # type: ignore[arg-type]
    for i in range(100):
        reporter.update(1, i / 100, "1.0x")
    assert len(rec.sent) == 1  # the first one only: the rest fall inside the interval
    reporter.update(2, 0.5, force=True)
    reporter.update(2, 0.75)
    reporter.flush()
    assert [s["progress"] for s in rec.sent] == [
        {"step": 1, "steps": 2, "percent": 0.0, "speed": "1.0x"},
        {"step": 2, "steps": 2, "percent": 75.0, "speed": None},
        {"step": 2, "steps": 2, "percent": 87.5, "speed": None},
    ]
