"""Queueing on Kueue, on the local stack (which runs Kueue: hack/devstack/kueue.py).

Jobs go in over the "Very Good FFmpeg" REST surface, as a client would send them. The pools'
ClusterQueues are narrowed for a test (the CPU queue to two jobs' worth of CPU: the pool requests
250m a pod) and restored after it. What a user would check: every job succeeds, no more run at
once than the quota admits, tenants take turns, a `high` job overtakes, positions shown to a
client only go down, a cancelled queued job never gets a pod, GPU work waits for GPU quota while
CPU work flows, and restarting Kueue or the operator in the middle loses nothing."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from devstack.stack import Stack, StackInfo
from ffmpeg_api.keys import create_key
from ffmpegjob_model.model import GROUP, PLURAL, VERSION
from ffmpegjob_model.queueing import KUEUE_GROUP, KUEUE_VERSION, PRIORITY_CLASS_LABEL, cluster_queue_name
from kubernetes import client

pytestmark = pytest.mark.stack
POD_CPU_MILLI = 250  # the stack's pools request 250m CPU a pod (hack/devstack/manifests/base.yaml)
TENANT_LABEL = f"{GROUP}/tenant"
COMMAND = "-re -f lavfi -i testsrc=size=64x48:rate=10 -t {secs} -c:v libx264 -preset ultrafast outputs/out.mp4"


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


@pytest.fixture(scope="module")
def custom(kube_api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube_api)


@pytest.fixture(scope="module")
def kueue_running(stack: StackInfo, custom: client.CustomObjectsApi) -> None:
    assert Stack().procs.running("kueue"), "the local stack runs Kueue (DEVSTACK_KUEUE=0 leaves it out)"
    custom.get_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, "clusterqueues", cluster_queue_name("cpu"))


@contextlib.contextmanager
def quota(custom: client.CustomObjectsApi, pool: str, **resources: str) -> Iterator[None]:
    """Narrow the pool's ClusterQueue (resource -> nominal quota) for the block, then restore it."""
    name = cluster_queue_name(pool)
    cq = custom.get_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, "clusterqueues", name)
    groups = cq["spec"]["resourceGroups"]

    def patched(values: dict[str, str]) -> list[dict[str, Any]]:
        out = []
        for g in groups:
            flavors = [{**f, "resources": [{**r, "nominalQuota": values.get(r["name"], r["nominalQuota"])}
                                           for r in f["resources"]]} for f in g["flavors"]]
            out.append({**g, "flavors": flavors})
        return out

    custom.patch_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, "clusterqueues", name,
                                       {"spec": {"resourceGroups": patched(resources)}})
    try:
        yield
    finally:
        custom.patch_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, "clusterqueues", name,
                                           {"spec": {"resourceGroups": groups}})


class Client:
    """One tenant's client of the VGF surface."""

    def __init__(self, url: str, key: str, tenant: str) -> None:
        self.url, self.tenant = url, tenant
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)

    def submit(self, secs: int = 1, machine: str = "cpu", priority: str | None = None,
               expect: int = 200) -> dict[str, Any]:
        body: dict[str, Any] = {"output_files": ["out.mp4"], "ffmpeg_commands": [COMMAND.format(secs=secs)],
                                "machine": machine}
        if priority:
            body["priority"] = priority
        r = self.http.post("/api/ffmpeg", json=body)
        assert r.status_code == expect, r.text
        return dict(r.json().get("data") or r.json())

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.http.get(f"/api/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return dict(r.json()["data"])

    def cancel(self, job_id: str) -> dict[str, Any]:
        r = self.http.post(f"/api/jobs/{job_id}/cancel")
        assert r.status_code == 200, r.text
        return dict(r.json()["data"])


@pytest.fixture(scope="module")
def tenants(stack: StackInfo, kube_api: client.ApiClient, custom: client.CustomObjectsApi,
            kueue_running: None) -> Iterator[Callable[..., Client]]:
    core, run = client.CoreV1Api(kube_api), uuid.uuid4().hex[:6]
    assert stack.api_url

    def make(name: str, **limits: Any) -> Client:
        tenant = f"q{run}-{name}"
        key = create_key(core, stack.namespace, "kubeffmpeg-api-keys", tenant, requests_per_second=0, **limits)
        return Client(stack.api_url or "", key, tenant)

    yield make
    # The operator made a LocalQueue per test tenant; these tenants never come back. Kueue keeps
    # rewriting every LocalQueue's fair-sharing status (the stack samples usage every 2 s), which
    # would load the API server for the rest of the run.
    queues = custom.list_namespaced_custom_object(KUEUE_GROUP, KUEUE_VERSION, stack.namespace, "localqueues")
    for lq in queues["items"]:
        if f"q{run}-" in lq["metadata"]["name"]:
            with contextlib.suppress(client.ApiException):
                custom.delete_namespaced_custom_object(KUEUE_GROUP, KUEUE_VERSION, stack.namespace, "localqueues",
                                                       lq["metadata"]["name"])


class Admissions:
    """Polls the tenants' Jobs (one consistent LIST each time): when each was first seen admitted
    (unsuspended), and the most admitted-and-unfinished at any one time."""

    def __init__(self, kube_api: client.ApiClient, namespace: str, tenants: list[str]) -> None:
        self.batch, self.ns = client.BatchV1Api(kube_api), namespace
        self.selector = f"{TENANT_LABEL} in ({','.join(tenants)})"
        self.admitted: dict[str, float] = {}  # FFmpegJob name -> first seen admitted (monotonic)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # the API server restarts nothing here; a blip is skipped
                now = time.monotonic()
                running = 0
                for job in self.batch.list_namespaced_job(self.ns, label_selector=self.selector).items:
                    if job.spec.suspend:
                        continue
                    name = (job.metadata.annotations or {}).get(f"{GROUP}/ffmpegjob-name", job.metadata.name)
                    self.admitted.setdefault(name, now)
                    done = any(c.type in ("Complete", "Failed") and c.status == "True"
                               for c in (job.status.conditions or []))
                    running += 0 if done else 1
                self.peak = max(self.peak, running)
            self._stop.wait(0.25)

    def __enter__(self) -> Admissions:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def restart(name: str) -> None:
    """SIGKILL one of the stack's processes, then let the devstack code start it again."""
    procs = Stack().procs
    pid = procs.pid(name)
    assert pid is not None, f"{name} is not running"
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: not procs.running(name), 10, f"{name} gone")
    time.sleep(1)
    Stack().up()


def pending_in_queue(custom: client.CustomObjectsApi, ns: str, tenant: str, job: str) -> set[str] | None:
    """The tenant's FFmpegJobs whose Workloads wait (no quota reserved), once `job` has one."""
    ffjs = custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL,
                                                label_selector=f"{TENANT_LABEL}={tenant}")["items"]
    by_job = {f"ffj-{o['metadata']['uid']}": o["metadata"]["name"] for o in ffjs}
    pending, present = set(), False
    for wl in custom.list_namespaced_custom_object(KUEUE_GROUP, KUEUE_VERSION, ns, "workloads")["items"]:
        name = by_job.get(next((r["name"] for r in wl["metadata"].get("ownerReferences") or []), ""))
        if name is None:
            continue
        present = present or name == job
        reserved = any(c["type"] == "QuotaReserved" and c["status"] == "True"
                       for c in (wl.get("status") or {}).get("conditions") or [])
        if not reserved:
            pending.add(name)
    return pending if present else None


def test_fair_share_priorities_positions_and_restarts(stack: StackInfo, kube_api: client.ApiClient,
                                                      custom: client.CustomObjectsApi,
                                                      tenants: Callable[..., Client]) -> None:
    clients = [tenants(n) for n in ("a", "b", "c")]
    jobs: dict[str, list[str]] = {c.tenant: [] for c in clients}
    tenant_of: dict[str, str] = {}
    positions: dict[str, list[int]] = {}
    stop_watch = threading.Event()

    def watch(c: Client, ids: list[str]) -> None:
        """A client polling its last jobs: the positions it is shown while they wait."""
        while not stop_watch.is_set():
            for job_id in ids:
                with contextlib.suppress(Exception):
                    j = c.job(job_id)
                    if j["status"] == "queued" and j.get("queue_position") is not None:
                        positions.setdefault(job_id, []).append(int(j["queue_position"]))
            stop_watch.wait(1.0)

    with quota(custom, "cpu", cpu=f"{2 * POD_CPU_MILLI}m"), \
            Admissions(kube_api, stack.namespace, [c.tenant for c in clients]) as seen:
        # Worst case for first-come-first-served: each tenant's whole backlog after the other's.
        for c in clients:
            for _ in range(15):
                job_id = c.submit()["id"]
                jobs[c.tenant].append(job_id)
                tenant_of[job_id] = c.tenant
        last = clients[2]
        watcher = threading.Thread(target=watch, args=(last, jobs[last.tenant][-3:]), daemon=True)
        watcher.start()

        selector = f"{TENANT_LABEL} in ({','.join(c.tenant for c in clients)})"

        def finished() -> int:
            items = custom.list_namespaced_custom_object(GROUP, VERSION, stack.namespace, PLURAL,
                                                         label_selector=selector)["items"]
            return sum(1 for o in items if (o.get("status") or {}).get("phase") in ("Succeeded", "Failed",
                                                                                  "Cancelled"))

        wait_for(lambda: finished() >= 6, 300, "six jobs finished", every=1)
        restart("kueue")  # in the middle: nothing may be lost
        wait_for(lambda: finished() >= 12, 300, "six more jobs finished after Kueue restarted", every=1)
        restart("operator")

        # A `high` job, submitted last by tenant b.
        high_client = clients[1]
        before = set(seen.admitted)
        high = high_client.submit(priority="high")["id"]
        assert high_client.job(high)["priority"] == "high"
        # Tenant b's jobs still waiting once the high job is in the queue (has its Workload).
        waiting_b = wait_for(lambda: pending_in_queue(custom, stack.namespace, high_client.tenant, high), 60,
                             "the high job's Workload")
        waiting_b.discard(high)

        wait_for(lambda: finished() >= 46, 900, "every job finished", every=2)
        stop_watch.set()
        watcher.join(5)

    statuses = {j: c.job(j)["status"] for c in clients for j in jobs[c.tenant]}
    assert set(statuses.values()) == {"succeeded"}, statuses
    assert high_client.job(high)["status"] == "succeeded"
    assert seen.peak == 2, f"at most 2 jobs at once, and the quota used: peak {seen.peak}"

    admitted = seen.admitted
    assert set(admitted) >= set(statuses)
    # Fair share: no tenant waits for another's whole backlog.
    for x in clients:
        for y in clients:
            if x is not y:
                first_x = min(admitted[j] for j in jobs[x.tenant])
                last_y = max(admitted[j] for j in jobs[y.tenant])
                assert first_x < last_y, f"{x.tenant} waited for the whole backlog of {y.tenant}"
    # The high job overtakes every normal job of its tenant still waiting. Other tenants' jobs go
    # before it only by fair share: admission fair sharing weighs a tenant's recent usage before
    # priority (docs/queueing.md), so while tenant b has used more than the others, theirs come first.
    assert waiting_b, "tenant b still had waiting jobs when the high job came"
    assert all(admitted[high] < admitted[j] for j in waiting_b), "the high job waited behind a normal one"
    overtaken = [j for j in admitted if j not in before and j != high and admitted[j] < admitted[high]]
    print(f"jobs of other tenants admitted between the high job's submission and its start: {len(overtaken)}")
    # Positions a client is shown only go down, and it was shown some.
    assert positions, "no queue position was shown while the jobs waited"
    for job_id, seq in positions.items():
        assert seq == sorted(seq, reverse=True), f"{job_id}: positions went up: {seq}"
    assert max(max(seq) for seq in positions.values()) > 1


def test_a_cancelled_queued_job_never_starts_a_pod(stack: StackInfo, kube_api: client.ApiClient,
                                                  custom: client.CustomObjectsApi,
                                                  tenants: Callable[..., Client]) -> None:
    c = tenants("cancel")
    core = client.CoreV1Api(kube_api)
    with quota(custom, "cpu", cpu="0"):
        job_id = c.submit()["id"]
        queued = wait_for(lambda: "insufficient" in ((j := c.job(job_id))["queue_reason"] or "") and j, 60,
                          "Kueue's reason: insufficient quota")
        assert queued["status"] == "queued" and queued["queue_position"] == 1
        ffj = custom.get_namespaced_custom_object(GROUP, VERSION, stack.namespace, PLURAL, job_id)
        cond = next(x for x in ffj["status"]["conditions"] if x["type"] == "Queued")
        assert cond["status"] == "True" and ffj["status"]["reason"] == "Queued"
        assert c.cancel(job_id)["status"] == "cancelled"
    time.sleep(5)  # quota is back: a Job that survived the cancel would be admitted now
    uid = ffj["metadata"]["uid"]
    assert core.list_namespaced_pod(stack.namespace, label_selector=f"{GROUP}/ffmpegjob-uid={uid}").items == []
    assert c.job(job_id)["status"] == "cancelled"


def test_gpu_work_waits_for_gpu_quota_while_cpu_work_flows(stack: StackInfo, custom: client.CustomObjectsApi,
                                                           tenants: Callable[..., Client]) -> None:
    c = tenants("gpu")
    with quota(custom, "gpu", **{"nvidia.com/gpu": "0"}):
        gpu = c.submit(machine="gpu")["id"]
        cpu = [c.submit()["id"] for _ in range(3)]
        wait_for(lambda: all(c.job(j)["status"] == "succeeded" for j in cpu), 300, "the CPU jobs succeeded")
        waiting = c.job(gpu)
        assert waiting["status"] == "queued", waiting
        assert "nvidia.com/gpu" in (waiting["queue_reason"] or ""), waiting["queue_reason"]
    wait_for(lambda: c.job(gpu)["status"] == "succeeded", 300, "the GPU job succeeded once GPU quota came back")


def test_over_quota_is_queued_then_refused_at_the_queued_cap(custom: client.CustomObjectsApi,
                                                             tenants: Callable[..., Client]) -> None:
    c = tenants("cap", max_active_jobs=1, max_queued_jobs=2)
    with quota(custom, "cpu", cpu="0"):
        first = c.submit(expect=200)["id"]
        second = c.submit(expect=202)["id"]
        r = c.http.post("/api/ffmpeg", json={"output_files": ["out.mp4"],
                                             "ffmpeg_commands": [COMMAND.format(secs=1)]})
        assert r.status_code == 429, r.text
        assert "Queue full" in r.json()["error"]
        for job_id in (first, second):
            assert c.cancel(job_id)["status"] == "cancelled"


def test_changing_a_queued_jobs_priority_reorders_its_queue(stack: StackInfo, kube_api: client.ApiClient,
                                                            custom: client.CustomObjectsApi,
                                                            tenants: Callable[..., Client]) -> None:
    c = tenants("prio")
    batch = client.BatchV1Api(kube_api)
    with quota(custom, "cpu", cpu="0"):
        # Kueue orders equal priorities by creation time, which has whole-second precision: the
        # second job goes in a second after the first is queued, or their order is a coin toss.
        first = c.submit()["id"]
        wait_for(lambda: c.job(first)["queue_position"] == 1, 60, "the first job at position 1")
        time.sleep(1.1)
        second = c.submit()["id"]
        wait_for(lambda: c.job(second)["queue_position"] == 2, 60, "the second job at position 2")
        r = c.http.patch(f"/api/jobs/{second}", json={"priority": "high"})
        assert r.status_code == 200, r.text
        assert r.json()["data"]["priority"] == "high"
        wait_for(lambda: c.job(second)["queue_position"] == 1 and c.job(first)["queue_position"] == 2, 60,
                 "the reprioritised job at the front")
        ffj = custom.get_namespaced_custom_object(GROUP, VERSION, stack.namespace, PLURAL, second)
        job = batch.read_namespaced_job(ffj["status"]["jobName"], stack.namespace)
        assert job.metadata.labels[PRIORITY_CLASS_LABEL] == "high"
        # The same through the resource (kubectl patch).
        custom.patch_namespaced_custom_object(GROUP, VERSION, stack.namespace, PLURAL, first,
                                              {"spec": {"priority": "high"}})
        custom.patch_namespaced_custom_object(GROUP, VERSION, stack.namespace, PLURAL, second,
                                              {"spec": {"priority": "low"}})
        wait_for(lambda: c.job(first)["queue_position"] == 1, 60, "kubectl patch reorders too")
        for job_id in (first, second):
            c.cancel(job_id)
    r = c.http.patch(f"/api/jobs/{first}", json={"priority": "low"})
    assert r.status_code == 409, r.text
