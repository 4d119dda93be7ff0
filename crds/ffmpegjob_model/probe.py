"""ffprobe analysis as the "FFmpeg API" seed's `/ffprobe/analyze` defines it, shared by the api and
the worker (which summarises its outputs with `media_summary`).

Sections: format, streams, chapters, programs, frames, packets; each a list of field names, `[]`
meaning every field. Controls: select_streams, read_intervals, count_frames, analyzeduration,
probesize. Limits: 60 s of analysis, 50 MB probe size; frames and packets need select_streams.

`ProbeOptions` (the request, a pydantic model: probeoptions.py) is imported when first used: the
worker's `media_summary` and `duration` run fixed requests and load no pydantic (issue 15).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from typing import TYPE_CHECKING, Any

from .urls import check_url

if TYPE_CHECKING:
    from .plain import URLRulesView
    from .probeoptions import ProbeOptions as ProbeOptions
    from .urls import URLRules

MAX_SECONDS = 60.0
MAX_PROBESIZE = 50 * 1000 * 1000
MAX_OUTPUT_BYTES = 64 * 1024 * 1024
# Section name in the request -> ffprobe's -show_entries section name.
SECTIONS = {
    "format": "format",
    "streams": "stream",
    "chapters": "chapter",
    "programs": "program",
    "frames": "frame",
    "packets": "packet",
}
_FIELD = re.compile(r"[A-Za-z0-9_]{1,64}")
_STREAM_SPEC = re.compile(r"[A-Za-z0-9:#._+-]{1,64}")
_INTERVALS = re.compile(r"[0-9%+#:., -]{1,256}")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(us|ms|s|m|h)?")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 10**6,
    "mb": 10**6,
    "mib": 2**20,
    "g": 10**9,
    "gb": 10**9,
    "gib": 2**30,
}
_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class ProbeOptionsError(ValueError):
    """A probe request that cannot be run as asked; the message says which option and why."""


class ProbeFailed(RuntimeError):
    """ffprobe ran and failed (unreadable file, unreachable URL, time limit)."""


def __getattr__(name: str) -> Any:
    if name == "ProbeOptions":
        from .probeoptions import ProbeOptions

        return ProbeOptions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _seconds(value: str | int) -> float:
    if isinstance(value, int):
        return value / 1e6  # FFmpeg's unit for analyzeduration
    m = _DURATION.fullmatch(value.strip())
    if not m:
        raise ProbeOptionsError(f"analyzeduration {value!r} is not a duration such as '10s' or '500ms'")
    return float(m.group(1)) * _TIME_UNITS[m.group(2) or "s"]


def _bytes(value: str | int) -> int:
    if isinstance(value, int):
        return value
    m = _SIZE.fullmatch(value.strip())
    if not m:
        raise ProbeOptionsError(f"probesize {value!r} is not a size such as '10M' or '5000000'")
    return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()])


def build_args(opts: ProbeOptions) -> list[str]:
    """ffprobe's arguments (without the program name and the input) for a validated request."""
    requested = {k: getattr(opts, k) for k in SECTIONS if getattr(opts, k) is not None}
    if not requested:
        requested = {"format": [], "streams": []}
    if ("frames" in requested or "packets" in requested) and not opts.select_streams:
        raise ProbeOptionsError("frames and packets require select_streams (e.g. 'v:0') to limit the output")
    entries: list[str] = []
    for section, fields in requested.items():
        name = SECTIONS[section]
        plain: list[str] = []
        for f in fields:
            if not _FIELD.fullmatch(f):
                raise ProbeOptionsError(f"{section}: field name {f!r} may hold only letters, digits and '_'")
            if f in ("tags", "disposition", "side_data_list"):
                suffix = "side_data" if f == "side_data_list" else f
                entries.append(f"{name}_{suffix}")
            else:
                plain.append(f)
        if section == "streams" and opts.count_frames and plain and "nb_read_frames" not in plain:
            plain.append("nb_read_frames")
        entries.append(f"{name}={','.join(plain)}" if plain else name)
    args = ["-v", "error", "-hide_banner", "-of", "json", "-show_entries", ":".join(entries)]
    if opts.select_streams:
        if not _STREAM_SPEC.fullmatch(opts.select_streams):
            raise ProbeOptionsError(f"select_streams {opts.select_streams!r} is not a stream specifier such as 'v:0'")
        args += ["-select_streams", opts.select_streams]
    if opts.read_intervals:
        if not _INTERVALS.fullmatch(opts.read_intervals):
            raise ProbeOptionsError(
                f"read_intervals {opts.read_intervals!r} is not an interval list such as '0%+10' or '#500'"
            )
        args += ["-read_intervals", opts.read_intervals]
    if opts.count_frames:
        args.append("-count_frames")
    if opts.analyzeduration is not None:
        secs = _seconds(opts.analyzeduration)
        if not 0 < secs <= MAX_SECONDS:
            raise ProbeOptionsError(f"analyzeduration must be between 0 and {MAX_SECONDS:g}s, got {secs:g}s")
        args += ["-analyzeduration", str(int(secs * 1e6))]
    if opts.probesize is not None:
        size = _bytes(opts.probesize)
        if not 32 <= size <= MAX_PROBESIZE:
            raise ProbeOptionsError(f"probesize must be between 32 bytes and 50 MB, got {size} bytes")
        args += ["-probesize", str(size)]
    return args


def _is_url(target: str) -> bool:
    return "://" in target


def probe(
    target: str,
    options: ProbeOptions | dict[str, Any] | None = None,
    *,
    timeout: float = MAX_SECONDS,
    url_rules: URLRules | None = None,
    check_urls: bool = True,
    ffprobe: str | None = None,
) -> dict[str, Any]:
    """Run ffprobe on a local path or an http(s) URL; return only the requested sections.

    Raises ProbeOptionsError (a ValueError) for a bad request, ProbeFailed when ffprobe fails or
    runs past the time limit. `check_urls=False` is for URLs this system signed itself."""
    from .probeoptions import ProbeOptions

    try:
        opts = options if isinstance(options, ProbeOptions) else ProbeOptions.model_validate(options or {})
    except ValueError as exc:
        raise ProbeOptionsError(f"invalid probe options: {exc}") from None
    wanted = [k for k in SECTIONS if getattr(opts, k) is not None] or ["format", "streams"]
    return _run(target, build_args(opts), wanted, timeout=timeout, url_rules=url_rules, check_urls=check_urls,
                ffprobe=ffprobe)


def _run(target: str, request: list[str] | tuple[str, ...], wanted: list[str], *, timeout: float = MAX_SECONDS,
         url_rules: URLRules | URLRulesView | None = None, check_urls: bool = True,
         ffprobe: str | None = None) -> dict[str, Any]:
    """ffprobe with `request` (build_args') on `target`; the `wanted` sections of its answer."""
    args = list(request)
    shown = target
    if _is_url(target):
        if check_urls:
            check_url(target, url_rules)
        scheme = target.split("://", 1)[0].lower()
        if scheme not in ("http", "https"):
            raise ProbeOptionsError(f"{target!r}: only https URLs can be analysed")
        whitelist = "https,tls,tcp" if scheme == "https" else "http,tcp"
        args += ["-protocol_whitelist", whitelist, "-rw_timeout", str(int(timeout * 1e6))]
    else:
        args += ["-protocol_whitelist", "file"]
        target = "file:" + os.path.abspath(target)  # never read as a protocol or option
    cmd = [ffprobe or os.environ.get("FFPROBE_BIN", "ffprobe"), *args, "-i", target]
    timeout = min(timeout, MAX_SECONDS)
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ProbeFailed(f"analysis took longer than {timeout:g}s; narrow it with read_intervals") from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ProbeFailed("ffprobe failed: " + (" | ".join(err[-5:]) or f"exit code {proc.returncode}"))
    if len(proc.stdout) > MAX_OUTPUT_BYTES:
        raise ProbeFailed("ffprobe output exceeds 64 MB; narrow it with read_intervals or fewer fields")
    data: dict[str, Any] = json.loads(proc.stdout or b"{}")
    out: dict[str, Any] = {}
    for k in wanted:
        default: Any = {} if k == "format" else []
        out[k] = data.get(k, default)
    if isinstance(out.get("format"), dict) and "filename" in out["format"]:
        out["format"]["filename"] = shown if _is_url(shown) else os.path.basename(shown)  # no local paths
    return out


# build_args of the worker's two fixed requests, spelled out so that they need no ProbeOptions
# (tests/unit/test_probe.py keeps them equal): media_summary's, and an input's duration.
MEDIA_SUMMARY_ARGS = ("-v", "error", "-hide_banner", "-of", "json", "-show_entries",
                      "format=duration,bit_rate,format_name:stream=codec_type,codec_name,width,height")
DURATION_ARGS = ("-v", "error", "-hide_banner", "-of", "json", "-show_entries", "format=duration")


def duration(target: str, *, check_urls: bool = True, url_rules: URLRules | URLRulesView | None = None,
             ffprobe: str | None = None) -> float:
    """A file's or URL's duration in seconds (ProbeFailed, KeyError or ValueError when it has none)."""
    info = _run(target, DURATION_ARGS, ["format"], check_urls=check_urls, url_rules=url_rules, ffprobe=ffprobe)
    return float(info["format"]["duration"])


def media_summary(path: str, *, ffprobe: str | None = None) -> dict[str, Any]:
    """Duration, codecs, resolution and bit rate of a local file, for a job's result."""
    info = _run(path, MEDIA_SUMMARY_ARGS, ["format", "streams"], ffprobe=ffprobe)
    fmt, streams = info["format"], info["streams"]
    out: dict[str, Any] = {}
    if "duration" in fmt:
        out["duration"] = round(float(fmt["duration"]), 3)
    if "bit_rate" in fmt:
        out["bit_rate"] = int(fmt["bit_rate"])
    if "format_name" in fmt:
        out["format_name"] = fmt["format_name"]
    for kind in ("video", "audio", "subtitle"):
        s = next((s for s in streams if s.get("codec_type") == kind), None)
        if s is None:
            continue
        out[f"{kind}_codec"] = s.get("codec_name")
        if kind == "video" and "width" in s:
            out["width"], out["height"] = s["width"], s["height"]
    return out
