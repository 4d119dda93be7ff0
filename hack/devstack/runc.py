"""Run a pod's container from its real image under runc, as a kubelet with a container runtime
would, for pods that no process node takes (tests/integration/test_images.py).

What the pod says is what runc gets: the image's root filesystem (read-only when the pod asks),
its entrypoint/cmd replaced by the container's command/args, the image's environment under the
container's, the user and group of the securityContext (fsGroup as a supplementary group and the
group of every emptyDir), capabilities after `drop`/`add`, `no_new_privs` unless privilege
escalation is allowed, a seccomp filter for `RuntimeDefault`, and the pod's volumes as bind
mounts: an emptyDir is a host folder, the projected service-account volume holds a token bound to
the pod (devstack's PodPreparer, as for process nodes). As a kubelet does, the container gets
`KUBERNETES_SERVICE_HOST`/`_PORT`, so clients take the in-cluster path a real cluster uses.
Networking is the host's (the local stack listens on loopback), as on process nodes.

Images come from the local image store (buildah, or docker/podman export): nothing is pulled."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client

from .nodeagent.podspec import ConfigError, PodPreparer, expand

# The capabilities a container runtime grants by default (containerd's and Docker's list).
DEFAULT_CAPS = ["CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
                "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"]
# `RuntimeDefault`: the system calls that containerd's and Docker's default profiles refuse to an
# unprivileged container (those profiles allow a list; this refuses their complement's known names).
RUNTIME_DEFAULT_DENY = [
    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module",
    "finit_module", "get_kernel_syms", "get_mempolicy", "init_module", "ioperm", "iopl", "kcmp",
    "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mbind", "mount", "move_pages",
    "name_to_handle_at", "nfsservctl", "open_by_handle_at", "perf_event_open", "pivot_root",
    "process_vm_readv", "process_vm_writev", "ptrace", "query_module", "quotactl", "reboot",
    "request_key", "set_mempolicy", "setns", "settimeofday", "swapoff", "swapon", "sysfs", "_sysctl",
    "umount2", "unshare", "uselib", "userfaultfd", "ustat",
]
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def image_tool() -> str:
    """The builder `make images` used (hack/image-tool.sh): its store holds the images."""
    out = subprocess.run(["bash", str(Path(__file__).resolve().parents[1] / "image-tool.sh")],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


@dataclass
class Image:
    """An image's root filesystem on this machine and its config (entrypoint, env, user)."""

    ref: str
    rootfs: Path
    config: dict[str, Any]
    _release: list[list[str]] = field(default_factory=list)

    def close(self) -> None:
        for cmd in self._release:
            subprocess.run(cmd, capture_output=True)
        self._release.clear()


def open_image(ref: str, tool: str, workdir: Path) -> Image:
    """buildah: a working container, mounted (no copy). docker/podman: an exported copy."""
    if tool == "buildah":
        info = json.loads(_run("buildah", "inspect", "--type", "image", ref))
        ctr = _run("buildah", "from", "--pull-never", "--quiet", ref).strip()
        img = Image(ref, Path(_run("buildah", "mount", ctr).strip()), info["OCIv1"].get("config") or {})
        img._release += [["buildah", "umount", ctr], ["buildah", "rm", ctr]]
        return img
    info = json.loads(_run(tool, "image", "inspect", ref))[0]
    ctr = _run(tool, "create", ref).strip()
    rootfs = workdir / f"rootfs-{ctr[:12]}"
    rootfs.mkdir(parents=True)
    try:
        export = subprocess.Popen([tool, "export", ctr], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(rootfs)], stdin=export.stdout, check=True)
        export.wait()
    finally:
        subprocess.run([tool, "rm", ctr], capture_output=True)
    img = Image(ref, rootfs, {k[0].upper() + k[1:]: v for k, v in (info.get("Config") or {}).items()})
    img._release.append(["rm", "-rf", str(rootfs)])
    return img


def _run(*cmd: str) -> str:
    out = subprocess.run(list(cmd), capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])}: {out.stderr.strip()}")
    return out.stdout


def _sec(pod: dict[str, Any], c: dict[str, Any], key: str) -> Any:
    """A container securityContext field, else the pod's (as the kubelet merges them)."""
    own = (c.get("securityContext") or {}).get(key)
    return own if own is not None else (pod["spec"].get("securityContext") or {}).get(key)


def _image_user(config: dict[str, Any]) -> tuple[int, int]:
    user = str(config.get("User") or "0")
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise ConfigError(f"image user {user!r} is not numeric")  # the kubelet cannot verify runAsNonRoot
    return int(uid), int(gid or 0)


@dataclass
class RuncPod:
    """One pod's first container under runc. `start()`, then `wait()` or `stop()`; `close()`
    deletes the runc container and every file it had."""

    pod: dict[str, Any]
    image: Image
    core: client.CoreV1Api
    api_server: str
    ca_crt: Path
    root: Path
    runc_root: Path
    proc: subprocess.Popen[bytes] | None = None
    started: datetime | None = None

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.id = f"devstack-{self.pod['metadata']['uid'][:13]}"
        self.container = self.pod["spec"]["containers"][0]

    @property
    def log(self) -> Path:
        return self.root / "container.log"

    @property
    def termination_log(self) -> Path:
        return self.root / "termination-log"

    def spec(self) -> dict[str, Any]:
        """The OCI runtime spec for the container, from the pod and the image."""
        pod, c, cfg = self.pod, self.container, self.image.config
        preparer = PodPreparer(self.core, self.api_server, self.ca_crt)
        volumes = preparer.volumes(pod, self.root)
        image_uid, image_gid = _image_user(cfg)
        uid = _sec(pod, c, "runAsUser")
        uid = image_uid if uid is None else int(uid)
        gid = _sec(pod, c, "runAsGroup")
        gid = image_gid if gid is None else int(gid)
        if _sec(pod, c, "runAsNonRoot") and uid == 0:
            raise ConfigError("container has runAsNonRoot and image will run as root")
        fs_group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
        groups = [int(g) for g in (pod["spec"].get("securityContext") or {}).get("supplementalGroups") or []]
        if fs_group is not None:
            groups.append(int(fs_group))

        mounts: list[dict[str, Any]] = [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
        ]
        # What a kubelet mounts into every container: hosts, resolv.conf, the termination log.
        hosts = self.root / "etc-hosts"
        hosts.write_text(HOSTS)
        self.termination_log.write_text("")
        self.termination_log.chmod(0o666)
        binds = [(hosts, "/etc/hosts", False), (Path("/etc/resolv.conf"), "/etc/resolv.conf", True),
                 (self.termination_log, c.get("terminationMessagePath", "/dev/termination-log"), False)]
        empty_dirs = {v["name"] for v in pod["spec"].get("volumes") or [] if "emptyDir" in v}
        for m in c.get("volumeMounts") or []:
            host = volumes[m["name"]] / m.get("subPath", "")
            if m["name"] in empty_dirs:
                # kubelet: an emptyDir belongs to the fsGroup, group-writable, setgid
                os.chown(host, 0, int(fs_group) if fs_group is not None else 0)
                host.chmod(0o2777 if fs_group is None else 0o2775)
            else:
                for p in [host, *host.rglob("*")]:  # projected volumes: readable by the pod's user
                    p.chmod(0o755 if p.is_dir() else 0o644)
            binds.append((host, m["mountPath"], bool(m.get("readOnly"))))
        for src, dst, ro in binds:
            mounts.append({"destination": dst, "type": "bind", "source": str(src),
                           "options": ["rbind", "nosuid", "nodev", "ro" if ro else "rw"]})

        sc_caps = (c.get("securityContext") or {}).get("capabilities") or {}
        drop = set(sc_caps.get("drop") or [])
        caps = [f"CAP_{x}" for x in DEFAULT_CAPS if "ALL" not in drop and x not in drop]
        caps += [f"CAP_{x}" for x in sc_caps.get("add") or []]

        env = {k: v for k, v in (e.partition("=")[::2] for e in cfg.get("Env") or [])}
        host, _, port = urllib.parse.urlsplit(self.api_server).netloc.rpartition(":")
        env.update(HOSTNAME=pod["metadata"]["name"], KUBERNETES_SERVICE_HOST=host, KUBERNETES_SERVICE_PORT=port)
        env.update(preparer.env(pod, c))
        # Kubernetes: `command` replaces the image's entrypoint, `args` its cmd; a command
        # without args drops the image's cmd too.
        if c.get("command"):
            argv = [expand(a, env) for a in c["command"] + (c.get("args") or [])]
        else:
            args = [expand(a, env) for a in c["args"]] if c.get("args") else list(cfg.get("Cmd") or [])
            argv = list(cfg.get("Entrypoint") or []) + args
        if not argv:
            raise ConfigError(f"container {c['name']!r}: no command and no entrypoint in {self.image.ref}")

        seccomp = None
        if (_sec(pod, c, "seccompProfile") or {}).get("type") == "RuntimeDefault":
            seccomp = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                       "syscalls": [{"names": RUNTIME_DEFAULT_DENY, "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
        allow_escalation = _sec(pod, c, "allowPrivilegeEscalation")
        linux: dict[str, Any] = {
            # No network namespace: the host's, like hostNetwork pods and the process nodes.
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                            "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        }
        if seccomp:
            linux["seccomp"] = seccomp
        return {
            "ociVersion": "1.0.2",
            "process": {
                "terminal": False,
                "user": {"uid": uid, "gid": gid, "additionalGids": groups},
                "args": argv,
                "env": [f"{k}={v}" for k, v in env.items()],
                "cwd": c.get("workingDir") or cfg.get("WorkingDir") or "/",
                "capabilities": {k: caps for k in ("bounding", "effective", "inheritable", "permitted")},
                # Kubernetes: no_new_privs unless allowPrivilegeEscalation is true (the default).
                "noNewPrivileges": allow_escalation is False,
            },
            "root": {"path": str(self.image.rootfs), "readonly": bool(_sec(pod, c, "readOnlyRootFilesystem"))},
            "hostname": pod["metadata"]["name"][:63],
            "mounts": mounts,
            "linux": linux,
        }

    def start(self) -> None:
        bundle = self.root / "bundle"
        bundle.mkdir(exist_ok=True)
        (bundle / "config.json").write_text(json.dumps(self.spec(), indent=1))
        self.started = datetime.now(UTC)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                ["runc", "--root", str(self.runc_root), "run", "--bundle", str(bundle), self.id],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self, grace: float = 10) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        subprocess.run(["runc", "--root", str(self.runc_root), "kill", self.id, "TERM"], capture_output=True)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            subprocess.run(["runc", "--root", str(self.runc_root), "kill", self.id, "KILL"], capture_output=True)
            self.proc.wait(timeout=10)

    def close(self) -> None:
        self.stop()
        subprocess.run(["runc", "--root", str(self.runc_root), "delete", "--force", self.id], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)

    # --------------------------------------------------------------------------- as the kubelet
    def report_running(self) -> None:
        started = _iso(self.started or datetime.now(UTC))
        self._patch_status("Running", {"running": {"startedAt": started}}, ready=True)

    def report_exit(self, code: int) -> None:
        message = self.termination_log.read_text().strip() if self.termination_log.exists() else ""
        if not message and code != 0:
            message = self.log.read_text(errors="replace")[-4096:]  # FallbackToLogsOnError
        terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                      "startedAt": _iso(self.started or datetime.now(UTC)), "finishedAt": _iso(datetime.now(UTC))}
        if message:
            terminated["message"] = message
        self._patch_status("Succeeded" if code == 0 else "Failed", {"terminated": terminated}, ready=False)

    def _patch_status(self, phase: str, state: dict[str, Any], ready: bool) -> None:
        meta, now = self.pod["metadata"], _iso(datetime.now(UTC))
        cond = "True" if ready else "False"
        status = {
            "phase": phase, "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
            "startTime": _iso(self.started or datetime.now(UTC)),
            "conditions": [{"type": t, "status": cond, "lastTransitionTime": now}
                           for t in ("Ready", "ContainersReady")],
            "containerStatuses": [{
                "name": self.container["name"], "image": self.container["image"], "imageID": self.image.ref,
                "ready": ready, "restartCount": 0, "started": ready, "state": state,
            }],
        }
        self.core.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": status})


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def wait_for(check: Any, timeout: float, what: str, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(every)


class RuncNode:
    """A kubelet for the pods of one namespace whose nodeSelector names `selector` (a label no
    node has, so the scheduler leaves them unbound and no process node takes them): each new pod
    runs under runc from its image, and its status is reported as a kubelet reports it."""

    def __init__(self, core: client.CoreV1Api, namespace: str, selector: tuple[str, str], api_server: str,
                 ca_crt: Path, workdir: Path) -> None:
        self.core, self.namespace, self.selector = core, namespace, selector
        self.api_server, self.ca_crt, self.workdir = api_server, ca_crt, workdir
        self.runc_root = workdir / "runc"  # runc's state of this node's containers
        self.tool = image_tool()
        self.images: dict[str, Image] = {}
        self.pods: dict[str, RuncPod] = {}  # by pod name
        self.exits: dict[str, int] = {}
        self.errors: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="runc-node", daemon=True)

    def start(self) -> RuncNode:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(0.3):
            try:
                self._sync()
            except Exception as exc:  # keep serving; the tests read `errors`
                self.errors["node"] = repr(exc)

    def _sync(self) -> None:
        key, value = self.selector
        resp: Any = self.core.list_namespaced_pod(self.namespace, _preload_content=False)
        pods: list[dict[str, Any]] = json.loads(resp.data)["items"]
        for pod in pods:
            name = pod["metadata"]["name"]
            if (pod["spec"].get("nodeSelector") or {}).get(key) != value or pod["metadata"].get("deletionTimestamp"):
                continue
            if name not in self.pods and name not in self.errors and (pod.get("status") or {}).get("phase") in (
                    None, "Pending"):
                self._launch(pod)
        for name, rp in self.pods.items():
            if name not in self.exits and rp.proc is not None and rp.proc.poll() is not None:
                self.exits[name] = rp.proc.returncode
                rp.report_exit(rp.proc.returncode)

    def _launch(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        ref = pod["spec"]["containers"][0]["image"]
        try:
            if ref not in self.images:
                self.images[ref] = open_image(ref, self.tool, self.workdir)
            rp = RuncPod(pod, self.images[ref], self.core, self.api_server, self.ca_crt, self.workdir / name,
                         self.runc_root)
            rp.start()
        except Exception as exc:  # kubelet: CreateContainerConfigError / ErrImageNeverPull
            self.errors[name] = repr(exc)
            return
        self.pods[name] = rp
        rp.report_running()

    def pid(self, pod_name: str) -> int:
        rp = self.pods[pod_name]
        return int(json.loads(_run("runc", "--root", str(rp.runc_root), "state", rp.id))["pid"])

    def containers(self) -> list[str]:
        """The runc containers of this node that still exist."""
        if not self.runc_root.exists():
            return []
        return _run("runc", "--root", str(self.runc_root), "list", "-q").split()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for rp in self.pods.values():
            rp.close()
        for img in self.images.values():
            img.close()
