"""What several integration tests need, in one place: waiting, a loopback HTTP receiver for
webhooks (and files to fetch), an API process of its own, kubectl, FFmpegJob reads and the
terminal phases and status words (from the contract package). Fixtures built on them are in
tests/integration/conftest.py."""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import httpx
from ffmpegjob_model.model import GROUP, PLURAL, TERMINAL, VERSION, Phase
from ffmpegjob_model.payloads import VGF_TERMINAL
from kubernetes import client

# Terminal FFmpegJob phases, and the words each REST surface uses for them.
TERMINAL_PHASES: tuple[str, ...] = tuple(p.value for p in Phase if p.value in TERMINAL)
FFMPEG_API_TERMINAL: tuple[str, ...] = tuple(p.rest_status for p in Phase if p.value in TERMINAL)
__all__ = ["FFMPEG_API_TERMINAL", "TERMINAL_PHASES", "VGF_TERMINAL", "Receiver", "api_process", "free_port",
           "get_ffmpegjob", "kubectl", "make_namespace", "unique", "wait_for",
           "wait_phase"]


def wait_for(check: Callable[[], Any], timeout: float = 180, what: str = "condition", every: float = 0.3,
             tolerate: tuple[type[Exception], ...] = ()) -> Any:
    """`check()`'s first truthy value within `timeout` seconds. Exceptions of the `tolerate`
    types count as "not yet" (the fault tests: what is down may be the API server itself)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except tolerate as e:
            last_error = e
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


def unique(prefix: str) -> str:
    """A fresh object name: `prefix-` and six hex digits."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kubectl(env: dict[str, str], *args: str, stdin: str | None = None, timeout: int = 120) -> str:
    """`kubectl` against the stack (`stack_env`); its stdout, or an assertion with its stderr."""
    out = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, env=env, timeout=timeout)
    assert out.returncode == 0, f"kubectl {' '.join(args)}: {out.stderr}"
    return out.stdout


def make_namespace(env: dict[str, str], name: str) -> str:
    """The namespace `name`, created if missing, once its `default` ServiceAccount exists (the
    service-account controller makes it shortly after the namespace; pods need it)."""
    kubectl(env, "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "Namespace",
                                                      "metadata": {"name": name}}))
    wait_for(lambda: subprocess.run(["kubectl", "get", "sa", "default", "-n", name], env=env,
                                    capture_output=True).returncode == 0,
             30, f"the default service account of namespace {name}")
    return name


# ----------------------------------------------------------------------------------- FFmpegJobs
def get_ffmpegjob(custom: client.CustomObjectsApi, ns: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    return obj


def wait_phase(custom: client.CustomObjectsApi, ns: str, name: str, phases: tuple[str, ...] = TERMINAL_PHASES,
               timeout: float = 240) -> dict[str, Any]:
    """The FFmpegJob once its phase is one of `phases` (by default: finished)."""
    def check() -> dict[str, Any] | None:
        obj = get_ffmpegjob(custom, ns, name)
        return obj if (obj.get("status") or {}).get("phase") in phases else None

    result: dict[str, Any] = wait_for(check, timeout, f"{name} in {phases}")
    return result


# ------------------------------------------------------------------------------------- receiver
class Delivery(NamedTuple):
    """One POST the receiver got: (time, headers, body)."""

    time: float
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A loopback HTTP server (the stack's URL_ALLOW_HOSTS allows 127.0.0.1): records every POST
    (webhook deliveries) and answers them with `answers` in order, then 200; serves `files`
    (path -> bytes) on GET, for URL inputs. `url` is its webhook URL, `base` its origin."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.answers = list(answers or [])
        self.calls: list[Delivery] = []
        self.files: dict[str, bytes] = {}
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.calls.append(Delivery(time.time(), dict(self.headers), body))
                n = len(outer.calls)
                self.send_response(outer.answers[n - 1] if n <= len(outer.answers) else 200)
                self.end_headers()

            def do_GET(self) -> None:
                data = outer.files.get(self.path)
                self.send_response(200 if data is not None else 404)
                self.send_header("Content-Length", str(len(data or b"")))
                self.end_headers()
                self.wfile.write(data or b"")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{self.base}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def posts(self) -> list[Any]:
        """The POST bodies, parsed."""
        return [c.json() for c in self.calls]

    def wait(self, n: int = 1, timeout: float = 180) -> list[Delivery]:
        wait_for(lambda: len(self.calls) >= n, timeout, f"{n} deliveries (got {len(self.calls)})")
        return self.calls

    def wait_post(self, timeout: float = 60) -> Any:
        """The first POST body, parsed, once it arrived."""
        return self.wait(1, timeout)[0].json()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------------------------- the API
@contextmanager
def api_process(stack_env: dict[str, str], sync_wait: float, log_prefix: str = "api-test-") -> Iterator[str]:
    """An API process of the test's own on a free port, with the stack's settings; its URL."""
    port = free_port()
    env = {**stack_env, "API_HOST": "127.0.0.1", "API_PORT": str(port), "SYNC_WAIT_SECONDS": str(sync_wait)}
    log = tempfile.NamedTemporaryFile(prefix=log_prefix, suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "ffmpeg_api.main"], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120  # a loaded machine (several stacks) starts it slowly
    try:
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"API did not start; see {log.name}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
