"""Start, find and stop the stack's background processes, each with a pid file and a log file."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class ProcessSet:
    """Processes of one stack, tracked by pid files in `<state>/run/`."""

    def __init__(self, state: Path) -> None:
        self.run_dir = state / "run"
        self.log_dir = state / "logs"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def pid(self, name: str) -> int | None:
        try:
            pid = int((self.run_dir / f"{name}.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def running(self, name: str) -> bool:
        return self.pid(name) is not None

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> int:
        """Start `argv` detached in its own session (so that `down` can signal its whole group)."""
        if (pid := self.pid(name)) is not None:
            return pid
        with open(self.log(name), "ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        (self.run_dir / f"{name}.pid").write_text(str(proc.pid))
        return proc.pid

    def stop(self, name: str, grace: float = 10.0) -> None:
        pid = self.pid(name)
        if pid is not None:
            _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while pid_alive(pid) and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.1)
            if pid_alive(pid):
                _signal_group(pid, signal.SIGKILL)
                time.sleep(0.2)
            _signal_group(pid, signal.SIGKILL)  # leftovers in the group, if any
            _reap(pid)
        (self.run_dir / f"{name}.pid").unlink(missing_ok=True)

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.run_dir.glob("*.pid"))


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
