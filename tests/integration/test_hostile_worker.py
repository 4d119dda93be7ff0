"""A worker taken over by a hostile media file, on the local stack: a pod with exactly a worker's
identity, grants Secret and environment (the pod template of the Job the operator made for a real
FFmpegJob) runs a script instead of the worker. Everything outside its own job is refused; the
same job, run by the real worker, still succeeds.

The local stack has no network plugin, so NetworkPolicy is not enforced here (the chart's
policies are checked by the render tests in tests/unit/test_chart.py): this test covers what
credentials and RBAC decide."""

from __future__ import annotations

import contextlib
import functools
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helpers
import pytest
from ffmpegjob_model.grants import grants_secret_name
from ffmpegjob_model.model import GROUP, PLURAL, VERSION
from kubernetes import client

pytestmark = pytest.mark.stack

# Runs inside the pod as the worker would (same environment, same mounts, same token). Each
# attempt records the HTTP status it got; the result goes to the termination log.
PROBE = r'''
import json, os, urllib.error, urllib.request
from urllib.parse import urlsplit, urlunsplit
from ffmpegjob_model.grants import Grants
from ffmpegjob_model.kubeclient import load_client
from kubernetes import client

victim_job, victim_key, own_name = os.environ["VICTIM_JOB"], os.environ["VICTIM_KEY"], os.environ["FFMPEGJOB_NAME"]
ns = os.environ["FFMPEGJOB_NAMESPACE"]
endpoint, bucket = os.environ["S3_ENDPOINT_URL"].rstrip("/"), os.environ["S3_BUCKET"]
grants = Grants.load(os.environ["GRANTS_FILE"])
out = {}

def http(name, method, url, data=None):
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            out[name] = r.status
    except urllib.error.HTTPError as e:
        out[name] = e.code
    except Exception as e:
        out[name] = type(e).__name__

def swap_path(url, path):
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, path, p.query, ""))

get_url = next(iter(grants.inputs.values())).get_url
put_url = next(iter(grants.outputs.values())).put_url
delete_url = next(iter(grants.outputs.values())).delete_url
victim = f"/{bucket}/{victim_key}"
http("s3_list_bucket_anonymous", "GET", f"{endpoint}/{bucket}?list-type=2")
http("s3_list_bucket_with_own_signature", "GET", swap_path(get_url, f"/{bucket}/") + "&list-type=2")
http("s3_read_other_tenant_anonymous", "GET", endpoint + victim)
http("s3_read_other_tenant_with_own_signature", "GET", swap_path(get_url, victim))
http("s3_overwrite_other_tenant_anonymous", "PUT", endpoint + victim, b"pwned")
http("s3_overwrite_other_tenant_with_own_signature", "PUT", swap_path(put_url, victim), b"pwned")
http("s3_delete_other_tenant_with_own_signature", "DELETE", swap_path(delete_url, victim))
out["env_has_storage_credentials"] = any(k.startswith("AWS_") for k in os.environ)

api = load_client()
custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)

def kube(name, call):
    try:
        call()
        out[name] = 200
    except client.ApiException as e:
        out[name] = e.status

FFJ = ("kubeffmpeg.io", "v1alpha1", ns, "ffmpegjobs")
kube("k8s_read_own_ffmpegjob", lambda: custom.get_namespaced_custom_object(*FFJ, own_name))
kube("k8s_read_other_ffmpegjob", lambda: custom.get_namespaced_custom_object(*FFJ, victim_job))
kube("k8s_list_ffmpegjobs", lambda: custom.list_namespaced_custom_object(*FFJ))
kube("k8s_patch_other_ffmpegjob_status", lambda: custom.patch_namespaced_custom_object_status(
    *FFJ, victim_job, {"status": {"error": "forged"}}))
kube("k8s_patch_other_ffmpegjob_spec", lambda: custom.patch_namespaced_custom_object(
    *FFJ, victim_job, {"spec": {"cancel": True}}))
kube("k8s_read_s3_secret", lambda: core.read_namespaced_secret("kubeffmpeg-s3", ns))
kube("k8s_read_other_grants_secret", lambda: core.read_namespaced_secret(os.environ["VICTIM_GRANTS"], ns))
kube("k8s_list_secrets", lambda: core.list_namespaced_secret(ns))
kube("k8s_list_pods", lambda: core.list_namespaced_pod(ns))
pod = {"metadata": {"name": "x"}, "spec": {"containers": [{"name": "x", "image": "x"}]}}
kube("k8s_create_pod", lambda: core.create_namespaced_pod(ns, pod))
open(os.environ.get("TERMINATION_LOG_PATH", "/dev/termination-log"), "w").write(json.dumps(out))
'''


def ffmpegjob(custom: client.CustomObjectsApi, ns: str, tenant: str, source: str, out_dir: str,
              suspend: bool) -> dict[str, Any]:
    name = f"hw-{tenant}-{uuid.uuid4().hex[:6]}"
    body = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "FFmpegJob", "metadata": {"name": name},
        "spec": {"tenant": tenant, "suspend": suspend, "inputs": [{"name": "in", "source": source}],
                 "outputs": [{"name": "out.mp4"}], "output": {"dirId": out_dir},
                 "commands": ["-i {{in}} -t 1 -vf scale=64:-2 -c:v libx264 -preset ultrafast {{out.mp4}}"]},
    }
    obj: Any = custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    return dict(obj)


# What a test waits for may not exist yet: reading it answers 404 until then.
wait_for = functools.partial(helpers.wait_for, tolerate=(client.ApiException,))


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "in.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=2:size=160x120:rate=25",
                    "-c:v", "libx264", "-preset", "ultrafast", str(path)], check=True)
    return path


@pytest.fixture
def cleanup(custom: client.CustomObjectsApi, kube_api: client.ApiClient, stack: Any) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    batch = client.BatchV1Api(kube_api)
    for n in names:
        with contextlib.suppress(client.ApiException):
            custom.delete_namespaced_custom_object(GROUP, VERSION, stack.namespace, PLURAL, n)
        with contextlib.suppress(client.ApiException):
            batch.delete_namespaced_job(n, stack.namespace, propagation_policy="Background")


def test_a_compromised_worker_reaches_nothing_but_its_own_job(
    custom: client.CustomObjectsApi, kube_api: client.ApiClient, s3: Any, stack: Any, clip: Path,
    cleanup: list[str],
) -> None:
    ns, bucket = stack.namespace, stack.env["S3_BUCKET"]
    run = uuid.uuid4().hex[:6]
    victim_key = f"files/victim/dir_v{run}/private.mp4"
    s3.upload_file(str(clip), bucket, victim_key)
    s3.upload_file(str(clip), bucket, f"files/mallory/dir_m{run}/in.mp4")
    victim = ffmpegjob(custom, ns, "victim", f"dir_v{run}/private.mp4", f"dir_vo{run}", suspend=True)
    own = ffmpegjob(custom, ns, "mallory", f"dir_m{run}/in.mp4", f"dir_mo{run}", suspend=True)
    cleanup += [victim["metadata"]["name"], own["metadata"]["name"]]
    own_job = f"ffj-{own['metadata']['uid']}"
    victim_job = f"ffj-{victim['metadata']['uid']}"

    # The operator made the Job (suspended) with its pod template: identity, grants, environment.
    batch, core = client.BatchV1Api(kube_api), client.CoreV1Api(kube_api)
    job = wait_for(lambda: batch.read_namespaced_job(own_job, ns), 120, "the operator's Job")
    template = kube_api.sanitize_for_serialization(job.spec.template)
    pod_spec = template["spec"]
    assert pod_spec["serviceAccountName"] == own_job
    c = pod_spec["containers"][0]
    assert "envFrom" not in c and not [e for e in c["env"] if e["name"].startswith("AWS_")]
    wait_for(lambda: core.read_namespaced_secret(grants_secret_name(own_job), ns), 120, "the grants Secret")

    # The same pod, running the probe instead of the worker.
    c["command"] = [sys.executable, "-c", PROBE]
    c["env"] += [{"name": "VICTIM_JOB", "value": victim["metadata"]["name"]},
                 {"name": "VICTIM_KEY", "value": victim_key},
                 {"name": "VICTIM_GRANTS", "value": grants_secret_name(victim_job)}]
    template["metadata"]["labels"] = {"app": "hostile-probe"}  # not a child the operator tracks
    template["metadata"]["annotations"] = {}
    probe_name = f"hostile-{run}"
    batch.create_namespaced_job(ns, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": probe_name},
                                     "spec": {"backoffLimit": 0, "template": template}})
    cleanup.append(probe_name)

    def finished() -> Any:
        pods = core.list_namespaced_pod(ns, label_selector=f"job-name={probe_name}").items
        states = [p.status.container_statuses[0].state.terminated for p in pods if p.status.container_statuses]
        return next((s for s in states if s), None)

    term = wait_for(finished, 120, "the probe to finish")
    assert term.exit_code == 0, term.message
    got = json.loads(term.message)
    assert got.pop("k8s_read_own_ffmpegjob") == 200  # its identity works, for its own job
    assert got.pop("env_has_storage_credentials") is False
    refused = {k: v for k, v in got.items() if v in (401, 403)}
    assert refused == got, f"not refused: { {k: v for k, v in got.items() if k not in refused} }"
    assert len(got) == 16
    print(json.dumps(got, indent=1))  # what was tried and what it got, for the record

    # Nothing of the victim's changed.
    body = s3.get_object(Bucket=bucket, Key=victim_key)["Body"].read()
    assert body == clip.read_bytes()
    victim_now: Any = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, victim["metadata"]["name"])
    assert "error" not in (victim_now.get("status") or {}) and not victim_now["spec"].get("cancel")

    # The same set-up, running the real worker: the job succeeds.
    custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, own["metadata"]["name"],
                                          {"spec": {"suspend": False}})

    def phase() -> Any:
        st = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, own["metadata"]["name"]).get("status")
        return st["phase"] if st and st.get("phase") in ("Succeeded", "Failed") else None

    assert wait_for(phase, 180, "the job to finish") == "Succeeded"
    stored = s3.list_objects_v2(Bucket=bucket, Prefix=f"files/mallory/dir_mo{run}/")["Contents"]
    assert [o["Key"].rsplit("/", 1)[1] for o in stored] == ["out.mp4"]
    # Finished: the identity and its grants are gone.
    wait_for(lambda: _gone(core, ns, own_job), 30, "the identity to be released")


def _gone(core: client.CoreV1Api, ns: str, name: str) -> bool:
    for read in (lambda: core.read_namespaced_service_account(name, ns),
                 lambda: core.read_namespaced_secret(grants_secret_name(name), ns)):
        try:
            read()
            return False
        except client.ApiException as e:
            if e.status != 404:
                raise
    return True
