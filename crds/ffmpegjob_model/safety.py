"""Argument safety: what an FFmpegJob's commands may ask FFmpeg to do, checked before anything runs.

The api (400 on submit), the operator (phase Failed, reason ValidationFailed) and the worker (last
line of defence) call `validate_spec`. The rule: the only files a command may name are its
placeholders and plain file names inside the job's working folder (`part1.mp4`, `seg_%03d.ts`),
so every argument is refused that holds an absolute path, a `..` segment, a protocol prefix
(`file:`, `concat:`, `http:` ...), a device, or a filter/option that reads or writes arbitrary
files, loads code or opens sockets. Every refusal says which command, argument and rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .commands import (
    CommandSyntaxError,
    effective_commands,
    exact_placeholder,
    malformed_placeholder,
    placeholders_in,
)
from .outputs import RESERVED_FOLDERS, OutputKind, output_kind, placeholder_name, relative_output_path
from .storage_layout import split_storage_path
from .urls import (
    Resolver,
    URLRefused,
    URLUnresolvable,
    check_url,
    default_resolver,
    storage_key_for_url,
)

if TYPE_CHECKING:  # the worker checks a plain.SpecView before pydantic is loaded
    from .model import FFmpegJobSpec
    from .plain import S3Location, SpecView, URLRulesView
    from .settings import S3Settings
    from .urls import URLRules


class UnsafeCommand(ValueError):
    """A command that may not run; the message names the step, the argument and the rule."""


# FFmpeg protocols (ffmpeg -protocols, 5.x-8.x) and a few aliases. A known name followed by `:`
# opens that protocol, anywhere FFmpeg takes a URL (inputs, outputs, movie=, -attach ...).
PROTOCOLS = frozenset(
    [
        "android_content",
        "async",
        "bluray",
        "cache",
        "concat",
        "concatf",
        "crypto",
        "data",
        "dvd",
        "fd",
        "ffrtmpcrypt",
        "ffrtmphttp",
        "file",
        "ftp",
        "gopher",
        "gophers",
        "hls",
        "http",
        "httpproxy",
        "https",
        "icecast",
        "ipfs",
        "ipns",
        "librist",
        "libsmbclient",
        "libsrt",
        "libssh",
        "libzmq",
        "md5",
        "mmsh",
        "mmst",
        "pipe",
        "prompeg",
        "rist",
        "rtmp",
        "rtmpe",
        "rtmps",
        "rtmpt",
        "rtmpte",
        "rtmpts",
        "rtp",
        "rtsp",
        "sctp",
        "sftp",
        "smb",
        "srt",
        "srtp",
        "subfile",
        "tcp",
        "tee",
        "tls",
        "udp",
        "udplite",
        "unix",
        "whip",
        "zmq",
    ]
)
_PROTOCOL_RE = re.compile(
    r"(?:^|[\s=:,;'\"|\[\](])(" + "|".join(sorted(PROTOCOLS, key=len, reverse=True)) + r"):",
    re.IGNORECASE,
)
_SUBFILE_RE = re.compile(r"(?:^|[\s=:,;'\"|\[\](])(subfile),", re.IGNORECASE)
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# An absolute path where a value starts: at the beginning or after a separator of FFmpeg's
# option and filter syntax. `scale=iw/2` and `-r 30000/1001` do not match.
_ABSOLUTE_RE = re.compile(r"(?:^|[\s=:,;'\"|\[(])(?:/|~|[A-Za-z]:[\\/]|\\\\)")
_DOTDOT_RE = re.compile(r"(?:^|[/\\\s=:,;'\"|\[(])\.\.(?:[/\\]|$|[\s:,;'\"|\]])")
# A plain file name in the working folder (intermediate files, image-sequence patterns).
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_%*][A-Za-z0-9_.%*+-]{0,254}")

# FFmpeg options that take no value (ffmpeg_opt.c, 5.x-8.x). Every other `-option` takes one.
FLAGS = frozenset(
    [
        "y",
        "n",
        "hide_banner",
        "ignore_unknown",
        "copy_unknown",
        "benchmark",
        "benchmark_all",
        "stats",
        "nostats",
        "stdin",
        "nostdin",
        "re",
        "shortest",
        "accurate_seek",
        "noaccurate_seek",
        "copyts",
        "start_at_zero",
        "debug_ts",
        "xerror",
        "autorotate",
        "noautorotate",
        "autoscale",
        "noautoscale",
        "vn",
        "an",
        "sn",
        "dn",
        "dump",
        "hex",
        "qphist",
        "vstats",
        "fix_sub_duration",
        "report",
        "print_graphs",
        "find_stream_info",
        "nofind_stream_info",
        "copyinkf",
        "deinterlace",
        "intra",
        "psnr",
    ]
)
# Options refused outright, with the reason.
REFUSED_OPTIONS: dict[str, str] = {
    "protocol_whitelist": "changes which protocols FFmpeg may open",
    "protocol_blacklist": "changes which protocols FFmpeg may open",
    "dump_attachment": "writes attachments to files named by the stream",
    "enable_drefs": "lets a MOV input open files it references",
    "allowed_extensions": "lets an HLS input open files of any type",
    "allowed_segment_extensions": "lets an HLS input open files of any type",
    "extension_picky": "lets an HLS input open files of any type",
    "progress": "is set by the worker itself",
    "stats_enc_pre": "writes statistics to an arbitrary file",
    "stats_enc_post": "writes statistics to an arbitrary file",
    "stats_mux_pre": "writes statistics to an arbitrary file",
    "filter_script": "reads a filter graph from a file: write the graph into the command",
    "filter_complex_script": "reads a filter graph from a file: write the graph into the command",
    "init_hw_device": "opens a device chosen by the command; the pool's environment sets hardware up",
    "hwaccel_device": "opens a device chosen by the command; the pool's environment sets hardware up",
    "cookies": "only applies to network inputs, which commands may not open",
    "headers": "only applies to network inputs, which commands may not open",
    "listen": "opens a listening socket",
}
# Options whose value names a file: it must be a placeholder or a plain name in the job's folder.
FILE_OPTIONS = frozenset(
    {
        "i",
        "attach",
        "passlogfile",
        "vstats_file",
        "sdp_file",
        "fpre",
        "vpre",
        "apre",
        "spre",
        "pre",
        "hls_key_info_file",
        "key_info_file",
        "segment_list",
        "hls_segment_filename",
        "master_pl_name",
    }
)
# Formats that read devices or open network sessions rather than files.
REFUSED_FORMATS = frozenset(
    [
        "alsa",
        "android_camera",
        "avfoundation",
        "bktr",
        "caca",
        "decklink",
        "dshow",
        "fbdev",
        "gdigrab",
        "iec61883",
        "jack",
        "kmsgrab",
        "lavfi_device",
        "libcdio",
        "libdc1394",
        "openal",
        "opengl",
        "oss",
        "pulse",
        "rtp",
        "rtp_mpegts",
        "rtsp",
        "sap",
        "sdl",
        "sdl2",
        "sndio",
        "v4l2",
        "video4linux2",
        "vfwcap",
        "x11grab",
        "xcbgrab",
        "xv",
    ]
)
# Filters that load code/models or open sockets: refused whatever their arguments.
REFUSED_FILTERS: dict[str, str] = {
    **dict.fromkeys(("frei0r", "frei0r_src", "ladspa", "lv2"), "loads a plugin library"),
    **dict.fromkeys(("zmq", "azmq"), "opens a network socket"),
    **dict.fromkeys(("program_opencl", "openclsrc"), "loads an OpenCL program from a file"),
    **dict.fromkeys(("coreimage", "coreimagesrc"), "is not available on the worker"),
    **dict.fromkeys(
        ("dnn_processing", "dnn_detect", "dnn_classify", "sr", "derain", "arnndn", "asr", "whisper"),
        "loads a model file",
    ),
}
# Filters that read or write files: the file-valued options (and the positional argument index
# that means the same option) must be a placeholder or a plain name in the job's folder.
FILE_FILTERS: dict[str, tuple[frozenset[str], int | None]] = {
    "movie": (frozenset({"filename"}), 0),
    "amovie": (frozenset({"filename"}), 0),
    "subtitles": (frozenset({"filename", "f", "fontsdir"}), 0),
    "ass": (frozenset({"filename", "f", "fontsdir"}), 0),
    "sendcmd": (frozenset({"filename", "f"}), None),
    "asendcmd": (frozenset({"filename", "f"}), None),
    "drawtext": (frozenset({"fontfile", "textfile"}), None),
    "showcqt": (frozenset({"fontfile"}), None),
    "lut3d": (frozenset({"file"}), 0),
    "curves": (frozenset({"psfile"}), None),
    "metadata": (frozenset({"file"}), None),
    "ametadata": (frozenset({"file"}), None),
    "psnr": (frozenset({"stats_file", "f"}), None),
    "ssim": (frozenset({"stats_file", "f"}), None),
    "xpsnr": (frozenset({"stats_file", "f"}), None),
    "vmafmotion": (frozenset({"stats_file"}), None),
    "libvmaf": (frozenset({"log_path", "model_path", "model"}), None),
    "vidstabdetect": (frozenset({"result"}), None),
    "vidstabtransform": (frozenset({"input"}), None),
    "deshake": (frozenset({"filename"}), None),
    "signature": (frozenset({"filename"}), None),
    "removelogo": (frozenset({"filename", "f"}), 0),
    "cover_rect": (frozenset({"cover"}), None),
    "find_rect": (frozenset({"object"}), None),
    "sofalizer": (frozenset({"sofa"}), 0),
    "libplacebo": (frozenset({"custom_shader_path", "shader"}), None),
    "lensfun": (frozenset({"db_path"}), None),
    "ocr": (frozenset({"datapath"}), None),
}
# Options whose value is a filter graph.
FILTER_OPTIONS = frozenset({"vf", "af", "filter", "filter_complex", "lavfi"})


@dataclass(frozen=True)
class _Ctx:
    step: int
    inputs: frozenset[str]
    outputs: frozenset[str]
    dirs: frozenset[str] = frozenset()  # placeholder names of directory outputs (`hls` of `hls/`)

    def fail(self, arg: str, why: str) -> UnsafeCommand:
        shown = arg if len(arg) <= 120 else arg[:117] + "..."
        return UnsafeCommand(f"command {self.step}: argument {shown!r} {why}")


def _option_name(arg: str) -> str:
    """`-c:v` -> `c`, `-dump_attachment:t:0` -> `dump_attachment`, `-filter:v` -> `filter`."""
    return arg.lstrip("-").split(":", 1)[0]


def _check_text(arg: str, ctx: _Ctx) -> None:
    """Rules that hold for every argument whatever its position."""
    bad = malformed_placeholder(arg)
    if bad is not None:
        raise ctx.fail(arg, f"holds a malformed placeholder near {bad!r}; write {{{{name}}}}")
    for name in placeholders_in(arg):
        if name not in ctx.inputs and name not in ctx.outputs:
            known = ", ".join(f"{{{{{n}}}}}" for n in sorted(ctx.inputs | ctx.outputs)) or "none"
            raise ctx.fail(arg, f"uses unknown placeholder {{{{{name}}}}} (declared: {known})")
    # Placeholders render to safe relative paths; check the rest with backslash escapes and
    # quotes removed, as FFmpeg's option and filter parsers would.
    text = re.sub(r"\{\{[^}]*\}\}|<<[^>]*>>", "x", arg).replace("\\", "")
    if _SCHEME_RE.search(text):
        raise ctx.fail(arg, "holds a URL: name inputs in spec.inputs and refer to them as {{name}}")
    m = _PROTOCOL_RE.search(text) or _SUBFILE_RE.search(text)
    if m:
        raise ctx.fail(arg, f"uses the protocol prefix '{m.group(1).lower()}:'; only placeholders may name files")
    if _ABSOLUTE_RE.search(text) or text.startswith("\\"):
        raise ctx.fail(arg, "holds an absolute path; only placeholders and plain file names may name files")
    if _DOTDOT_RE.search(text.replace("'", "").replace('"', "")):
        raise ctx.fail(arg, "holds a '..' path segment; files must stay in the job's folder")


def _in_directory_output(arg: str, ctx: _Ctx) -> bool:
    """`{{hls}}/index.m3u8` or `hls/v0/seg_%03d.ts`: a relative path inside a directory output's
    folder (plain name segments, no `..`)."""
    head, sep, rest = arg.partition("/")
    folder = exact_placeholder(head) if head.startswith(("{{", "<<")) else head
    return bool(sep) and folder in ctx.dirs and relative_output_path(rest, _PLAIN_NAME)


def _check_file_value(arg: str, ctx: _Ctx, what: str) -> None:
    if exact_placeholder(arg) is not None or _PLAIN_NAME.fullmatch(arg) or _in_directory_output(arg, ctx):
        return
    if ctx.dirs and "/" in arg:
        folders = ", ".join(f"{{{{{d}}}}}/" for d in sorted(ctx.dirs))
        raise ctx.fail(arg, f"is not allowed as {what}: a path with a folder must stay inside a directory "
                            f"output's folder ({folders}) without '..'")
    raise ctx.fail(arg, f"is not allowed as {what}: use a placeholder such as {{{{name}}}} or a plain file name")


def _split_filters(graph: str) -> Iterable[tuple[str, str]]:
    """(filter name, argument string) for each filter of a graph; quoting and escapes kept."""
    parts: list[str] = []
    buf, quote, i = "", False, 0
    while i < len(graph):
        c = graph[i]
        if c == "\\" and i + 1 < len(graph):
            buf += graph[i : i + 2]
            i += 2
            continue
        if c == "'":
            quote = not quote
        if c in ",;" and not quote:
            parts.append(buf)
            buf = ""
        else:
            buf += c
        i += 1
    parts.append(buf)
    for part in parts:
        body = re.sub(r"^\s*(\[[^\]]*\]\s*)*", "", part)
        body = re.sub(r"(\s*\[[^\]]*\])*\s*$", "", body)
        if not body:
            continue
        name, _, args = body.partition("=")
        yield name.strip().split("@", 1)[0].lower(), args


def _split_filter_args(args: str) -> list[str]:
    out, buf, quote, i = [], "", False, 0
    while i < len(args):
        c = args[i]
        if c == "\\" and i + 1 < len(args):
            buf += args[i + 1]
            i += 2
            continue
        if c == "'":
            quote = not quote
        elif c == ":" and not quote:
            out.append(buf)
            buf = ""
        else:
            buf += c
        i += 1
    out.append(buf)
    return out


def _check_filtergraph(graph: str, ctx: _Ctx) -> None:
    for name, args in _split_filters(graph):
        if name in REFUSED_FILTERS:
            raise ctx.fail(graph, f"uses the filter {name!r}, which {REFUSED_FILTERS[name]}")
        if name not in FILE_FILTERS:
            continue
        keys, positional = FILE_FILTERS[name]
        for idx, piece in enumerate(_split_filter_args(args)):
            key, eq, value = piece.partition("=")
            if eq and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                if key in keys:
                    _check_file_value(value.strip(), ctx, f"the file of filter {name!r} ({key}=)")
            elif idx == positional:
                _check_file_value(piece.strip(), ctx, f"the file of filter {name!r}")


def validate_args(args: list[str], step: int, inputs: Iterable[str], outputs: Iterable[str],
                  dirs: Iterable[str] = ()) -> None:
    """Refuse one command's argument list (placeholders not yet rendered). `outputs` are the
    outputs' placeholder names, `dirs` those of directory outputs (`hls` for `hls/`)."""
    ctx = _Ctx(step, frozenset(inputs), frozenset(outputs), frozenset(dirs))
    for arg in args:
        _check_text(arg, ctx)
    fmt: str | None = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "-":
            raise ctx.fail(arg, "reads standard input or writes standard output, which jobs may not use")
        if not arg.startswith("-") or len(arg) == 1:
            # An output file.
            name = exact_placeholder(arg)
            if name in ctx.inputs:
                raise ctx.fail(arg, "would overwrite an input; write to a declared output instead")
            _check_file_value(arg, ctx, "an output")
            fmt = None
            i += 1
            continue
        if arg.startswith("-/"):
            raise ctx.fail(arg, "reads an option's value from a file; write the value into the command")
        opt = _option_name(arg)
        if opt in REFUSED_OPTIONS:
            raise ctx.fail(arg, f"is not allowed: it {REFUSED_OPTIONS[opt]}")
        if opt in FLAGS:
            i += 1
            continue
        if i + 1 >= len(args):
            raise ctx.fail(arg, "is missing its value")
        value = args[i + 1]
        if opt == "f":
            fmt = value.lower()
            if fmt in REFUSED_FORMATS:
                raise ctx.fail(value, "is a device or network format, which jobs may not open")
        elif opt == "safe" and value.strip() not in ("1", "-1"):
            raise ctx.fail(f"{arg} {value}", "turns off the concat demuxer's file-name checks")
        elif opt == "i":
            if fmt == "lavfi":
                _check_filtergraph(value, ctx)
            else:
                _check_file_value(value, ctx, "an input")
            fmt = None
        elif opt in FILE_OPTIONS:
            _check_file_value(value, ctx, f"the value of {arg}")
        elif opt in FILTER_OPTIONS:
            _check_filtergraph(value, ctx)
        i += 2


def _check_input_source(source: str, name: str, rules: URLRules | URLRulesView | None, resolve: Resolver | None,
                        unresolvable_ok: bool = False) -> None:
    if "://" in source:
        try:
            check_url(source, rules, resolve)
        except URLUnresolvable as exc:
            if not unresolvable_ok:
                raise UnsafeCommand(f"input {name!r}: {exc}") from None
        except URLRefused as exc:
            raise UnsafeCommand(f"input {name!r}: {exc}") from None
    elif split_storage_path(source) is None:
        raise UnsafeCommand(
            f"input {name!r}: source {source!r} is neither an https URL nor a storage path dir_id/file_name"
        )


def validate_spec(
    spec: FFmpegJobSpec | SpecView,
    *,
    url_rules: URLRules | URLRulesView,
    s3: S3Settings | S3Location,
    check_urls: bool = True,
    resolve: Resolver = default_resolver,
    unresolvable_ok: bool = False,
) -> list[list[str]]:
    """Refuse an unsafe job with `UnsafeCommand`; return its effective argument lists.

    The one way to check a spec: the api, the operator and the worker each pass their URL rules
    and S3 settings (required, so that a URL into our own bucket passes all three or none).
    `check_urls=False` skips DNS resolution of URL inputs (the worker checks again when it
    connects); storage paths and URL syntax are still checked. URLs into our own bucket
    (presigned, temp files) pass: they are read from storage, not fetched.
    `unresolvable_ok` accepts a URL whose host does not resolve (the job fails when it is fetched);
    forbidden addresses are refused either way."""
    if spec.template is not None and not spec.commands:
        raise UnsafeCommand(f"template {spec.template.name!r} is not resolved yet (ffmpegjob_model.templates)")
    for inp in spec.inputs:
        if storage_key_for_url(inp.source, s3) is not None:
            continue
        _check_input_source(inp.source, inp.name, url_rules, resolve if check_urls else None, unresolvable_ok)
    try:
        commands = effective_commands(spec)
    except CommandSyntaxError as exc:
        raise UnsafeCommand(str(exc)) from None
    _check_outputs(spec)
    inputs = [i.name for i in spec.inputs]
    outputs = [placeholder_name(o.name) for o in spec.outputs]
    dirs = [placeholder_name(o.name) for o in spec.outputs if output_kind(o.name) == OutputKind.DIRECTORY]
    for step, args in enumerate(commands, start=1):
        validate_args(args, step, inputs, outputs, dirs)
    return commands


def _check_outputs(spec: FFmpegJobSpec | SpecView) -> None:
    """Directory and pattern outputs (`ffmpegjob_model.outputs`): names that do not collide
    once a folder loses its `/`, and `entry` only where it means something."""
    seen: dict[str, str] = {}
    inputs = {i.name for i in spec.inputs}
    for o in spec.outputs:
        key = placeholder_name(o.name)
        if key in seen or key in inputs:
            other = seen.get(key, f"the input {key!r}")
            raise UnsafeCommand(f"output {o.name!r}: its placeholder {{{{{key}}}}} is also that of {other}")
        seen[key] = f"the output {o.name!r}"
        kind = output_kind(o.name)
        if kind == OutputKind.DIRECTORY and key in RESERVED_FOLDERS:
            raise UnsafeCommand(f"output {o.name!r}: the folder {key!r} holds the job's inputs; name the output "
                                "folder differently")
        if o.entry is not None and (kind != OutputKind.DIRECTORY or spec.commands):
            raise UnsafeCommand(f"output {o.name!r}: 'entry' names the file written inside a directory output "
                                "(name ending in '/') of the structured form")
        if kind == OutputKind.DIRECTORY and not spec.commands and not o.entry:
            raise UnsafeCommand(f"output {o.name!r}: a directory output of the structured form needs the file "
                                f"FFmpeg writes inside it, e.g. '{o.name}index.m3u8'")
