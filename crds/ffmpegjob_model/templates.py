"""FFmpegJobTemplate: a named recipe (commands with typed parameters) that FFmpegJobs and REST
requests use by name. One resolver, used by the api (REST requests) and the operator
(kubectl-applied FFmpegJobs): `apply_template` fills a spec's `commands` and `outputs`, and the
result goes through exactly the same safety rules (`safety.validate_spec`) as hand-written commands.

Parameters are written `$(params.NAME)` inside the template's commands (Tekton's spelling; `{{name}}`
stays the file placeholder). Resolution is token-wise: each template command is tokenized first
(`commands.tokenize`), parameters are substituted inside the tokens, and the tokens are joined
back with POSIX quoting, so a parameter value is always part of one argument and can never become
several (a value `"a -i x"` stays one argument). Values are typed and checked against the
parameter's declaration (type, enum, bounds, pattern, length); a value may not hold file
placeholders. A string spliced into a larger argument (`scale=-2:$(params.h)`) must be a plain word
(letters, digits, `_ . + -`) unless the parameter declares an `enum` or a `pattern`: that is what
keeps a value from adding filters or options inside a filter graph.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from .commands import CommandSyntaxError, tokenize
from .model import API_VERSION, NAME_PATTERN, CommandArgs, FFmpegJobSpec, OutputFile, _Wire

TEMPLATE_KIND = "FFmpegJobTemplate"
TEMPLATE_PLURAL = "ffmpegjobtemplates"
TEMPLATE_SINGULAR = "ffmpegjobtemplate"
TEMPLATE_SHORT_NAMES = ["ffjt"]
# Set on the FFmpegJob when its commands were filled from a template (condition type).
TEMPLATE_CONDITION = "TemplateResolved"

PARAM_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
PARAM_REF = re.compile(r"\$\(\s*params\.([A-Za-z_][A-Za-z0-9_]{0,62})\s*\)")
_PARTIAL_REF = re.compile(r"\$\(\s*params\b")
_EMBED_SAFE = re.compile(r"[A-Za-z0-9_.+-]*")
_FILE_MARKS = ("{{", "}}", "<<", ">>")
MAX_VALUE_LENGTH = 1024

ParamType = Literal["string", "integer", "number", "boolean"]


class TemplateError(ValueError):
    """A template that cannot be used as asked: unknown/missing/invalid parameters, inputs that do
    not match, or a broken template. The message says which and why."""


class TemplateParameter(_Wire):
    name: str = Field(pattern=PARAM_NAME_PATTERN, max_length=63, description="Used as `$(params.NAME)`.")
    type: ParamType = Field(default="string", description="string, integer, number or boolean.")
    description: str | None = Field(default=None, max_length=1024)
    default: Any = Field(default=None, description="Value when the job gives none; absent: required.")
    enum: list[Any] | None = Field(default=None, max_length=64, description="The allowed values.")
    minimum: float | None = Field(default=None, description="Lowest value (integer/number).")
    maximum: float | None = Field(default=None, description="Highest value (integer/number).")
    pattern: str | None = Field(default=None, max_length=512, description="Regular expression a string must match.")
    max_length: int | None = Field(default=None, ge=1, le=MAX_VALUE_LENGTH, description="Longest string.")


class TemplateFile(_Wire):
    name: str = Field(pattern=NAME_PATTERN, max_length=255, description="Placeholder / file name: `{{name}}`.")
    description: str | None = Field(default=None, max_length=1024)


class FFmpegJobTemplateSpec(_Wire):
    """A recipe: the inputs a job must name, the outputs it writes, parameterised commands."""

    description: str | None = Field(default=None, max_length=4096)
    parameters: list[TemplateParameter] = Field(default_factory=list, max_length=64)
    inputs: list[TemplateFile] = Field(
        default_factory=list, max_length=64, description="Inputs the job must give (by name), as `{{name}}`."
    )
    outputs: list[TemplateFile] = Field(min_length=1, max_length=64, description="Files the commands write.")
    commands: list[CommandArgs] = Field(
        min_length=1, max_length=32,
        description="FFmpeg argument strings with `{{file}}` placeholders and `$(params.NAME)` parameters.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> FFmpegJobTemplateSpec:
        check_template(self)
        return self


class FFmpegJobTemplate(_Wire):
    """A whole object as read from the API server."""

    model_config = ConfigDict(extra="ignore")

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    kind: str = TEMPLATE_KIND
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: FFmpegJobTemplateSpec

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))


# ---------------------------------------------------------------------------------- values
def _number(p: TemplateParameter, value: Any) -> float:
    if isinstance(value, bool):
        raise TemplateError(f"parameter {p.name!r}: {value!r} is not a {p.type}")
    if p.type == "integer":
        if isinstance(value, int):
            n: float = value
        elif isinstance(value, float) and value.is_integer():
            n = int(value)
        elif isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]{1,18}", value.strip()):
            n = int(value.strip())
        else:
            raise TemplateError(f"parameter {p.name!r}: {value!r} is not an integer")
    else:
        try:
            n = float(value) if isinstance(value, (int, float, str)) else math.nan
        except ValueError:
            n = math.nan
        if not math.isfinite(n):
            raise TemplateError(f"parameter {p.name!r}: {value!r} is not a number")
    if p.minimum is not None and n < p.minimum:
        raise TemplateError(f"parameter {p.name!r}: {value!r} is below the minimum {p.minimum:g}")
    if p.maximum is not None and n > p.maximum:
        raise TemplateError(f"parameter {p.name!r}: {value!r} is above the maximum {p.maximum:g}")
    return n


def _typed(p: TemplateParameter, value: Any) -> Any:
    """The value as its declared type, or TemplateError."""
    if value is None:
        raise TemplateError(f"parameter {p.name!r}: null is not a value")
    if p.type in ("integer", "number"):
        n = _number(p, value)
        return int(n) if p.type == "integer" else n
    if p.type == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise TemplateError(f"parameter {p.name!r}: {value!r} is not a boolean (true or false)")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise TemplateError(f"parameter {p.name!r}: {value!r} is not a string")
    text = str(value)
    limit = p.max_length or MAX_VALUE_LENGTH
    if len(text) > limit:
        raise TemplateError(f"parameter {p.name!r}: longer than {limit} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise TemplateError(f"parameter {p.name!r}: control characters are not allowed")
    if any(m in text for m in _FILE_MARKS):
        raise TemplateError(f"parameter {p.name!r}: a value may not hold a file placeholder ({{{{ }}}} or << >>)")
    if p.pattern is not None and re.fullmatch(p.pattern, text) is None:
        raise TemplateError(f"parameter {p.name!r}: {text!r} does not match {p.pattern!r}")
    return text


def _checked(p: TemplateParameter, value: Any) -> Any:
    typed = _typed(p, value)
    if p.enum is not None:
        allowed = [_typed(p, v) for v in p.enum]
        if typed not in allowed:
            shown = ", ".join(repr(v) for v in p.enum)
            raise TemplateError(f"parameter {p.name!r}: {value!r} is not one of {shown}")
    return typed


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return format(value, ".12g")
    return str(value)


# ------------------------------------------------------------------------------- templates
def check_template(spec: FFmpegJobTemplateSpec) -> None:
    """A template is usable: unique names, every `$(params.x)` declared, defaults and enum values
    valid for their type, commands that tokenize."""
    names = [p.name for p in spec.parameters]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise TemplateError(f"parameters declared twice: {', '.join(dup)}")
    files = [f.name for f in spec.inputs] + [f.name for f in spec.outputs]
    dup = sorted({n for n in files if files.count(n) > 1})
    if dup:
        raise TemplateError(f"inputs/outputs declared twice: {', '.join(dup)}")
    declared = set(names)
    for p in spec.parameters:
        if p.pattern is not None:
            try:
                re.compile(p.pattern)
            except re.error as exc:
                raise TemplateError(f"parameter {p.name!r}: pattern {p.pattern!r} is not a regular expression: {exc}") \
                    from None
        if p.type not in ("integer", "number") and (p.minimum is not None or p.maximum is not None):
            raise TemplateError(f"parameter {p.name!r}: minimum/maximum apply to integer and number parameters")
        for v in p.enum or []:
            _typed(p, v)
        if p.default is not None:
            _checked(p, p.default)
    for step, command in enumerate(spec.commands, start=1):
        try:
            tokens = tokenize(command)
        except CommandSyntaxError as exc:
            raise TemplateError(f"command {step}: {exc}") from None
        for tok in tokens:
            refs = PARAM_REF.findall(tok)
            if _PARTIAL_REF.search(PARAM_REF.sub("", tok)):
                raise TemplateError(f"command {step}: malformed parameter reference in {tok!r}; write $(params.NAME)")
            unknown = sorted(set(refs) - declared)
            if unknown:
                raise TemplateError(f"command {step}: undeclared parameter(s) {', '.join(unknown)} in {tok!r}")


def parameter_values(spec: FFmpegJobTemplateSpec, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """Every parameter's checked value (given, else its default); TemplateError for unknown,
    missing or invalid ones."""
    given = dict(given or {})
    declared = {p.name: p for p in spec.parameters}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        raise TemplateError(f"unknown parameter(s) {', '.join(unknown)}; the template declares: {known}")
    missing = sorted(n for n, p in declared.items() if n not in given and p.default is None)
    if missing:
        raise TemplateError(f"missing required parameter(s): {', '.join(missing)}")
    return {n: _checked(p, given.get(n, p.default)) for n, p in declared.items()}


def _substitute(token: str, step: int, spec: FFmpegJobTemplateSpec, values: Mapping[str, Any]) -> str:
    declared = {p.name: p for p in spec.parameters}
    whole = PARAM_REF.fullmatch(token) is not None

    def sub(m: re.Match[str]) -> str:
        p, value = declared[m.group(1)], values[m.group(1)]
        text = _text(value)
        if not whole and p.type == "string" and p.enum is None and p.pattern is None \
                and not _EMBED_SAFE.fullmatch(text):
            raise TemplateError(
                f"parameter {p.name!r}: {text!r} is spliced into the argument {token!r} (command {step}) and may "
                "only hold letters, digits and _ . + - there (the template can declare an enum or a pattern)")
        return text

    return PARAM_REF.sub(sub, token)


_NEEDS_QUOTES = re.compile(r"[\s'\"\\]")


def _quote(token: str) -> str:
    """Quoted only where `commands.tokenize` (POSIX shlex, no shell) would split or unquote it, so
    the recorded command reads like the template: `-i {{in}}`, not `-i '{{in}}'`."""
    return token if token and not _NEEDS_QUOTES.search(token) else shlex.quote(token)


def resolve_commands(spec: FFmpegJobTemplateSpec, given: Mapping[str, Any] | None) -> list[str]:
    """The template's commands with parameters substituted, each a command string whose tokens
    are exactly the substituted template tokens (one value never becomes two arguments)."""
    values = parameter_values(spec, given)
    out: list[str] = []
    for step, command in enumerate(spec.commands, start=1):
        tokens = [_substitute(t, step, spec, values) for t in tokenize(command)]
        joined = " ".join(_quote(t) for t in tokens)
        if tokenize(joined) != tokens:  # e.g. a first argument `ffmpeg` (dropped by tokenize)
            raise TemplateError(f"command {step} does not survive quoting: {joined!r}")
        out.append(joined)
    return out


def apply_template(spec: FFmpegJobSpec, template: FFmpegJobTemplateSpec) -> FFmpegJobSpec:
    """The job `spec` (which names `template` in `spec.template`) with `commands` and `outputs`
    filled from it. The job's inputs must be exactly the template's inputs by name; the job may not
    give its own commands, outputs or structured-form options. Check the result with
    `safety.validate_spec` like any other spec."""
    ref = spec.template
    if ref is None:
        raise TemplateError("the job names no template")
    where = f"template {ref.name!r}: "
    if spec.commands:
        raise TemplateError(where + "give either a template or commands, not both")
    if spec.outputs:
        raise TemplateError(where + "the template declares the outputs; leave outputs out")
    if spec.filter_complex or any(i.options for i in spec.inputs):
        raise TemplateError(where + "input options and filterComplex do not combine with a template")
    wanted, given = [f.name for f in template.inputs], [i.name for i in spec.inputs]
    missing = [n for n in wanted if n not in given]
    extra = [n for n in given if n not in wanted]
    if missing or extra:
        parts = ([f"missing input(s) {', '.join(missing)}"] if missing else []) + (
            [f"unknown input(s) {', '.join(extra)}"] if extra else [])
        raise TemplateError(where + "; ".join(parts) + f" (the template takes: {', '.join(wanted) or 'none'})")
    try:
        commands = resolve_commands(template, ref.parameters)
    except TemplateError as exc:
        raise TemplateError(where + str(exc)) from None
    outputs = [OutputFile(name=f.name) for f in template.outputs]
    return spec.model_copy(update={"commands": commands, "outputs": outputs})


def read_template(obj: Mapping[str, Any]) -> FFmpegJobTemplateSpec:
    """An FFmpegJobTemplate object's spec; TemplateError when it is not a usable template."""
    try:
        return FFmpegJobTemplateSpec.model_validate(obj.get("spec") or {})
    except ValueError as exc:  # pydantic's ValidationError, or check_template's TemplateError
        name = (obj.get("metadata") or {}).get("name", "?")
        raise TemplateError(f"FFmpegJobTemplate {name!r} is not usable: {exc}") from None


def describe(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A template as the REST listing shows it (name, description, inputs, outputs, parameters)."""
    spec = read_template(obj)
    return {
        "name": (obj.get("metadata") or {}).get("name"),
        "description": spec.description,
        "inputs": [f.to_k8s() for f in spec.inputs],
        "outputs": [f.to_k8s() for f in spec.outputs],
        "parameters": [p.model_dump(by_alias=True, exclude_none=True, mode="json") for p in spec.parameters],
    }
