"""Queueing on Kueue: 500 FFmpegJobs queued behind a ClusterQueue without quota, then the quota
raised: admission throughput (Jobs unsuspended per second once quota frees), how long until every
job shows its queue position, and the operator's and Kueue's RSS and CPU.

The jobs go to a pool made for the run (`benchq`: a ResourceFlavor whose node label no node has,
its own ClusterQueue), so that admitted Jobs get pods that stay unscheduled: what is measured is
the control path (operator, Kueue, API server), not FFmpeg. Everything made is removed after.

    .venv/bin/python -m bench.queueing [-n 500]"""

from __future__ import annotations

import argparse
import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import yaml
from ffmpegjob_model.model import GROUP, PLURAL, VERSION
from ffmpegjob_model.queueing import KUEUE_GROUP, KUEUE_VERSION, cluster_queue_name, local_queue_name
from kubernetes import client

from .common import (
    BENCH_LABEL,
    PREFIX,
    STATE,
    TENANT,
    ProcSampler,
    api_client,
    delete_run,
    ffmpegjob,
    list_ffj,
    machine,
    operator_pid,
    run_id,
    stack_env,
    write_result,
)
from .watcher import Watcher

POOL = "benchq"
POOLS_CM = "kubeffmpeg-pools"
CHILD_SELECTOR = "app.kubernetes.io/managed-by=kubeffmpeg-operator"
NAME_ANNOTATION = f"{GROUP}/ffmpegjob-name"


def kueue_pid() -> int:
    return int((STATE / "run" / "kueue.pid").read_text())


@contextlib.contextmanager
def bench_pool(api: client.ApiClient, ns: str) -> Any:
    """The `benchq` pool (ConfigMap entry), its ResourceFlavor and a ClusterQueue with no quota."""
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    cm = core.read_namespaced_config_map(POOLS_CM, ns)
    original = (cm.data or {})["pools.yaml"]
    pools = yaml.safe_load(original)
    pools[POOL] = {"image": "bench:none", "nodeSelector": {"kubeffmpeg.io/pool": "bench-nowhere"},
                   "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}, "ephemeralStorage": "1Gi",
                   "clusterQueue": cluster_queue_name(POOL)}
    core.patch_namespaced_config_map(POOLS_CM, ns, {"data": {"pools.yaml": yaml.safe_dump(pools)}})
    rf = {"apiVersion": f"{KUEUE_GROUP}/{KUEUE_VERSION}", "kind": "ResourceFlavor", "metadata": {"name": POOL},
          "spec": {"nodeLabels": {"kubeffmpeg.io/pool": "bench-nowhere"}}}
    cq = {"apiVersion": f"{KUEUE_GROUP}/{KUEUE_VERSION}", "kind": "ClusterQueue",
          "metadata": {"name": cluster_queue_name(POOL)},
          "spec": {"namespaceSelector": {}, "queueingStrategy": "BestEffortFIFO",
                   "resourceGroups": [{"coveredResources": ["cpu", "memory"], "flavors": [
                       {"name": POOL, "resources": [{"name": "cpu", "nominalQuota": "0"},
                                                    {"name": "memory", "nominalQuota": "0"}]}]}]}}
    custom.create_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, "resourceflavors", rf)
    custom.create_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, "clusterqueues", cq)
    try:
        yield
    finally:
        core.patch_namespaced_config_map(POOLS_CM, ns, {"data": {"pools.yaml": original}})
        with contextlib.suppress(client.ApiException):
            custom.delete_namespaced_custom_object(KUEUE_GROUP, KUEUE_VERSION, ns, "localqueues",
                                                   local_queue_name(POOL, TENANT))
        for plural, name in (("clusterqueues", cluster_queue_name(POOL)), ("resourceflavors", POOL)):
            with contextlib.suppress(client.ApiException):
                custom.delete_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, plural, name)


def set_quota(api: client.ApiClient, cpu: str, memory: str) -> None:
    client.CustomObjectsApi(api).patch_cluster_custom_object(
        KUEUE_GROUP, KUEUE_VERSION, "clusterqueues", cluster_queue_name(POOL),
        {"spec": {"resourceGroups": [{"coveredResources": ["cpu", "memory"], "flavors": [
            {"name": POOL, "resources": [{"name": "cpu", "nominalQuota": cpu},
                                         {"name": "memory", "nominalQuota": memory}]}]}]}})


def wait_until(check: Any, timeout: float, every: float = 0.5) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if check():
            return time.monotonic() - t0
        time.sleep(every)
    return None


def run(n: int = 500, threads: int = 16) -> dict[str, Any]:
    started = machine()
    env = stack_env()
    ns = env["FFMPEG_NAMESPACE"]
    api = api_client(env, pool=threads * 2)
    custom = client.CustomObjectsApi(api)
    rid = run_id()
    names = [f"{PREFIX}{rid}-{i:05d}" for i in range(n)]
    wanted = set(names)
    created: dict[str, float] = {}
    admitted: dict[str, float] = {}
    lock = threading.Lock()

    def on_job(type_: str, obj: dict[str, Any], t: float) -> None:
        name = (obj["metadata"].get("annotations") or {}).get(NAME_ANNOTATION)
        if name not in wanted:
            return
        with lock:
            created.setdefault(name, t)
            if type_ != "DELETED" and not (obj.get("spec") or {}).get("suspend"):
                admitted.setdefault(name, t)

    figures: dict[str, Any] = {"ffmpegjobs": n, "pool": POOL,
                               "note": "pods of admitted Jobs stay unscheduled (no node has the flavor's label): "
                                       "the control path only"}
    with bench_pool(api, ns):
        time.sleep(6)  # the operator re-reads the pools ConfigMap every 5 s
        watcher = Watcher(client.BatchV1Api(api).list_namespaced_job, (ns,), CHILD_SELECTOR, on_job)
        watcher.start()
        watcher.ready.wait(10)
        op, kq = ProcSampler(operator_pid), ProcSampler(kueue_pid)
        op.start()
        kq.start()
        figures.update(operator_rss_start_mb=round(op.start_mb, 1), kueue_rss_start_mb=round(kq.start_mb, 1))
        try:
            t0 = time.monotonic()

            def create(name: str) -> None:
                body = ffmpegjob(name, rid, source="bench_unused/in.mp4", command="-i {{in.mp4}} -c copy {{out.mp4}}",
                                 dir_id="bench_unused", machine=POOL)
                custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body, _preload_content=False)

            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(create, names))
            figures["create_s"] = round(time.monotonic() - t0, 2)
            jobs_s = wait_until(lambda: len(created) >= n, 300)
            figures["all_jobs_queued_s"] = None if jobs_s is None else round(jobs_s + figures["create_s"], 2)

            def positions() -> int:
                return sum(1 for o in list_ffj(api, ns, f"{BENCH_LABEL}={rid}")
                           if ((o.get("status") or {}).get("queue") or {}).get("position"))

            pos_s = wait_until(lambda: positions() >= n, 300, every=2)
            figures["all_positions_shown_s"] = None if pos_s is None else round(time.monotonic() - t0, 2)
            figures["admitted_before_quota"] = len(admitted)
            figures["operator_rss_queued_mb"] = round(op.last_mb, 1)
            figures["kueue_rss_queued_mb"] = round(kq.last_mb, 1)

            # Quota for all of them at once: how fast does Kueue admit (unsuspend) them?
            t1 = time.monotonic()
            set_quota(api, cpu=str(n), memory=f"{n}Gi")
            done_s = wait_until(lambda: len(admitted) >= n, 600, every=0.2)
            with lock:
                times = sorted(t - t1 for t in admitted.values())
            figures["admitted"] = len(times)
            figures["all_admitted_s"] = None if done_s is None else round(times[-1], 2)
            figures["first_admitted_s"] = round(times[0], 2) if times else None
            if len(times) >= 2 and times[-1] > times[0]:
                figures["admission_jobs_per_s"] = round((len(times) - 1) / (times[-1] - times[0]), 1)
            figures["operator_cpu_s"] = round(op.cpu(), 1)
            figures["kueue_cpu_s"] = round(kq.cpu(), 1)
            figures["operator_rss_peak_mb"] = round(op.peak_mb, 1)
            figures["kueue_rss_peak_mb"] = round(kq.peak_mb, 1)
        finally:
            op.stop()
            kq.stop()
            watcher.stop()
            figures["cleanup_s"] = round(delete_run(api, ns, rid), 1)
    return write_result("queueing", figures, started)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench.queueing")
    p.add_argument("-n", type=int, default=500)
    p.add_argument("--threads", type=int, default=16)
    a = p.parse_args(argv)
    run(a.n, a.threads)


if __name__ == "__main__":
    main()
