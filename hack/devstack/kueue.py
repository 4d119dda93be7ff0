"""Kueue in the local stack: its manager built from the Go module proxy (build-control-plane.sh),
its CRDs, RBAC and admission webhooks read from the module's own `config/` (never copied into this
repo), and the stack's queues (ResourceFlavor and ClusterQueue per pool, WorkloadPriorityClasses).

The manager runs as a process on loopback like the control plane. It authenticates as the user
`kueue` (a client certificate of the stack's CA) bound to Kueue's own `manager-role`; its webhook
server serves a certificate of the stack's CA, and the webhook configurations reach it with a
`url:` client config (the API server has no Service network here). Only the webhooks of the
batch/v1 Job integration and of Kueue's own kinds are registered: those of frameworks that are
not installed would only add failure points."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import ssl
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .controlplane import port_offset
from .kubeconfig import write_kubeconfig
from .paths import Binaries
from .pki import Pki, _key, _write_key
from .processes import ProcessSet

KUEUE_NAMESPACE = "kueue-system"
KUEUE_USER = "kueue"
PREFIX = "kueue-"  # what Kueue's own kustomization prefixes its cluster-scoped objects with
WEBHOOK_PORT = 19443 + port_offset()
METRICS_PORT = 18443 + port_offset()
HEALTH_PORT = 18081 + port_offset()
# The webhooks kept: the batch/v1 Job integration's and Kueue's own kinds'.
WEBHOOK_GROUPS = frozenset({"batch", "kueue.x-k8s.io"})
# Alpha in this Kueue version: ordering by each LocalQueue's (tenant's) recent usage. The
# visibility API server (pending-workload positions over an APIService) needs a Service network
# that the local stack lacks: off here, the operator computes positions from the Workloads.
FEATURE_GATES = "AdmissionFairSharing=true,VisibilityOnDemand=false"


def manager_config(state: Path, afs_interval: str = "2s", afs_half_life: str = "30s") -> dict[str, Any]:
    """Kueue's Configuration for the stack: no leader election, no internal cert management
    (the stack's CA signs the webhook certificate), batch/v1 Jobs only, fair sharing on."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta1",
        "kind": "Configuration",
        "namespace": KUEUE_NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{HEALTH_PORT}"},
        "metrics": {"bindAddress": f"127.0.0.1:{METRICS_PORT}"},
        "webhook": {"port": WEBHOOK_PORT, "host": "127.0.0.1", "certDir": str(state / "kueue" / "certs")},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "manageJobsWithoutQueueName": False,
        "integrations": {"frameworks": ["batch/job"]},
        "clientConnection": {"qps": 50, "burst": 100},
        "fairSharing": {"enable": True},
        # Short windows so that tenants' recent usage (not last week's) orders the queue: the
        # stack runs short jobs. A production cluster keeps Kueue's defaults (hours, minutes).
        "admissionFairSharing": {"usageHalfLifeTime": afs_half_life, "usageSamplingInterval": afs_interval},
    }


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def crds(src: Path) -> list[dict[str, Any]]:
    return [d for f in sorted((src / "config/components/crd/bases").glob("*.yaml")) for d in _docs(f)]


def rbac(src: Path) -> list[dict[str, Any]]:
    """Kueue's manager ClusterRole (as its kustomization names it), bound to the user `kueue`."""
    role = _docs(src / "config/components/rbac/role.yaml")[0]
    role["metadata"] = {"name": PREFIX + role["metadata"]["name"]}
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": PREFIX + "manager-rolebinding"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role["metadata"]["name"]},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": KUEUE_USER}],
    }
    return [role, binding]


def webhooks(src: Path, ca_bundle: bytes) -> list[dict[str, Any]]:
    """The module's webhook configurations, kept to WEBHOOK_GROUPS, each pointed at the manager on
    loopback (`url:`) and trusting the stack's CA."""
    import base64

    out = []
    for doc in _docs(src / "config/components/webhook/manifests.yaml"):
        kept = []
        for hook in doc.get("webhooks") or []:
            groups = {g for r in hook.get("rules") or [] for g in r.get("apiGroups") or []}
            if not groups or not groups <= WEBHOOK_GROUPS:
                continue
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{WEBHOOK_PORT}{path}",
                                    "caBundle": base64.b64encode(ca_bundle).decode()}
            hook["timeoutSeconds"] = 10
            kept.append(hook)
        doc["metadata"] = {"name": PREFIX + doc["metadata"]["name"]}
        doc["webhooks"] = kept
        out.append(doc)
    return out


def _sign(pki: Pki, subject: x509.Name, key_path: Path, crt_path: Path, *, server: bool) -> None:
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), None)
    ca = x509.load_pem_x509_certificate(pki.ca_crt.read_bytes())
    key = _key()
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.subject).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=365))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage(
             [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    cert = b.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    _write_key(key_path, key)
    crt_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class Kueue:
    def __init__(self, state: Path, bins: Binaries, pki: Pki, procs: ProcessSet) -> None:
        self.state, self.bins, self.pki, self.procs = state, bins, pki, procs
        self.dir = state / "kueue"
        self.kubeconfig = self.dir / "kueue.kubeconfig"

    def manifests(self) -> list[dict[str, Any]]:
        src = self.bins.kueue_src
        return [*rbac(src), *webhooks(src, self.pki.ca_crt.read_bytes())]

    def prepare(self, server: str) -> None:
        """Certificates (webhook server, client) and the kubeconfig and config files, once."""
        certs = self.dir / "certs"
        certs.mkdir(parents=True, exist_ok=True)
        if not (certs / "tls.crt").exists():
            _sign(self.pki, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kueue-webhook")]),
                  certs / "tls.key", certs / "tls.crt", server=True)
        client_crt, client_key = self.dir / "client.crt", self.dir / "client.key"
        if not client_crt.exists():
            _sign(self.pki, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, KUEUE_USER)]),
                  client_key, client_crt, server=False)
        write_kubeconfig(self.kubeconfig, server, self.pki.ca_crt, client_crt=client_crt, client_key=client_key)
        (self.dir / "config.yaml").write_text(yaml.safe_dump(manager_config(self.state)))

    def start(self, env: dict[str, str]) -> None:
        argv = [self.bins.path("kueue"), f"--config={self.dir / 'config.yaml'}",
                f"--kubeconfig={self.kubeconfig}", f"--feature-gates={FEATURE_GATES}"]
        # KUBECONFIG of the admin is not Kueue's: its own file names its identity.
        self.procs.start("kueue", [*self._etc_overlay(), *argv],
                         env={k: v for k, v in env.items() if k != "KUBECONFIG"})

    def _etc_overlay(self) -> list[str]:
        """Without its internal cert management, this Kueue reads its metrics serving certificate
        from the fixed path /etc/kueue/metrics/certs. Rather than write into the host's /etc, the
        manager runs in a mount namespace of its own where /etc is overlaid (read-only) with the
        stack's folder holding that certificate. A user namespace makes it work without root."""
        certs = self.dir / "etc" / "kueue" / "metrics" / "certs"
        certs.mkdir(parents=True, exist_ok=True)
        for name in ("tls.crt", "tls.key"):
            (certs / name).write_bytes((self.dir / "certs" / name).read_bytes())
        userns = ["--map-root-user"] if os.geteuid() != 0 else []
        script = 'mount -t overlay overlay -o lowerdir="$1":/etc /etc && shift && exec "$@"'
        return ["unshare", "--mount", "--propagation", "private", *userns, "--",
                "sh", "-c", script, "kueue-etc", str(self.dir / "etc")]

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{HEALTH_PORT}/readyz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def webhook_serving(self) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_crt))
        try:
            urllib.request.urlopen(f"https://127.0.0.1:{WEBHOOK_PORT}/healthz", context=ctx, timeout=2)
        except urllib.error.HTTPError:
            return True  # TLS handshake done: the server is up (it has no such path)
        except OSError:
            return False
        return True

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not (self.healthy() and self.webhook_serving()):
            if not self.procs.running("kueue") or time.monotonic() > deadline:
                log = self.procs.log("kueue")
                tail = log.read_text()[-3000:] if log.exists() else ""
                raise RuntimeError(f"Kueue did not become ready; see {log}:\n{tail}")
            time.sleep(0.5)


def queue_objects(pools: dict[str, dict[str, Any]], quotas: dict[str, dict[str, str]],
                  cohort: str = "kubeffmpeg") -> list[dict[str, Any]]:
    """What the chart renders when `kueue.enabled` (charts/kubeffmpeg/templates/kueue.yaml), for the
    stack: a ResourceFlavor per pool (its node labels), a ClusterQueue per pool in one cohort,
    with usage-based fair sharing between its LocalQueues (tenants), and the priority classes."""
    from ffmpegjob_model.queueing import PRIORITY_VALUES, cluster_queue_name, flavor_name

    out: list[dict[str, Any]] = []
    for name, pool in sorted(pools.items()):
        quota = quotas[name]
        out.append({"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "ResourceFlavor",
                    "metadata": {"name": flavor_name(name)},
                    "spec": {"nodeLabels": dict(pool.get("nodeSelector") or {})}})
        out.append({"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "ClusterQueue",
                    "metadata": {"name": pool.get("clusterQueue") or cluster_queue_name(name)},
                    "spec": {"cohort": cohort, "namespaceSelector": {},
                             "queueingStrategy": "BestEffortFIFO",
                             "admissionScope": {"admissionMode": "UsageBasedAdmissionFairSharing"},
                             "resourceGroups": [{
                                 "coveredResources": list(quota),
                                 "flavors": [{"name": flavor_name(name), "resources": [
                                     {"name": r, "nominalQuota": q} for r, q in quota.items()]}]}]}})
    for cls, value in PRIORITY_VALUES.items():
        out.append({"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "WorkloadPriorityClass",
                    "metadata": {"name": cls}, "value": value,
                    "description": f"kubeffmpeg priority `{cls}`"})
    return out


def dump(objs: list[dict[str, Any]]) -> str:
    return "\n---\n".join(json.dumps(o) for o in objs)
