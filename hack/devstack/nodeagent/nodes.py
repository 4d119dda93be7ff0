"""Node objects for the process nodes, and the heartbeat a kubelet keeps (Lease + Ready)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
from dataclasses import asdict, dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

log = logging.getLogger("devstack.nodes")

LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40


# Nodes started with `devstack node add` carry this label, so `devstack down` removes them.
ADDED_NODE_LABEL = "devstack.kubeffmpeg.io/added"
POOL_LABEL = "kubeffmpeg.io/pool"


@dataclass(frozen=True)
class NodeSpec:
    name: str
    labels: dict[str, str]
    taints: list[dict[str, str]] = field(default_factory=list)
    capacity: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> NodeSpec:
        d = json.loads(text)
        return cls(name=d["name"], labels=d.get("labels", {}), taints=d.get("taints", []),
                   capacity=d.get("capacity", {}))


def node_cpu() -> str:
    """CPUs a process node reports (capacity = allocatable): DEVSTACK_NODE_CPU, default 8 (the
    nodes share the host's cores: CFS quotas bound each pod, requests only place them)."""
    return os.environ.get("DEVSTACK_NODE_CPU", "8")


def capacity(cpu: str | None = None, memory: str = "16Gi", gpus: int = 0) -> dict[str, str]:
    cap = {"cpu": cpu or node_cpu(), "memory": memory, "pods": "110", "ephemeral-storage": "100Gi"}
    if gpus:
        cap["nvidia.com/gpu"] = str(gpus)
    return cap


def default_nodes() -> list[NodeSpec]:
    """The two pools of the local stack. The GPU node carries what real GPU pools carry: the
    nvidia.com/gpu extended resource, the NVIDIA labels and the NoSchedule taint."""
    cpu = NodeSpec(
        name="devstack-cpu",
        labels={POOL_LABEL: "cpu", "node.kubernetes.io/instance-type": "process-node"},
        capacity=capacity(),
    )
    gpu = NodeSpec(
        name="devstack-gpu",
        labels={
            POOL_LABEL: "gpu",
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": "process-node-gpu",
            "node.kubernetes.io/instance-type": "process-node-gpu",
        },
        taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
        capacity=capacity(gpus=2),
    )
    return [cpu, gpu]


def parse_taint(text: str) -> dict[str, str]:
    """`key=value:Effect` or `key:Effect`, as `kubectl taint` writes them."""
    kv, sep, effect = text.rpartition(":")
    if not sep or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
        raise ValueError(f"taint {text!r}: expected key[=value]:NoSchedule|PreferNoSchedule|NoExecute")
    key, _, value = kv.partition("=")
    return {"key": key, "value": value, "effect": effect} if value else {"key": key, "effect": effect}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _conditions(now: dt.datetime, transition: dt.datetime) -> list[dict[str, Any]]:
    def cond(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
        return {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now.isoformat(),
            "lastTransitionTime": transition.isoformat(),
        }

    return [
        cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "process node has sufficient memory"),
        cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "process node has no disk pressure"),
        cond("PIDPressure", "False", "KubeletHasSufficientPID", "process node has sufficient PID"),
        cond("Ready", "True", "KubeletReady", "process node agent is posting ready status"),
    ]


class NodeKeeper:
    """Registers one Node and keeps it Ready, as a kubelet would."""

    def __init__(self, core: client.CoreV1Api, coord: client.CoordinationV1Api, spec: NodeSpec) -> None:
        self.core, self.coord, self.spec = core, coord, spec
        self.started = _now()

    def register(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.spec.name, "labels": self._labels()},
            "spec": {"taints": self.spec.taints},
        }
        try:
            self.core.create_node(body)  # type: ignore[arg-type]  # the client accepts plain dicts
        except ApiException as e:
            if e.status != 409:
                raise
            # Keep the taints others put there (a cordon's node.kubernetes.io/unschedulable).
            node = self.core.read_node(self.spec.name)
            taints = [t.to_dict() for t in (node.spec.taints or [])] if node.spec else []
            have = {(t["key"], t["effect"]) for t in taints}
            taints += [t for t in self.spec.taints if (t["key"], t["effect"]) not in have]
            taints = [{k: v for k, v in t.items() if v is not None and k != "time_added"} for t in taints]
            self.core.patch_node(self.spec.name, {"metadata": {"labels": self._labels()},
                                                  "spec": {"taints": taints}})
        self.post_status()
        self.renew_lease()

    def _labels(self) -> dict[str, str]:
        return {
            "kubernetes.io/hostname": self.spec.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            **self.spec.labels,
        }

    def post_status(self) -> None:
        now = _now()
        status = {
            "capacity": self.spec.capacity,
            "allocatable": self.spec.capacity,
            "conditions": _conditions(now, self.started),
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": self.spec.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": self.spec.name,
                "systemUUID": self.spec.name,
                "bootID": self.started.isoformat(),
                "kernelVersion": platform.release(),
                "osImage": "devstack process node",
                "containerRuntimeVersion": "process://1",
                "kubeletVersion": os.environ.get("DEVSTACK_KUBE_VERSION", "v1.34.4"),
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }
        self.core.patch_node_status(self.spec.name, {"status": status})

    def renew_lease(self) -> None:
        now = _now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {
            "metadata": {"name": self.spec.name, "namespace": LEASE_NAMESPACE},
            "spec": {"holderIdentity": self.spec.name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now},
        }
        try:
            self.coord.patch_namespaced_lease(self.spec.name, LEASE_NAMESPACE, {"spec": body["spec"]})
        except ApiException as e:
            if e.status != 404:
                raise
            self.coord.create_namespaced_lease(LEASE_NAMESPACE, body)  # type: ignore[arg-type]
