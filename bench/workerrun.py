"""Run `ffmpeg-worker` as a Job's pod would, on an FFmpegJob created with `suspend: true` (so the
operator creates a suspended Job and runs nothing itself), with FFmpeg wrapped by ffmpeg_timer.py.
Also runs the same FFmpeg command on local files, for comparison."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ffmpegjob_model.grants import GRANTS_FILE, GRANTS_FILE_ENV, grants_secret_name
from ffmpegjob_model.model import GROUP, PLURAL, VERSION
from kubernetes import client

from .common import BENCH_LABEL, CACHE, ffmpegjob, process_env
from .watcher import Watcher

TIMER = Path(__file__).with_name("ffmpeg_timer.py")
# The worker's own FFmpeg arguments (ffmpeg_worker.run.BASE_ARGS), so that both runs are alike.
BASE_ARGS = ["-hide_banner", "-nostdin", "-y", "-nostats", "-loglevel", "error", "-progress", "pipe:1"]


def timer_bin() -> Path:
    path = CACHE / "ffmpeg-timed"
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\nexec /usr/bin/env python3 -S -E {TIMER} "$@"\n')
    path.chmod(0o755)
    return path


@dataclass
class WorkerRun:
    rc: int
    start: float  # wall clock: worker process started
    exit: float  # wall clock: worker process exited
    ffmpeg: list[dict[str, Any]]  # ffmpeg_timer.py records, one per command
    result_seen: float | None  # wall clock: the watch saw status.result
    stderr: str = ""
    status: dict[str, Any] = field(default_factory=dict)


def run_worker(api: client.ApiClient, ns: str, rid: str, name: str, source: str, command: str,
               dir_id: str, extra_env: dict[str, str] | None = None) -> WorkerRun:
    custom = client.CustomObjectsApi(api)
    seen: dict[str, float] = {}
    offset = time.time() - time.monotonic()

    def on_ffj(type_: str, obj: dict[str, Any], t: float) -> None:
        if obj["metadata"]["name"] == name and (obj.get("status") or {}).get("result"):
            seen.setdefault("result", t + offset)

    watcher = Watcher(custom.list_namespaced_custom_object, (GROUP, VERSION, ns, PLURAL),
                      f"{BENCH_LABEL}={rid}", on_ffj)
    watcher.start()
    watcher.ready.wait(10)
    body = ffmpegjob(name, rid, source=source, command=command, dir_id=dir_id, suspend=True)
    created: Any = custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    time.sleep(0.5)
    grants = operator_grants(api, ns, created["metadata"]["uid"])
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        timing = Path(tmp) / "timing.jsonl"
        (Path(tmp) / GRANTS_FILE).write_text(grants)
        # As in a pod: no storage credentials, the grants the operator presigned for the job.
        env = {k: v for k, v in process_env().items() if not k.startswith("AWS_")}
        env["KUBECONFIG"] = str(pod_kubeconfig(api, ns, created["metadata"]["uid"], Path(tmp)))
        env |= {GRANTS_FILE_ENV: f"{tmp}/{GRANTS_FILE}", "FFMPEGJOB_NAME": name, "FFMPEGJOB_NAMESPACE": ns,
               "FFMPEG_WORKDIR": f"{tmp}/scratch", "TERMINATION_LOG_PATH": f"{tmp}/termination-log",
               "FFMPEG_BIN": str(timer_bin()), "BENCH_REAL_FFMPEG": shutil.which("ffmpeg") or "ffmpeg",
               "BENCH_TIMING_FILE": str(timing), **(extra_env or {})}
        start = time.time()
        proc = subprocess.run([sys.executable, "-m", "ffmpeg_worker.main"], env=env, capture_output=True,
                              text=True, timeout=900)
        end = time.time()
        records = [json.loads(line) for line in timing.read_text().splitlines()] if timing.exists() else []
    deadline = time.monotonic() + 10
    while "result" not in seen and proc.returncode == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    watcher.stop()
    obj: Any = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    status = dict(obj.get("status") or {})
    return WorkerRun(proc.returncode, start, end, records, seen.get("result"), proc.stderr[-3000:], status)


def pod_kubeconfig(api: client.ApiClient, ns: str, uid: str, folder: Path) -> Path:
    """What a Job's pod has: a token of the job's own ServiceAccount (made by the operator with
    the grants) and the cluster CA, as a JSON kubeconfig (a process node writes the same; in a
    cluster the worker reads the token file and no kubeconfig). Not the stack's admin
    kubeconfig: its YAML and client certificates cost the worker ~40 ms that no pod pays."""
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600))
    status = client.CoreV1Api(api).create_namespaced_service_account_token(f"ffj-{uid}", ns, request).status
    assert status is not None
    token = status.token
    cfg = api.configuration
    kubeconfig = {"apiVersion": "v1", "kind": "Config", "current-context": "pod",
                  "clusters": [{"name": "c", "cluster": {"server": cfg.host,
                                                         "certificate-authority": cfg.ssl_ca_cert}}],
                  "users": [{"name": "pod", "user": {"token": token}}],
                  "contexts": [{"name": "pod", "context": {"cluster": "c", "user": "pod", "namespace": ns}}]}
    path = folder / "pod.kubeconfig"
    path.write_text(json.dumps(kubeconfig))
    return path


def operator_grants(api: client.ApiClient, ns: str, uid: str, timeout: float = 30) -> str:
    """The grants file the operator made for the (suspended) FFmpegJob's pod."""
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    while True:
        try:
            secret = core.read_namespaced_secret(grants_secret_name(f"ffj-{uid}"), ns)
            return base64.b64decode((secret.data or {})[GRANTS_FILE]).decode()
        except client.ApiException as e:
            if e.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def run_local(input_path: Path, command: str, workdir: Path) -> float:
    """The same FFmpeg command on local files; wall seconds."""
    workdir.mkdir(parents=True, exist_ok=True)
    args = command.replace("{{in.mp4}}", str(input_path)).replace("{{out.mp4}}", str(workdir / "out.mp4")).split()
    t0 = time.monotonic()
    subprocess.run(["ffmpeg", *BASE_ARGS, *args], check=True, stdout=subprocess.DEVNULL, cwd=workdir)
    return time.monotonic() - t0


