"""Which inputs FFmpeg may read straight from storage (a presigned GET of our own bucket)
instead of waiting for a download: reading starts with FFmpeg, so the fetch overlaps the work.

Only where that cannot change what FFmpeg does: every use of the input is a plain `-i {{name}}`
with no forced format (`-f`, e.g. a concat list would resolve its entries against the URL), and
the file is a container FFmpeg recognises from its content alone (a URL carries no extension
hint). Everything else is downloaded first, as before."""

from __future__ import annotations

import posixpath

from ffmpegjob_model.commands import PLACEHOLDER

# Self-describing containers: probed from their bytes, seekable over HTTP range requests.
STREAM_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".m4a", ".mov", ".mkv", ".mka", ".webm", ".ts", ".mts", ".mp3", ".flac", ".ogg", ".wav"}
)


def _names(arg: str) -> set[str]:
    return {m.group(1) or m.group(2) for m in PLACEHOLDER.finditer(arg)}


def streamable(commands: list[list[str]], local_names: dict[str, str]) -> set[str]:
    """The input names (keys of `local_names`, name -> `inputs/<file>`) that may be streamed."""
    ok = {n for n, path in local_names.items() if posixpath.splitext(path)[1].lower() in STREAM_EXTENSIONS}
    for args in commands:
        region_start = 0  # an input's options: the tokens since the previous `-i X`
        for i, arg in enumerate(args):
            names = _names(arg) & ok
            is_input = i > 0 and args[i - 1] == "-i"
            if names and not (is_input and PLACEHOLDER.fullmatch(arg)):
                ok -= names  # inside a filter, an option value, a longer argument
            elif names and any(a == "-f" or a.startswith("-f:") for a in args[region_start : i - 1]):
                ok -= names
            if is_input:
                region_start = i + 1
    return ok
