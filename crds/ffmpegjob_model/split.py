"""Split-and-stitch: which work can be cut into chunks, where to cut, and the commands each part runs.

Pure functions, shared by the api (refuse at submission), the operator (decide, probe, plan) and the
worker (run a chunk or the stitch). How a split job runs:

1. the input is probed once: every video packet's timestamp and keyframe flag (`probe_args`);
2. `plan_chunks` cuts it at keyframes into N ranges balanced by duration;
3. chunk i runs the user's command with `-ss <keyframe i> -t <up to half a frame before keyframe
   i+1>` on the input, video only (`-an -sn -dn`): input seeking lands exactly on the keyframe, and
   the half-frame margin makes the end exact whatever the rounding, so chunks neither overlap nor
   drop a frame (`SplitCommand.chunk_args`);
4. the stitch joins the segments with the concat demuxer and `-c:v copy`, and takes everything
   that is not video (audio, subtitles, metadata) from the original input with the user's own
   audio and container options, encoded once over the whole stream: no gaps or priming samples
   at the seams (`SplitCommand.stitch_args`).

`analyze(spec)` returns a `SplitCommand` or raises `NotSplittable` naming the option at fault.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from .commands import CommandSyntaxError, effective_commands, exact_placeholder, placeholder
from .filtergraph import filters
from .model import MAX_CHUNKS, ChunkRange, FFmpegJobSpec
from .outputs import OutputKind, output_kind

# Output containers whose segments the concat demuxer joins with `-c copy`.
CONCAT_CONTAINERS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".ts", ".m2ts", ".mts"})
IMAGE_EXTENSIONS = frozenset({
    ".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".avif", ".heic", ".tga", ".dpx", ".exr",
})
SEGMENT_LIST = "segments.txt"

# Options that take no value (everything else that starts with `-` takes one).
FLAGS = frozenset({
    "-an", "-vn", "-sn", "-dn", "-y", "-n", "-shortest", "-re", "-nostdin", "-hide_banner", "-stats",
    "-nostats", "-copyts", "-start_at_zero", "-accurate_seek", "-noaccurate_seek", "-autorotate",
    "-noautorotate", "-ignore_unknown", "-copy_unknown", "-benchmark", "-benchmark_all", "-dump", "-hex",
    "-xerror", "-debug_ts", "-vstats", "-qphist", "-stdin", "-apad", "-fix_sub_duration",
})
# Options whose meaning depends on absolute time, the frame count or the whole stream.
TIME_OPTIONS = {
    "-ss": "starts at an absolute time",
    "-sseof": "starts relative to the end of the input",
    "-t": "limits the duration",
    "-to": "stops at an absolute time",
    "-itsoffset": "shifts the input's timestamps",
    "-frames": "counts frames over the whole output",
    "-vframes": "counts frames over the whole output",
    "-aframes": "counts frames over the whole output",
    "-fs": "limits the size of the whole output",
    "-shortest": "ends the output with its shortest stream",
    "-pass": "is a two-pass encode (each pass reads the whole stream)",
    "-passlogfile": "is a two-pass encode (each pass reads the whole stream)",
    "-force_key_frames": "places keyframes at absolute times",
    "-r": "changes the frame rate (frames at the seams would be doubled or dropped)",
    "-fpsmax": "changes the frame rate (frames at the seams would be doubled or dropped)",
    "-framerate": "reads an image sequence",
    "-stream_loop": "loops the input",
    "-loop": "loops the input",
    "-filter_complex": "can mix streams and times: use -vf/-af",
    "-lavfi": "can mix streams and times: use -vf/-af",
    "-filter_complex_script": "can mix streams and times: use -vf/-af",
    "-pattern_type": "reads an image sequence",
    "-copyts": "keeps the input's absolute timestamps",
    "-timecode": "writes an absolute timecode",
    "-vstats": "writes per-frame statistics of the whole stream",
    "-stats_enc_pre": "writes per-frame statistics of the whole stream",
}
# Muxers that write many files or a manifest, formats without a stream to cut.
UNSPLITTABLE_FORMATS = {
    "hls": "writes an HLS playlist", "dash": "writes a DASH manifest", "segment": "writes many files",
    "ssegment": "writes many files", "stream_segment": "writes many files", "image2": "is an image sequence",
    "image2pipe": "is an image sequence", "tee": "writes several outputs", "concat": "joins inputs",
    "lavfi": "generates its input", "gif": "cannot be joined with -c copy", "apng": "cannot be joined",
}
# Video filters whose result depends on absolute time, the frame number or neighbouring frames.
TIME_FILTERS = {
    "fade": "fades at an absolute time or frame",
    "select": "selects frames by number or time",
    "reverse": "needs the whole stream",
    "loop": "loops frames of the whole stream",
    "concat": "joins streams",
    "trim": "cuts at absolute times",
    "setpts": "rewrites timestamps",
    "settb": "rewrites timestamps",
    "tpad": "pads the start or the end of the stream",
    "framestep": "keeps every Nth frame of the whole stream",
    "fps": "changes the frame rate (frames at the seams would be doubled or dropped)",
    "framerate": "changes the frame rate (frames at the seams would be doubled or dropped)",
    "minterpolate": "interpolates across neighbouring frames",
    "tmix": "mixes neighbouring frames",
    "tblend": "blends neighbouring frames",
    "deflicker": "averages neighbouring frames",
    "mpdecimate": "drops frames by comparison with earlier ones",
    "decimate": "drops frames in cycles over the whole stream",
    "random": "reorders frames",
    "thumbnail": "picks frames over batches",
    "zoompan": "counts frames",
    "showinfo": "prints absolute frame numbers",
    "telecine": "works in cycles over the whole stream",
    "detelecine": "works in cycles over the whole stream",
    "shuffleframes": "reorders frames",
    "palettegen": "needs the whole stream",
    "paletteuse": "needs the whole stream",
}
# An expression that uses time or the frame number (crop=x='t*10', overlay enable=...).
_TIME_EXPR = re.compile(r"(?<![A-Za-z0-9_])(t|n|T|N|pts|PTS|frame_num|selected_n)(?![A-Za-z0-9_])(?!\s*=)")
# Audio options: the stitch applies them once to the whole audio.
AUDIO_OPTIONS = frozenset({
    "-acodec", "-ab", "-ar", "-ac", "-af", "-aq", "-sample_fmt", "-channel_layout", "-ch_layout", "-atag",
    "-aac_coder", "-cutoff", "-apre", "-absf", "-alang",
})
# Container and stream-copy options: the stitch applies them to the final file.
CONTAINER_OPTIONS = frozenset({
    "-movflags", "-metadata", "-map_metadata", "-map_chapters", "-brand", "-write_tmcd", "-avoid_negative_ts",
    "-use_editlist", "-fflags", "-max_muxing_queue_size", "-disposition", "-write_id3v2", "-cues_to_front",
    "-reserve_index_space", "-mpegts_flags", "-muxdelay", "-muxpreload", "-strict",
})
# Options given to both the chunks and the stitch.
BOTH_OPTIONS = frozenset({"-f", "-threads", "-strict", "-max_muxing_queue_size", "-c", "-codec", "-q", "-qscale"})
_MAP = re.compile(r"^(-?)0(?::([vVas])(?::(\d+))?)?(\??)$")


class NotSplittable(ValueError):
    """The work cannot run as split-and-stitch; the message names the reason."""


@dataclass(frozen=True)
class SplitCommand:
    """The user's one command, taken apart into what the chunks and the stitch run."""

    input_name: str
    output_name: str
    input_options: list[str] = field(default_factory=list)
    video_options: list[str] = field(default_factory=list)  # chunks: video maps, codecs, filters
    stitch_options: list[str] = field(default_factory=list)  # audio, container, metadata
    stitch_maps: list[str] | None = None  # None: FFmpeg's own stream choice, video from the segments

    @property
    def segment_ext(self) -> str:
        return posixpath.splitext(self.output_name)[1].lower()

    def chunk_args(self, chunk: ChunkRange, segment: str) -> list[str]:
        """One chunk: the range of the input (with its `{{input}}` placeholder), video only."""
        # The first chunk reads from the start like a single encode would (same timestamps, so the
        # same frame-rate handling at the start); the others seek to their keyframe.
        cut = (["-ss", chunk.seek] if chunk.seek is not None else []) + (
            ["-t", chunk.length] if chunk.length is not None else [])
        args = [
            *self.input_options, *cut, "-i", placeholder(self.input_name),
            *self.video_options, "-an", "-sn", "-dn", "-map_metadata", "-1", segment,
        ]
        if chunk.seek is None and "-an" not in self.stitch_options:
            # FFmpeg's frame-rate logic at the start of a single encode depends on the audio being
            # read too (a video starting after its audio gets its first frame doubled in a CFR
            # output): read it here as well, into nothing, so that the first chunk starts the same.
            args += ["-map", "0:a?", "-c:a", "copy", "-f", "null", "-"]
        return args

    def stitch_args(self, segment_list: str = SEGMENT_LIST, video_offset: float = 0.0) -> list[str]:
        """The segments (input 1) joined as they are, the rest of the original input (input 0)
        encoded once with the user's options, into the declared output's placeholder.
        `video_offset`: the first segment's video start time (the concat demuxer starts the joined
        video at 0): where a single encode would have started it, for the same A/V sync."""
        if self.stitch_maps is None:
            first = ["-vn", "-i", placeholder(self.input_name)]  # -vn as an input option: video from input 1
            maps: list[str] = []
        else:
            first = ["-i", placeholder(self.input_name)]
            maps = self.stitch_maps
        offset = ["-itsoffset", f"{video_offset:.6f}"] if video_offset > 0 else []
        return [
            *first, *offset, "-f", "concat", "-i", segment_list, *maps,
            *self.stitch_options, "-c:v", "copy", placeholder(self.output_name),
        ]


def segment_list(names: Iterable[str]) -> str:
    """The concat demuxer's list file: plain names in the stitch's folder (no `-safe 0` needed)."""
    return "".join(f"file '{n}'\n" for n in names)


# --------------------------------------------------------------------------------- analysis
def _stream_type(opt: str) -> str | None:
    """`-c:a:0` -> 'a', `-b:v` -> 'v', `-crf` -> None."""
    parts = opt.split(":")
    return parts[1] if len(parts) > 1 and parts[1] in ("v", "V", "a", "s", "d", "t") else None


def _check_video_filters(graph: str, opt: str) -> None:
    for name, args in filters(graph):
        if name in TIME_FILTERS:
            raise NotSplittable(f"{opt} filter '{name}' {TIME_FILTERS[name]}")
        if "enable=" in args:
            raise NotSplittable(f"{opt} filter '{name}' uses timeline editing (enable=) at absolute times")
        if name == "drawtext" and ("%{" in args or "timecode" in args):
            raise NotSplittable(f"{opt} filter 'drawtext' draws the time or the frame number")
        m = _TIME_EXPR.search(args.replace("\\:", ":"))
        if m and name not in ("format", "scale", "pad", "drawtext", "subtitles", "ass"):
            raise NotSplittable(f"{opt} filter '{name}' uses '{m.group(1)}' (time or frame number) in an expression")


def _input_ext(spec: FFmpegJobSpec, name: str) -> str:
    inp = next((i for i in spec.inputs if i.name == name), None)
    source = inp.source.split("?", 1)[0] if inp else name
    return posixpath.splitext(source)[1].lower() or posixpath.splitext(name)[1].lower()


def analyze(spec: FFmpegJobSpec) -> SplitCommand:
    """The split form of a job's work, or NotSplittable with the reason."""
    if len(spec.inputs) != 1:
        raise NotSplittable(f"split-and-stitch needs exactly one input; this job has {len(spec.inputs)}")
    if len(spec.outputs) != 1:
        raise NotSplittable(f"split-and-stitch needs exactly one output; this job has {len(spec.outputs)}")
    kind = output_kind(spec.outputs[0].name)
    if kind != OutputKind.FILE:
        # The stitch joins one file per chunk; a segmenting muxer (HLS, segment, image2) writes a
        # set of files whose names and cuts depend on the whole run: it cannot be joined.
        raise NotSplittable(f"output {spec.outputs[0].name!r} is a {kind} output: split-and-stitch joins "
                            "chunks into one file; a segmenting muxer (HLS, segment, image2) runs in one pod")
    if spec.commands and len(spec.commands) > 1:
        raise NotSplittable(f"split-and-stitch runs one command; this job chains {len(spec.commands)}")
    if spec.filter_complex:
        raise NotSplittable("filterComplex can mix streams and times: use per-output -vf/-af options")
    try:
        (args,) = effective_commands(spec)
    except CommandSyntaxError as e:
        raise NotSplittable(str(e)) from None
    in_name, out_name = spec.inputs[0].name, spec.outputs[0].name

    in_opts: list[str] = []
    out_opts: list[tuple[str, str | None]] = []
    pending: list[tuple[str, str | None]] = []
    inputs: list[str] = []
    outputs: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "-i":
            if i + 1 >= len(args):
                raise NotSplittable("-i without a file")
            inputs.append(args[i + 1])
            for opt, val in pending:
                in_opts += [opt] + ([val] if val is not None else [])
                _check_input_option(opt, val)
            if inputs[-1] != placeholder(in_name) and exact_placeholder(inputs[-1]) != in_name:
                raise NotSplittable(f"input {args[i + 1]!r} is not the job's media input {{{{{in_name}}}}}")
            pending = []
            i += 2
            continue
        if a.startswith("-") and len(a) > 1:
            if a in FLAGS or a.split(":", 1)[0] in FLAGS:
                pending.append((a, None))
                i += 1
            else:
                if i + 1 >= len(args):
                    raise NotSplittable(f"option {a} has no value")
                pending.append((a, args[i + 1]))
                i += 2
            continue
        outputs.append(a)
        out_opts += pending
        pending = []
        i += 1
    if pending:
        raise NotSplittable(f"options after the last output: {' '.join(p[0] for p in pending)}")
    if len(inputs) != 1:
        raise NotSplittable(f"split-and-stitch needs one `-i` input; the command has {len(inputs)}")
    if len(outputs) != 1 or exact_placeholder(outputs[0]) != out_name:
        raise NotSplittable(f"split-and-stitch needs one output, {{{{{out_name}}}}}; the command writes {outputs}")
    in_ext = _input_ext(spec, in_name)
    if in_ext in IMAGE_EXTENSIONS or "%" in spec.inputs[0].source:
        raise NotSplittable(f"input {in_name!r} is an image or an image sequence")
    ext = posixpath.splitext(out_name)[1].lower()
    if ext not in CONCAT_CONTAINERS:
        raise NotSplittable(
            f"output {out_name!r}: {ext or 'no extension'} segments cannot be joined with -c copy "
            f"(splittable containers: {', '.join(sorted(CONCAT_CONTAINERS))})"
        )
    video, stitch, maps = _classify_output_options(out_opts)
    return SplitCommand(in_name, out_name, in_opts, video, stitch, maps)


def _check_input_option(opt: str, val: str | None) -> None:
    base = opt.split(":", 1)[0]
    if base in TIME_OPTIONS:
        raise NotSplittable(f"input option {opt} {TIME_OPTIONS[base]}")
    if base == "-f" and val is not None and val in UNSPLITTABLE_FORMATS:
        raise NotSplittable(f"input format -f {val} {UNSPLITTABLE_FORMATS[val]}")


def _classify_output_options(
    opts: list[tuple[str, str | None]],
) -> tuple[list[str], list[str], list[str] | None]:
    video: list[str] = []
    stitch: list[str] = []
    user_maps = [v for o, v in opts if o == "-map" and v is not None]
    stitch_maps: list[str] | None = None
    if user_maps:
        stitch_maps = []
        seen_video = False
        for m in user_maps:
            mm = _MAP.match(m)
            if mm is None:
                raise NotSplittable(f"-map {m}: only maps of input 0 by stream type (0, 0:v, 0:a:1, 0:s?) can be split")
            neg, kind, _idx, _opt = mm.groups()
            if kind in ("v", "V"):
                if neg:
                    raise NotSplittable(f"-map {m}: removing video streams cannot be split")
                video += ["-map", m]
                if not seen_video:
                    stitch_maps += ["-map", "1:v"]
                    seen_video = True
            elif kind is None:  # every stream of the input
                if neg:
                    raise NotSplittable(f"-map {m}: removes the only input")
                video += ["-map", "0:V" + ("?" if m.endswith("?") else "")]
                if not seen_video:
                    stitch_maps += ["-map", "1:v"]
                    seen_video = True
                stitch_maps += ["-map", m, "-map", "-0:v"]
            else:
                stitch_maps += ["-map", m]
        if not seen_video:
            raise NotSplittable("the maps select no video stream: nothing to split")
    for opt, val in opts:
        if opt == "-map":
            continue
        base = opt.split(":", 1)[0]
        kind = _stream_type(opt)
        pair = [opt] + ([val] if val is not None else [])
        if base in TIME_OPTIONS:
            raise NotSplittable(f"{opt} {TIME_OPTIONS[base]}")
        if opt == "-vn":
            raise NotSplittable("-vn: the output has no video to split")
        if base == "-f" and val in UNSPLITTABLE_FORMATS:
            raise NotSplittable(f"output format -f {val} {UNSPLITTABLE_FORMATS[val]}")
        if base.startswith(("-hls_", "-segment_", "-seg_", "-dash_", "-window_size")):
            raise NotSplittable(f"{opt}: segmenting muxer options cannot be split")
        if base in ("-c", "-codec", "-vcodec") and kind in (None, "v", "V") and val == "copy":
            raise NotSplittable(f"{opt} copy: the video is not encoded, there is nothing to split")
        if base in ("-vf", "-filter") and kind in (None, "v", "V"):
            _check_video_filters(val or "", opt)
        if (base in ("-x264-params", "-x265-params", "-x264opts", "-svtav1-params", "-aom-params")
                and val is not None and re.search(r"(^|[:,])(pass|stats|passes)=", val)):
            raise NotSplittable(f"{opt} {val}: a multi-pass encode reads the whole stream in each pass")
        if base in ("-vsync", "-fps_mode") and val in ("cfr", "1"):
            raise NotSplittable(f"{opt} {val} duplicates or drops frames over the whole stream")
        if opt in ("-an", "-sn", "-dn") or kind in ("a", "s", "d", "t") or base in AUDIO_OPTIONS:
            stitch += pair
        elif base in BOTH_OPTIONS and kind is None:
            video += pair
            stitch += pair
        elif base in CONTAINER_OPTIONS or (base == "-metadata" and kind is None):
            stitch += pair
        else:  # video options, encoder private options (-crf, -preset, -x264-params, -g ...)
            video += pair
    return video, stitch, stitch_maps


def splittable(spec: FFmpegJobSpec) -> str | None:
    """None when the job can be split, else the reason it cannot."""
    try:
        analyze(spec)
    except NotSplittable as e:
        return str(e)
    return None


# --------------------------------------------------------------------------------- probe / plan
def probe_args(source: str) -> list[str]:
    """ffprobe arguments listing every video packet's pts and flags (no decoding)."""
    return [
        "-v", "error", "-select_streams", "V:0",
        "-show_entries", "stream=codec_type,time_base:format=start_time,duration,format_name:packet=pts,flags",
        "-of", "json", source,
    ]


@dataclass(frozen=True)
class Probe:
    """The input's video timeline: exact packet times (seconds from the file's start time)."""

    times: list[Fraction]  # every video frame, sorted
    keyframes: list[Fraction]  # sorted, a subset of times
    start_us: int  # the file's start time in microseconds (FFmpeg's -ss is relative to it)
    format_name: str = ""

    @property
    def frame_interval(self) -> Fraction:
        gaps = [b - a for a, b in zip(self.times, self.times[1:], strict=False) if b > a]
        return min(gaps) if gaps else Fraction(1, 25)

    @property
    def duration(self) -> float:
        if not self.times:
            return 0.0
        return float(self.times[-1] - self.times[0] + self.frame_interval)


def parse_probe(data: dict[str, Any]) -> Probe:
    """ffprobe's JSON (`probe_args`) -> Probe; NotSplittable when there is no video to cut."""
    streams = data.get("streams") or []
    assert isinstance(streams, list)
    if not streams:
        raise NotSplittable("the input has no video stream")
    tb = Fraction(str(streams[0].get("time_base") or "1/1000"))
    fmt = data.get("format") or {}
    assert isinstance(fmt, dict)
    format_name = str(fmt.get("format_name") or "")
    if any(f in format_name.split(",") for f in ("image2", "png_pipe", "jpeg_pipe", "webp_pipe", "gif")):
        raise NotSplittable(f"the input is an image ({format_name})")
    start = str(fmt.get("start_time") or "0")
    start_us = _us(Fraction(start)) if start not in ("N/A", "") else 0
    times, keys = [], []
    for p in data.get("packets") or []:
        pts = p.get("pts")
        if pts is None or pts == "N/A":
            continue
        t = Fraction(int(pts)) * tb
        times.append(t)
        if "K" in str(p.get("flags", "")):
            keys.append(t)
    if len(times) < 2:
        raise NotSplittable("the input has fewer than two video frames")
    return Probe(sorted(times), sorted(set(keys)), start_us, format_name)


def _us(t: Fraction) -> int:
    return math.floor(t * 1_000_000)


def _secs(us: int) -> str:
    sign = "-" if us < 0 else ""
    us = abs(us)
    return f"{sign}{us // 1_000_000}.{us % 1_000_000:06d}"


def chunk_count(duration: float, *, chunks: int | None, chunk_seconds: float | None, auto_max: int,
                min_chunk_seconds: float) -> int:
    """How many chunks: as asked, or from the length (`chunkSeconds`), or for `mode: auto` as
    many as may run at once while no chunk is shorter than `min_chunk_seconds`."""
    if chunks is not None:
        n = chunks
    elif chunk_seconds is not None:
        n = math.ceil(duration / chunk_seconds)
    else:
        n = min(auto_max, math.floor(duration / min_chunk_seconds))
    return max(1, min(n, MAX_CHUNKS))


def plan_chunks(probe: Probe, n: int) -> list[ChunkRange]:
    """Cut at the keyframes nearest to equal shares of the duration (balance by time, not by
    keyframe count). Fewer chunks than asked when the input has too few keyframes."""
    first, frames = probe.times[0], probe.times
    total = Fraction(probe.duration).limit_denominator(10**9)
    usable = [k for k in probe.keyframes if k > first]
    cuts: list[Fraction] = []
    for j in range(1, n):
        target = first + total * j / n
        best = min(usable, key=lambda k: abs(k - target), default=None)
        if best is not None and (not cuts or best > cuts[-1]):
            cuts.append(best)
    half = probe.frame_interval / 2
    bounds = [first, *cuts]
    out: list[ChunkRange] = []
    for i, start in enumerate(bounds):
        end = bounds[i + 1] if i + 1 < len(bounds) else None
        count = sum(1 for t in frames if t >= start and (end is None or t < end))
        # -ss is relative to the file's start time; floor so the seek target is never after the keyframe.
        seek = None if i == 0 else _secs(max(0, _us(start) - probe.start_us))
        # The trim of `-t` counts from the first frame kept (the keyframe itself).
        length = None if end is None else _secs(_us(end - half - start))
        out.append(ChunkRange(index=i, start=float(start - Fraction(probe.start_us, 10**6)),
                              end=None if end is None else float(end - Fraction(probe.start_us, 10**6)),
                              frames=count, seek=seek, length=length))
    return out
