"""The worker's only API-server traffic: read its FFmpegJob, merge-patch `ffmpegjobs/status`.

Two REST calls do not need a Kubernetes client library (the official one costs a third of a
second of imports in every pod, bench/README.md): this is the standard library's HTTPS client
with the pod's service-account credentials, found as every client finds them (CONTRACTS.md,
"Kubernetes clients"):

- in a cluster: `KUBERNETES_SERVICE_HOST`/`_PORT`, the token and CA in
  `/var/run/secrets/kubernetes.io/serviceaccount/` (the token re-read, as it is rotated);
- else the kubeconfig named by `KUBECONFIG` (the local stack's process nodes give pods one whose
  user reads the projected token file; tests and benchmarks pass the admin's): its current
  context's server, CA (file or data), and token, token file or client certificate.

Transient failures (connection errors, 409, 429, 5xx) are retried with exponential back-off."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import ssl
import tempfile
import threading
import time
from base64 import b64decode
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:  # the model is imported where it is needed, not on the way to FFmpeg
    from ffmpegjob_model.model import FFmpegJob

log = logging.getLogger("ffmpeg_worker.kube")
MERGE_PATCH = "application/merge-patch+json"
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# ffmpegjob_model.model's GROUP/VERSION/PLURAL, spelled out so that this module imports no model
# (tests/unit/test_worker_kube.py keeps them equal).
API_PATH = "/apis/kubeffmpeg.io/v1alpha1"
PLURAL = "ffmpegjobs"
TIMEOUT = 30.0
ATTEMPTS = 6
TRANSIENT = frozenset({409, 429, 500, 502, 503, 504})


class ConfigError(Exception):
    """No way to reach the API server was found."""


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


@dataclass(frozen=True)
class ApiConfig:
    host: str
    port: int
    ca_file: str | None = None
    ca_data: str | None = None  # PEM
    verify: bool = True
    token: str | None = None
    token_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @classmethod
    def load(cls, environ: dict[str, str] | None = None) -> ApiConfig:
        """In-cluster first, then KUBECONFIG (read now: process nodes give each pod its own)."""
        env = dict(os.environ) if environ is None else environ
        host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
        token = SA_DIR / "token"
        if host and port and token.is_file():
            return cls(host=host.strip("[]"), port=int(port), ca_file=str(SA_DIR / "ca.crt"),
                       token_file=str(token))
        path = (env.get("KUBECONFIG") or "").split(os.pathsep)[0] or str(Path.home() / ".kube" / "config")
        if not Path(path).is_file():
            raise ConfigError("neither in a cluster (KUBERNETES_SERVICE_HOST, service-account token) "
                              f"nor a kubeconfig at {path}")
        return cls.from_kubeconfig(Path(path))

    @classmethod
    def from_kubeconfig(cls, path: Path) -> ApiConfig:
        text = path.read_text()
        try:
            cfg = json.loads(text)
        except ValueError:
            import yaml  # only here: in a cluster no YAML is read

            cfg = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        base = path.parent

        def named(kind: str, name: str) -> dict[str, Any]:
            for item in cfg.get(kind + "s") or []:
                if item.get("name") == name:
                    return dict(item.get(kind) or {})
            raise ConfigError(f"{path}: no {kind} named {name!r}")

        ctx = named("context", cfg.get("current-context") or "")
        cluster, user = named("cluster", ctx.get("cluster", "")), named("user", ctx.get("user", ""))
        server = urlsplit(cluster.get("server", ""))
        if server.scheme != "https" or not server.hostname:
            raise ConfigError(f"{path}: the worker speaks only https to the API server, not {server.geturl()!r}")

        def rel(p: str | None) -> str | None:
            return str(base / p) if p else None

        def pem(data: str | None) -> str | None:
            return b64decode(data).decode() if data else None

        return cls(
            host=server.hostname, port=server.port or 443,
            ca_file=rel(cluster.get("certificate-authority")), ca_data=pem(cluster.get("certificate-authority-data")),
            verify=not cluster.get("insecure-skip-tls-verify", False),
            token=user.get("token"), token_file=rel(user.get("tokenFile")),
            cert_file=rel(user.get("client-certificate")) or _temp_pem(pem(user.get("client-certificate-data"))),
            key_file=rel(user.get("client-key")) or _temp_pem(pem(user.get("client-key-data"))),
        )

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_data)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file and self.key_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def bearer(self) -> str | None:
        if self.token_file:
            return Path(self.token_file).read_text().strip()  # rotated: read it for every request
        return self.token


_temp_files: list[str] = []


def _temp_pem(data: str | None) -> str | None:
    """An in-line certificate or key as a file (ssl loads a chain only from files), private to
    this process, removed by `remove_temp_files` (main.py calls it before it exits)."""
    if data is None:
        return None
    fd, path = tempfile.mkstemp(prefix="kubeffmpeg-", suffix=".pem")
    with os.fdopen(fd, "w") as f:
        f.write(data)
    _temp_files.append(path)
    return path


def remove_temp_files() -> None:
    while _temp_files:
        with contextlib.suppress(OSError):
            os.unlink(_temp_files.pop())


class KubeApi:
    """JSON over HTTPS to the API server, on a few kept-alive connections (one per thread at a time)."""

    def __init__(self, config: ApiConfig) -> None:
        self.config = config
        self._ssl: ssl.SSLContext | None = None
        self._idle: list[http.client.HTTPSConnection] = []
        self._lock = threading.Lock()

    def _connection(self) -> http.client.HTTPSConnection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            if self._ssl is None:
                self._ssl = self.config.ssl_context()
        return http.client.HTTPSConnection(self.config.host, self.config.port, timeout=TIMEOUT, context=self._ssl)

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        """One call, retried while the failure is transient; the decoded JSON answer."""
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return self._once(method, path, data, content_type)
            except ApiError as exc:
                if exc.status not in TRANSIENT or attempt == ATTEMPTS:
                    raise
            except (OSError, http.client.HTTPException) as exc:
                if attempt == ATTEMPTS:
                    raise ApiError(0, f"{method} {path}: {type(exc).__name__}: {exc}") from None
            time.sleep(min(0.2 * 2 ** (attempt - 1), 5.0))
        raise AssertionError("unreachable")

    def _once(self, method: str, path: str, data: bytes | None, content_type: str) -> Any:
        headers = {"Accept": "application/json", "User-Agent": "kubeffmpeg-worker"}
        if data is not None:
            headers["Content-Type"] = content_type
        token = self.config.bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn = self._connection()
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
        except BaseException:
            conn.close()
            raise
        if resp.will_close:
            conn.close()
        else:
            with self._lock:
                self._idle.append(conn)
        if resp.status >= 400:
            raise ApiError(resp.status, _reason(payload) or resp.reason)
        return json.loads(payload) if payload else None

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.close()


def _reason(payload: bytes) -> str:
    """A Status object's message, else the start of the body."""
    try:
        return str(json.loads(payload).get("message") or "")
    except (ValueError, AttributeError):
        return payload[:300].decode("utf-8", "replace")


class JobClient:
    """One FFmpegJob: read it, merge-patch its status."""

    def __init__(self, api: KubeApi, namespace: str, name: str) -> None:
        self.api, self.namespace, self.name = api, namespace, name
        self.path = f"{API_PATH}/namespaces/{quote(namespace, safe='')}/{PLURAL}/{quote(name, safe='')}"

    def get_object(self) -> dict[str, Any]:
        """The FFmpegJob as the API server stores it (camelCase JSON)."""
        return dict(self.api.request("GET", self.path))

    def get(self) -> FFmpegJob:
        # Leniently: fields of a newer CRD are logged once and ignored (docs/CONTRACTS.md).
        from ffmpegjob_model.lenient import read_ffmpegjob

        return read_ffmpegjob(self.get_object())

    def patch_status(self, status: dict[str, Any]) -> None:
        """Merge-patch the given status fields (camelCase, as on the wire)."""
        self.api.request("PATCH", self.path + "/status", {"status": status}, MERGE_PATCH)

    def try_patch_status(self, status: dict[str, Any]) -> bool:
        """Progress is best effort: a failed patch is logged, never fails the job."""
        try:
            self.patch_status(status)
            return True
        except Exception as exc:
            log.warning("status patch failed: %s", exc)
            return False


def job_client(namespace: str, name: str) -> JobClient:
    return JobClient(KubeApi(ApiConfig.load()), namespace, name)
