"""Where the local stack keeps its binaries, state and logs."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
HACK_DIR = REPO_ROOT / "hack"


def state_dir() -> Path:
    """`.devstack/` in the repo (override: DEVSTACK_DIR): env file, PKI, data, logs, pod folders."""
    return Path(os.environ.get("DEVSTACK_DIR", REPO_ROOT / ".devstack")).resolve()


@dataclass(frozen=True)
class Binaries:
    kube: Path
    etcd: Path
    helm: Path
    minio: Path
    kueue: Path
    kueue_src: Path  # the Kueue module in Go's module cache: its config/ (CRDs, RBAC, webhooks)

    def path(self, name: str) -> str:
        for folder in (self.kube, self.etcd, self.helm, self.minio, self.kueue):
            if (folder / name).exists():
                return str(folder / name)
        raise FileNotFoundError(name)


@cache
def binaries() -> Binaries:
    """Build (or find in the cache) the pinned binaries; the script prints NAME=PATH lines."""
    out = subprocess.run(
        ["bash", str(HACK_DIR / "build-control-plane.sh")], check=True, capture_output=True, text=True
    ).stdout
    found = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return Binaries(
        kube=Path(found["KUBE_BIN"]),
        etcd=Path(found["ETCD_BIN"]),
        helm=Path(found["HELM_BIN"]),
        minio=Path(found["MINIO_BIN"]),
        kueue=Path(found["KUEUE_BIN"]),
        kueue_src=Path(found["KUEUE_SRC"]),
    )
