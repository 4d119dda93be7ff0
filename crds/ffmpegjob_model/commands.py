"""FFmpeg commands of an FFmpegJob as argument lists: placeholders, tokenizing, the structured form.

Placeholders are written `{{name}}` or `<<name>>` (both forms of the "Very Good FFmpeg" seed).
Commands are tokenized with `shlex` (POSIX quoting) and never run through a shell. The structured
"FFmpeg API" task (inputs with options, outputs with options and maps, filter_complex) compiles to
one command in the same placeholder form, so both forms share validation and rendering.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from .outputs import OutputKind, output_kind, placeholder_name

if TYPE_CHECKING:  # the worker compiles a plain.SpecView before pydantic is loaded
    from .model import FFmpegJobSpec, OutputFile
    from .plain import OutputView, SpecView

# `%` for pattern outputs (`{{seg_%05d.ts}}`, ffmpegjob_model.outputs).
_NAME = r"[A-Za-z0-9_%][A-Za-z0-9_.%-]{0,254}"
PLACEHOLDER = re.compile(rf"\{{\{{\s*({_NAME})\s*\}}\}}|<<\s*({_NAME})\s*>>")
# What is left of a placeholder-like text that does not parse: `{{../x}}`, `{{ }}`, `<<a b>>`.
_MALFORMED = re.compile(r"\{\{|\}\}|<<|>>")


class CommandSyntaxError(ValueError):
    """A command that cannot be tokenized or holds a malformed placeholder."""


def placeholder(name: str) -> str:
    return "{{" + name + "}}"


def output_argument(out: OutputFile | OutputView) -> str:
    """The structured form's output argument: `{{name}}`, or for a directory output with an
    `entry`, the file inside its folder `{{folder}}/<entry>`."""
    if output_kind(out.name) == OutputKind.DIRECTORY and out.entry:
        return placeholder(placeholder_name(out.name)) + "/" + out.entry
    return placeholder(placeholder_name(out.name))


def tokenize(command: str) -> list[str]:
    """Split one command string like a POSIX shell would quote it, without running a shell."""
    try:
        args = shlex.split(command, posix=True)
    except ValueError as exc:  # "No closing quotation", "No escaped character"
        raise CommandSyntaxError(f"cannot parse command {command!r}: {exc}") from None
    if args and args[0] in ("ffmpeg", "ffmpeg.exe"):
        args = args[1:]  # users often paste the program name too
    if not args:
        raise CommandSyntaxError("empty command")
    return args


def placeholders_in(arg: str) -> list[str]:
    """Names of the placeholders in one argument, in order."""
    return [m.group(1) or m.group(2) for m in PLACEHOLDER.finditer(arg)]


def malformed_placeholder(arg: str) -> str | None:
    """The offending text when `arg` has `{{`/`<<` that is not a valid placeholder."""
    rest = PLACEHOLDER.sub("", arg)
    m = _MALFORMED.search(rest)
    if m is None:
        return None
    start = max(0, m.start() - 10)
    return rest[start : m.end() + 20]


def exact_placeholder(arg: str) -> str | None:
    """The name when the whole argument is one placeholder, else None."""
    m = PLACEHOLDER.fullmatch(arg.strip())
    return (m.group(1) or m.group(2)) if m else None


def render(args: list[str], paths: Mapping[str, str] | Callable[[str], str]) -> list[str]:
    """Replace every placeholder by its local path. Unknown names raise KeyError (validation runs
    first, so this only happens on a programming error)."""
    lookup = paths if callable(paths) else paths.__getitem__

    def sub(m: re.Match[str]) -> str:
        return lookup(m.group(1) or m.group(2))

    return [PLACEHOLDER.sub(sub, a) for a in args]


def _option_tokens(options: list[str] | None) -> list[str]:
    """Structured options are meant as tokens (`["-crf", "23"]`); an element written as one
    option with its value (`"-crf 23"`) is split so that FFmpeg sees two arguments."""
    out: list[str] = []
    for opt in options or []:
        if opt.startswith("-") and any(c.isspace() for c in opt.strip()):
            out += tokenize(opt)
        else:
            out.append(opt)
    return out


def compile_structured(spec: FFmpegJobSpec | SpecView) -> list[str]:
    """The "FFmpeg API" task as one argument list:
    `[in options] -i {{in}} ... [-filter_complex G] [out options] [-map M ...] {{out}} ...`."""
    args: list[str] = []
    for inp in spec.inputs:
        args += [*_option_tokens(inp.options), "-i", placeholder(inp.name)]
    if spec.filter_complex:
        args += ["-filter_complex", spec.filter_complex]
    for out in spec.outputs:
        args += _option_tokens(out.options)
        for m in out.maps or []:
            args += ["-map", m]
        args.append(output_argument(out))
    return args


def effective_commands(spec: FFmpegJobSpec | SpecView) -> list[list[str]]:
    """The argument lists to run, in order (without the `ffmpeg` program name)."""
    if spec.commands:
        return [tokenize(c) for c in spec.commands]
    return [compile_structured(spec)]
