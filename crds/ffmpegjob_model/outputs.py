"""Directory and pattern outputs: outputs whose file names are not known before FFmpeg runs.

An output (`spec.outputs[].name`, VGF `output_files[]`, "FFmpeg API" `outputs[].file`) is one of:

- a **file**: `out.mp4` - exactly that file is uploaded;
- a **pattern**: a file name with a printf-style counter, `seg_%05d.ts`, `thumb_%03d.jpg`,
  `stream_%v.m3u8` (`%d`, `%0Nd`, HLS's `%v` variant index; `%%` is a literal `%`) - every
  file of the job's folder whose name the pattern matches is uploaded, next to the other outputs;
- a **directory**: a name ending in `/`, `hls/` - every file FFmpeg writes under that folder
  (subfolders included) is uploaded under `<dir_id>/hls/`, keeping the relative paths, so
  that a playlist's relative URIs (segments, a master playlist's variants) resolve in storage.

Commands name a directory output by the placeholder of its folder, `{{hls}}/index.m3u8`
(`{{hls}}` renders to the folder), or by the bare relative path `hls/index.m3u8`; a pattern
output by its own placeholder `{{seg_%05d.ts}}`. Nothing else may contain a `/`
(`ffmpegjob_model.safety`). How many files and bytes one job may upload is bounded
(`DEFAULT_MAX_OUTPUT_FILES`, `DEFAULT_MAX_OUTPUT_BYTES`; the worker's `MAX_OUTPUT_FILES` and
`MAX_OUTPUT_BYTES`, set per pool through the pool's `env`).
"""

from __future__ import annotations

import re
from enum import StrEnum

# A plain file-name segment (as `NAME_PATTERN`, without the anchors).
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}"
# A printf counter FFmpeg's image2, segment and HLS muxers expand: %d, %03d, %v; %% is a literal.
_COUNTER = r"%(?:0?[1-9]?d|v)"
# What `spec.outputs[].name` may be (the CRD's pattern too; RE2 and Python alike): a file name,
# a file name with counters, or a folder name followed by `/`.
OUTPUT_NAME_PATTERN = (
    r"^(?:[A-Za-z0-9_]|" + _COUNTER + r")(?:[A-Za-z0-9_.-]|" + _COUNTER + r"|%%){0,254}$"
    r"|^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}/$"
)
# A directory output's entry file (structured form): a file name, counters allowed.
OUTPUT_ENTRY_PATTERN = r"^[A-Za-z0-9_%][A-Za-z0-9_.%-]{0,254}$"
_OUTPUT_NAME = re.compile(OUTPUT_NAME_PATTERN)
_COUNTER_RE = re.compile(_COUNTER)
_SEGMENT_RE = re.compile(_SEGMENT)

# Bounds of what one job uploads for its directory and pattern outputs (all of them together).
# Every file is one entry of `status.result` (~150 bytes): 2,000 keep the FFmpegJob far below
# etcd's 1.5 MiB object limit; a pool may raise it to ~8,000.
DEFAULT_MAX_OUTPUT_FILES = 2_000
DEFAULT_MAX_OUTPUT_BYTES = 50 * 1024**3
MAX_OUTPUT_FILES_ENV = "MAX_OUTPUT_FILES"
MAX_OUTPUT_BYTES_ENV = "MAX_OUTPUT_BYTES"


# Folders of the job's working folder that a directory output may not be: the worker downloads
# the inputs into `inputs/` (worker-image/ffmpeg_worker/fetch.py, `local_name`).
RESERVED_FOLDERS = frozenset({"inputs"})


class OutputKind(StrEnum):
    FILE = "file"
    PATTERN = "pattern"
    DIRECTORY = "directory"


def valid_output_name(name: str) -> bool:
    return bool(_OUTPUT_NAME.fullmatch(name)) and len(name) <= 256


def output_kind(name: str) -> OutputKind:
    if name.endswith("/"):
        return OutputKind.DIRECTORY
    if _COUNTER_RE.search(name.replace("%%", "")):
        return OutputKind.PATTERN
    return OutputKind.FILE


def placeholder_name(name: str) -> str:
    """The `{{...}}` name of an output: a directory's is its folder (`hls/` -> `hls`)."""
    return name.rstrip("/")


def local_path(name: str) -> str:
    """What the placeholder renders to, relative to the job's working folder."""
    return placeholder_name(name)


def pattern_regex(name: str) -> re.Pattern[str]:
    """The file names a pattern output matches: each counter is one or more digits (`%03d`
    also matches `1000` once the counter outgrows its width), `%%` a literal `%`."""
    out, i = "", 0
    while i < len(name):
        if name.startswith("%%", i):
            out, i = out + "%", i + 2
            continue
        m = _COUNTER_RE.match(name, i)
        if m:
            out, i = out + r"[0-9]+", m.end()
            continue
        out, i = out + re.escape(name[i]), i + 1
    return re.compile(out)


def relative_output_path(path: str, segment: re.Pattern[str] = _SEGMENT_RE) -> bool:
    """`a/b/c.ts`: one or more name segments (no `..`, not absolute, no empty segment), each
    matching `segment` (a plain file name by default)."""
    return all(segment.fullmatch(p) and p not in (".", "..") for p in path.split("/"))
