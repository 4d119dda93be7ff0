"""The built images, run for real: `helm install` of the chart into a fresh namespace of the local
stack, with every pod (the operator's, the API's and the workers') steered to a node label no
process node has; a runc "node" (devstack.runc) takes those pods and runs each from its image
under runc with exactly the securityContext, volumes and environment the chart and the operator
rendered. A submission to the API image becomes an FFmpegJob, the operator image makes its Job,
the worker image runs it to Succeeded. Build the images first: `make test-images` does both."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from devstack.paths import REPO_ROOT, binaries
from devstack.runc import RuncNode, image_tool
from devstack.stack import StackInfo
from ffmpeg_operator.jobs import NONROOT_UID
from ffmpegjob_model.model import TERMINAL
from kubernetes import client

pytestmark = [pytest.mark.stack, pytest.mark.images]

CHART = REPO_ROOT / "charts" / "kubeffmpeg"
RELEASE = "img"
PREFIX = os.environ.get("IMAGE_PREFIX", "ghcr.io/kubeffmpeg")
TAG = os.environ.get("IMAGE_TAG", "0.1.0")
RUNTIME = ("kubeffmpeg.io/runtime", "runc")  # no node has it: only the runc node takes these pods
COMPONENT = "app.kubernetes.io/component"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(env: dict[str, str], *cmd: str, stdin: str | None = None, timeout: int = 120) -> str:
    out = subprocess.run(list(cmd), input=stdin, capture_output=True, text=True, env=env, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd[:3])}: {out.stdout}\n{out.stderr}"
    return out.stdout


def wait_for(check: Any, timeout: float, what: str, node: RuncNode | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}" + (report(node) if node else "")
        time.sleep(0.5)


def report(node: RuncNode) -> str:
    """What ran on the runc node: each pod's image, exit code and last log lines."""
    lines = [f"\nrunc node errors: {json.dumps(node.errors)}"]
    for name, rp in node.pods.items():
        tail = rp.log.read_text(errors="replace").splitlines()[-15:] if rp.log.exists() else []
        lines += [f"--- {name} ({rp.image.ref}) exit {node.exits.get(name)}", *tail]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def images_built() -> None:
    tool = image_tool()
    for name in ("worker", "worker-gpu", "api", "operator"):
        ref = f"{PREFIX}/{name}:{TAG}"
        cmd = ["buildah", "inspect", "--type", "image", ref] if tool == "buildah" else [tool, "image", "inspect", ref]
        assert subprocess.run(cmd, capture_output=True).returncode == 0, f"{ref} is not built: run `make images`"


@pytest.fixture(scope="module")
def release(images_built: None, stack: StackInfo, stack_env: dict[str, str],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    e = stack.env
    key, value = RUNTIME
    values: dict[str, Any] = {
        "image": {"registry": PREFIX.split("/", 1)[0], "repository": PREFIX.split("/", 1)[1], "tag": TAG},
        "operator": {"replicas": 1, "livenessPort": free_port(), "metrics": {"port": free_port()},
                     "urlAllowHosts": ["127.0.0.1", "localhost"], "urlAllowHttp": True,
                     "nodeSelector": {key: value}},
        "api": {"replicas": 1, "port": free_port(), "nodeSelector": {key: value}},
        "s3": {"endpoint": e["S3_ENDPOINT_URL"], "bucket": e["S3_BUCKET"], "region": e["S3_REGION"],
               "accessKey": e["AWS_ACCESS_KEY_ID"], "secretKey": e["AWS_SECRET_ACCESS_KEY"]},
        "pools": {"cpu": {"nodeSelector": {key: value}}, "gpu": {"nodeSelector": {key: value}}},
    }
    path = tmp_path_factory.mktemp("images-chart") / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    ns = f"images-{uuid.uuid4().hex[:6]}"
    helm = str(binaries().helm / "helm")
    run(stack_env, helm, "install", RELEASE, str(CHART), "-n", ns, "--create-namespace", "-f", str(path))
    yield ns, values
    subprocess.run([helm, "uninstall", RELEASE, "-n", ns], env=stack_env, capture_output=True, timeout=120)
    # Whatever the operator could not finish: drop its finalizers so that the namespace goes.
    out = subprocess.run(["kubectl", "-n", ns, "get", "ffj", "-o", "name"], env=stack_env, capture_output=True,
                         text=True, timeout=60)
    for name in out.stdout.split():
        subprocess.run(["kubectl", "-n", ns, "patch", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}'],
                       env=stack_env, capture_output=True, timeout=60)
    subprocess.run(["kubectl", "delete", "ns", ns, "--wait=false"], env=stack_env, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def node(release: tuple[str, dict[str, Any]], kube_api: client.ApiClient, stack_env: dict[str, str],
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuncNode]:
    ns = release[0]
    cfg = kube_api.configuration
    n = RuncNode(client.CoreV1Api(kube_api), ns, RUNTIME, cfg.host, Path(cfg.ssl_ca_cert),
                 tmp_path_factory.mktemp("runc-node")).start()
    yield n
    # FFmpegJobs carry the operator's finalizer: delete them while the operator image still runs.
    subprocess.run(["kubectl", "-n", ns, "delete", "ffj", "--all", "--timeout=60s"], env=stack_env,
                   capture_output=True, timeout=90)
    n.close()
    assert n.containers() == [], "runc containers left behind"
    assert not [rp.root for rp in n.pods.values() if rp.root.exists()], "pod folders left behind"
    if n.tool == "buildah":  # the images' working containers (and their mounts) are gone
        left = subprocess.run(["buildah", "containers", "--format", "{{.ImageName}}"], capture_output=True, text=True)
        assert not [i for i in left.stdout.split() if i.startswith(PREFIX)], left.stdout


def pod_of(node: RuncNode, component: str) -> str:
    """The name of the running pod of a chart component (operator, api) on the runc node."""
    for name, rp in node.pods.items():
        if rp.pod["metadata"]["labels"].get(COMPONENT) == component and name not in node.exits:
            return name
    return ""


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def root_mount_options(pid: int) -> list[str]:
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/":
            return fields[5].split(",")
    raise AssertionError("no root mount")


def test_operator_and_api_images_run_under_the_charts_security_context(node: RuncNode, release: tuple[
        str, dict[str, Any]], stack_env: dict[str, str]) -> None:
    ns, values = release
    operator = wait_for(lambda: pod_of(node, "operator"), 60, "the operator pod on the runc node", node)
    api = wait_for(lambda: pod_of(node, "api"), 60, "the API pod on the runc node", node)
    # The operator image takes its leader Lease with its own service account's token.
    holder = wait_for(lambda: run(stack_env, "kubectl", "-n", ns, "get", "lease", f"{RELEASE}-kubeffmpeg-operator",
                                  "-o", "jsonpath={.spec.holderIdentity}").strip()
                      if _exists(stack_env, ns, "lease", f"{RELEASE}-kubeffmpeg-operator") else "",
                      90, "the operator to take its Lease", node)
    assert holder == operator, report(node)
    port = values["api"]["port"]
    health = wait_for(lambda: _get(f"http://127.0.0.1:{port}/healthz"), 60, "the API's /healthz", node)
    assert health.status_code == 200
    for name in (operator, api):
        pid = node.pid(name)
        st = proc_status(pid)
        uid = str(NONROOT_UID)
        assert st["Uid"].split() == [uid] * 4 and st["Gid"].split() == [uid] * 4, st
        assert st["Groups"].split() == [uid], st  # fsGroup
        assert int(st["CapEff"], 16) == int(st["CapPrm"], 16) == int(st["CapBnd"], 16) == 0, st
        assert st["NoNewPrivs"] == "1" and st["Seccomp"] == "2", st
        assert "ro" in root_mount_options(pid)


def test_a_submission_to_the_api_image_runs_in_the_worker_image(node: RuncNode, release: tuple[str, dict[str, Any]],
                                                                 stack_env: dict[str, str], tmp_path: Path) -> None:
    ns, values = release
    port = values["api"]["port"]
    wait_for(lambda: _get(f"http://127.0.0.1:{port}/healthz"), 90, "the API's /healthz", node)
    secret = json.loads(run(stack_env, "kubectl", "-n", ns, "get", "secret", f"{RELEASE}-kubeffmpeg-bootstrap-key",
                            "-o", "json"))
    headers = {"Authorization": f"Basic {base64.b64decode(secret['data']['api-key']).decode()}"}
    url = f"http://127.0.0.1:{port}"
    video = _video(tmp_path)
    reg = httpx.post(f"{url}/file", json={"file_name": "video.mp4"}, headers=headers, timeout=30)
    assert reg.status_code == 200, reg.text
    d = reg.json()["file"]["dir_id"]
    put = httpx.put(reg.json()["upload"]["url"], content=video.read_bytes(), timeout=30)
    assert put.status_code == 200
    task = {"task": {"inputs": [{"file_path": f"{d}/video.mp4"}],
                     "outputs": [{"file": "small.mp4", "options": ["-vf", "scale=160:-2", "-crf", "30"]}]}}
    # Synchronous: the API image waits while the operator image and the worker image do the work.
    res = httpx.post(f"{url}/ffmpeg/process", json=task, headers=headers, timeout=240)
    assert res.status_code == 200, res.text
    out = res.json()["result"][0]
    assert out["file_name"] == "small.mp4" and out["size_bytes"] > 0
    assert len(httpx.get(out["download_url"], timeout=30).content) == out["size_bytes"]
    _assert_ran_in(node, f"{PREFIX}/worker:{TAG}", stack_env, ns)


def test_the_gpu_worker_image_takes_an_ffmpegjob_to_succeeded(node: RuncNode, release: tuple[str, dict[str, Any]],
                                                              stack_env: dict[str, str], stack: StackInfo, s3: Any,
                                                              tmp_path: Path) -> None:
    ns = release[0]
    dir_id = f"dir_{uuid.uuid4().hex[:8]}"
    s3.upload_file(str(_video(tmp_path)), stack.env["S3_BUCKET"], f"files/default/{dir_id}/in.mp4")
    job = {
        "apiVersion": "kubeffmpeg.io/v1alpha1", "kind": "FFmpegJob",
        "metadata": {"name": "gpu-image", "namespace": ns},
        # A CPU encode on the GPU pool: this machine has no GPU, the image is what is checked.
        "spec": {"tenant": "default", "machine": "gpu",
                 "inputs": [{"name": "in.mp4", "source": f"{dir_id}/in.mp4"}],
                 "outputs": [{"name": "thumb.jpg"}],
                 "commands": ["-i {{in.mp4}} -ss 1 -frames:v 1 {{thumb.jpg}}"],
                 "output": {"dirId": dir_id}, "timeoutSeconds": 120, "backoffLimit": 0},
    }
    run(stack_env, "kubectl", "apply", "-f", "-", stdin=json.dumps(job))

    def terminal() -> dict[str, Any] | None:
        ffj = json.loads(run(stack_env, "kubectl", "-n", ns, "get", "ffj", "gpu-image", "-o", "json"))
        st = ffj.get("status") or {}
        return st if st.get("phase") in TERMINAL else None

    status = wait_for(terminal, 180, "the FFmpegJob to finish", node)
    assert status["phase"] == "Succeeded", status
    head = s3.head_object(Bucket=stack.env["S3_BUCKET"], Key=f"files/default/{dir_id}/thumb.jpg")
    assert head["ContentLength"] > 0
    _assert_ran_in(node, f"{PREFIX}/worker-gpu:{TAG}", stack_env, ns)


def _assert_ran_in(node: RuncNode, image: str, env: dict[str, str], ns: str) -> None:
    """A worker pod ran to exit 0 from `image` under the Job's securityContext, and the Job's
    command is the image's own entrypoint (no init process is skipped by overriding it)."""
    ran = [n for n, rp in node.pods.items() if rp.image.ref == image and node.exits.get(n) == 0]
    assert ran, f"no worker pod ran from {image}: exits {node.exits}, errors {node.errors}"
    rp = node.pods[ran[-1]]
    c = rp.pod["spec"]["containers"][0]
    assert c["command"] == rp.image.config["Entrypoint"] == ["ffmpeg-worker"]
    spec = json.loads((rp.root / "bundle" / "config.json").read_text())
    assert spec["root"]["readonly"] is True and spec["process"]["noNewPrivileges"] is True
    assert spec["process"]["user"] == {"uid": NONROOT_UID, "gid": NONROOT_UID, "additionalGids": [NONROOT_UID]}
    assert spec["process"]["capabilities"]["bounding"] == [] and "seccomp" in spec["linux"]
    assert any(m["destination"] == "/scratch" and m["type"] == "bind" for m in spec["mounts"])
    assert any(m["destination"] == "/var/run/secrets/kubernetes.io/serviceaccount" for m in spec["mounts"])
    job = json.loads(run(env, "kubectl", "-n", ns, "get", "jobs", "-o", "json"))["items"]
    assert any(j["metadata"]["name"] == rp.pod["metadata"]["labels"].get("job-name") for j in job)


def _exists(env: dict[str, str], ns: str, kind: str, name: str) -> bool:
    return subprocess.run(["kubectl", "-n", ns, "get", kind, name], env=env, capture_output=True).returncode == 0


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None


def _video(tmp_path: Path) -> Path:
    src = tmp_path / "in.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
                    "-t", "2", "-c:v", "libx264", str(src)], check=True, timeout=60)
    return src


def test_the_worker_image_stops_on_sigterm_as_pid_1(node: RuncNode, release: tuple[str, dict[str, Any]],
                                                    stack_env: dict[str, str], stack: StackInfo, s3: Any,
                                                    tmp_path: Path) -> None:
    """No init process in the image: the worker is PID 1 and must still act on SIGTERM (a pod's
    deletion, an eviction): FFmpeg stopped, exit 143 within the grace period, and the job,
    disrupted rather than failed, gets a new pod."""
    ns = release[0]
    dir_id = f"dir_{uuid.uuid4().hex[:8]}"
    s3.upload_file(str(_video(tmp_path)), stack.env["S3_BUCKET"], f"files/default/{dir_id}/in.mp4")
    job = {
        "apiVersion": "kubeffmpeg.io/v1alpha1", "kind": "FFmpegJob",
        "metadata": {"name": "sigterm", "namespace": ns},
        "spec": {"tenant": "default", "machine": "cpu",
                 "inputs": [{"name": "in.mp4", "source": f"{dir_id}/in.mp4"}],
                 "outputs": [{"name": "out.mp4"}],
                 # Read at the input's own rate, looped: five minutes of FFmpeg at little CPU.
                 "commands": ["-re -stream_loop -1 -i {{in.mp4}} -t 300 -c:v libx264 -preset ultrafast {{out.mp4}}"],
                 "output": {"dirId": dir_id}, "timeoutSeconds": 600, "backoffLimit": 0},
    }
    run(stack_env, "kubectl", "apply", "-f", "-", stdin=json.dumps(job))

    def ffj() -> dict[str, Any]:
        obj = json.loads(run(stack_env, "kubectl", "-n", ns, "get", "ffj", "sigterm", "-o", "json"))
        return obj.get("status") or {}

    wait_for(lambda: (ffj().get("progress") or {}).get("step"), 120, "FFmpeg to run in the worker image", node)
    name = next(n for n, rp in node.pods.items() if n not in node.exits and
                rp.pod["metadata"].get("annotations", {}).get("kubeffmpeg.io/ffmpegjob-name") == "sigterm")
    rp = node.pods[name]
    t0 = time.monotonic()
    rp.stop(grace=20)  # SIGTERM to the container's PID 1, SIGKILL only after 20 s
    assert rp.proc is not None and rp.proc.returncode == 143, report(node)
    assert time.monotonic() - t0 < 10
    # Exit 143 is a disruption, not a failure (the Job's podFailurePolicy ignores it): the job
    # gets a new pod instead of failing. Then it is cancelled, and ends Cancelled.
    def replacement() -> bool:
        return any(n != name and p.pod["metadata"].get("annotations", {}).get("kubeffmpeg.io/ffmpegjob-name")
                   == "sigterm" for n, p in node.pods.items())

    wait_for(replacement, 90, "a replacement pod for the terminated one", node)
    assert ffj().get("phase") not in ("Failed", "Succeeded"), ffj()
    run(stack_env, "kubectl", "-n", ns, "patch", "ffj", "sigterm", "--type=merge", "-p", '{"spec":{"cancel":true}}')
    status = wait_for(lambda: ffj() if ffj().get("phase") == "Cancelled" else None, 60,
                      "the FFmpegJob to be cancelled", node)
    assert status["phase"] == "Cancelled", status
