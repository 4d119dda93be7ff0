"""The FFmpegJob and grants as the worker reads them before FFmpeg starts: standard library only.

Importing pydantic and building the models costs a worker ~120 ms of CPU before its first frame
(bench/README.md, issue 15), more than the whole start-up budget. So the worker reads what it
needs with these plain, frozen dataclasses instead of `model.FFmpegJob` and `grants.Grants`:

- each view has exactly the fields of its pydantic model, under the same (snake_case) names, so
  code written against the model reads a view alike (`job.spec.inputs[0].source`); nested models
  the worker never reads (`webhook`, `parallel`) stay plain dicts;
- the defaults are the model's, and the reader refuses what the rules the worker relies on
  refuse (types, the name and directory patterns, required fields); the API server has already
  checked the whole object against the CRD schema generated from the model, and the worker
  still runs the safety rules (`safety.validate_spec`) on the view;
- unknown fields are ignored (a newer CRD), as `lenient.read_ffmpegjob` does.

tests/unit/test_plain_views.py keeps the two in step: field names and defaults against the
models, and equal readings of the same objects. The dicts the worker writes into the status
(`progress_k8s`, `result_file_k8s`, `usage_k8s`) are checked equal to the models' `to_k8s()`.
The patterns, the usage formula and the grants file's location live here (one home) and the
models import them."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .outputs import OUTPUT_ENTRY_PATTERN, OUTPUT_NAME_PATTERN

if TYPE_CHECKING:
    import ipaddress

# A placeholder/file name: what `{{name}}` may hold and what an output file may be called.
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$"
# A storage directory id, as the "FFmpeg API" seed defines it.
DIR_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
# A pool name: a DNS label, so that it can be used in labels and object names.
MACHINE_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"

GRANTS_FILE = "grants.json"  # the key in the Secret, the file name in the mount
GRANTS_MOUNT = "/var/run/kubeffmpeg/grants"
GRANTS_FILE_ENV = "GRANTS_FILE"  # the worker reads the file named here
# S3 refuses parts below 5 MiB (but the last); every part but the last is at least this big.
MIN_PART_BYTES = 16 * 1024 * 1024
MAX_PART_BYTES = 5 * 1024**3  # also the largest single PUT

_NAME, _DIR_ID, _MACHINE = re.compile(NAME_PATTERN), re.compile(DIR_ID_PATTERN), re.compile(MACHINE_PATTERN)
_OUTPUT_NAME, _OUTPUT_ENTRY = re.compile(OUTPUT_NAME_PATTERN), re.compile(OUTPUT_ENTRY_PATTERN)


class Invalid(ValueError):
    """An object the worker cannot read; the message names the field."""


# ------------------------------------------------------------------------------------ readers
def _get(d: Mapping[str, Any], where: str, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    """`d[key]` checked to be a `kind` (None allowed where the default is None)."""
    value = d.get(key, default)
    if value is ...:
        raise Invalid(f"{where}.{key}: required")
    if value is None and default is None:
        return None
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise Invalid(f"{where}.{key}: expected {getattr(kind, '__name__', kind)}, got {type(value).__name__}")
    return value


def _match(pattern: re.Pattern[str], value: str, where: str) -> str:
    if not pattern.fullmatch(value):
        raise Invalid(f"{where}: {value!r} does not match {pattern.pattern}")
    return value


def _strings(value: Any, where: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Invalid(f"{where}: expected a list of strings")
    return list(value)


def _dict(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(f"{where}: expected an object, got {type(value).__name__}")
    return value


# ---------------------------------------------------------------------------------- FFmpegJob
@dataclass(frozen=True)
class InputView:
    name: str
    source: str
    options: list[str] | None = None


@dataclass(frozen=True)
class OutputView:
    name: str
    entry: str | None = None
    options: list[str] | None = None
    maps: list[str] | None = None


@dataclass(frozen=True)
class TemplateRefView:
    name: str
    parameters: dict[str, Any] | None = None


@dataclass(frozen=True)
class OutputLocationView:
    dir_id: str


@dataclass(frozen=True)
class SpecView:
    """`model.FFmpegJobSpec`, read without pydantic."""

    output: OutputLocationView
    outputs: list[OutputView] = field(default_factory=list)
    tenant: str = "default"
    inputs: list[InputView] = field(default_factory=list)
    commands: list[str] | None = None
    filter_complex: str | None = None
    machine: str = "cpu"
    webhook: dict[str, Any] | None = None
    timeout_seconds: int = 3600
    step_timeout_seconds: int | None = None
    backoff_limit: int = 0
    ttl_seconds_after_finished: int | None = None
    suspend: bool = False
    cancel: bool = False
    parallel: dict[str, Any] | None = None
    priority: str | None = None
    template: TemplateRefView | None = None


@dataclass(frozen=True)
class JobView:
    """An FFmpegJob as the worker reads it: metadata and spec (the worker writes the status, it
    does not read it; `raw` is the object as read, for the split workers' models)."""

    metadata: dict[str, Any]
    spec: SpecView
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace", "default"))


def read_spec(spec: Mapping[str, Any]) -> SpecView:
    """An FFmpegJob's spec (camelCase, as on the wire)."""
    s = _dict(spec, "spec")
    inputs = []
    for i, raw in enumerate(_get(s, "spec", "inputs", list, [])):
        where = f"spec.inputs[{i}]"
        d = _dict(raw, where)
        inputs.append(InputView(
            name=_match(_NAME, _get(d, where, "name", str), f"{where}.name"),
            source=_get(d, where, "source", str),
            options=_strings(d.get("options"), f"{where}.options"),
        ))
    outputs = []
    for i, raw in enumerate(_get(s, "spec", "outputs", list, [])):
        where = f"spec.outputs[{i}]"
        d = _dict(raw, where)
        entry = _get(d, where, "entry", str, None)
        outputs.append(OutputView(
            name=_match(_OUTPUT_NAME, _get(d, where, "name", str), f"{where}.name"),
            entry=None if entry is None else _match(_OUTPUT_ENTRY, entry, f"{where}.entry"),
            options=_strings(d.get("options"), f"{where}.options"),
            maps=_strings(d.get("maps"), f"{where}.maps"),
        ))
    template = _template(s.get("template"))
    if not outputs and template is None:
        raise Invalid("spec.outputs: at least one output is required (or a template that declares them)")
    if not all(x.source for x in inputs):
        raise Invalid("spec.inputs: a source may not be empty")
    output = _dict(_get(s, "spec", "output", dict), "spec.output")
    timeout = _get(s, "spec", "timeoutSeconds", int, 3600)
    step_timeout = _get(s, "spec", "stepTimeoutSeconds", int, None)
    if timeout < 1 or (step_timeout is not None and step_timeout < 1):
        raise Invalid("spec.timeoutSeconds / stepTimeoutSeconds: must be >= 1")
    return SpecView(
        tenant=_match(_DIR_ID, _get(s, "spec", "tenant", str, "default"), "spec.tenant"),
        inputs=inputs,
        outputs=outputs,
        commands=_strings(s.get("commands"), "spec.commands"),
        filter_complex=_get(s, "spec", "filterComplex", str, None),
        machine=_match(_MACHINE, _get(s, "spec", "machine", str, "cpu"), "spec.machine"),
        output=OutputLocationView(dir_id=_match(_DIR_ID, _get(output, "spec.output", "dirId", str),
                                                "spec.output.dirId")),
        webhook=_get(s, "spec", "webhook", dict, None),
        timeout_seconds=timeout,
        step_timeout_seconds=step_timeout,
        backoff_limit=_get(s, "spec", "backoffLimit", int, 0),
        ttl_seconds_after_finished=_get(s, "spec", "ttlSecondsAfterFinished", int, None),
        suspend=_get(s, "spec", "suspend", bool, False),
        cancel=_get(s, "spec", "cancel", bool, False),
        parallel=_get(s, "spec", "parallel", dict, None),
        priority=_get(s, "spec", "priority", str, None),
        template=template,
    )


def _template(value: Any) -> TemplateRefView | None:
    """`spec.template`: a job made from an FFmpegJobTemplate (resolved before any worker runs it;
    the safety rules refuse one whose commands are not filled in)."""
    if value is None:
        return None
    d = _dict(value, "spec.template")
    params = _get(d, "spec.template", "parameters", dict, None)
    return TemplateRefView(name=_get(d, "spec.template", "name", str), parameters=params)


def read_job(obj: Mapping[str, Any]) -> JobView:
    """A whole FFmpegJob as read from the API server."""
    o = _dict(obj, "FFmpegJob")
    return JobView(metadata=dict(_get(o, "FFmpegJob", "metadata", dict, {}) or {}),
                   spec=read_spec(_get(o, "FFmpegJob", "spec", dict)), raw=dict(o))


# ----------------------------------------------------------------------------- status writes
def progress_k8s(step: int, steps: int, percent: float, speed: str | None = None,
                 resumed_from_step: int | None = None) -> dict[str, Any]:
    """`model.Progress(...).to_k8s()`."""
    out: dict[str, Any] = {"step": step, "steps": steps, "percent": float(percent)}
    if speed is not None:
        out["speed"] = speed
    if resumed_from_step is not None:
        out["resumedFromStep"] = resumed_from_step
    return out


def result_file_k8s(file_name: str, size_bytes: int, storage_path: str,
                    media: dict[str, Any] | None = None) -> dict[str, Any]:
    """`model.ResultFile(...).to_k8s()`."""
    out: dict[str, Any] = {"fileName": file_name, "sizeBytes": size_bytes, "storagePath": storage_path}
    if media is not None:
        out["media"] = media
    return out


def usage_figures(time_sec: float, input_bytes: int, output_bytes: int) -> dict[str, Any]:
    """The seed's definition: gb_sec = time_sec x (input GB + output GB), GB = 1e9 bytes
    (`model.Usage.compute` builds its model from these)."""
    in_gb, out_gb = input_bytes / 1e9, output_bytes / 1e9
    return {
        "time_sec": round(time_sec, 3),
        "input_size_gb": round(in_gb, 6),
        "output_size_gb": round(out_gb, 6),
        "gb_sec": round(time_sec * (in_gb + out_gb), 6),
        "input_bytes": input_bytes,
        "output_bytes": output_bytes,
    }


def usage_k8s(time_sec: float, input_bytes: int, output_bytes: int) -> dict[str, Any]:
    """`model.Usage.compute(...).to_k8s()`."""
    f = usage_figures(time_sec, input_bytes, output_bytes)
    return {"timeSec": float(f["time_sec"]), "inputSizeGb": float(f["input_size_gb"]),
            "outputSizeGb": float(f["output_size_gb"]), "gbSec": float(f["gb_sec"]),
            "inputBytes": f["input_bytes"], "outputBytes": f["output_bytes"]}


# ------------------------------------------------------------------------------------- grants
@dataclass(frozen=True)
class MultipartGrantView:
    upload_id: str
    part_urls: list[str]
    complete_url: str
    abort_url: str


@dataclass(frozen=True)
class ObjectGrantView:
    key: str
    get_url: str | None = None
    put_url: str | None = None
    delete_url: str | None = None
    content_type: str | None = None
    multipart: MultipartGrantView | None = None


@dataclass(frozen=True)
class PrefixGrantView:
    prefix: str
    url: str
    fields: dict[str, str]
    max_bytes: int


@dataclass(frozen=True)
class GrantsView:
    """`grants.Grants`, read without pydantic."""

    expires_at: datetime
    version: int = 1
    inputs: dict[str, ObjectGrantView] = field(default_factory=dict)
    outputs: dict[str, ObjectGrantView] = field(default_factory=dict)
    output_prefix: PrefixGrantView | None = None
    scratch: dict[str, ObjectGrantView] = field(default_factory=dict)
    scratch_prefix: PrefixGrantView | None = None


def _object_grant(d: Mapping[str, Any], where: str) -> ObjectGrantView:
    d = _dict(d, where)
    mp = _get(d, where, "multipart", dict, None)
    multipart = None
    if mp is not None:
        w = f"{where}.multipart"
        urls = _strings(_get(mp, w, "part_urls", list), f"{w}.part_urls") or []
        if not 1 <= len(urls) <= 10000:
            raise Invalid(f"{w}.part_urls: 1 to 10000 URLs")
        multipart = MultipartGrantView(upload_id=_get(mp, w, "upload_id", str), part_urls=urls,
                                       complete_url=_get(mp, w, "complete_url", str),
                                       abort_url=_get(mp, w, "abort_url", str))
    return ObjectGrantView(
        key=_get(d, where, "key", str),
        get_url=_get(d, where, "get_url", str, None),
        put_url=_get(d, where, "put_url", str, None),
        delete_url=_get(d, where, "delete_url", str, None),
        content_type=_get(d, where, "content_type", str, None),
        multipart=multipart,
    )


def _prefix_grant(d: Any, where: str) -> PrefixGrantView | None:
    if d is None:
        return None
    d = _dict(d, where)
    fields = _dict(_get(d, where, "fields", dict), f"{where}.fields")
    if not all(isinstance(v, str) for v in fields.values()):
        raise Invalid(f"{where}.fields: expected strings")
    return PrefixGrantView(prefix=_get(d, where, "prefix", str), url=_get(d, where, "url", str),
                           fields=dict(fields), max_bytes=_get(d, where, "max_bytes", int))


def read_grants(data: Mapping[str, Any]) -> GrantsView:
    """The grants file's content (`grants.Grants.dump()`)."""
    d = _dict(data, "grants")
    version = _get(d, "grants", "version", int, 1)
    if version != 1:
        raise Invalid(f"grants.version: {version} is not 1")
    expires = _get(d, "grants", "expires_at", str)
    try:
        expires_at = datetime.fromisoformat(expires)
    except ValueError:
        raise Invalid(f"grants.expires_at: {expires!r} is not a date-time") from None

    def grants_map(key: str) -> dict[str, ObjectGrantView]:
        m = _dict(_get(d, "grants", key, dict, {}) or {}, f"grants.{key}")
        return {k: _object_grant(v, f"grants.{key}.{k}") for k, v in m.items()}

    return GrantsView(
        version=version, expires_at=expires_at,
        inputs=grants_map("inputs"), outputs=grants_map("outputs"), scratch=grants_map("scratch"),
        output_prefix=_prefix_grant(d.get("output_prefix"), "grants.output_prefix"),
        scratch_prefix=_prefix_grant(d.get("scratch_prefix"), "grants.scratch_prefix"),
    )


def load_grants(path: str | os.PathLike[str] | None = None) -> GrantsView:
    """The grants file at `path`, else `$GRANTS_FILE`, else the mount's."""
    where = path or os.environ.get(GRANTS_FILE_ENV) or f"{GRANTS_MOUNT}/{GRANTS_FILE}"
    return read_grants(json.loads(Path(where).read_text()))


# ----------------------------------------------------------------------------------- settings
_TRUE = frozenset({"1", "true", "yes", "on", "t", "y"})
_FALSE = frozenset({"0", "false", "no", "off", "f", "n"})


def _env(environ: Mapping[str, str], name: str) -> str | None:
    """`name` matched case-insensitively, as `envmodel.EnvModel` does."""
    wanted = name.lower()
    found = None
    for k, v in environ.items():
        if k.lower() == wanted:
            found = v
    return found


@dataclass(frozen=True)
class S3Location:
    """`settings.S3Settings`, read from the same variables without pydantic."""

    endpoint_url: str | None = None
    public_endpoint_url: str | None = None
    bucket: str = "ffmpeg"
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None

    @property
    def public_endpoint(self) -> str | None:
        return self.public_endpoint_url or self.endpoint_url

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> S3Location:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, var in (("endpoint_url", "S3_ENDPOINT_URL"), ("public_endpoint_url", "S3_PUBLIC_ENDPOINT_URL"),
                          ("bucket", "S3_BUCKET"), ("region", "S3_REGION"),
                          ("access_key_id", "AWS_ACCESS_KEY_ID"), ("secret_access_key", "AWS_SECRET_ACCESS_KEY")):
            v = _env(env, var)
            if v is not None:
                values[name] = v
        return cls(**values)


@dataclass(frozen=True)
class URLRulesView:
    """`urls.URLRules`, read from the same variables without pydantic."""

    allow_hosts: str = ""
    allow_http: bool = False

    def allowed_entries(self) -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
        from .urls import allowed_entries

        return allowed_entries(self.allow_hosts)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> URLRulesView:
        env = os.environ if environ is None else environ
        hosts, http = _env(env, "URL_ALLOW_HOSTS"), _env(env, "URL_ALLOW_HTTP")
        allow_http = False
        if http is not None:
            v = http.strip().lower()
            if v not in _TRUE | _FALSE:
                raise Invalid(f"URL_ALLOW_HTTP={http!r} is not a boolean")
            allow_http = v in _TRUE
        return cls(allow_hosts=hosts or "", allow_http=allow_http)
