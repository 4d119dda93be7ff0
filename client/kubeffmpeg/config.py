"""Where the client finds the API: arguments, then `API_URL`/`API_KEY`, then `.devstack/env` of
a checkout (the folder or any parent), as `make dev` writes it."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

DEVSTACK_ENV = Path(".devstack") / "env"


def devstack_env(start: Path | None = None) -> dict[str, str]:
    """The `export K=V` lines of the nearest `.devstack/env`, or {}."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        path = folder / DEVSTACK_ENV
        if path.is_file():
            out: dict[str, str] = {}
            for line in path.read_text().splitlines():
                line = line.strip()
                if not line.startswith("export ") or "=" not in line:
                    continue
                key, _, value = line[len("export "):].partition("=")
                try:
                    parts = shlex.split(value)
                except ValueError:
                    continue
                out[key.strip()] = parts[0] if parts else ""
            return out
    return {}


@dataclass(frozen=True)
class Config:
    api_url: str
    api_key: str
    env: dict[str, str]  # the variables that were found (KUBECONFIG too, for `keys create`)


def load_config(api_url: str | None = None, api_key: str | None = None, start: Path | None = None) -> Config:
    stack = devstack_env(start)
    env = {**stack, **{k: v for k, v in os.environ.items() if k in ("API_URL", "API_KEY", "KUBECONFIG",
                                                                     "FFMPEG_NAMESPACE")}}
    url = api_url or env.get("API_URL")
    key = api_key if api_key is not None else env.get("API_KEY")
    if not url:
        raise ConfigError("No API URL: set API_URL (and API_KEY), pass --api-url, or run `make dev` in a checkout")
    return Config(url.rstrip("/"), key or "", env)
