"""Kubeconfig files for the local control plane."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(
    path: Path,
    server: str,
    ca_crt: Path,
    *,
    client_crt: Path | None = None,
    client_key: Path | None = None,
    token: str | None = None,
    namespace: str | None = None,
) -> Path:
    user: dict[str, str] = {}
    if client_crt and client_key:
        user = {"client-certificate-data": _b64(client_crt), "client-key-data": _b64(client_key)}
    if token:
        user["token"] = token
    context: dict[str, str] = {"cluster": "devstack", "user": "devstack"}
    if namespace:
        context["namespace"] = namespace
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "devstack", "cluster": {"server": server, "certificate-authority-data": _b64(ca_crt)}}
        ],
        "users": [{"name": "devstack", "user": user}],
        "contexts": [{"name": "devstack", "context": context}],
        "current-context": "devstack",
    }
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o600)
    return path
