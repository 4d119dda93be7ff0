"""The process-node agent: does a kubelet's job for the stack's Node objects.

It keeps each node Ready (Lease + status), watches the pods the real scheduler binds to its
nodes, runs their containers as local processes (runtime.PodRunner), reports pod status, and
honours deletion (SIGTERM, grace period, SIGKILL, then the final delete)."""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from .cgroups import NodeCgroups, milli_cpu
from .nodes import NodeKeeper, NodeSpec, default_nodes
from .podspec import PodPreparer
from .runtime import PodRunner

log = logging.getLogger("devstack.agent")
HEARTBEAT_SECONDS = 10
AGENT_MARKER = "DEVSTACK_NODE_AGENT"


class Agent:
    def __init__(self, nodes: list[NodeSpec], pods_root: Path, ca_crt: Path) -> None:
        self.api = client.ApiClient()
        self.core = client.CoreV1Api(self.api)
        self.coord = client.CoordinationV1Api(self.api)
        self.nodes = nodes
        self.pods_root = pods_root
        self.preparer = PodPreparer(self.core, self.api.configuration.host, ca_crt)
        self.runners: dict[str, PodRunner] = {}
        state = Path(os.environ.get("DEVSTACK_STATE", pods_root.parent))
        self.cgroups = {n.name: NodeCgroups(state, n.name, milli_cpu(n.capacity.get("cpu", "1"))) for n in nodes}
        for name, cg in self.cgroups.items():
            (log.info if cg.available else log.warning)("%s: %s", name, cg.describe())
        self.lock = threading.Lock()
        # Containers find the tools installed beside the agent (the project's virtualenv).
        self.base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(pods_root),
                         "LANG": "C.UTF-8"}
        # `make down` finds pod processes by this marker, since each runs in its own session.
        if "DEVSTACK_STATE" in os.environ:
            self.base_env["DEVSTACK_STATE"] = os.environ["DEVSTACK_STATE"]
        # ... and `devstack node remove` finds those of one agent by this one.
        self.base_env[AGENT_MARKER] = ",".join(n.name for n in nodes)

    def run(self) -> None:
        keepers = [NodeKeeper(self.core, self.coord, n) for n in self.nodes]
        for k in keepers:
            k.register()
        for n in self.nodes:
            threading.Thread(target=self._watch_node, args=(n.name,), daemon=True, name=f"watch-{n.name}").start()
        log.info("process nodes ready: %s", ", ".join(n.name for n in self.nodes))
        beat = 0
        while True:
            time.sleep(HEARTBEAT_SECONDS)
            beat += 1
            for k in keepers:
                try:
                    k.renew_lease()
                    if beat % 3 == 0:
                        k.post_status()
                except Exception as e:
                    log.warning("heartbeat of %s failed: %s", k.spec.name, e)

    def _watch_node(self, node: str) -> None:
        selector = f"spec.nodeName={node}"
        while True:
            try:
                pods = self.core.list_pod_for_all_namespaces(field_selector=selector)
                for pod in pods.items:
                    self._on_pod(self.api.sanitize_for_serialization(pod), startup=True)
                self._prune_cgroups(node, {p.metadata.uid for p in pods.items if p.metadata})
                since = pods.metadata.resource_version if pods.metadata else None
                w = watch.Watch()
                for ev in w.stream(self.core.list_pod_for_all_namespaces, field_selector=selector,
                                   resource_version=since, timeout_seconds=300):
                    if ev["type"] in ("ADDED", "MODIFIED"):
                        self._on_pod(ev["raw_object"], startup=False)
                    elif ev["type"] == "DELETED":
                        self._forget(ev["raw_object"]["metadata"]["uid"])
            except Exception as e:
                log.warning("pod watch on %s restarted: %s", node, e)
                time.sleep(1)

    def _on_pod(self, pod: dict[str, Any], startup: bool) -> None:
        meta, status = pod["metadata"], pod.get("status") or {}
        uid = meta["uid"]
        phase = status.get("phase", "Pending")
        with self.lock:
            runner = self.runners.get(uid)
            if meta.get("deletionTimestamp"):
                grace = int(meta.get("deletionGracePeriodSeconds") or 0)
                if runner is None:
                    runner = PodRunner(self.core, self.preparer, pod, self.pods_root, self.base_env)
                    runner.finished.set()
                    self.runners[uid] = runner
                runner.request_delete(grace)
                return
            if runner is not None or phase in ("Succeeded", "Failed"):
                return
            if phase == "Running" and startup:
                # Its process belonged to an earlier agent and is gone with it: like a node
                # reboot, the pod fails rather than silently running twice. The node, not the
                # pod's command, ended it: DisruptionTarget, and exit 137 as for a lost container.
                cgroups = self.cgroups.get(pod["spec"].get("nodeName", ""))
                if cgroups is not None:
                    cgroups.remove_pod(uid)  # what the earlier agent left running in it
                runner = PodRunner(self.core, self.preparer, pod, self.pods_root, self.base_env)
                runner.finished.set()
                self.runners[uid] = runner
                runner._report_failed("NodeAgentRestarted", "the process node agent restarted while the pod ran",
                                      disruption=True, exit_code=137)
                return
            runner = PodRunner(self.core, self.preparer, pod, self.pods_root, self.base_env,
                               self.cgroups.get(pod["spec"].get("nodeName", "")))
            self.runners[uid] = runner
        runner.start()

    def _prune_cgroups(self, node: str, listed: set[str | None]) -> None:
        """Cgroups of pods gone while no agent ran here (and what still runs in them)."""
        cgroups = self.cgroups.get(node)
        if cgroups is None:
            return
        with self.lock:
            stale = cgroups.pod_uids() - listed - set(self.runners)
        for uid in stale:
            log.info("removing the cgroup of pod %s, gone from %s", uid, node)
            cgroups.remove_pod(uid)

    def _forget(self, uid: str) -> None:
        with self.lock:
            self.runners.pop(uid, None)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Run the local stack's process nodes.")
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--pods-root", required=True, type=Path)
    ap.add_argument("--ca-crt", required=True, type=Path)
    ap.add_argument("--node", action="append", default=[], metavar="JSON",
                    help="a node to run (NodeSpec as JSON; repeatable); default: devstack-cpu and devstack-gpu")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config.load_kube_config(args.kubeconfig)
    args.pods_root.mkdir(parents=True, exist_ok=True)
    nodes = [NodeSpec.from_json(n) for n in args.node] or default_nodes()
    Agent(nodes, args.pods_root, args.ca_crt).run()


if __name__ == "__main__":
    main()
