"""The whole local stack: control plane, S3, process nodes, then the operator and the API.

`up()` is idempotent: what already runs is kept. Everything a client needs is written to
`.devstack/env` (shell-sourceable) and returned as a `StackInfo`."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import shlex
import signal
import string
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .controlplane import ControlPlane, Ports, port_offset
from .kueue import KUEUE_NAMESPACE, Kueue, dump, queue_objects
from .nodeagent.agent import AGENT_MARKER
from .nodeagent.cgroups import remove_node_cgroups, remove_stack_cgroups
from .nodeagent.nodes import ADDED_NODE_LABEL, NodeSpec, capacity, default_nodes
from .paths import REPO_ROOT, Binaries, binaries, state_dir
from .pki import Pki, ensure_pki
from .processes import ProcessSet
from .s3server import S3Config, S3Server

NAMESPACE = "ffmpeg"
S3_PORT = 19000 + port_offset()
API_PORT = 18080 + port_offset()
OPERATOR_METRICS_PORT = 18090 + port_offset()
CRD_FILE = REPO_ROOT / "crds" / "ffmpegjobs.yaml"
TEMPLATE_CRD_FILE = REPO_ROOT / "crds" / "ffmpegjobtemplates.yaml"
# The chart's shipped FFmpegJobTemplates (docs/presets.md), applied as the chart would install them.
PRESETS_DIR = REPO_ROOT / "charts" / "kubeffmpeg" / "presets"
BASE_MANIFESTS = Path(__file__).parent / "manifests" / "base.yaml"
ENV_MARKER = "DEVSTACK_STATE"
AGENT_PREFIX = "node-agent-"


@dataclass(frozen=True)
class StackInfo:
    env: dict[str, str]

    @property
    def kubeconfig(self) -> str:
        return self.env["KUBECONFIG"]

    @property
    def namespace(self) -> str:
        return self.env["FFMPEG_NAMESPACE"]

    @property
    def api_url(self) -> str | None:
        return self.env.get("API_URL")


class Stack:
    def __init__(self, state: Path | None = None) -> None:
        self.state = state or state_dir()
        self.procs = ProcessSet(self.state)
        self.s3cfg = S3Config(
            endpoint=f"http://127.0.0.1:{S3_PORT}",
            bucket="ffmpeg",
            access_key="devstack",
            secret_key="devstack-secret-key",
        )

    @property
    def env_file(self) -> Path:
        return self.state / "env"

    def _bins(self) -> Binaries:
        return binaries()

    def _control_plane(self) -> ControlPlane:
        return ControlPlane(self.state, self._bins(), ensure_pki(self.state / "pki"), self.procs, Ports.from_env())

    # --------------------------------------------------------------------------- up
    def up(self, with_operator: bool = True, with_api: bool = True) -> StackInfo:
        self.state.mkdir(parents=True, exist_ok=True)
        if not (self.state / "etcd").exists():
            # A new cluster has none of the Secrets the cached key and signing secret live in.
            for cached in ("api-key", "webhook-secret"):
                (self.state / cached).unlink(missing_ok=True)
        cp = self._control_plane()
        cp.start()
        S3Server(self.state, self._bins(), self.procs, S3_PORT, self.s3cfg).start()
        env = self.base_env(cp)
        self.apply_manifests(env)
        self._start_agent("node-agent", env)
        self.wait_nodes_ready(env, [n.name for n in default_nodes()], "node-agent")
        if kueue_wanted():
            self.start_kueue(cp, env)
            env["KUEUE_ENABLED"] = "true"
        if with_operator and _has_module("ffmpeg_operator.main"):
            # As in the images: few malloc arenas, or each busy thread keeps its own resident.
            self.procs.start("operator", [_bin("ffmpeg-operator")], env=env | {"MALLOC_ARENA_MAX": "2"})
        if with_api and _has_module("ffmpeg_api.main"):
            env["API_URL"] = f"http://127.0.0.1:{API_PORT}"
            env["API_KEY"] = self._api_key(env)
            env["WEBHOOK_SECRET"] = self._webhook_secret(env)
            self.procs.start("api", [_bin("ffmpeg-api")], env=env | {"MALLOC_ARENA_MAX": "2"})
            _wait_http(f"{env['API_URL']}/healthz", self.procs, "api")
        self.write_env(env)
        return StackInfo(env)

    def base_env(self, cp: ControlPlane) -> dict[str, str]:
        return {
            "KUBECONFIG": str(cp.admin_kubeconfig),
            "FFMPEG_NAMESPACE": NAMESPACE,
            **self.s3cfg.env(),
            # The stack's webhook receivers and inputs live on loopback: allow it here only.
            "URL_ALLOW_HOSTS": "127.0.0.1,localhost",
            "URL_ALLOW_HTTP": "true",
            # Webhook retries on a short schedule (2 s, 4 s, 8 s, ...): tests and demos see them.
            "WEBHOOK_BACKOFF_INITIAL": "2",
            "METRICS_PORT": str(OPERATOR_METRICS_PORT),
            "LIVENESS_PORT": str(OPERATOR_METRICS_PORT + 1),
            "API_PORT": str(API_PORT),
            "PATH": _venv_path(),
        }

    def kubectl(self, env: dict[str, str], *args: str, stdin: str | None = None) -> str:
        out = subprocess.run(
            [self._bins().path("kubectl"), *args],
            input=stdin, capture_output=True, text=True, env={**os.environ, **env},
        )
        if out.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {out.stderr.strip()}")
        return out.stdout

    def apply_manifests(self, env: dict[str, str]) -> None:
        if CRD_FILE.exists():
            self.kubectl(env, "apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
            self.kubectl(env, "wait", "--for=condition=Established", "--timeout=60s",
                         "crd/ffmpegjobs.kubeffmpeg.io")
        base = string.Template(BASE_MANIFESTS.read_text()).substitute(NAMESPACE=NAMESPACE, **self.s3cfg.env())
        self.kubectl(env, "apply", "-f", "-", stdin=base)
        if TEMPLATE_CRD_FILE.exists():
            self.kubectl(env, "apply", "--server-side", "--force-conflicts", "-f", str(TEMPLATE_CRD_FILE))
            self.kubectl(env, "wait", "--for=condition=Established", "--timeout=60s",
                         "crd/ffmpegjobtemplates.kubeffmpeg.io")
            self.kubectl(env, "apply", "--server-side", "--force-conflicts", "-n", NAMESPACE, "-f", str(PRESETS_DIR))

    def _kueue(self) -> Kueue:
        return Kueue(self.state, self._bins(), Pki(self.state / "pki"), self.procs)

    def start_kueue(self, cp: ControlPlane, env: dict[str, str]) -> None:
        """Kueue's CRDs, RBAC and webhooks from its module, its manager, then the queues."""
        from .kueue import crds

        kueue = self._kueue()
        kueue.prepare(cp.server)
        definitions = crds(self._bins().kueue_src)
        self.kubectl(env, "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=dump(definitions))
        self.kubectl(env, "wait", "--for=condition=Established", "--timeout=60s",
                     *(f"crd/{d['metadata']['name']}" for d in definitions))
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KUEUE_NAMESPACE}}
        self.kubectl(env, "apply", "--server-side", "--force-conflicts", "-f", "-",
                     stdin=dump([namespace, *kueue.manifests()]))
        kueue.start(env)
        kueue.wait_ready()
        # Created once: quotas changed by hand (or by a test) outlive a restart of the stack's parts.
        try:
            self.kubectl(env, "create", "-f", "-", stdin=dump(queue_objects(self._pools(), stack_quotas())))
        except RuntimeError as e:
            if any("AlreadyExists" not in line for line in str(e).split("failed: ", 1)[-1].splitlines()):
                raise

    def _pools(self) -> dict[str, Any]:
        base = string.Template(BASE_MANIFESTS.read_text()).substitute(NAMESPACE=NAMESPACE, **self.s3cfg.env())
        for doc in yaml.safe_load_all(base):
            if doc and doc.get("kind") == "ConfigMap" and doc["metadata"]["name"] == "kubeffmpeg-pools":
                return dict(yaml.safe_load(doc["data"]["pools.yaml"]))
        return {}

    def _start_agent(self, name: str, env: dict[str, str], nodes: list[NodeSpec] | None = None) -> None:
        argv = [sys.executable, "-m", "devstack.nodeagent.agent", "--kubeconfig", env["KUBECONFIG"],
                "--pods-root", str(self.state / "pods"), "--ca-crt", str(Pki(self.state / "pki").ca_crt)]
        for n in nodes or []:
            argv += ["--node", n.to_json()]
        self.procs.start(name, argv, env={**env, ENV_MARKER: str(self.state)})

    def wait_nodes_ready(self, env: dict[str, str], nodes: list[str], agent: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.kubectl(env, "wait", "--for=condition=Ready", "--timeout=5s", *(f"node/{n}" for n in nodes))
                return
            except RuntimeError:
                if time.monotonic() > deadline or not self.procs.running(agent):
                    raise RuntimeError(f"process nodes not Ready; see {self.procs.log(agent)}") from None
                time.sleep(1)

    # --------------------------------------------------------------------------- extra nodes
    def add_node(self, spec: NodeSpec) -> None:
        """Start one more process node (its own agent process, `node-agent-<name>`), as
        `devstack node add` does; `down` stops it and deletes its Node."""
        if not self.is_up():
            raise RuntimeError("the local stack is not up: `make dev` first")
        if spec.name in {n.name for n in default_nodes()} or self.procs.running(_agent_name(spec.name)):
            raise RuntimeError(f"node {spec.name} exists already")
        env = {**self.read_env(), "PATH": _venv_path()}
        labelled = dataclasses.replace(spec, labels={**spec.labels, ADDED_NODE_LABEL: "true"})
        self._start_agent(_agent_name(spec.name), env, [labelled])
        self.wait_nodes_ready(env, [spec.name], _agent_name(spec.name))

    def remove_node(self, name: str) -> None:
        """Stop a node added by `add_node`: its agent, its pods' processes, then the Node object
        (the pod garbage collector then deletes the pods bound to it, as on a real cluster)."""
        agent = _agent_name(name)
        if agent not in self.procs.names():
            raise RuntimeError(f"no node {name} was added with `devstack node add`")
        self.procs.stop(agent)
        kill_marked_processes(self.state, f"{AGENT_MARKER}={name}")
        remove_node_cgroups(self.state, name)
        env = {**self.read_env(), "PATH": _venv_path()}
        with contextlib.suppress(RuntimeError):
            self.kubectl(env, "delete", "node", name, "--ignore-not-found", "--wait=false")

    def added_nodes(self) -> list[str]:
        return [n[len(AGENT_PREFIX):] for n in self.procs.names() if n.startswith(AGENT_PREFIX)]

    def _api_key(self, env: dict[str, str]) -> str:
        key_file = self.state / "api-key"
        if key_file.exists():
            return key_file.read_text().strip()
        out = subprocess.run(
            [sys.executable, "-m", "ffmpeg_api.keys", "create", "--tenant", "default"],
            capture_output=True, text=True, env={**os.environ, **env}, check=True,
        ).stdout.strip().splitlines()[-1]
        key_file.write_text(out)
        key_file.chmod(0o600)
        return out

    def _webhook_secret(self, env: dict[str, str]) -> str:
        """The signing secret of tenant `default`'s webhooks (set once, kept in the state dir)."""
        path = self.state / "webhook-secret"
        if path.exists():
            return path.read_text().strip()
        out = subprocess.run(
            [sys.executable, "-m", "ffmpeg_api.keys", "rotate-signing-secret", "--tenant", "default"],
            capture_output=True, text=True, env={**os.environ, **env}, check=True,
        ).stdout.strip().splitlines()[-1]
        path.write_text(out)
        path.chmod(0o600)
        return out

    def write_env(self, env: dict[str, str]) -> None:
        keep = [k for k in env if k != "PATH"]
        lines = ["# Written by `make dev` (hack/devstack). Source it: `. .devstack/env`"]
        lines += [f"export {k}={shlex.quote(env[k])}" for k in keep]
        lines.append(f"export PATH={shlex.quote(str(self._bins().kube))}:\"$PATH\"")
        self.env_file.write_text("\n".join(lines) + "\n")

    def read_env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if not self.env_file.exists():
            return env
        for line in self.env_file.read_text().splitlines():
            if line.startswith("export ") and "=" in line and not line.startswith("export PATH="):
                k, _, v = line[len("export "):].partition("=")
                env[k] = shlex.split(v)[0] if v else ""
        return env

    def is_up(self) -> bool:
        if not self.env_file.exists():
            return False
        wanted = ("etcd", "kube-apiserver", "minio", "node-agent", *(("kueue",) if kueue_wanted() else ()))
        return all(self.procs.running(n) for n in wanted) and \
            self._control_plane().healthy()

    # --------------------------------------------------------------------------- down
    def down(self) -> None:
        added = self.added_nodes()
        for name in ("api", "operator", "kueue", "node-agent", *map(_agent_name, added)):
            self.procs.stop(name)
        if added and self.procs.running("kube-apiserver") and self.env_file.exists():
            # Nodes added with `devstack node add` go with the stack (the defaults come back).
            with contextlib.suppress(RuntimeError):
                self.kubectl({**self.read_env(), "PATH": _venv_path()}, "delete", "nodes", "-l",
                             f"{ADDED_NODE_LABEL}=true", "--wait=false")
        kill_marked_processes(self.state)
        remove_stack_cgroups(self.state)
        S3Server(self.state, self._bins(), self.procs, S3_PORT, self.s3cfg).stop()
        self._control_plane().stop()
        for name in self.procs.names():
            self.procs.stop(name)
        self.env_file.unlink(missing_ok=True)


def kill_marked_processes(state: Path, also: str | None = None) -> None:
    """Pod processes run in their own sessions; find them by the marker in their environment
    (and `also`, another `NAME=value` entry there, to find those of one agent)."""
    marker = f"{ENV_MARKER}={state}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            if marker in environ and (also is None or any(_marks(e, also) for e in environ)):
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def _marks(entry: bytes, marker: str) -> bool:
    """`DEVSTACK_NODE_AGENT=a,b` marks the pods of the agent that runs nodes a and b."""
    key, _, names = entry.decode("utf-8", "replace").partition("=")
    want_key, _, want = marker.partition("=")
    return key == want_key and want in names.split(",")


def kueue_wanted() -> bool:
    """Kueue runs in the stack unless DEVSTACK_KUEUE=0."""
    return os.environ.get("DEVSTACK_KUEUE", "1") not in ("0", "false", "no")


def stack_quotas() -> dict[str, dict[str, str]]:
    """Each pool's ClusterQueue gets its process node's capacity."""
    out = {}
    for node in default_nodes():
        cap = capacity(cpu=node.capacity.get("cpu"), memory=node.capacity.get("memory", "16Gi"))
        quota = {"cpu": cap["cpu"], "memory": cap["memory"]}
        if "nvidia.com/gpu" in node.capacity:
            quota["nvidia.com/gpu"] = node.capacity["nvidia.com/gpu"]
        out[node.labels["kubeffmpeg.io/pool"]] = quota
    return out


def _agent_name(node: str) -> str:
    return AGENT_PREFIX + node


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _venv_path() -> str:
    return f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _wait_http(url: str, procs: ProcessSet, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline or not procs.running(name):
                raise RuntimeError(f"{name} did not answer {url}; see {procs.log(name)}") from None
            time.sleep(0.3)
