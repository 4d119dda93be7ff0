"""The fault suite (`pytest -m fault`): faults injected into the real local stack while a job runs.

Each test starts a short, deliberately slow FFmpeg job (a lavfi source read at native rate with
`-re`), waits until FFmpeg is producing, injects one fault, and then checks what a user would:
- the FFmpegJob ends in the state it should: Succeeded when the work could be finished, else
  Failed with a reason that says why;
- the webhook arrived (at least once) with that final state;
- the output directory holds exactly the declared outputs (none twice, none partial) - or
  nothing when the job failed;
- no worker process of the job is left running and no scratch object is left in the bucket.
Components are killed with SIGKILL and brought back by the devstack code (`Stack().up()` starts
whatever is not running). A table of faults and outcomes is printed at the end of the module
(and written to `.devstack/fault-outcomes.txt`).
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helpers
import httpx
import pytest
from devstack.stack import Stack, StackInfo
from ffmpegjob_model.model import GROUP, PLURAL, VERSION
from ffmpegjob_model.storage_layout import dir_prefix, scratch_prefix
from helpers import TERMINAL_PHASES, Receiver, get_ffmpegjob
from kubernetes import client

pytestmark = [pytest.mark.stack, pytest.mark.fault]
# About 8 s of FFmpeg at native rate: long enough to hit mid-run, short enough for a quick suite.
# (`-t` lets the worker report percent, which the tests use to fault mid-run.)
SLOW = "-re -f lavfi -i testsrc=size=160x120:rate=10 -t {secs} -c:v libx264 -preset ultrafast {{{{out.mp4}}}}"


# ------------------------------------------------------------------------------- the outcomes
@dataclass
class Row:
    fault: str
    expected: str
    outcome: str = "?"
    detail: str = ""
    seconds: float = 0.0


ROWS: list[Row] = []


@pytest.fixture(scope="module", autouse=True)
def fault_table(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not ROWS:
        return
    widths = [max(len(h), *(len(getattr(r, a)) for r in ROWS)) for h, a in
              (("fault", "fault"), ("expected", "expected"), ("outcome", "outcome"))]
    head = f"{'fault':<{widths[0]}}  {'expected':<{widths[1]}}  {'outcome':<{widths[2]}}  {'s':>5}  detail"
    lines = ["", "fault suite: faults and outcomes", head, "-" * len(head)]
    lines += [f"{r.fault:<{widths[0]}}  {r.expected:<{widths[1]}}  {r.outcome:<{widths[2]}}  {r.seconds:5.0f}  "
              f"{r.detail}" for r in ROWS]
    text = "\n".join(lines)
    out = Stack().state / "fault-outcomes.txt"
    out.write_text(text + "\n")
    # Printed in the terminal summary (output during the tests themselves is captured).
    request.config.pluginmanager.register(_Summary(lines), "fault-outcomes")


class _Summary:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for line in self.lines:
            terminalreporter.write_line(line)


# ------------------------------------------------------------------------------------ helpers
# The fault suite waits through outages: what is down may be the API server or the store itself.
wait_for = functools.partial(helpers.wait_for, tolerate=(Exception,))


class Run:
    """One FFmpegJob under a fault, with its checks."""

    def __init__(self, stack: StackInfo, custom: client.CustomObjectsApi, kube_api: client.ApiClient, s3: Any,
                 receiver: Receiver, fault: str, expected: str) -> None:
        self.stack, self.custom, self.s3, self.receiver = stack, custom, s3, receiver
        self.core, self.batch = client.CoreV1Api(kube_api), client.BatchV1Api(kube_api)
        self.ns = stack.namespace
        self.name = f"fault-{uuid.uuid4().hex[:8]}"
        self.dir = f"dir_{self.name.replace('-', '_')}"
        self.row = Row(fault, expected)
        self.t0 = time.monotonic()
        self.uid = ""
        ROWS.append(self.row)

    def submit(self, commands: list[str] | None = None, outputs: tuple[str, ...] = ("out.mp4",), **spec: Any) -> None:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FFmpegJob", "metadata": {"name": self.name},
                "spec": {"outputs": [{"name": o} for o in outputs], "commands": commands or [SLOW.format(secs=8)],
                         "output": {"dirId": self.dir}, "timeoutSeconds": 240,
                         "webhook": {"url": self.receiver.url}, **spec}}
        self.uid = self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body)["metadata"]["uid"]

    def adopt(self, name: str, uid: str, outputs_dir: str) -> None:
        self.name, self.uid, self.dir = name, uid, outputs_dir

    def status(self) -> dict[str, Any]:
        return dict(get_ffmpegjob(self.custom, self.ns, self.name).get("status") or {})

    def wait_running(self, step: int = 1, percent: float = 10) -> None:
        """FFmpeg is producing (the worker reported progress of `step` past `percent`)."""
        def check() -> bool:
            st = self.status()
            p = st.get("progress") or {}
            return (st.get("phase") == "Running" and p.get("step", 0) >= step
                    and percent <= p.get("percent", 0) < 90 * step / p.get("steps", 1))
        wait_for(check, 90, f"{self.name} running step {step}")

    def pod(self) -> client.V1Pod:
        def live() -> client.V1Pod | None:
            pods = self.core.list_namespaced_pod(self.ns, label_selector=f"{GROUP}/ffmpegjob-uid={self.uid}").items
            running = [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
            return running[0] if running else None
        pod: client.V1Pod = wait_for(live, 60, "a running pod")
        return pod

    def finish(self, phase: str, reason: str | None = None, timeout: float = 240) -> dict[str, Any]:
        """Wait for the terminal phase and check everything the suite promises."""
        def done() -> dict[str, Any] | None:
            st = self.status()
            return st if st.get("phase") in TERMINAL_PHASES else None
        try:
            st: dict[str, Any] = wait_for(done, timeout, f"{self.name} terminal", every=0.5)
        except AssertionError:
            self.record("stuck", "")
            raise
        detail = f"attempts={st.get('attempts', '-')} restarts={st.get('jobRestarts', 0)}"
        if (st.get("progress") or {}).get("resumedFromStep"):
            detail += f" resumedFromStep={st['progress']['resumedFromStep']}"
        self.record(f"{st['phase']}/{st.get('reason')}", f"{detail}; {str(st.get('message'))[:60]}")
        assert st["phase"] == phase, st
        if reason:
            assert st.get("reason") == reason, st
        # the webhook: at least once, with the final state
        # (the word depends on the surface: "completed" on the FFmpeg API, "succeeded" on VGF)
        words = {"Succeeded": ("completed", "succeeded"), "Failed": ("failed",)}[phase]
        wait_for(lambda: any(c.get("status") in words for c in self.receiver.posts), 90, "the webhook")
        # outputs: exactly the declared ones, or nothing
        outputs = {o["fileName"] for o in st.get("result") or []} if phase == "Succeeded" else set()
        keys = self.keys(dir_prefix("default", self.dir))
        assert keys == {dir_prefix("default", self.dir) + o for o in outputs}, keys
        # nothing left behind: no worker process, no scratch object
        wait_for(lambda: not self.processes(), 60, f"no process of {self.name} left")
        wait_for(lambda: not self.keys(scratch_prefix("default", self.uid)), 60, "no scratch left")
        self.row.detail += "; clean"
        return st

    def record(self, outcome: str, detail: str) -> None:
        self.row.outcome, self.row.detail = outcome, detail
        self.row.seconds = time.monotonic() - self.t0

    def keys(self, prefix: str) -> set[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.stack.env["S3_BUCKET"], Prefix=prefix)
        return {o["Key"] for p in pages for o in p.get("Contents", [])}

    def processes(self) -> list[int]:
        """Live processes (the worker, FFmpeg) started for this FFmpegJob, found by their env."""
        marker = f"FFMPEGJOB_NAME={self.name}".encode()
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if marker in (proc / "environ").read_bytes().split(b"\0"):
                    state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
                    if state != "Z":
                        found.append(int(proc.name))
            except OSError:
                continue
        return found


@pytest.fixture
def run(stack: StackInfo, custom: client.CustomObjectsApi, kube_api: client.ApiClient, s3: Any,
        receiver: Receiver) -> Callable[[str, str], Run]:
    def make(fault: str, expected: str) -> Run:
        return Run(stack, custom, kube_api, s3, receiver, fault, expected)
    return make


def kill(name: str) -> None:
    """SIGKILL one of the stack's processes (its whole process group), as a crash would."""
    procs = Stack().procs
    pid = procs.pid(name)
    assert pid is not None, f"{name} is not running"
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: not procs.running(name), 10, f"{name} gone")


def restart() -> None:
    """The devstack code starts whatever is not running."""
    Stack().up()


# -------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("component,down", [("operator", 2.0), ("minio", 3.0), ("kube-apiserver", 3.0)])
def test_component_killed_mid_job(run: Callable[[str, str], Run], component: str, down: float) -> None:
    r = run(f"kill {component}", "Succeeded")
    r.submit()
    r.wait_running()
    kill(component)
    time.sleep(down)
    restart()
    r.finish("Succeeded")


def test_api_killed_mid_job(run: Callable[[str, str], Run], stack: StackInfo, custom: client.CustomObjectsApi,
                            receiver: Receiver) -> None:
    """A job submitted over REST survives the API process; the REST view shows the outcome."""
    r = run("kill api (REST job)", "Succeeded")
    api, auth = stack.env["API_URL"], {"Authorization": f"Bearer {stack.env['API_KEY']}"}
    req = {"input_files": {}, "output_files": ["out.mp4"], "ffmpeg_commands": [SLOW.format(secs=8)],
           "webhook_url": receiver.url}
    res = httpx.post(f"{api}/api/ffmpeg", json=req, headers=auth, timeout=30)
    assert res.status_code == 200, res.text
    job_id = res.json()["data"]["id"]
    items = custom.list_namespaced_custom_object(GROUP, VERSION, stack.namespace, PLURAL)["items"]
    ffj = next(o for o in items if o["metadata"]["name"] == job_id)
    r.adopt(ffj["metadata"]["name"], ffj["metadata"]["uid"], ffj["spec"]["output"]["dirId"])
    r.wait_running()
    kill("api")
    restart()
    r.finish("Succeeded")
    got = httpx.get(f"{api}/api/ffmpeg/{job_id}", headers=auth, timeout=30).json()["data"]
    assert got["status"] in ("completed", "succeeded"), got  # the VGF word


def test_node_agent_killed_mid_job(run: Callable[[str, str], Run]) -> None:
    r = run("kill node-agent (backoffLimit 0)", "Succeeded")
    r.submit()
    r.wait_running()
    kill("node-agent")
    time.sleep(2)
    restart()
    r.finish("Succeeded")


def test_job_deleted_is_recreated_while_attempts_remain(run: Callable[[str, str], Run], kube_api: client.ApiClient,
                                                       custom: client.CustomObjectsApi) -> None:
    r = run("delete Job in step 2 of 2 (backoffLimit 1)", "Succeeded, resumed at 2")
    r.submit(backoffLimit=1,
             commands=["-f lavfi -i testsrc=size=160x120:rate=10 -t 8 -c:v libx264 -preset ultrafast {{a.mp4}}",
                       "-re -i {{a.mp4}} -c:v libx264 -preset ultrafast {{out.mp4}}"],
             outputs=("a.mp4", "out.mp4"))
    r.wait_running(step=2, percent=60)
    first = r.status()["jobName"]
    assert r.pod().spec.service_account_name == first  # the job's identity, named after its first Job
    r.batch.delete_namespaced_job(first, r.ns, propagation_policy="Background")
    wait_for(lambda: r.status().get("jobName") == f"{first}-r1", 60, "the Job re-created")
    # The new attempt runs as the same identity, with grants presigned anew for it, and resumes
    # from the checkpoint of step 1 (read through those grants: the pod holds no credentials).
    pod = wait_for(lambda: next((p for p in r.core.list_namespaced_pod(
        r.ns, label_selector=f"job-name={first}-r1").items), None), 60, "a pod of the re-created Job")
    assert pod.spec.service_account_name == first
    secret = r.core.read_namespaced_secret(f"{first}-grants", r.ns)
    assert (secret.metadata.annotations or {}).get("kubeffmpeg.io/grants-for-job") == f"{first}-r1"
    st = r.finish("Succeeded")
    assert st["jobRestarts"] == 1 and st["jobName"] == f"{first}-r1"
    assert st["progress"]["resumedFromStep"] == 2  # step 1 was restored, not run again
    events = r.core.list_namespaced_event(r.ns, field_selector=f"involvedObject.name={r.name}").items
    assert any(e.reason == "JobRecreated" for e in events), [e.reason for e in events]


def test_job_deleted_without_attempts_left_fails(run: Callable[[str, str], Run]) -> None:
    r = run("delete Job (backoffLimit 0)", "Failed/JobDeleted")
    r.submit()
    r.wait_running()
    r.batch.delete_namespaced_job(r.status()["jobName"], r.ns, propagation_policy="Background")
    st = r.finish("Failed", "JobDeleted")
    assert "deleted" in st["message"]


def test_pod_deleted_is_retried_without_counting(run: Callable[[str, str], Run]) -> None:
    r = run("delete pod (backoffLimit 0)", "Succeeded")
    r.submit()
    r.wait_running()
    r.core.delete_namespaced_pod(r.pod().metadata.name, r.ns)
    r.finish("Succeeded")


def test_pod_evicted_is_retried_without_counting(run: Callable[[str, str], Run]) -> None:
    r = run("evict pod (backoffLimit 0)", "Succeeded")
    r.submit()
    r.wait_running()
    pod = r.pod().metadata.name
    r.core.create_namespaced_pod_eviction(pod, r.ns, client.V1Eviction(
        metadata=client.V1ObjectMeta(name=pod, namespace=r.ns)))
    r.finish("Succeeded")


def test_chain_resumes_after_eviction_from_the_unsaved_step(run: Callable[[str, str], Run]) -> None:
    r = run("evict pod in step 2 of 2", "Succeeded, resumed at 2")
    r.submit(commands=["-f lavfi -i testsrc=size=160x120:rate=10 -t 8 -c:v libx264 -preset ultrafast {{a.mp4}}",
                       "-re -i {{a.mp4}} -c:v libx264 -preset ultrafast {{out.mp4}}"],
             outputs=("a.mp4", "out.mp4"))
    r.wait_running(step=2, percent=60)
    pod = r.pod().metadata.name
    r.core.create_namespaced_pod_eviction(pod, r.ns, client.V1Eviction(
        metadata=client.V1ObjectMeta(name=pod, namespace=r.ns)))
    st = r.finish("Succeeded")
    assert st["progress"]["resumedFromStep"] == 2  # step 1 was restored, not run again


def test_node_drained_mid_job(run: Callable[[str, str], Run], stack_env: dict[str, str]) -> None:
    r = run("kubectl drain devstack-cpu", "Succeeded")
    r.submit()
    r.wait_running()
    node = r.pod().spec.node_name
    try:
        out = subprocess.run(["kubectl", "drain", node, "--ignore-daemonsets", "--delete-emptydir-data",
                              "--timeout=90s"], env=stack_env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
    finally:
        subprocess.run(["kubectl", "uncordon", node], env=stack_env, capture_output=True, check=True)
    r.finish("Succeeded")


def test_operator_restarted_during_webhook_retries(run: Callable[[str, str], Run], receiver: Receiver) -> None:
    r = run("kill operator during webhook retries", "Succeeded, hook delivered")
    receiver.answers = [503, 503]
    r.submit(commands=[SLOW.format(secs=2)])
    wait_for(lambda: len(receiver.calls) >= 1, 90, "the first delivery")
    kill("operator")
    restart()
    st = r.finish("Succeeded")
    wait_for(lambda: r.status().get("webhook", {}).get("delivered"), 90, "delivered recorded")
    assert len(receiver.calls) >= 3 and st["phase"] == "Succeeded"
