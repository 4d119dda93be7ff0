"""The worker's environment (set by the operator on the Job's pod, see docs/CONTRACTS.md).

Every variable the worker reads is a field here, read once at start-up. A plain class over
`os.environ` rather than pydantic-settings: the worker's start-up is on every job's critical path
and pydantic-settings alone costs more than the whole start-up budget (bench/README.md)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

T = TypeVar("T")
_TRUE = frozenset({"1", "true", "yes", "on", "t", "y"})
_FALSE = frozenset({"0", "false", "no", "off", "f", "n"})


class SettingsError(ValueError):
    """A variable that is missing or cannot be read; the message names it."""


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError("not a boolean")


def _env(name: str, parse: Callable[[str], T] | None = None, *, ge: float | None = None,
         le: float | None = None, **kw: Any) -> Any:
    """A field read from the environment variable `name` (`parse` turns its text into the value)."""
    return field(metadata={"env": name, "parse": parse, "ge": ge, "le": le}, **kw)


@dataclass(frozen=True)
class WorkerSettings:
    ffmpegjob_name: str = _env("FFMPEGJOB_NAME")  # required
    ffmpegjob_namespace: str = _env("FFMPEGJOB_NAMESPACE", default="default")
    workdir: str = _env("FFMPEG_WORKDIR", default_factory=tempfile.gettempdir)
    termination_log_path: str = _env("TERMINATION_LOG_PATH", default="/dev/termination-log")
    ffmpeg_bin: str = _env("FFMPEG_BIN", default="ffmpeg")
    ffprobe_bin: str = _env("FFPROBE_BIN", default="ffprobe")
    # Extra arguments put before every command's own, e.g. `-hwaccel cuda` on a GPU pool.
    ffmpeg_global_args: str = _env("FFMPEG_GLOBAL_ARGS", default="")
    progress_interval: float = _env("PROGRESS_INTERVAL_SECONDS", float, ge=0.1, default=1.0)
    fetch_concurrency: int = _env("FETCH_CONCURRENCY", int, ge=1, le=64, default=4)
    upload_concurrency: int = _env("UPLOAD_CONCURRENCY", int, ge=1, le=64, default=8)
    max_input_bytes: int | None = _env("MAX_INPUT_BYTES", int, ge=1, default=None)
    # The pool's scratch (ephemeralStorage quantity): downloaded inputs must fit before FFmpeg starts.
    scratch_limit: str | None = _env("SCRATCH_LIMIT", default=None)
    # FFmpeg reads suitable storage inputs itself (presigned GET) instead of waiting for a download.
    stream_inputs: bool = _env("STREAM_INPUTS", _bool, default=True)
    keep_workdir: bool = _env("KEEP_WORKDIR", _bool, default=False)
    # The storage grants file the operator mounts from the job's Secret (ffmpegjob_model.grants);
    # None: the grants module's default path.
    grants_file: str | None = _env("GRANTS_FILE", default=None)
    # The pod's name, for reports (the kubelet sets HOSTNAME to it; POD_NAME where a pod spec
    # passes it through the downward API).
    pod_name: str | None = _env("HOSTNAME", default=None)
    pod_name_fallback: str | None = _env("POD_NAME", default=None)
    # Split-and-stitch (split.py): `chunk` or `stitch`, the operator's plan (JSON), the chunk index.
    mode: str | None = _env("FFMPEG_WORKER_MODE", default=None)
    split_plan: str | None = _env("FFMPEG_SPLIT_PLAN", default=None)
    completion_index: str | None = _env("JOB_COMPLETION_INDEX", default=None)
    # `cpu`: the job fell back from a GPU pool; its commands are rewritten for the CPU
    # (ffmpegjob_model.gpu.cpu_fallback_spec, the function the operator decided with).
    fallback: str | None = _env("FFMPEG_FALLBACK", default=None)

    @property
    def pod(self) -> str | None:
        return self.pod_name or self.pod_name_fallback

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> WorkerSettings:
        """Read every field from `environ` (default: the process's); `overrides` win (tests)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in overrides:
                values[f.name] = overrides[f.name]
                continue
            name, parse = f.metadata["env"], f.metadata["parse"]
            raw = env.get(name)
            if raw is None or (raw == "" and parse is not None):
                continue  # the default (a required field without one fails below)
            try:
                value = parse(raw) if parse else raw
            except ValueError:
                raise SettingsError(f"{name}={raw!r} is not a valid {f.type}") from None
            ge, le = f.metadata["ge"], f.metadata["le"]
            if (ge is not None and value < ge) or (le is not None and value > le):
                bounds = " and ".join(x for x in (ge is not None and f">= {ge}", le is not None and f"<= {le}") if x)
                raise SettingsError(f"{name}={raw!r}: must be {bounds}")
            values[f.name] = value
        try:
            return cls(**values)
        except TypeError:
            missing = [f.metadata["env"] for f in fields(cls) if f.name not in values and _required(f)]
            raise SettingsError(f"missing environment variable(s): {', '.join(missing)}") from None


def _required(f: Any) -> bool:
    from dataclasses import MISSING

    return f.default is MISSING and f.default_factory is MISSING
