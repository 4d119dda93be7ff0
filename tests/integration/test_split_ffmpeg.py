"""The split-and-stitch commands themselves, with real FFmpeg on local files (no stack): for inputs
of several kinds (B-frames, MPEG-TS starting at 1.4 s, 29.97 fps, odd keyframe spacing, no audio),
probe -> plan -> chunk commands -> stitch command gives the single encode's frames, timing and audio.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ffmpegjob_model.commands import render
from ffmpegjob_model.model import FFmpegJobSpec
from ffmpegjob_model.split import analyze, parse_probe, plan_chunks, probe_args, segment_list
from ffmpegjob_model.storage_layout import segment_name

ENCODE = "-c:v libx264 -preset veryfast -crf 23 -c:a aac -b:a 96k"


def ff(*args: str, cwd: Path) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, cwd=cwd)


def streams(path: Path) -> dict[str, dict[str, Any]]:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_packets", "-show_entries",
                          "stream=codec_type,start_time,duration,nb_read_packets", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return {s["codec_type"]: s for s in json.loads(out)["streams"]}


INPUTS = {
    # name: (lavfi video, extra encode options of the input, file name)
    "mp4_bframes": ("testsrc2=size=320x240:rate=30:duration=9", ["-g", "60"], "in.mp4"),
    "ts_offset_2997": ("testsrc2=size=320x240:rate=30000/1001:duration=9", ["-g", "48"], "in.ts"),
    "mkv_odd_gop": ("testsrc2=size=320x240:rate=25:duration=9", ["-g", "37", "-keyint_min", "37"], "in.mkv"),
    "mp4_no_audio": ("testsrc2=size=320x240:rate=24:duration=9", ["-g", "24", "-an"], "in.mp4"),
}


@pytest.mark.parametrize("kind", list(INPUTS))
@pytest.mark.parametrize("chunks", [2, 3])
def test_split_commands_reproduce_the_single_encode(tmp_path: Path, kind: str, chunks: int) -> None:
    video, opts, name = INPUTS[kind]
    audio = [] if "-an" in opts else ["-f", "lavfi", "-i", "sine=frequency=300:beep_factor=3:duration=9"]
    ff("-f", "lavfi", "-i", video, *audio, "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", *opts,
       *(["-c:a", "aac", "-shortest"] if audio else []), name, cwd=tmp_path)
    spec = FFmpegJobSpec.model_validate({
        "inputs": [{"name": "in", "source": f"d/{name}"}], "outputs": [{"name": "out.mp4"}],
        "commands": [f"-i {{{{in}}}} {ENCODE} {{{{out.mp4}}}}"], "output": {"dirId": "d"},
        "parallel": {"chunks": chunks}})
    cmd = analyze(spec)
    probe = parse_probe(json.loads(subprocess.run(["ffprobe", *probe_args(name)], capture_output=True, text=True,
                                                  check=True, cwd=tmp_path).stdout))
    plan = plan_chunks(probe, chunks)
    assert len(plan) == chunks
    paths = {"in": name, "out.mp4": "split.mp4"}
    names = []
    for c in plan:
        seg = segment_name(c.index, cmd.segment_ext)
        ff(*render(cmd.chunk_args(c, seg), paths), cwd=tmp_path)
        names.append(seg)
    (tmp_path / "segments.txt").write_text(segment_list(names))
    offset = float(streams(tmp_path / names[0])["video"]["start_time"])
    ff(*render(cmd.stitch_args(video_offset=offset), paths), cwd=tmp_path)
    ff("-i", name, *ENCODE.split(), "single.mp4", cwd=tmp_path)

    single, split = streams(tmp_path / "single.mp4"), streams(tmp_path / "split.mp4")
    # The single encode's frames: the input's, plus what FFmpeg's CFR logic (the mp4 default)
    # doubles at the start where the video starts after the audio (the TS and MKV inputs here).
    assert int(split["video"]["nb_read_packets"]) == int(single["video"]["nb_read_packets"])
    assert sum(c.frames for c in plan) == len(probe.times)
    frame = 1 / 24
    assert abs(float(split["video"]["duration"]) - float(single["video"]["duration"])) <= frame
    # A/V sync as in the single encode: the video starts where it started there
    assert abs(float(split["video"]["start_time"]) - float(single["video"]["start_time"])) <= 0.002, (single, split)
    if "audio" in single:
        assert split["audio"] == single["audio"]
    else:
        assert "audio" not in split
