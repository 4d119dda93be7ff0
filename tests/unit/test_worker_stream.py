"""Which inputs the worker lets FFmpeg read straight from storage, and the options it adds."""

from __future__ import annotations

from pathlib import Path

import pytest
from ffmpeg_worker.run import InputReadFailed, run_ffmpeg
from ffmpeg_worker.stream import streamable
from ffmpeg_worker.worker import _with_stream_options

LOCAL = {"in": "inputs/in.mp4", "subs": "inputs/subs.srt", "list": "inputs/list.mp4", "v": "inputs/v.mkv"}


def test_plain_container_inputs_are_streamed() -> None:
    assert streamable([["-i", "{{in}}", "-i", "<< v >>", "-map", "0", "-map", "1", "o.mp4"]], LOCAL) >= {"in", "v"}


def test_inputs_used_other_than_as_plain_dash_i_are_downloaded() -> None:
    cmds = [
        ["-i", "{{in}}", "-vf", "subtitles={{subs}}", "o.mp4"],  # a filter reads it: not an -i
        ["-f", "concat", "-i", "{{list}}", "-c", "copy", "c.mp4"],  # forced format (a list)
        ["-i", "{{v}}", "-vf", "movie={{v}}", "x.mp4"],  # also read by a filter
    ]
    assert streamable(cmds, LOCAL) == {"in"}


def test_a_forced_format_on_another_input_does_not_count() -> None:
    cmds = [["-f", "lavfi", "-i", "color=c=black", "-i", "{{in}}", "o.mp4"]]
    assert "in" in streamable(cmds, LOCAL)


def test_unknown_extensions_are_downloaded() -> None:
    assert streamable([["-i", "{{raw}}", "o.mp4"]], {"raw": "inputs/raw.h264"}) == set()


def test_stream_options_go_before_the_streamed_input_only() -> None:
    url = "http://s3.local/b/files/t/d/in.mp4?X-Amz-Signature=1"
    out = _with_stream_options(["-ss", "1", "-i", url, "-i", "inputs/a.wav", "o.mp4"], {url: "inputs/in.mp4"})
    i = out.index(url)
    assert out[i - 1] == "-i" and out[out.index("-protocol_whitelist") + 1] == "http,tcp"
    assert out.index("-protocol_whitelist") < i and out[:2] == ["-ss", "1"]
    assert out[i + 1 :] == ["-i", "inputs/a.wav", "o.mp4"]


def test_a_streamed_input_that_cannot_be_read_is_an_input_failure_without_the_url(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/files/t/d/in.mp4?Signature=secret"  # nothing listens on port 9
    args = _with_stream_options(["-i", url, "-c", "copy", "out.mp4"], {url: "inputs/in.mp4"})
    with pytest.raises(InputReadFailed) as err:
        run_ffmpeg(args, cwd=tmp_path, step=1, steps=1, timeout=30, redact={url: "inputs/in.mp4"})
    assert "inputs/in.mp4" in str(err.value) and "secret" not in str(err.value)
