"""The operator on the real local stack: FFmpegJob -> Job on the pool's node -> real FFmpeg in the
worker -> status, webhook. Uses the operator process the stack runs (hack/devstack)."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from devstack.stack import Stack, StackInfo, _bin
from ffmpeg_operator.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from ffmpegjob_model.model import FINISHED_LABEL, GROUP, PLURAL, VERSION
from ffmpegjob_model.storage_layout import file_key
from helpers import TERMINAL_PHASES, Receiver, get_ffmpegjob, unique, wait_for, wait_phase
from kubernetes import client

pytestmark = pytest.mark.stack
DIR = "dir_optest"


# ------------------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def clip(stack: StackInfo, s3: Any) -> str:
    """A 1 s test clip in tenant `default`, directory DIR: `DIR/clip.mp4`."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "clip.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=1",
                        "-pix_fmt", "yuv420p", str(out)], check=True)
        s3.upload_file(str(out), stack.env["S3_BUCKET"], file_key("default", DIR, "clip.mp4"))
    return f"{DIR}/clip.mp4"


def manifest(name: str, source: str, command: str = "-i {{in.mp4}} -c:v libx264 -preset ultrafast {{out.mp4}}",
             **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "FFmpegJob", "metadata": {"name": name},
        "spec": {"inputs": [{"name": "in.mp4", "source": source}], "outputs": [{"name": "out.mp4"}],
                 "commands": [command], "output": {"dirId": DIR}, "timeoutSeconds": 300, **spec},
    }


def create(custom: client.CustomObjectsApi, ns: str, body: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    return obj


# --------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("machine,node", [("cpu", "devstack-cpu"), ("gpu", "devstack-gpu")])
def test_job_runs_on_its_pool_and_succeeds(stack: StackInfo, kube_api: client.ApiClient, custom: Any, s3: Any,
                                           clip: str, machine: str, node: str) -> None:
    ns, name = stack.namespace, unique(f"ok-{machine}")
    obj = create(custom, ns, manifest(name, clip, machine=machine))
    done = wait_phase(custom, ns, name)
    st = done["status"]
    assert st["phase"] == "Succeeded", st
    assert st["result"][0]["fileName"] == "out.mp4" and st["result"][0]["sizeBytes"] > 0
    assert st["usage"]["timeSec"] > 0 and st["progress"]["percent"] == 100
    assert st["jobName"].endswith(obj["metadata"]["uid"])
    assert {c["type"] for c in st["conditions"]} >= {"Submitted", "Succeeded"}
    sel = f"{GROUP}/ffmpegjob-uid={obj['metadata']['uid']}"
    pods = client.CoreV1Api(kube_api).list_namespaced_pod(ns, label_selector=sel)
    assert [p.spec.node_name for p in pods.items] == [node]
    head = s3.head_object(Bucket=stack.env["S3_BUCKET"], Key=file_key("default", DIR, "out.mp4"))
    assert head["ContentLength"] == st["result"][0]["sizeBytes"]


def test_failing_command_reports_ffmpegs_error(stack: StackInfo, custom: Any, clip: str) -> None:
    ns, name = stack.namespace, unique("bad-codec")
    create(custom, ns, manifest(name, clip, command="-i {{in.mp4}} -c:v no_such_codec {{out.mp4}}"))
    st = wait_phase(custom, ns, name)["status"]
    assert st["phase"] == "Failed"
    assert "no_such_codec" in st["message"] or "Unknown encoder" in st["message"], st["message"]


def test_invalid_specs_are_refused(stack: StackInfo, custom: Any, clip: str) -> None:
    ns = stack.namespace
    with pytest.raises(client.ApiException) as refused:  # CEL, in the API server
        create(custom, ns, manifest(unique("cel"), clip, webhook={"url": "ftp://example.com/x"}))
    assert refused.value.status == 422 and "webhook.url" in refused.value.body
    name = unique("unsafe")  # what CEL cannot see: command safety
    create(custom, ns, manifest(name, clip, command="-i /etc/passwd {{out.mp4}}"))
    st = wait_phase(custom, ns, name, timeout=30)["status"]
    assert (st["phase"], st["reason"]) == ("Failed", "ValidationFailed")
    name = unique("tpu")
    create(custom, ns, manifest(name, clip, machine="tpu"))
    assert wait_phase(custom, ns, name, timeout=30)["status"]["reason"] == "UnknownMachine"


def test_cancel_and_delete_remove_the_job(stack: StackInfo, kube_api: client.ApiClient, custom: Any,
                                          clip: str) -> None:
    ns, batch = stack.namespace, client.BatchV1Api(kube_api)
    slow = "-re -stream_loop -1 -i {{in.mp4}} -t 120 -c:v libx264 -preset ultrafast {{out.mp4}}"
    name = unique("cancel")
    create(custom, ns, manifest(name, clip, command=slow))
    job = wait_for(lambda: get_ffmpegjob(custom, ns, name).get("status", {}).get("jobName"), 60, "Job")
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, {"spec": {"cancel": True}})
    assert wait_phase(custom, ns, name, timeout=60)["status"]["phase"] == "Cancelled"
    wait_for(lambda: job not in [j.metadata.name for j in batch.list_namespaced_job(ns).items], 60, "Job gone")

    name = unique("delete")
    obj = create(custom, ns, manifest(name, clip, command=slow))
    job = wait_for(lambda: get_ffmpegjob(custom, ns, name).get("status", {}).get("jobName"), 60, "Job")
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    core = client.CoreV1Api(kube_api)
    sel = f"{GROUP}/ffmpegjob-uid={obj['metadata']['uid']}"
    wait_for(lambda: not batch.list_namespaced_job(ns, label_selector=sel).items
             and not core.list_namespaced_pod(ns, label_selector=sel).items, 120, "garbage collection")


def test_signed_webhook_is_retried_after_503(stack: StackInfo, kube_api: client.ApiClient, custom: Any,
                                             clip: str, receiver: Receiver) -> None:
    receiver.answers = [503]
    ns, name = stack.namespace, unique("hook")
    secret = unique("hook-secret")
    client.CoreV1Api(kube_api).create_namespaced_secret(
        ns, {"metadata": {"name": secret}, "stringData": {"secret": "s3cr3t"}})
    create(custom, ns, manifest(name, clip, webhook={"url": receiver.url, "secretRef": {"name": secret}}))
    wait_for(lambda: len(receiver.calls) >= 2, 240, "two deliveries")
    for headers, body in ((c.headers, c.body) for c in receiver.calls):
        assert verify(b"s3cr3t", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    payload = receiver.posts[-1]
    assert payload["job_id"] == name and payload["status"] == "completed"
    assert payload["result"][0]["file_name"] == "out.mp4" and payload["result"][0]["download_url"].startswith("http")
    assert set(payload["usage"]) == {"time_sec", "input_size_gb", "output_size_gb", "gb_sec"}
    hook = wait_for(lambda: get_ffmpegjob(custom, ns, name)["status"].get("webhook", {}).get("delivered")
                    and get_ffmpegjob(custom, ns, name)["status"]["webhook"], 30, "delivery record")
    assert [a.get("statusCode") for a in hook["attempts"]] == [503, 200]


def test_operator_restart_mid_job_loses_nothing(stack: StackInfo, custom: Any, clip: str,
                                                receiver: Receiver) -> None:
    receiver.answers = [503]  # the first delivery is retried
    ns, name = stack.namespace, unique("restart")
    slowish = "-re -i {{in.mp4}} -c:v libx264 -preset ultrafast {{out.mp4}}"
    create(custom, ns, manifest(name, clip, command=slowish, webhook={"url": receiver.url}))
    wait_for(lambda: get_ffmpegjob(custom, ns, name).get("status", {}).get("jobName"), 60, "Job")
    s = Stack()
    s.procs.stop("operator")
    try:
        time.sleep(5)  # the Job finishes while no operator runs
    finally:
        s.procs.start("operator", [_bin("ffmpeg-operator")], env=stack.env)
    st = wait_phase(custom, ns, name, timeout=240)["status"]
    assert st["phase"] == "Succeeded"
    wait_for(lambda: any(p["job_id"] == name for p in receiver.posts), 120, "webhook after restart")


def test_fifty_jobs_at_once(stack: StackInfo, stack_env: dict[str, str], custom: Any, clip: str) -> None:
    ns, prefix = stack.namespace, unique("burst")
    docs = [manifest(f"{prefix}-{i}", clip, command="-i {{in.mp4}} -c copy {{out.mp4}}", machine="cpu")
            for i in range(50)]
    for d in docs:
        d["metadata"]["namespace"] = ns
        d["spec"]["outputs"] = [{"name": f"{d['metadata']['name']}.mp4"}]
        d["spec"]["commands"] = [f"-i {{{{in.mp4}}}} -c copy {{{{{d['metadata']['name']}.mp4}}}}"]
    subprocess.run(["kubectl", "--kubeconfig", stack.kubeconfig, "apply", "-f", "-"],
                   input=yaml.safe_dump_all(docs), text=True, check=True, capture_output=True, env=stack_env)

    def all_done() -> list[str] | None:
        items = custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
        phases = [(i.get("status") or {}).get("phase") for i in items if i["metadata"]["name"].startswith(prefix)]
        return phases if len(phases) == 50 and all(p in TERMINAL_PHASES for p in phases) else None

    phases = wait_for(all_done, 900, "50 terminal jobs")
    assert phases.count("Succeeded") == 50, phases


def test_finished_job_is_deleted_after_its_ttl(stack: StackInfo, kube_api: client.ApiClient, custom: Any,
                                                clip: str) -> None:
    ns, name = stack.namespace, unique("ttl")
    create(custom, ns, manifest(name, clip, ttlSecondsAfterFinished=1))
    done = wait_phase(custom, ns, name)
    assert done["status"]["phase"] == "Succeeded"
    job_name = done["status"]["jobName"]
    # Finished jobs are labelled, so clients can select the unfinished ones server-side.
    wait_for(lambda: (get_ffmpegjob(custom, ns, name)["metadata"].get("labels") or {}).get(FINISHED_LABEL) == "true",
             30, f"{name} labelled finished")

    def gone() -> bool:
        try:
            get_ffmpegjob(custom, ns, name)
        except client.ApiException as e:
            return e.status == 404
        return False

    wait_for(gone, 60, f"{name} deleted after its TTL")

    def job_gone() -> bool:  # the garbage collector follows the ownerReference
        try:
            client.BatchV1Api(kube_api).read_namespaced_job(job_name, ns)
        except client.ApiException as e:
            return e.status == 404
        return False

    wait_for(job_gone, 60, f"Job {job_name} garbage-collected")
