"""CPU limits the way a kubelet enforces them: one cgroup per container with a CFS quota.

A container's `resources.limits.cpu` becomes `quota = limit x period` (period 100 ms), its
`requests.cpu` the relative weight (`cpu.shares`, as the kubelet's MilliCPUToShares), in the
cgroup v1 `cpu` controller (`cpu.cfs_quota_us`) or cgroup v2 (`cpu.max`, `cpu.weight`). Every
container gets a cgroup, limited or not, so that its usage is accounted and processes it
leaves behind are killed when it ends (as a container runtime does when a container's first
process exits).

Layout, under each hierarchy used (v1: `cpu`, and `cpuacct` where it is mounted apart):
`<root>/devstack-<hash of the stack's state dir>/<node>/pod<uid>/<container>`, so several
stacks on one machine never share a folder and `devstack down` removes its own.

Where no hierarchy is writable (no root, a read-only /sys), pods still run, unlimited, and the
agent says so once in its log."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("devstack.cgroups")

CGROUP_ROOT = Path("/sys/fs/cgroup")
CFS_PERIOD_US = 100_000
MIN_QUOTA_US = 1_000  # the kernel's floor, and the kubelet's
MIN_SHARES, MAX_SHARES = 2, 262_144
# A shell builtin writes the shell's own pid into each cgroup, then execs the command: the
# container's first process, and every process it starts, is inside before any of its code runs.
_JOIN_AND_EXEC = (
    'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || '
    'echo "devstack: could not join cgroup $1; running without it" >&2; shift; n=$((n-1)); done; exec "$@"'
)


def stack_folder(state: Path) -> str:
    """The stack's parent cgroup: named from its state dir, so stacks never collide."""
    return "devstack-" + hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:12]


def milli_cpu(quantity: str | int | float) -> int:
    """A CPU quantity (`500m`, `1`, `1.5`, `2000m`) in millicores."""
    text = str(quantity).strip()
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)(m?)", text)
    if not m:
        raise ValueError(f"not a CPU quantity: {quantity!r}")
    value = float(m.group(1))
    return max(1, round(value if m.group(2) else value * 1000))


def cfs_quota_us(milli: int, period_us: int = CFS_PERIOD_US) -> int:
    return max(milli * period_us // 1000, MIN_QUOTA_US)


def cpu_shares(milli: int) -> int:
    return min(max(milli * 1024 // 1000, MIN_SHARES), MAX_SHARES)


def cpu_weight(milli: int) -> int:
    """cgroup v2's weight for the same shares (the conversion runc and the kubelet use)."""
    shares = cpu_shares(milli)
    return 1 + ((shares - 2) * 9999) // 262142


def _hierarchies(root: Path) -> tuple[str, list[Path]] | None:
    """(mode, the hierarchies' mount folders), or None when there is no CPU controller."""
    cpu = root / "cpu"
    if (cpu / "cpu.cfs_quota_us").exists():
        dirs = [cpu]
        acct = root / "cpuacct"
        if (acct / "cpuacct.usage").exists() and os.path.realpath(acct) != os.path.realpath(cpu):
            dirs.append(acct)
        return "v1", dirs
    controllers = root / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        return "v2", [root]
    return None


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


@dataclass
class ContainerCgroup:
    """One container's cgroup (a folder in each hierarchy used)."""

    mode: str
    dirs: list[Path]

    @property
    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs]

    def wrap(self, argv: list[str]) -> list[str]:
        """argv, started so that its process joins this cgroup before it runs."""
        files = [str(f) for f in self.procs_files]
        return ["/bin/sh", "-c", _JOIN_AND_EXEC, "devstack-cgroup", str(len(files)), *files, *argv]

    def pids(self) -> set[int]:
        found: set[int] = set()
        for f in self.procs_files:
            with contextlib.suppress(OSError):
                found |= {int(x) for x in f.read_text().split()}
        return found

    def kill_all(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def throttled_periods(self) -> int:
        """Periods in which the CFS quota stopped the container (cpu.stat nr_throttled)."""
        with contextlib.suppress(OSError, ValueError, KeyError):
            stat = dict(line.split()[:2] for line in (self.dirs[0] / "cpu.stat").read_text().splitlines())
            return int(stat["nr_throttled"])
        return 0

    def quota(self) -> tuple[int | None, int]:
        """(quota in µs or None for none, period in µs) as the kernel has them."""
        d = self.dirs[0]
        if self.mode == "v1":
            q, period = int((d / "cpu.cfs_quota_us").read_text()), int((d / "cpu.cfs_period_us").read_text())
            return (None if q < 0 else q), period
        q_text, p_text = (d / "cpu.max").read_text().split()
        return (None if q_text == "max" else int(q_text)), int(p_text)

    def usage_seconds(self) -> float | None:
        """CPU time its processes used (cpuacct.usage in v1, cpu.stat usage_usec in v2)."""
        for d in self.dirs:
            with contextlib.suppress(OSError, ValueError):
                if self.mode == "v1" and (d / "cpuacct.usage").exists():
                    return int((d / "cpuacct.usage").read_text()) / 1e9
                if self.mode == "v2":
                    stat = dict(line.split() for line in (d / "cpu.stat").read_text().splitlines())
                    return int(stat["usage_usec"]) / 1e6
        return None


class NodeCgroups:
    """The cgroups of one process node's pods, or `available = False` and the reason."""

    def __init__(self, state: Path, node: str, node_cpu_milli: int | None = None, root: Path = CGROUP_ROOT) -> None:
        self.node = node
        self.available = False
        self.reason = ""
        self.mode = ""
        self.bases: list[Path] = []
        self.mount = root
        found = _hierarchies(root)
        if found is None:
            self.reason = f"no cgroup cpu controller under {root}"
            return
        self.mode, mounts = found
        self.mount = mounts[0]
        bases = [m / stack_folder(state) / node for m in mounts]
        try:
            for b in bases:
                b.mkdir(parents=True, exist_ok=True)
            if self.mode == "v2":
                _delegate_cpu(mounts[0], bases[0] / "pod")
            # As the kubelet's `kubepods` cgroup, the pods together weigh what the CPUs they
            # may use are worth (the default weight is that of one task).
            _set_weight(self.mode, bases[0].parent, (os.cpu_count() or 1) * 1000)
            _set_weight(self.mode, bases[0], node_cpu_milli or (os.cpu_count() or 1) * 1000)
        except OSError as e:
            self.reason = f"cannot create cgroups under {bases[0].parent}: {e}"
            return
        self.bases, self.available = bases, True

    def describe(self) -> str:
        if self.available:
            return f"CPU limits enforced with CFS quotas (cgroup {self.mode}) under {self.bases[0]}"
        return f"CPU limits NOT enforced: {self.reason}"

    def pod_dirs(self, uid: str) -> list[Path]:
        return [b / f"pod{uid}" for b in self.bases]

    def pod(self, uid: str, request_milli: int | None, limit_milli: int | None) -> None:
        """The pod's own cgroup, as the kubelet's: weighed by the pod's CPU request against the
        other pods, and capped by the sum of its limits when every container has one."""
        if not self.available:
            return
        try:
            for d in self.pod_dirs(uid):
                d.mkdir(parents=True, exist_ok=True)
            _set_limits(self.mode, self.pod_dirs(uid)[0], limit_milli, request_milli)
        except OSError as e:
            log.warning("pod %s: cgroup limits not set: %s", uid, e)

    def container(self, uid: str, name: str, limit_milli: int | None,
                  request_milli: int | None) -> ContainerCgroup | None:
        """Create (or reuse) a container's cgroup with its quota and weight; None if that fails."""
        if not self.available:
            return None
        dirs = [p / name for p in self.pod_dirs(uid)]
        try:
            for d in dirs:
                d.mkdir(parents=True, exist_ok=True)
            if self.mode == "v2":
                _delegate_cpu(self.mount, dirs[0])
            _set_limits(self.mode, dirs[0], limit_milli, request_milli)
        except OSError as e:
            log.warning("container %s of pod %s runs without a cgroup (CPU limit not enforced): %s", name, uid, e)
            return None
        return ContainerCgroup(self.mode, dirs)

    def pod_uids(self) -> set[str]:
        """Pods that have a cgroup on this node."""
        if not self.available:
            return set()
        return {d.name[3:] for d in self.bases[0].iterdir() if d.is_dir() and d.name.startswith("pod")}

    def remove_pod(self, uid: str) -> None:
        for d in self.pod_dirs(uid):
            remove_tree(d)


def _set_limits(mode: str, cpu: Path, limit_milli: int | None, request_milli: int | None) -> None:
    """quota = limit x period (none without a limit); weight from the request."""
    if mode == "v1":
        _write(cpu / "cpu.cfs_period_us", str(CFS_PERIOD_US))
        _write(cpu / "cpu.cfs_quota_us", str(cfs_quota_us(limit_milli) if limit_milli else -1))
        if request_milli:
            _write(cpu / "cpu.shares", str(cpu_shares(request_milli)))
    else:
        quota = str(cfs_quota_us(limit_milli)) if limit_milli else "max"
        _write(cpu / "cpu.max", f"{quota} {CFS_PERIOD_US}")
        if request_milli:
            _write(cpu / "cpu.weight", str(cpu_weight(request_milli)))


def _set_weight(mode: str, folder: Path, milli: int) -> None:
    if mode == "v1":
        _write(folder / "cpu.shares", str(cpu_shares(milli)))
    else:
        _write(folder / "cpu.weight", str(cpu_weight(milli)))


def find_container(state: Path, node: str, uid: str, name: str, root: Path = CGROUP_ROOT) -> ContainerCgroup | None:
    """The cgroup of a running container, if it has one (for tests and benchmarks: usage)."""
    found = _hierarchies(root)
    if found is None:
        return None
    dirs = [m / stack_folder(state) / node / f"pod{uid}" / name for m in found[1]]
    return ContainerCgroup(found[0], dirs) if all(d.is_dir() for d in dirs) else None


def _delegate_cpu(mount: Path, target: Path) -> None:
    """cgroup v2: `target` gets the cpu controller only if every ancestor delegates it."""
    ancestors = [d for d in target.parents if d == mount or mount in d.parents]
    for d in reversed(ancestors):
        ctl = d / "cgroup.subtree_control"
        if "cpu" not in ctl.read_text().split():
            _write(ctl, "+cpu")


def remove_tree(top: Path, wait: float = 3.0) -> None:
    """Kill what runs in a cgroup subtree, then remove its folders, deepest first."""
    if not top.is_dir():
        return
    deadline = time.monotonic() + wait
    while True:
        leftovers = False
        for folder, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
            d = Path(folder)
            ContainerCgroup("", [d]).kill_all()
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                leftovers = True
        if not leftovers or time.monotonic() > deadline:
            if leftovers:
                log.warning("cgroup %s not removed: processes still in it", top)
            return
        time.sleep(0.1)


def remove_stack_cgroups(state: Path, root: Path = CGROUP_ROOT) -> None:
    """`devstack down`: the stack's whole cgroup subtree, in every hierarchy."""
    found = _hierarchies(root)
    for mount in found[1] if found else []:
        remove_tree(mount / stack_folder(state))


def remove_node_cgroups(state: Path, node: str, root: Path = CGROUP_ROOT) -> None:
    found = _hierarchies(root)
    for mount in found[1] if found else []:
        remove_tree(mount / stack_folder(state) / node)
