"""The local stack is real: a real API server with CRDs, the real scheduler and Job controller
placing and completing Jobs on the process nodes, and a real S3 server."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from typing import Any

import httpx
import pytest
from helpers import kubectl, make_namespace
from kubernetes import client, watch

pytestmark = pytest.mark.stack

NS = "stack-tests"


@pytest.fixture(scope="module", autouse=True)
def ns(stack_env: dict[str, str]) -> str:
    return make_namespace(stack_env, NS)


def run_job(stack_env: dict[str, str], name: str, pod_spec: dict[str, Any], **job_spec: Any) -> str:
    """Create a Job under a fresh name (the stack may outlive a test run) and return the name."""
    name = f"{name}-{uuid.uuid4().hex[:5]}"
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"backoffLimit": 0, **job_spec, "template": {"spec": {"restartPolicy": "Never", **pod_spec}}},
    }
    kubectl(stack_env, "apply", "-f", "-", stdin=json.dumps(job))
    return name


def wait_job(stack_env: dict[str, str], name: str, condition: str, timeout: int = 90) -> dict[str, Any]:
    kubectl(stack_env, "wait", "-n", NS, f"--for=condition={condition}", f"--timeout={timeout}s", f"job/{name}")
    pods = json.loads(kubectl(stack_env, "get", "pods", "-n", NS, "-l", f"job-name={name}", "-o", "json"))
    assert pods["items"], "the Job controller made no pod"
    return dict(pods["items"][0])


def test_server_reports_a_real_version(stack_env: dict[str, str]) -> None:
    v = json.loads(kubectl(stack_env, "version", "-o", "json"))
    assert v["serverVersion"]["gitVersion"].startswith("v1.")
    assert v["serverVersion"]["gitVersion"] != "v0.0.0-master+$Format:%H$"
    nodes = json.loads(kubectl(stack_env, "get", "nodes", "-o", "json"))["items"]
    ready = {n["metadata"]["name"]: next(c["status"] for c in n["status"]["conditions"] if c["type"] == "Ready")
             for n in nodes}
    assert ready == {"devstack-cpu": "True", "devstack-gpu": "True"}


def test_crd_object_status_subresource_and_watch(stack_env: dict[str, str], kube_api: client.ApiClient) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.stacktest.example.com"},
        "spec": {
            "group": "stacktest.example.com",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer", "minimum": 1}}},
                    "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
                }}},
            }],
        },
    }
    kubectl(stack_env, "apply", "-f", "-", stdin=json.dumps(crd))
    kubectl(stack_env, "wait", "--for=condition=Established", "--timeout=30s", "crd/widgets.stacktest.example.com")
    api = client.CustomObjectsApi(kube_api)
    name = f"w-{uuid.uuid4().hex[:6]}"
    seen: list[tuple[str, str | None]] = []

    def watcher() -> None:
        w = watch.Watch()
        for ev in w.stream(api.list_namespaced_custom_object, "stacktest.example.com", "v1", NS, "widgets",
                           field_selector=f"metadata.name={name}", timeout_seconds=20):
            seen.append((ev["type"], (ev["object"].get("status") or {}).get("phase")))
            if seen[-1] == ("MODIFIED", "Done"):
                w.stop()

    t = threading.Thread(target=watcher)
    t.start()
    time.sleep(0.5)
    # The API server's own validation refuses a bad object.
    bad = subprocess.run(["kubectl", "apply", "-n", NS, "-f", "-"], env=stack_env, capture_output=True, text=True,
                         input=json.dumps({"apiVersion": "stacktest.example.com/v1", "kind": "Widget",
                                           "metadata": {"name": "bad"}, "spec": {"size": 0}}))
    assert bad.returncode != 0 and "spec.size" in bad.stderr
    kubectl(stack_env, "apply", "-n", NS, "-f", "-", stdin=json.dumps(
        {"apiVersion": "stacktest.example.com/v1", "kind": "Widget", "metadata": {"name": name}, "spec": {"size": 3}}))
    # A status written through the main resource is ignored; through /status it lands.
    api.patch_namespaced_custom_object(
        "stacktest.example.com", "v1", NS, "widgets", name, {"status": {"phase": "Ignored"}})
    api.patch_namespaced_custom_object_status(
        "stacktest.example.com", "v1", NS, "widgets", name, {"status": {"phase": "Done"}})
    t.join(timeout=25)
    obj = api.get_namespaced_custom_object("stacktest.example.com", "v1", NS, "widgets", name)
    assert obj["status"] == {"phase": "Done"}
    assert ("ADDED", None) in seen and ("MODIFIED", "Done") in seen


def test_cpu_job_runs_on_the_cpu_node_with_env_and_token(stack_env: dict[str, str], ns: str) -> None:
    subprocess.run(["kubectl", "create", "secret", "generic", "stack-secret", "-n", NS,
                    "--from-literal=password=s3cr3t"], env=stack_env, capture_output=True)
    subprocess.run(["kubectl", "create", "configmap", "stack-config", "-n", NS, "--from-literal=mode=fast"],
                   env=stack_env, capture_output=True)
    script = (
        'test "$PASSWORD" = s3cr3t && test "$MODE" = fast && test "$POD_NS" = stack-tests '
        '&& test -d "$SCRATCH" && echo data > "$SCRATCH/f" && test -s "$SCRATCH/f" '
        '&& kubectl auth whoami -o jsonpath="{.status.userInfo.username}" > "$TERMINATION_LOG_PATH"'
    )
    cpu_env = run_job(stack_env, "cpu-env", {
        "nodeSelector": {"kubeffmpeg.io/pool": "cpu"},
        "containers": [{
            "name": "main", "image": "debian:bookworm-slim", "command": ["sh", "-c", script],
            "env": [
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "stack-secret", "key": "password"}}},
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "stack-config", "key": "mode"}}},
                {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "SCRATCH", "value": "/scratch"},
            ],
            "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
        }],
        "volumes": [{"name": "scratch", "emptyDir": {}}],
    })
    pod = wait_job(stack_env, cpu_env, "Complete")
    assert pod["spec"]["nodeName"] == "devstack-cpu"
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"
    # The container talked to the API server as its own service account.
    assert term["message"] == "system:serviceaccount:stack-tests:default"
    assert term["startedAt"] <= term["finishedAt"]


def test_gpu_job_is_placed_on_the_gpu_node(stack_env: dict[str, str], ns: str) -> None:
    gpu_job = run_job(stack_env, "gpu-job", {
        "nodeSelector": {"kubeffmpeg.io/pool": "gpu"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [{"name": "main", "image": "x", "command": ["true"],
                        "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
    })
    pod = wait_job(stack_env, gpu_job, "Complete")
    assert pod["spec"]["nodeName"] == "devstack-gpu"


def test_gpu_request_without_toleration_is_unschedulable(stack_env: dict[str, str], ns: str) -> None:
    gpu_no_toleration = run_job(stack_env, "gpu-no-toleration", {
        "containers": [{"name": "main", "image": "x", "command": ["true"],
                        "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
    })
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pods = json.loads(
            kubectl(stack_env, "get", "pods", "-n", NS, "-l", f"job-name={gpu_no_toleration}", "-o", "json"))
        conds = [c for p in pods["items"] for c in p["status"].get("conditions", []) if c["type"] == "PodScheduled"]
        if conds and conds[0]["status"] == "False":
            assert conds[0]["reason"] == "Unschedulable"
            assert "untolerated taint" in conds[0]["message"] or "nvidia.com/gpu" in conds[0]["message"]
            break
        time.sleep(0.5)
    else:
        pytest.fail("the scheduler never reported the GPU pod unschedulable")
    kubectl(stack_env, "delete", "job", "-n", NS, gpu_no_toleration, "--wait=false")


def test_failing_container_fails_its_job(stack_env: dict[str, str], ns: str) -> None:
    fails = run_job(stack_env, "fails", {
        "containers": [{"name": "main", "image": "x",
                        "command": ["sh", "-c", 'echo "disk on fire" > "$TERMINATION_LOG_PATH"; exit 3']}],
    })
    pod = wait_job(stack_env, fails, "Failed")
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert pod["status"]["phase"] == "Failed"
    assert term["exitCode"] == 3 and term["reason"] == "Error" and term["message"] == "disk on fire"


def test_deadline_stops_the_process_with_sigterm(stack_env: dict[str, str], ns: str, tmp_path: Any) -> None:
    marker = tmp_path / "got-sigterm"
    script = f'trap "touch {marker}; exit 143" TERM; sleep 60 & wait'
    deadline_job = run_job(stack_env, "deadline", {
        "terminationGracePeriodSeconds": 5,
        "containers": [{"name": "main", "image": "x", "command": ["bash", "-c", script]}],
    }, activeDeadlineSeconds=3)
    t0 = time.monotonic()
    kubectl(stack_env, "wait", "-n", NS, "--for=condition=Failed", "--timeout=60s", f"job/{deadline_job}")
    job = json.loads(kubectl(stack_env, "get", "job", "-n", NS, deadline_job, "-o", "json"))
    assert any(c.get("reason") == "DeadlineExceeded" for c in job["status"]["conditions"])
    deadline = time.monotonic() + 15
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marker.exists(), "the container never got SIGTERM"
    assert time.monotonic() - t0 < 30


def test_presigned_put_then_get(s3: Any, stack: Any) -> None:
    bucket = stack.env["S3_BUCKET"]
    key = f"stack-tests/{uuid.uuid4().hex}.bin"
    body = b"\x00\x01presigned" * 1000
    put = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300)
    assert httpx.put(put, content=body).status_code == 200
    get = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300)
    r = httpx.get(get)
    assert r.status_code == 200 and r.content == body
    # A tampered signature is refused by the server.
    assert httpx.get(get.replace("Signature=", "Signature=0")).status_code == 403


def test_scratch_over_its_size_limit_is_evicted(stack_env: dict[str, str], ns: str) -> None:
    job = run_job(stack_env, "evicted", {
        "containers": [{"name": "main", "image": "x", "command": [
            "sh", "-c", 'head -c 3000000 /dev/zero > "$SCRATCH/big"; sleep 30'],
            "env": [{"name": "SCRATCH", "value": "/scratch"}],
            "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}],
        "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}}],
    })
    t0 = time.monotonic()
    pod = wait_job(stack_env, job, "Failed", timeout=30)
    assert time.monotonic() - t0 < 20, "the process ran on past its scratch limit"
    assert pod["status"]["reason"] == "Evicted"
    assert 'EmptyDir volume "scratch" exceeds the limit "1Mi"' in pod["status"]["message"]


def test_on_failure_restarts_the_container_in_place(stack_env: dict[str, str], ns: str, tmp_path: Any) -> None:
    marker = tmp_path / "first-try"
    job = run_job(stack_env, "onfailure", {
        "restartPolicy": "OnFailure",
        "containers": [{"name": "main", "image": "x", "command": [
            "sh", "-c", f'if [ -e {marker} ]; then exit 0; fi; touch {marker}; exit 1']}],
    }, backoffLimit=2)
    pod = wait_job(stack_env, job, "Complete", timeout=60)
    cs = pod["status"]["containerStatuses"][0]
    assert cs["restartCount"] == 1
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert cs["state"]["terminated"]["exitCode"] == 0


def test_crashing_always_container_backs_off_instead_of_failing(stack_env: dict[str, str], ns: str) -> None:
    name = f"crashloop-{uuid.uuid4().hex[:5]}"
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
           "spec": {"terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "main", "image": "x", "command": ["sh", "-c", "exit 2"]}]}}
    kubectl(stack_env, "apply", "-f", "-", stdin=json.dumps(pod))
    deadline = time.monotonic() + 30
    while True:
        got = json.loads(kubectl(stack_env, "get", "pod", "-n", NS, name, "-o", "json"))
        statuses = got["status"].get("containerStatuses") or [{}]
        if statuses[0].get("restartCount", 0) >= 2:
            break
        assert time.monotonic() < deadline, f"never restarted: {got['status']}"
        time.sleep(0.5)
    assert got["status"]["phase"] == "Running"
    assert statuses[0]["lastState"]["terminated"]["exitCode"] == 2
    kubectl(stack_env, "delete", "pod", "-n", NS, name, "--wait=true", "--timeout=30s")
