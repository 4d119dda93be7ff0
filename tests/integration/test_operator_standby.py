"""A second operator replica waits on the Lease, does no work, and still answers its liveness probe."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from devstack.stack import StackInfo
from helpers import free_port

pytestmark = pytest.mark.stack


def test_standby_replica_answers_healthz_while_waiting(stack: StackInfo, stack_env: dict[str, str],
                                                       tmp_path: Path) -> None:
    port = free_port()
    env = {**stack_env, "LIVENESS_PORT": str(port), "METRICS_PORT": "0", "POD_NAME": "standby-replica"}
    log = tmp_path / "standby.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "ffmpeg-operator")], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the standby never answered /healthz"
                time.sleep(0.3)
        assert r.status_code == 200 and r.json() == {"standby": True}
        time.sleep(2)
        text = log.read_text()
        assert "waiting for Lease" in text and "leading as" not in text, text
    finally:
        proc.terminate()
        proc.wait(timeout=10)
