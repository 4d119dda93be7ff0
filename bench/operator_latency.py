"""Operator latency on real jobs: FFmpegJob created -> Job created, and pod finished ->
FFmpegJob terminal -> webhook received (by a loopback receiver here), p50/p99 over N tiny jobs.

Every moment is stamped when its watch event (or the webhook POST) reaches this process; see
watcher.py. "Pod finished" is the first pod event with phase Succeeded/Failed; between it and
the FFmpegJob's terminal phase sits the Job controller (kube-controller-manager marks the Job
Complete), which is measured separately so that the operator's own share is visible."""

from __future__ import annotations

import argparse
import http.server
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ffmpegjob_model.model import GROUP, PLURAL, VERSION
from kubernetes import client

from . import media
from .common import (
    BENCH_LABEL,
    PREFIX,
    api_client,
    delete_run,
    ffmpegjob,
    machine,
    run_id,
    stack_env,
    summary_ms,
    target,
    write_result,
)
from .watcher import Watcher

CHILD_SELECTOR = "app.kubernetes.io/managed-by=kubeffmpeg-operator"
NAME_LABEL = f"{GROUP}/ffmpegjob"
TERMINAL = ("Succeeded", "Failed", "Cancelled")


class Receiver:
    """Loopback webhook receiver: the monotonic time each job_id's first POST arrived."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.arrived = threading.Condition()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                t = time.monotonic()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.end_headers()
                with outer.arrived:
                    outer.at.setdefault(str(body.get("job_id")), t)
                    outer.arrived.notify_all()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, job_id: str, timeout: float) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: job_id in self.at, timeout)

    def close(self) -> None:
        self.server.shutdown()


class Stamps:
    """First-seen moments per FFmpegJob name."""

    def __init__(self, names: set[str]) -> None:
        self.names = names
        self.t: dict[str, dict[str, float]] = {}
        self.lock = threading.Lock()

    def mark(self, name: str, what: str, t: float) -> None:
        with self.lock:
            self.t.setdefault(name, {}).setdefault(what, t)

    def on_ffj(self, type_: str, obj: dict[str, Any], t: float) -> None:
        name = obj["metadata"]["name"]
        if type_ == "ADDED":
            self.mark(name, "ffj_added", t)
        if (obj.get("status") or {}).get("phase") in TERMINAL:
            self.mark(name, "ffj_terminal", t)

    def on_job(self, type_: str, obj: dict[str, Any], t: float) -> None:
        name = (obj["metadata"].get("labels") or {}).get(NAME_LABEL)
        if name not in self.names:
            return
        if type_ == "ADDED":
            self.mark(name, "job_added", t)
        conds = (obj.get("status") or {}).get("conditions") or []
        if any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conds):
            self.mark(name, "job_finished", t)

    def on_pod(self, type_: str, obj: dict[str, Any], t: float) -> None:
        name = (obj["metadata"].get("labels") or {}).get(NAME_LABEL)
        if name in self.names and (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            self.mark(name, "pod_finished", t)


def run(n: int = 20, concurrency: int = 2) -> dict[str, Any]:
    started = machine()
    env = stack_env()
    ns, bucket = env["FFMPEG_NAMESPACE"], env["S3_BUCKET"]
    api = api_client(env)
    custom = client.CustomObjectsApi(api)
    s3 = media.s3_client(env)
    rid = run_id()
    dir_id = f"bench_lat_{rid}"
    source = media.upload(s3, bucket, media.tiny_clip(), dir_id)
    names = [f"{PREFIX}lat-{rid}-{i:03d}" for i in range(n)]
    stamps = Stamps(set(names))
    receiver = Receiver()
    watchers = [
        Watcher(custom.list_namespaced_custom_object, (GROUP, VERSION, ns, PLURAL), f"{BENCH_LABEL}={rid}",
                stamps.on_ffj),
        Watcher(client.BatchV1Api(api).list_namespaced_job, (ns,), CHILD_SELECTOR, stamps.on_job),
        Watcher(client.CoreV1Api(api).list_namespaced_pod, (ns,), CHILD_SELECTOR, stamps.on_pod),
    ]
    for w in watchers:
        w.start()
        w.ready.wait(10)
    time.sleep(0.5)  # the watch requests are open once their first response arrived

    def one(name: str) -> bool:
        body = ffmpegjob(name, rid, source=source, command="-i {{in.mp4}} -c copy {{out.mp4}}",
                         dir_id=dir_id, webhook=receiver.url)
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
        return receiver.wait(name, 180)

    t0 = time.monotonic()
    try:
        with ThreadPoolExecutor(concurrency) as pool:
            delivered = sum(pool.map(one, names))
        time.sleep(1)  # late watch events
        wall = time.monotonic() - t0
    finally:
        for w in watchers:
            w.stop()
        receiver.close()
        cleanup_s = delete_run(api, ns, rid)
        media.delete_prefix(s3, bucket, dir_id)

    def span(a: str, b: str) -> list[float]:
        out = []
        for name in names:
            t: dict[str, float] = dict(stamps.t.get(name, {}))
            if name in receiver.at:
                t["webhook"] = receiver.at[name]
            if a in t and b in t:
                out.append(t[b] - t[a])
        return out

    created_to_job = summary_ms(span("ffj_added", "job_added"))
    pod_to_webhook = summary_ms(span("pod_finished", "webhook"))
    figures = {
        "jobs": n,
        "concurrency": concurrency,
        "webhooks_received": delivered,
        "wall_s": round(wall, 1),
        "created_to_job": created_to_job,
        "pod_finished_to_terminal": summary_ms(span("pod_finished", "ffj_terminal")),
        "pod_finished_to_webhook": pod_to_webhook,
        "breakdown": {
            "pod_finished_to_job_finished (Job controller)": summary_ms(span("pod_finished", "job_finished")),
            "job_finished_to_terminal (operator)": summary_ms(span("job_finished", "ffj_terminal")),
            "terminal_to_webhook (operator)": summary_ms(span("ffj_terminal", "webhook")),
            "job_finished_to_webhook (operator)": summary_ms(span("job_finished", "webhook")),
        },
        "targets": {
            "created_to_job": target(created_to_job["p50_ms"], 50, "p50 ms"),
            "pod_finished_to_webhook": target(pod_to_webhook["p50_ms"], 100, "p50 ms"),
        },
        "cleanup_s": round(cleanup_s, 1),
        "method": "client-side monotonic stamps of watch events (FFmpegJobs, Jobs, pods) and webhook POSTs",
    }
    return write_result("operator_latency", figures, started)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench.operator_latency")
    p.add_argument("-n", type=int, default=20)
    p.add_argument("--concurrency", type=int, default=2)
    a = p.parse_args(argv)
    run(a.n, a.concurrency)


if __name__ == "__main__":
    main()
