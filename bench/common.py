"""What every benchmark shares: the stack's environment, Kubernetes clients, FFmpegJob manifests,
the machine description, percentiles, operator /proc sampling and the result file."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ffmpegjob_model.model import GROUP, PLURAL, VERSION
from kubernetes import client, config

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"
CACHE = BENCH_DIR / ".cache"
STATE = REPO / ".devstack"
BENCH_LABEL = f"{GROUP}/bench"  # every FFmpegJob a benchmark creates carries it (clean-up by selector)
PREFIX = "bench-"
TENANT = "bench"


# --------------------------------------------------------------------------------- environment
def stack_env() -> dict[str, str]:
    """`.devstack/env` (written by `devstack up`) over this process's environment."""
    env: dict[str, str] = {}
    path = STATE / "env"
    if not path.exists():
        raise SystemExit("no .devstack/env: bring the stack up first (`make dev` or `.venv/bin/devstack up`)")
    import shlex

    for line in path.read_text().splitlines():
        if line.startswith("export ") and "=" in line and not line.startswith("export PATH="):
            k, _, v = line[len("export "):].partition("=")
            env[k] = shlex.split(v)[0] if v else ""
    # An API started outside the stack may be named by the caller's environment.
    env.update({k: os.environ[k] for k in ("API_URL",) if os.environ.get(k)})
    return env


def process_env() -> dict[str, str]:
    """This process's environment plus the stack's, for subprocesses (workers, load generator)."""
    venv_bin = str(Path(sys.executable).parent)
    return {**os.environ, **stack_env(), "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


def api_client(env: dict[str, str], pool: int = 32) -> client.ApiClient:
    cfg = client.Configuration()
    config.load_kube_config(config_file=env["KUBECONFIG"], client_configuration=cfg)
    cfg.connection_pool_maxsize = pool
    return client.ApiClient(cfg)


def operator_pid() -> int:
    pid = int((STATE / "run" / "operator.pid").read_text())
    os.kill(pid, 0)
    return pid


def run_id() -> str:
    return uuid.uuid4().hex[:6]


# ---------------------------------------------------------------------------------- FFmpegJobs
def ffmpegjob(name: str, run: str, *, source: str, command: str, dir_id: str, suspend: bool = False,
              webhook: str | None = None, machine: str = "cpu", tenant: str = TENANT) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "tenant": tenant,
        "machine": machine,
        "inputs": [{"name": "in.mp4", "source": source}],
        "outputs": [{"name": "out.mp4"}],
        "commands": [command],
        "output": {"dirId": dir_id},
        "timeoutSeconds": 600,
        "suspend": suspend,
    }
    if webhook:
        spec["webhook"] = {"url": webhook}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "FFmpegJob",
        "metadata": {"name": name, "labels": {BENCH_LABEL: run}},
        "spec": spec,
    }


def delete_run(api: client.ApiClient, ns: str, run: str, timeout: float = 600) -> float:
    """Delete this run's FFmpegJobs (their Jobs and pods follow by ownerReference); wait until the
    FFmpegJobs and their Jobs are gone. Returns the seconds it took."""
    custom, batch = client.CustomObjectsApi(api), client.BatchV1Api(api)
    t0 = time.monotonic()
    sel = f"{BENCH_LABEL}={run}"
    uids = {o["metadata"]["uid"] for o in list_ffj(api, ns, sel)}
    deadline, again = t0 + timeout, 0.0
    while time.monotonic() < deadline:
        if time.monotonic() >= again:
            # Re-issued every 15 s while any are left: a collection delete of thousands may time
            # out part-way on a busy API server.
            with contextlib.suppress(client.ApiException):
                custom.delete_collection_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, label_selector=sel)
            again = time.monotonic() + 15
        left = len(list_ffj(api, ns, sel))
        jobs = [j for j in list_all(batch.list_namespaced_job, ns, "app.kubernetes.io/managed-by=kubeffmpeg-operator")
                if any(r.get("uid") in uids for r in j["metadata"].get("ownerReferences") or [])]
        if not left and not jobs:
            return time.monotonic() - t0
        time.sleep(1)
    raise RuntimeError(f"clean-up of run {run} did not finish in {timeout}s")


def list_all(fn: Callable[..., Any], ns: str, selector: str) -> list[dict[str, Any]]:
    """Every item of a namespaced list call (pages of 500), as plain dicts."""
    out: list[dict[str, Any]] = []
    cont: str | None = None
    while True:
        kw: dict[str, Any] = {"label_selector": selector, "limit": 500, "_preload_content": False}
        if cont:
            kw["_continue"] = cont
        data = json.loads(fn(ns, **kw).data)
        out += data.get("items") or []
        cont = (data.get("metadata") or {}).get("continue")
        if not cont:
            return out


def list_ffj(api: client.ApiClient, ns: str, selector: str) -> list[dict[str, Any]]:
    custom = client.CustomObjectsApi(api)

    def fn(namespace: str, **kw: Any) -> Any:
        return custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, **kw)

    return list_all(fn, ns, selector)


# -------------------------------------------------------------------------------- measurements
def pct(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    xs = sorted(values)
    if not xs:
        return None
    k = max(0, min(len(xs) - 1, int(-(-q * len(xs) // 100)) - 1))
    return xs[k]


def summary_ms(values: list[float]) -> dict[str, Any]:
    """p50/p99/max/mean of latencies given in seconds, reported in milliseconds."""
    ms = [v * 1000 for v in values]
    r = lambda v: None if v is None else round(v, 1)  # noqa: E731
    return {"n": len(ms), "p50_ms": r(pct(ms, 50)), "p99_ms": r(pct(ms, 99)), "max_ms": r(max(ms) if ms else None),
            "mean_ms": r(sum(ms) / len(ms) if ms else None)}


def api_requests(api: client.ApiClient) -> dict[str, float]:
    """The API server's own request counters (`apiserver_request_total` on /metrics), summed
    as "VERB resource[/subresource]" (watches left out): what a run cost the API server, which
    does not depend on how loaded the machine is. {} when /metrics cannot be read."""
    import re

    try:
        method, url, headers, body, _ = api.param_serialize("GET", "/metrics", auth_settings=["BearerToken"])
        resp = api.call_api(method, url, header_params=headers, body=body)
        resp.read()
        text = (resp.data or b"").decode()
    except Exception:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
        if labels.get("verb") == "WATCH":
            continue
        sub = f"/{labels['subresource']}" if labels.get("subresource") else ""
        key = f"{labels.get('verb')} {labels.get('resource')}{sub}"
        out[key] = out.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def requests_per(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """The requests between two `api_requests` readings, per unit (e.g. per FFmpegJob)."""
    diff = {k: (v - before.get(k, 0.0)) / n for k, v in after.items() if v - before.get(k, 0.0) >= n / 20}
    return {k: round(v, 2) for k, v in sorted(diff.items(), key=lambda kv: -kv[1])}


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and its reaped children) from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class ProcSampler(threading.Thread):
    """Samples the operator's RSS at `hz`: `peak_mb`, `last_mb`, and CPU seconds since start.
    Follows the pid file: should the operator be restarted meanwhile, `restarts` counts it and
    the CPU of both processes is added up."""

    def __init__(self, pid_fn: Callable[[], int], hz: float = 10) -> None:
        super().__init__(daemon=True)
        self.pid_fn, self.period = pid_fn, 1 / hz
        self.pid = pid_fn()
        self.cpu0, self.cpu_done, self.restarts = cpu_seconds(self.pid), 0.0, 0
        self.peak_mb = self.last_mb = self.start_mb = rss_mb(self.pid)
        self._halt = threading.Event()
        self._cpu_last = self.cpu0

    def _sample(self) -> None:
        try:
            self.last_mb = rss_mb(self.pid)
            self._cpu_last = cpu_seconds(self.pid)
        except OSError:
            self.cpu_done += self._cpu_last - self.cpu0
            with contextlib.suppress(OSError, ValueError):
                self.pid = self.pid_fn()
                self.restarts += 1
                self.cpu0 = self._cpu_last = 0.0
            return
        self.peak_mb = max(self.peak_mb, self.last_mb)

    def run(self) -> None:
        while not self._halt.is_set():
            self._sample()
            self._halt.wait(self.period)

    def cpu(self) -> float:
        self._sample()
        return self.cpu_done + self._cpu_last - self.cpu0

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=2)


def wait_idle(pid: int, threshold: float = 0.05, window: float = 3.0, timeout: float = 120) -> tuple[bool, float]:
    """Wait until the process uses under `threshold` of a core over `window` seconds; returns
    (idle reached, CPU share of the last window)."""
    deadline = time.monotonic() + timeout
    share = 1.0
    while time.monotonic() < deadline:
        c0 = cpu_seconds(pid)
        time.sleep(window)
        share = (cpu_seconds(pid) - c0) / window
        if share < threshold:
            return True, share
    return False, share


# ---------------------------------------------------------------------------------------- output
def machine() -> dict[str, Any]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    mem_kb = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines()
                  if ln.startswith("MemTotal:"))
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", False
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "git_commit": commit + ("-dirty" if dirty else ""),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def target(value: float | None, limit: float, what: str) -> dict[str, Any]:
    """A DESIGN.md target: `what` must stay under `limit`."""
    shown = None if value is None else round(value, 3)
    return {"target": f"{what} < {limit}", "value": shown, "met": value is not None and value < limit}


def write_result(name: str, figures: dict[str, Any], started: dict[str, Any]) -> dict[str, Any]:
    """One JSON line on stdout and bench/results/<name>.json."""
    # The machine is shared: its load at the end too (1, 5 and 15 minutes), beside the start's.
    machine_ = {**started, "load_avg_at_end": [round(x, 2) for x in os.getloadavg()]}
    out = {"benchmark": name, "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), **figures, "machine": machine_}
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS / f"{name}.json.tmp"
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(RESULTS / f"{name}.json")
    print(json.dumps(out, separators=(",", ":")), flush=True)
    return out
