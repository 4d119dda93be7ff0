"""The process nodes' CPU limits: quantities to CFS quotas and weights, the cgroup layout, and the
wrapper that puts a container's process into its cgroup before it runs (on a folder tree shaped
like cgroupfs; the integration test checks the kernel's side)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from devstack.nodeagent.cgroups import (
    CFS_PERIOD_US,
    NodeCgroups,
    cfs_quota_us,
    cpu_shares,
    cpu_weight,
    milli_cpu,
    remove_stack_cgroups,
    stack_folder,
)


@pytest.mark.parametrize("text,milli", [("500m", 500), ("1", 1000), ("1.5", 1500), ("2000m", 2000),
                                        ("0.1", 100), (2, 2000), ("1m", 1)])
def test_cpu_quantities(text: str, milli: int) -> None:
    assert milli_cpu(text) == milli


def test_bad_cpu_quantity() -> None:
    with pytest.raises(ValueError):
        milli_cpu("1Gi")


def test_quota_and_weight_as_the_kubelet_computes_them() -> None:
    assert cfs_quota_us(1000) == CFS_PERIOD_US
    assert cfs_quota_us(500) == CFS_PERIOD_US // 2
    assert cfs_quota_us(1) == 1000  # the kernel's floor
    assert cpu_shares(1000) == 1024 and cpu_shares(1) == 2
    assert cpu_weight(1) == 1 and cpu_weight(1000) == 39  # runc's shares -> weight conversion


def fake_v1(root: Path) -> None:
    for ctl, f in (("cpu", "cpu.cfs_quota_us"), ("cpuacct", "cpuacct.usage")):
        (root / ctl).mkdir(parents=True)
        (root / ctl / f).write_text("-1\n")


def test_v1_layout_quota_and_cleanup(tmp_path: Path) -> None:
    root, state = tmp_path / "cgroup", tmp_path / "state"
    fake_v1(root)
    node = NodeCgroups(state, "n1", node_cpu_milli=2000, root=root)
    assert node.available, node.reason
    cg = node.container("uid-1", "main", limit_milli=500, request_milli=250)
    assert cg is not None
    cpu = root / "cpu" / stack_folder(state) / "n1" / "poduid-1" / "main"
    assert cg.dirs == [cpu, root / "cpuacct" / stack_folder(state) / "n1" / "poduid-1" / "main"]
    assert (cpu / "cpu.cfs_quota_us").read_text() == "50000"
    assert (cpu / "cpu.cfs_period_us").read_text() == "100000"
    assert (cpu / "cpu.shares").read_text() == "256"
    assert (root / "cpu" / stack_folder(state) / "n1" / "cpu.shares").read_text() == "2048"
    unlimited = node.container("uid-1", "side", limit_milli=None, request_milli=None)
    assert unlimited is not None and (unlimited.dirs[0] / "cpu.cfs_quota_us").read_text() == "-1"
    # Another stack's folder is another name.
    assert stack_folder(tmp_path / "other") != stack_folder(state)
    # On a real cgroupfs the files vanish with rmdir; here remove them first.
    for d in cg.dirs + unlimited.dirs:
        for f in d.iterdir():
            f.unlink()
    for f in (root / "cpu" / stack_folder(state) / "n1").glob("cpu.*"):
        f.unlink()
    for f in (root / "cpu" / stack_folder(state)).glob("cpu.*"):
        f.unlink()
    remove_stack_cgroups(state, root=root)
    assert not (root / "cpu" / stack_folder(state)).exists()
    assert not (root / "cpuacct" / stack_folder(state)).exists()


def test_v2_quota_and_delegation(tmp_path: Path) -> None:
    root, state = tmp_path / "cgroup", tmp_path / "state"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    for sub in (stack_folder(state), f"{stack_folder(state)}/n1", f"{stack_folder(state)}/n1/poduid-2"):
        (root / sub).mkdir(parents=True)
        (root / sub / "cgroup.subtree_control").write_text("")
    node = NodeCgroups(state, "n1", root=root)
    assert node.available and node.mode == "v2", node.reason
    cg = node.container("uid-2", "main", limit_milli=1500, request_milli=None)
    assert cg is not None
    assert (cg.dirs[0] / "cpu.max").read_text() == "150000 100000"
    # Every ancestor delegates the cpu controller to its children.
    for d in (root, root / stack_folder(state), root / stack_folder(state) / "n1", cg.dirs[0].parent):
        assert (d / "cgroup.subtree_control").read_text() == "+cpu", d


def test_no_cpu_controller_falls_back(tmp_path: Path) -> None:
    node = NodeCgroups(tmp_path / "state", "n1", root=tmp_path / "nothing")
    assert not node.available and "no cgroup cpu controller" in node.describe()
    assert node.container("u", "c", 1000, 1000) is None


def test_wrapper_joins_the_cgroup_before_the_command_runs(tmp_path: Path) -> None:
    root, state = tmp_path / "cgroup", tmp_path / "state"
    fake_v1(root)
    cg = NodeCgroups(state, "n1", root=root).container("u", "main", 1000, None)
    assert cg is not None
    for f in cg.procs_files:
        f.write_text("")
    # The command sees its own pid already written into every hierarchy's cgroup.procs.
    argv = cg.wrap(["sh", "-c", 'for f in "$@"; do grep -qx "$$" "$f" || exit 9; done; echo ran "$0"',
                    "arg0", *map(str, cg.procs_files)])
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert out.stdout == "ran arg0\n"


def test_pod_totals_as_the_kubelet_sums_them() -> None:
    from devstack.nodeagent.runtime import _pod_cpu

    def c(limit: str | None = None, request: str | None = None) -> dict[str, object]:
        res: dict[str, dict[str, str]] = {}
        if limit:
            res["limits"] = {"cpu": limit}
        if request:
            res["requests"] = {"cpu": request}
        return {"name": "x", "resources": res}

    assert _pod_cpu({"containers": [c("1"), c("500m", "250m")]}) == (1250, 1500)
    assert _pod_cpu({"containers": [c("1"), c()]}) == (1000, None)  # one unlimited: the pod is
    assert _pod_cpu({"containers": [c("1")], "initContainers": [c("2")]}) == (2000, 2000)
    assert _pod_cpu({"containers": [c()]}) == (None, None)


def test_pod_cgroup_has_the_pod_totals(tmp_path: Path) -> None:
    root, state = tmp_path / "cgroup", tmp_path / "state"
    fake_v1(root)
    node = NodeCgroups(state, "n1", root=root)
    node.pod("u", request_milli=1500, limit_milli=2000)
    pod = root / "cpu" / stack_folder(state) / "n1" / "podu"
    assert (pod / "cpu.cfs_quota_us").read_text() == "200000"
    assert (pod / "cpu.shares").read_text() == "1536"
