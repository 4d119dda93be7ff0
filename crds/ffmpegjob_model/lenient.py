"""Read leniently, validate strictly.

REST input is parsed with the strict models (`extra="forbid"`): a misspelt field is a 400.
An object read back from the API server is different: a newer CRD may have added (defaulted)
fields that this component's model predates, and refusing them would fail every job until the
component is upgraded. `read_ffmpegjob`/`read_spec` drop the fields the model does not know,
log each such field once per process, and then validate what is left with the strict model, so
every rule of the known fields still applies. See docs/CONTRACTS.md, "Version skew".
"""

from __future__ import annotations

import logging
import threading
import types
import typing
from typing import Any

from pydantic import BaseModel

from .model import FFmpegJob, FFmpegJobSpec, FFmpegJobStatus

log = logging.getLogger("ffmpegjob_model.lenient")
_seen: set[str] = set()
_seen_lock = threading.Lock()


def _models_in(annotation: Any) -> tuple[str, type[BaseModel]] | None:
    """('model'|'list'|'dict', M) when a field holds a model, a list of them or a map of them."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "model", annotation
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _models_in(args[0])
    if origin in (typing.Union, types.UnionType):
        for a in args:
            found = _models_in(a)
            if found is not None:
                return found
        return None
    if origin in (list, tuple, set, frozenset) and args:
        inner = _models_in(args[0])
        return ("list", inner[1]) if inner and inner[0] == "model" else None
    if origin is dict and len(args) == 2:
        inner = _models_in(args[1])
        return ("dict", inner[1]) if inner and inner[0] == "model" else None
    return None


def strip_unknown(model: type[BaseModel], data: Any, path: str = "") -> tuple[Any, list[str]]:
    """`data` without the keys `model` (and its nested models) does not declare, and the dotted
    paths of what was dropped. Only models that forbid extra fields are pruned."""
    if not isinstance(data, dict):
        return data, []
    forbids = model.model_config.get("extra") == "forbid"
    by_key: dict[str, Any] = {}
    for name, f in model.model_fields.items():
        by_key[name] = f.annotation
        if f.alias:
            by_key[f.alias] = f.annotation
    out: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in by_key:
            if forbids:
                dropped.append(where)
            else:
                out[key] = value
            continue
        found = _models_in(by_key[key])
        if found is None:
            out[key] = value
        elif found[0] == "model":
            out[key], d = strip_unknown(found[1], value, where)
            dropped += d
        elif found[0] == "list" and isinstance(value, list):
            items = []
            for i, item in enumerate(value):
                clean, d = strip_unknown(found[1], item, f"{where}[{i}]")
                items.append(clean)
                dropped += d
            out[key] = items
        elif found[0] == "dict" and isinstance(value, dict):
            entries = {}
            for k, item in value.items():
                entries[k], d = strip_unknown(found[1], item, f"{where}.{k}")
                dropped += d
            out[key] = entries
        else:
            out[key] = value
    return out, dropped


def _log_once(kind: str, dropped: list[str]) -> None:
    new = []
    with _seen_lock:
        for p in dropped:
            # list indices differ between objects; the field is what matters
            key = f"{kind}:{_no_indices(p)}"
            if key not in _seen:
                _seen.add(key)
                new.append(_no_indices(p))
    if new:
        log.warning("ignoring %s fields this version does not know (a newer CRD?): %s", kind,
                    ", ".join(sorted(set(new))))


def _no_indices(path: str) -> str:
    out, depth = [], 0
    for ch in path:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def read_spec(spec: dict[str, Any]) -> FFmpegJobSpec:
    """An FFmpegJob's spec as read from the API server (unknown fields logged once, dropped)."""
    clean, dropped = strip_unknown(FFmpegJobSpec, dict(spec), "spec")
    _log_once("FFmpegJob", dropped)
    return FFmpegJobSpec.model_validate(clean)


def read_status(status: dict[str, Any]) -> FFmpegJobStatus:
    """An FFmpegJob's status as read from the API server (unknown fields logged once, dropped)."""
    clean, dropped = strip_unknown(FFmpegJobStatus, dict(status), "status")
    _log_once("FFmpegJob", dropped)
    return FFmpegJobStatus.model_validate(clean)


def read_ffmpegjob(obj: dict[str, Any]) -> FFmpegJob:
    """A whole FFmpegJob as read from the API server (unknown fields logged once, dropped)."""
    data = dict(obj)
    dropped: list[str] = []
    if isinstance(data.get("spec"), dict):
        data["spec"], d = strip_unknown(FFmpegJobSpec, data["spec"], "spec")
        dropped += d
    if isinstance(data.get("status"), dict):
        data["status"], d = strip_unknown(FFmpegJobStatus, data["status"], "status")
        dropped += d
    _log_once("FFmpegJob", dropped)
    return FFmpegJob.model_validate(data)
