"""The real Kubernetes control plane on loopback: etcd, kube-apiserver (RBAC, service-account
token signing, client-certificate auth), kube-controller-manager and kube-scheduler."""

from __future__ import annotations

import os
import ssl
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .kubeconfig import write_kubeconfig
from .paths import Binaries
from .pki import Pki
from .processes import ProcessSet


def port_offset() -> int:
    """DEVSTACK_PORT_OFFSET shifts every port of the stack, so that several checkouts can each
    run a stack of their own on one machine (default 0: the documented ports)."""
    return int(os.environ.get("DEVSTACK_PORT_OFFSET", "0"))


@dataclass(frozen=True)
class Ports:
    etcd_client: int = 23790
    etcd_peer: int = 23800
    apiserver: int = 16443
    controller_manager: int = 16257
    scheduler: int = 16259

    @classmethod
    def from_env(cls) -> Ports:
        off = port_offset()
        base = cls()
        return cls(
            etcd_client=base.etcd_client + off,
            etcd_peer=base.etcd_peer + off,
            apiserver=base.apiserver + off,
            controller_manager=base.controller_manager + off,
            scheduler=base.scheduler + off,
        )


SERVICE_CIDR = "10.0.0.0/24"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"


class ControlPlane:
    def __init__(self, state: Path, bins: Binaries, pki: Pki, procs: ProcessSet, ports: Ports) -> None:
        self.state, self.bins, self.pki, self.procs, self.ports = state, bins, pki, procs, ports
        self.server = f"https://127.0.0.1:{ports.apiserver}"
        self.admin_kubeconfig = state / "admin.kubeconfig"

    def start(self, timeout: float = 120) -> None:
        p, pki = self.ports, self.pki
        etcd_url = f"http://127.0.0.1:{p.etcd_client}"
        self.procs.start(
            "etcd",
            [
                self.bins.path("etcd"),
                f"--data-dir={self.state / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{p.etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{p.etcd_peer}",
                f"--initial-cluster=default=http://127.0.0.1:{p.etcd_peer}",
                "--unsafe-no-fsync",  # a throwaway dev store: trade durability for speed
                "--quota-backend-bytes=4294967296",
            ],
        )
        self.procs.start(
            "kube-apiserver",
            [
                self.bins.path("kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",  # hosts without a default route need it
                f"--secure-port={p.apiserver}",
                f"--tls-cert-file={pki.apiserver_crt}",
                f"--tls-private-key-file={pki.apiserver_key}",
                f"--client-ca-file={pki.ca_crt}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={SA_ISSUER}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,LimitRanger,ResourceQuota",
                f"--cert-dir={self.state / 'pki' / 'generated'}",
            ],
        )
        write_kubeconfig(
            self.admin_kubeconfig,
            self.server,
            pki.ca_crt,
            client_crt=pki.admin_crt,
            client_key=pki.admin_key,
        )
        self.wait_ready(timeout)
        kc = str(self.admin_kubeconfig)
        self.procs.start(
            "kube-controller-manager",
            [
                self.bins.path("kube-controller-manager"),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={p.controller_manager}",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_crt}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--controllers=*",
                # Process nodes report status like kubelets; give them the usual grace.
                "--node-monitor-grace-period=40s",
                f"--cert-dir={self.state / 'pki' / 'kcm'}",
            ],
        )
        self.procs.start(
            "kube-scheduler",
            [
                self.bins.path("kube-scheduler"),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={p.scheduler}",
            ],
        )

    def healthy(self) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_crt))
        ctx.load_cert_chain(str(self.pki.admin_crt), str(self.pki.admin_key))
        try:
            with urllib.request.urlopen(f"{self.server}/readyz", context=ctx, timeout=3) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if not self.procs.running("kube-apiserver") or time.monotonic() > deadline:
                log = self.procs.log("kube-apiserver")
                tail = log.read_text()[-3000:] if log.exists() else ""
                raise RuntimeError(f"kube-apiserver did not become ready; see {log}:\n{tail}")
            time.sleep(0.5)

    def stop(self) -> None:
        for name in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            self.procs.stop(name)
