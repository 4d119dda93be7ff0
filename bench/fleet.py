"""Create many suspended FFmpegJobs and time until each has its Job, sampling the operator.

`suspend: true` passes through to the Job (DESIGN.md), so the Jobs exist but no pod runs: what is
measured is the control path (operator, API server, etcd), not FFmpeg."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ffmpegjob_model.model import GROUP, PLURAL, VERSION
from kubernetes import client

from .common import BENCH_LABEL, PREFIX, ProcSampler, api_requests, ffmpegjob, operator_pid, requests_per
from .watcher import Watcher

CHILD_SELECTOR = "app.kubernetes.io/managed-by=kubeffmpeg-operator"
NAME_LABEL = f"{GROUP}/ffmpegjob"
# A storage path that is never fetched: the Jobs stay suspended and are deleted unrun.
SOURCE = "bench_unused/in.mp4"


@dataclass
class Fleet:
    rid: str
    names: list[str]
    created_s: float = 0.0  # first create sent -> last create answered
    all_jobs_s: float | None = None  # first create sent -> last Job seen
    jobs_seen: int = 0
    create_errors: int = 0
    operator_cpu_s: float = 0.0
    operator_rss_start_mb: float = 0.0
    operator_rss_peak_mb: float = 0.0
    operator_restarts: int = 0
    errors: list[str] = field(default_factory=list)
    # API server requests per FFmpegJob (every client's: this one's creates, the operator's, the
    # controllers'), from the first create until all Jobs exist and 5 s more.
    requests_per_job: dict[str, float] = field(default_factory=dict)


def create_fleet(api: client.ApiClient, ns: str, rid: str, n: int, threads: int = 16,
                 timeout: float = 600) -> Fleet:
    custom = client.CustomObjectsApi(api)
    fleet = Fleet(rid, [f"{PREFIX}{rid}-{i:05d}" for i in range(n)])
    wanted = set(fleet.names)
    seen: set[str] = set()
    done = threading.Event()
    lock = threading.Lock()
    last = [0.0]

    def on_job(type_: str, obj: dict[str, Any], t: float) -> None:
        name = (obj["metadata"].get("labels") or {}).get(NAME_LABEL)
        if type_ == "ADDED" and name in wanted:
            with lock:
                seen.add(name)
                last[0] = t
                if len(seen) == n:
                    done.set()

    watcher = Watcher(client.BatchV1Api(api).list_namespaced_job, (ns,), CHILD_SELECTOR, on_job)
    watcher.start()
    watcher.ready.wait(10)
    time.sleep(0.5)
    sampler = ProcSampler(operator_pid)
    fleet.operator_rss_start_mb = sampler.start_mb
    sampler.start()

    def create(name: str) -> None:
        body = ffmpegjob(name, rid, source=SOURCE, command="-i {{in.mp4}} -c copy {{out.mp4}}",
                         dir_id="bench_unused", suspend=True)
        body["metadata"]["labels"][BENCH_LABEL] = rid
        try:
            custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body, _preload_content=False)
        except client.ApiException as e:
            with lock:
                fleet.create_errors += 1
                if len(fleet.errors) < 5:
                    fleet.errors.append(f"{e.status}: {json.loads(e.body or '{}').get('message', e.reason)}")

    requests0 = api_requests(api)
    t0 = time.monotonic()
    try:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(create, fleet.names))
        fleet.created_s = time.monotonic() - t0
        done.wait(timeout)
    finally:
        sampler.stop()
        watcher.stop()
    time.sleep(5)
    fleet.requests_per_job = requests_per(requests0, api_requests(api), n)
    fleet.jobs_seen = len(seen)
    fleet.all_jobs_s = last[0] - t0 if done.is_set() else None
    fleet.operator_cpu_s = sampler.cpu()
    fleet.operator_rss_peak_mb = sampler.peak_mb
    fleet.operator_restarts = sampler.restarts
    return fleet
