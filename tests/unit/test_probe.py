"""ffprobe analysis on real media generated with lavfi: sections, field selection, controls, limits."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from ffmpegjob_model.probe import ProbeFailed, ProbeOptionsError, build_args, media_summary, probe


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("probe") / "clip.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=2:size=320x240:rate=25",
         "-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:v", "libx264", "-preset", "ultrafast",
         "-c:a", "aac", "-shortest", "-metadata", "title=Probe me", str(path)],
        check=True,
    )  # fmt: skip
    return path


def test_default_is_format_and_streams_with_every_field(media: Path) -> None:
    out = probe(str(media))
    assert set(out) == {"format", "streams"}
    assert float(out["format"]["duration"]) == pytest.approx(2.0, abs=0.1)
    assert out["format"]["filename"] == "clip.mp4"  # no local path leaks
    assert [s["codec_type"] for s in out["streams"]] == ["video", "audio"]


def test_field_selection_returns_only_the_fields_asked_for(media: Path) -> None:
    out = probe(
        str(media),
        {"format": ["duration", "size", "bit_rate", "tags"], "streams": ["codec_name", "width", "height"],
         "select_streams": "v:0"},
    )  # fmt: skip
    assert set(out) == {"format", "streams"}
    assert set(out["format"]) == {"duration", "size", "bit_rate", "tags"}
    assert out["format"]["tags"]["title"] == "Probe me"
    assert out["streams"] == [{"codec_name": "h264", "width": 320, "height": 240}]


def test_frames_with_read_intervals_and_count_frames(media: Path) -> None:
    frames = probe(str(media), {"frames": ["pts_time", "pict_type"], "select_streams": "v:0", "read_intervals": "%+#5"})
    assert len(frames["frames"]) == 5 and frames["frames"][0]["pict_type"] == "I"
    counted = probe(str(media), {"streams": ["codec_name"], "select_streams": "v", "count_frames": True})
    assert counted["streams"][0]["nb_read_frames"] == "50"
    packets = probe(str(media), {"packets": ["size"], "select_streams": "a:0", "read_intervals": "0%+0.5"})
    assert packets["packets"] and all("size" in p for p in packets["packets"])


def test_empty_sections_and_probe_controls(media: Path) -> None:
    out = probe(str(media), {"chapters": [], "programs": [], "analyzeduration": "5s", "probesize": "10M"})
    assert out == {"chapters": [], "programs": []}
    assert build_args_contains({"probesize": "10M", "analyzeduration": "500ms"}, ["-probesize", "10000000"])
    assert build_args_contains({"analyzeduration": "10s"}, ["-analyzeduration", "10000000"])


def build_args_contains(opts: dict[str, object], part: list[str]) -> bool:
    from ffmpegjob_model.probe import ProbeOptions

    args = build_args(ProbeOptions.model_validate(opts))
    return any(args[i : i + len(part)] == part for i in range(len(args)))


@pytest.mark.parametrize(
    ("opts", "why"),
    [
        ({"frames": []}, "require select_streams"),
        ({"packets": ["size"]}, "require select_streams"),
        ({"streams": ["codec_name=x:format"]}, "field name"),
        ({"select_streams": "v:0 -show_data"}, "stream specifier"),
        ({"read_intervals": "0%+10;rm"}, "interval"),
        ({"analyzeduration": "2m"}, "between 0 and 60s"),
        ({"analyzeduration": "soon"}, "not a duration"),
        ({"probesize": "51MB"}, "50 MB"),
        ({"probesize": "big"}, "not a size"),
        ({"unknown": True}, "invalid probe options"),
    ],
)
def test_bad_options_are_a_value_error_with_a_clear_message(media: Path, opts: dict[str, object], why: str) -> None:
    with pytest.raises(ProbeOptionsError, match=why):
        probe(str(media), opts)
    assert issubclass(ProbeOptionsError, ValueError)


def test_unreadable_input_and_refused_url(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not media at all")
    with pytest.raises(ProbeFailed, match="ffprobe failed"):
        probe(str(junk))
    with pytest.raises(ValueError, match="https"):
        probe("http://example.com/a.mp4")
    with pytest.raises(ValueError, match="metadata"):
        probe("https://169.254.169.254/latest")


def test_media_summary(media: Path) -> None:
    s = media_summary(str(media))
    assert s["video_codec"] == "h264" and s["audio_codec"] == "aac"
    assert (s["width"], s["height"]) == (320, 240)
    assert s["duration"] == pytest.approx(2.0, abs=0.1) and s["bit_rate"] > 0


def test_the_workers_fixed_requests_are_what_build_args_makes(media: Path) -> None:
    """media_summary and duration run spelled-out arguments (no pydantic in the worker): the same
    as build_args makes of the same requests, with the same answers."""
    from ffmpegjob_model.probe import DURATION_ARGS, MEDIA_SUMMARY_ARGS, ProbeOptions, duration

    media_request = ProbeOptions(format=["duration", "bit_rate", "format_name"],
                                 streams=["codec_type", "codec_name", "width", "height"])
    assert tuple(build_args(media_request)) == MEDIA_SUMMARY_ARGS
    assert tuple(build_args(ProbeOptions(format=["duration"]))) == DURATION_ARGS
    for _ in range(2):  # a second call runs the same request
        assert duration(str(media)) == float(probe(str(media), {"format": ["duration"]})["format"]["duration"])
        assert media_summary(str(media))["video_codec"] == "h264"
