"""Warm pools on the real local stack (docs/warm-pools.md): pre-started worker pods claim jobs,
run them with the job's own identity, are wiped between jobs and replaced after
`maxJobsPerPod`; cancel works; with no idle pod a Job runs the job as always.

The module adds a pool `warmtest` (the cpu pool plus `warm: {replicas: 1, maxJobsPerPod: 3}`) to
the pools ConfigMap and removes it at the end (its warm pods go with it)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from devstack.stack import Stack, StackInfo
from ffmpegjob_model import warm as contract
from ffmpegjob_model.model import GROUP, PLURAL, VERSION
from ffmpegjob_model.storage_layout import file_key
from helpers import Receiver, get_ffmpegjob, unique, wait_for, wait_phase
from kubernetes import client, config

pytestmark = pytest.mark.stack
POOL = "warmtest"
MAX_JOBS = 3
DIR = "dir_warm"
TENANTS = ("warm-tenant-a", "warm-tenant-b")
TINY = "-i {{in.mp4}} -c:v libx264 -preset ultrafast {{out.mp4}}"
MEDIUM = "-re -stream_loop -1 -i {{in.mp4}} -t 4 -c:v libx264 -preset ultrafast {{out.mp4}}"
SLOW = "-re -stream_loop -1 -i {{in.mp4}} -t 120 -c:v libx264 -preset ultrafast {{out.mp4}}"


@pytest.fixture(scope="module")
def clip(stack: StackInfo, s3: Any) -> str:
    """A 1 s clip in each test tenant's DIR (and in `default`'s)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "clip.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=1",
                        "-pix_fmt", "yuv420p", str(out)], check=True)
        for tenant in ("default", *TENANTS):
            s3.upload_file(str(out), stack.env["S3_BUCKET"], file_key(tenant, DIR, "clip.mp4"))
    return f"{DIR}/clip.mp4"


def set_pool(core: client.CoreV1Api, ns: str, warm: dict[str, Any] | None) -> None:
    cm = core.read_namespaced_config_map("kubeffmpeg-pools", ns)
    pools = yaml.safe_load(cm.data["pools.yaml"])
    if warm is None:
        pools.pop(POOL, None)
    else:
        pools[POOL] = {**pools["cpu"], "warm": warm}
    core.patch_namespaced_config_map("kubeffmpeg-pools", ns, {"data": {"pools.yaml": yaml.safe_dump(pools)}})


@pytest.fixture(scope="module")
def warm_pool(stack: StackInfo, kube_api: client.ApiClient) -> Iterator[str]:
    core = client.CoreV1Api(kube_api)
    set_pool(core, stack.namespace, {"replicas": 1, "maxJobsPerPod": MAX_JOBS})
    yield POOL
    set_pool(core, stack.namespace, None)
    wait_for(lambda: not warm_pods(core, stack.namespace), 60, "the warm pods to go with their pool")


def warm_pods(core: client.CoreV1Api, ns: str) -> list[Any]:
    return [p for p in core.list_namespaced_pod(ns, label_selector=f"{contract.WARM_POOL_LABEL}={POOL}").items
            if not p.metadata.deletion_timestamp]


def idle_pod(kube_api: client.ApiClient, ns: str) -> str:
    """The pool's idle warm pod, once there is one (Running, labelled idle)."""
    core = client.CoreV1Api(kube_api)

    def check() -> str | None:
        for p in warm_pods(core, ns):
            if p.status.phase == "Running" and p.metadata.labels.get(contract.WARM_STATE_LABEL) == contract.IDLE:
                return str(p.metadata.name)
        return None

    name: str = wait_for(check, 90, "an idle warm pod")
    time.sleep(0.5)  # the operator's watch sees it idle too
    return name


def manifest(name: str, source: str, machine: str = POOL, command: str = TINY, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FFmpegJob", "metadata": {"name": name},
            "spec": {"inputs": [{"name": "in.mp4", "source": source}], "outputs": [{"name": "out.mp4"}],
                     "commands": [command], "output": {"dirId": DIR}, "timeoutSeconds": 120, "machine": machine,
                     **spec}}


def create(custom: client.CustomObjectsApi, ns: str, body: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    return obj


def pod_dir(pod: str) -> Path:
    found = list((Stack().state / "pods").glob(f"*_{pod}_*"))
    assert len(found) == 1, found
    return found[0]


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def ffmpeg_environ(scratch: Path) -> dict[str, str] | None:
    """The environment of the FFmpeg process working in `scratch` (a process node runs a pod's
    processes on the host: /proc shows them)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if not os.readlink(f"/proc/{pid}/cwd").startswith(str(scratch)):
                continue
            if Path(f"/proc/{pid}/comm").read_text().strip() != "ffmpeg":
                continue
            raw = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        return dict(kv.split("=", 1) for kv in raw.decode(errors="replace").split("\0") if "=" in kv)
    return None


# --------------------------------------------------------------------------------------- tests
def test_warm_job_succeeds_with_the_same_result_and_webhook_as_a_cold_one(
        stack: StackInfo, kube_api: client.ApiClient, custom: Any, clip: str, warm_pool: str,
        receiver_factory: Any) -> None:
    ns = stack.namespace
    pod = idle_pod(kube_api, ns)
    hooks: dict[str, Receiver] = {"warm": receiver_factory(), "cold": receiver_factory()}
    names = {"warm": unique("warm-ok"), "cold": unique("cold-ok")}
    objs = {k: create(custom, ns, manifest(names[k], clip, machine=warm_pool if k == "warm" else "cpu",
                                           webhook={"url": hooks[k].url})) for k in names}
    done = {k: wait_phase(custom, ns, names[k])["status"] for k in names}
    warm, cold = done["warm"], done["cold"]
    assert warm["phase"] == cold["phase"] == "Succeeded", (warm, cold)
    assert warm["warm"]["pod"] == pod and warm["warm"]["exitCode"] == 0 and warm["jobName"] == pod
    assert "warm" not in cold and cold["jobName"].startswith("ffj-")
    # No Job for the warm job: the claimed pod ran it.
    sel = f"{GROUP}/ffmpegjob-uid={objs['warm']['metadata']['uid']}"
    assert not client.BatchV1Api(kube_api).list_namespaced_job(ns, label_selector=sel).items
    # The same result and usage, the same fields, as a Job's pod writes.
    strip = ("storagePath",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in warm["result"]] == \
        [{k: v for k, v in r.items() if k not in strip} for r in cold["result"]]
    assert set(warm["usage"]) == set(cold["usage"]) and warm["progress"]["percent"] == 100
    assert {c["type"] for c in warm["conditions"]} >= {"Submitted", "Succeeded"}
    # And the same webhook: same fields, same status words.
    for k in names:
        wait_for(lambda k=k: hooks[k].calls, 30, f"the {k} job's webhook")
    bodies = {k: hooks[k].calls[0].json() for k in names}
    assert set(bodies["warm"]) == set(bodies["cold"])
    assert bodies["warm"]["status"] == bodies["cold"]["status"]
    assert set(hooks["warm"].calls[0].headers) >= {"X-Webhook-Signature", "X-Webhook-Id"}


def test_two_tenants_on_one_warm_pod_see_no_trace_of_each_other(
        stack: StackInfo, kube_api: client.ApiClient, custom: Any, clip: str, warm_pool: str) -> None:
    ns = stack.namespace
    pod = idle_pod(kube_api, ns)
    scratch = pod_dir(pod) / "volumes" / "scratch"
    a, b = unique("tenant-a"), unique("tenant-b")
    # Tenant a's job runs a few seconds: meanwhile its FFmpeg and its claim files are looked at.
    create(custom, ns, manifest(a, clip, command=MEDIUM, tenant=TENANTS[0]))
    env_a = wait_for(lambda: ffmpeg_environ(scratch), 60, "tenant a's FFmpeg")
    files_a = files_under(scratch)
    kubeconfig_a = json.loads(next(v for k, v in files_a.items() if k.endswith("kubeconfig.json")))
    token_a = kubeconfig_a["users"][0]["user"]["token"]
    assert env_a["FFMPEGJOB_NAME"] == a and contract.ENV_TOKEN not in env_a
    assert not any(k.startswith("KUBERNETES_SERVICE") for k in env_a)
    st_a = wait_phase(custom, ns, a)["status"]
    assert st_a["phase"] == "Succeeded" and st_a["warm"]["pod"] == pod, st_a
    assert files_under(scratch) == {}, "the scratch volume is wiped after each job"
    # Tenant b's job, next on the same pod.
    assert idle_pod(kube_api, ns) == pod
    create(custom, ns, manifest(b, clip, command=MEDIUM, tenant=TENANTS[1]))
    env_b = wait_for(lambda: ffmpeg_environ(scratch), 60, "tenant b's FFmpeg on the same pod")
    files_b = files_under(scratch)
    # (the status is written as the claim's handler ends: FFmpeg may be quicker)
    claim_b = wait_for(lambda: (get_ffmpegjob(custom, ns, b).get("status") or {}).get("warm"), 10, "b's claim")
    assert claim_b["pod"] == pod
    assert env_b["FFMPEGJOB_NAME"] == b
    everything_b = "\n".join([*env_b.values(), *(v.decode(errors="replace") for v in files_b.values())])
    # Nothing of tenant a: not its job's name, its storage keys, its token.
    assert a not in everything_b and f"files/{TENANTS[0]}/" not in everything_b
    assert token_a not in everything_b
    assert f"files/{TENANTS[1]}/" in everything_b  # b's own grants are there
    assert wait_phase(custom, ns, b)["status"]["phase"] == "Succeeded"
    # a's token died with a's identity when a ended.
    cfg = client.Configuration()
    config.load_kube_config(config_file=stack.kubeconfig, client_configuration=cfg)  # the server and its CA
    cfg.cert_file = cfg.key_file = None  # not the admin's certificate: a's token alone
    cfg.api_key = {"authorization": f"Bearer {token_a}"}
    api = client.ApiClient(cfg)

    def refused() -> int:
        try:
            client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, a)
        except client.ApiException as e:
            return int(e.status)
        return 200

    # 403 while the release is under way (its Role goes first), then 401 (its ServiceAccount).
    assert refused() in (401, 403)
    wait_for(lambda: refused() == 401, 30, "a's token to die with a's ServiceAccount")


def slow_job_on_a_warm_pod(kube_api: client.ApiClient, custom: Any, ns: str, clip: str,
                           prefix: str) -> tuple[str, str, Path]:
    """A long job, claimed by the idle warm pod and running: its name, the pod, the pod's scratch."""
    pod = idle_pod(kube_api, ns)
    scratch = pod_dir(pod) / "volumes" / "scratch"
    name = unique(prefix)
    create(custom, ns, manifest(name, clip, command=SLOW))
    wait_for(lambda: ffmpeg_environ(scratch), 60, "FFmpeg on the warm pod")
    return name, pod, scratch


def assert_pod_replaced(kube_api: client.ApiClient, ns: str, pod: str) -> None:
    core = client.CoreV1Api(kube_api)
    wait_for(lambda: pod not in [p.metadata.name for p in core.list_namespaced_pod(ns).items], 60, "the pod gone")
    assert idle_pod(kube_api, ns) != pod


def test_cancel_of_a_warm_job_stops_it_and_replaces_the_pod(
        stack: StackInfo, kube_api: client.ApiClient, custom: Any, clip: str, warm_pool: str) -> None:
    ns = stack.namespace
    name, pod, scratch = slow_job_on_a_warm_pod(kube_api, custom, ns, clip, "warm-cancel")
    t0 = time.monotonic()
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, {"spec": {"cancel": True}})
    st = wait_phase(custom, ns, name, timeout=30)["status"]
    assert st["phase"] == "Cancelled" and st["warm"]["pod"] == pod
    wait_for(lambda: ffmpeg_environ(scratch) is None, 30, "FFmpeg stopped")
    assert time.monotonic() - t0 < 30
    assert_pod_replaced(kube_api, ns, pod)


def test_deleting_a_warm_jobs_ffmpegjob_stops_it_and_frees_the_pod_at_once(
        stack: StackInfo, kube_api: client.ApiClient, custom: Any, clip: str, warm_pool: str) -> None:
    """Not at the claim's deadline (here 120 s + 15 s): the pod goes and a fresh one replaces it."""
    ns = stack.namespace
    name, pod, scratch = slow_job_on_a_warm_pod(kube_api, custom, ns, clip, "warm-delete")
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    wait_for(lambda: ffmpeg_environ(scratch) is None, 30, "FFmpeg stopped after its FFmpegJob was deleted")
    assert_pod_replaced(kube_api, ns, pod)


def test_timeout_of_a_warm_job_fails_it(stack: StackInfo, kube_api: client.ApiClient, custom: Any, clip: str,
                                        warm_pool: str) -> None:
    ns = stack.namespace
    idle_pod(kube_api, ns)
    name = unique("warm-timeout")
    create(custom, ns, {**manifest(name, clip, command=SLOW), "spec": {
        **manifest(name, clip, command=SLOW)["spec"], "timeoutSeconds": 4}})
    st = wait_phase(custom, ns, name, timeout=60)["status"]
    assert st["phase"] == "Failed" and "warm" in st
    assert st["reason"] in ("DeadlineExceeded", "CommandFailed"), st
    assert "timed out" in st["message"], st["message"]


def test_pod_is_replaced_after_max_jobs_per_pod(stack: StackInfo, kube_api: client.ApiClient, custom: Any,
                                                clip: str, warm_pool: str) -> None:
    ns = stack.namespace
    core = client.CoreV1Api(kube_api)
    pod = idle_pod(kube_api, ns)
    for i in range(MAX_JOBS):
        assert idle_pod(kube_api, ns) == pod, f"job {i + 1} of {MAX_JOBS} on the same pod"
        name = unique(f"warm-n{i}")
        create(custom, ns, manifest(name, clip))
        st = wait_phase(custom, ns, name)["status"]
        assert st["phase"] == "Succeeded" and st["warm"]["pod"] == pod, st
    wait_for(lambda: pod not in [p.metadata.name for p in warm_pods(core, ns)], 60, "the used-up pod replaced")
    assert idle_pod(kube_api, ns) != pod


def test_without_an_idle_warm_pod_a_job_runs_it(stack: StackInfo, kube_api: client.ApiClient, custom: Any,
                                               clip: str, warm_pool: str) -> None:
    ns = stack.namespace
    pod = idle_pod(kube_api, ns)
    busy, other = unique("warm-busy"), unique("warm-none-idle")
    create(custom, ns, manifest(busy, clip, command=SLOW))
    wait_for(lambda: (get_ffmpegjob(custom, ns, busy).get("status") or {}).get("warm"), 30, "the claim")
    t0 = time.monotonic()
    create(custom, ns, manifest(other, clip))
    st = wait_phase(custom, ns, other)["status"]
    assert st["phase"] == "Succeeded" and "warm" not in st and st["jobName"].startswith("ffj-"), st
    assert time.monotonic() - t0 < 60
    assert get_ffmpegjob(custom, ns, busy)["status"]["warm"]["pod"] == pod
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, busy, {"spec": {"cancel": True}})
    assert wait_phase(custom, ns, busy)["status"]["phase"] == "Cancelled"


def test_a_warm_pod_lost_mid_job_hands_the_job_to_a_job(stack: StackInfo, kube_api: client.ApiClient,
                                                        custom: Any, clip: str, warm_pool: str) -> None:
    ns = stack.namespace
    core = client.CoreV1Api(kube_api)
    pod = idle_pod(kube_api, ns)
    name = unique("warm-lost")
    create(custom, ns, manifest(name, clip, command=MEDIUM))
    wait_for(lambda: ffmpeg_environ(pod_dir(pod) / "volumes" / "scratch"), 60, "FFmpeg on the warm pod")
    core.delete_namespaced_pod(pod, ns)  # as a node drain or a person would
    st = wait_phase(custom, ns, name, timeout=120)["status"]
    assert st["phase"] == "Succeeded" and st["jobName"].startswith("ffj-") and "warm" not in st, st
    events = core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items
    assert "WarmPodLost" in {e.reason for e in events}, [e.reason for e in events]
