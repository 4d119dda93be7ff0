"""The Helm chart against the local control plane: `helm install` into a fresh namespace, the
operator it installs running a real FFmpegJob on the process nodes, the rendered manifests
accepted by `kubectl apply --dry-run=server`, `helm upgrade` with a changed value, and a clean
`helm uninstall`."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from devstack.paths import REPO_ROOT, binaries
from devstack.stack import StackInfo
from ffmpegjob_model.model import TERMINAL
from helpers import free_port, wait_for

pytestmark = pytest.mark.stack

CHART = REPO_ROOT / "charts" / "kubeffmpeg"
RELEASE = "kff"
INSTANCE = f"app.kubernetes.io/instance={RELEASE}"


def run(env: dict[str, str], *cmd: str, stdin: str | None = None, timeout: int = 120) -> str:
    out = subprocess.run(list(cmd), input=stdin, capture_output=True, text=True, env=env, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd[:3])}: {out.stdout}\n{out.stderr}"
    return out.stdout


def kubectl_json(env: dict[str, str], *args: str) -> Any:
    return json.loads(run(env, "kubectl", *args, "-o", "json"))


@pytest.fixture(scope="module")
def helm() -> str:
    return str(binaries().helm / "helm")


@pytest.fixture(scope="module")
def values(stack: StackInfo, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    e = stack.env
    # Pods on process nodes share the host's network: every port must be free here.
    v: dict[str, Any] = {
        "operator": {"replicas": 1, "livenessPort": free_port(), "metrics": {"port": free_port()},
                     "urlAllowHosts": ["127.0.0.1", "localhost"], "urlAllowHttp": True},
        "api": {"replicas": 1, "port": free_port()},
        "s3": {"endpoint": e["S3_ENDPOINT_URL"], "bucket": e["S3_BUCKET"], "region": e["S3_REGION"],
               "accessKey": e["AWS_ACCESS_KEY_ID"], "secretKey": e["AWS_SECRET_ACCESS_KEY"]},
    }
    path = tmp_path_factory.mktemp("chart") / "values.yaml"
    path.write_text(yaml.safe_dump(v))
    return path, v


@pytest.fixture(scope="module")
def release(stack_env: dict[str, str], helm: str, values: tuple[Path, dict[str, Any]]) -> Iterator[str]:
    ns = f"chart-{uuid.uuid4().hex[:6]}"
    out = run(stack_env, helm, "install", RELEASE, str(CHART), "-n", ns, "--create-namespace",
              "-f", str(values[0]), "--wait", "--timeout", "90s")
    assert "STATUS: deployed" in out
    # NOTES.txt: the next steps name this release's objects.
    assert f"rollout status deploy/{RELEASE}-kubeffmpeg-operator" in out
    assert f"secret {RELEASE}-kubeffmpeg-bootstrap-key" in out
    yield ns
    # FFmpegJobs carry the operator's finalizer: remove them while the operator still runs.
    subprocess.run(["kubectl", "-n", ns, "delete", "ffj", "--all", "--timeout=60s"], env=stack_env,
                   capture_output=True, timeout=90)
    subprocess.run([helm, "uninstall", RELEASE, "-n", ns, "--wait"], env=stack_env, capture_output=True, timeout=120)
    subprocess.run(["kubectl", "delete", "ns", ns, "--wait=false"], env=stack_env, capture_output=True, timeout=60)


def test_install_creates_a_working_operator(stack_env: dict[str, str], release: str, s3: Any,
                                            stack: StackInfo, tmp_path: Path) -> None:
    ns = release
    items = kubectl_json(stack_env, "-n", ns, "get", "deploy", "-l", INSTANCE)["items"]
    deploys = {d["metadata"]["name"]: d for d in items}
    assert set(deploys) == {f"{RELEASE}-kubeffmpeg-operator", f"{RELEASE}-kubeffmpeg-api"}
    assert deploys[f"{RELEASE}-kubeffmpeg-operator"]["status"].get("availableReplicas") == 1
    # The operator pod runs for real on a process node and takes the leader Lease.
    lease = wait_for(lambda: _lease_holder(stack_env, ns), 60, "the operator to take its Lease")
    assert lease.startswith(f"{RELEASE}-kubeffmpeg-operator-")

    # A real FFmpegJob through the chart's operator, pools ConfigMap and S3 Secret: with only the
    # chart's RBAC, the operator makes the job's own identity and grants, and the worker pod
    # succeeds with them (no S3 credentials, no rights but on its own FFmpegJob).
    src = tmp_path / "in.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
                    "-t", "2", "-c:v", "libx264", str(src)], check=True, timeout=60)
    dir_id = f"dir_{uuid.uuid4().hex[:8]}"
    s3.upload_file(str(src), stack.env["S3_BUCKET"], f"files/default/{dir_id}/input.mp4")
    job = {
        "apiVersion": "kubeffmpeg.io/v1alpha1", "kind": "FFmpegJob",
        "metadata": {"name": "chart-smoke", "namespace": ns},
        "spec": {"tenant": "default", "machine": "cpu",
                 "inputs": [{"name": "input.mp4", "source": f"{dir_id}/input.mp4"}],
                 "outputs": [{"name": "thumb.jpg"}],
                 "commands": ["-i {{input.mp4}} -ss 1 -frames:v 1 {{thumb.jpg}}"],
                 "output": {"dirId": dir_id}, "timeoutSeconds": 120, "backoffLimit": 0},
    }
    run(stack_env, "kubectl", "apply", "-f", "-", stdin=json.dumps(job))
    status = wait_for(lambda: _terminal(stack_env, ns, "chart-smoke"), 120, "the FFmpegJob to finish")
    assert status["phase"] == "Succeeded", status
    head = s3.head_object(Bucket=stack.env["S3_BUCKET"], Key=f"files/default/{dir_id}/thumb.jpg")
    assert head["ContentLength"] > 0
    pod = kubectl_json(stack_env, "-n", ns, "get", "pods", "-l", "kubeffmpeg.io/ffmpegjob=chart-smoke")["items"][0]
    assert pod["spec"]["serviceAccountName"].startswith("ffj-")
    assert "envFrom" not in pod["spec"]["containers"][0]


def _lease_holder(env: dict[str, str], ns: str) -> str | None:
    out = subprocess.run(["kubectl", "-n", ns, "get", "lease", f"{RELEASE}-kubeffmpeg-operator", "-o",
                          "jsonpath={.spec.holderIdentity}"], env=env, capture_output=True, text=True)
    return out.stdout.strip() or None


def _terminal(env: dict[str, str], ns: str, name: str) -> dict[str, Any] | None:
    status = kubectl_json(env, "-n", ns, "get", "ffj", name).get("status") or {}
    return status if status.get("phase") in TERMINAL else None


def test_api_pod_answers_health(release: str, values: tuple[Path, dict[str, Any]]) -> None:
    port = values[1]["api"]["port"]
    resp = wait_for(lambda: _get(f"http://127.0.0.1:{port}/healthz"), 60, "the API pod")
    assert resp.status_code == 200


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None


def test_rendered_manifests_pass_server_side_dry_run(stack_env: dict[str, str], helm: str, release: str,
                                                     values: tuple[Path, dict[str, Any]]) -> None:
    extras = ["--set", "networkPolicy.enabled=true", "--set", "networkPolicy.apiServer.cidrs={10.0.0.1/32}",
              "--set", "networkPolicy.s3.cidrs={127.0.0.1/32}", "--set", "pdb.enabled=true",
              "--set", "api.ingress.enabled=true"]
    rendered = run(stack_env, helm, "template", "other", str(CHART), "-n", release, "--include-crds",
                   "-f", str(values[0]), *extras)
    out = run(stack_env, "kubectl", "apply", "--dry-run=server", "-n", release, "-f", "-", stdin=rendered)
    for kind in ("deployment.apps", "role.rbac.authorization.k8s.io", "networkpolicy.networking.k8s.io",
                 "poddisruptionbudget.policy", "ingress.networking.k8s.io", "customresourcedefinition"):
        assert kind in out, out
    assert "(server dry run)" in out


def test_kueue_mapping_passes_server_side_dry_run_against_kueue(stack_env: dict[str, str], helm: str, release: str,
                                                              values: tuple[Path, dict[str, Any]]) -> None:
    """The queueing objects (`kueue.enabled`) against the stack's Kueue: its CRDs and its admission
    webhooks (a dry run is still admitted) accept them."""
    rendered = run(stack_env, helm, "template", "other", str(CHART), "-n", release, "-f", str(values[0]),
                   "--set", "kueue.enabled=true", "--set", "kueue.cohort=dry-run",
                   "--set", "kueue.clusterQueuePrefix=dry-run-")
    docs = [d for d in yaml.safe_load_all(rendered) if d and d["apiVersion"].startswith("kueue.x-k8s.io/")]
    assert {d["kind"] for d in docs} == {"ResourceFlavor", "ClusterQueue", "WorkloadPriorityClass"}
    out = run(stack_env, "kubectl", "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(docs))
    for name in ("clusterqueue.kueue.x-k8s.io/dry-run-cpu", "clusterqueue.kueue.x-k8s.io/dry-run-gpu",
                 "workloadpriorityclass.kueue.x-k8s.io/high"):
        assert name in out, out


def test_upgrade_with_a_new_pool_reaches_the_configmap(stack_env: dict[str, str], helm: str, release: str,
                                                       values: tuple[Path, dict[str, Any]]) -> None:
    ns = release
    before = kubectl_json(stack_env, "-n", ns, "get", "secret", f"{RELEASE}-kubeffmpeg-bootstrap-key")["data"]
    out = run(stack_env, helm, "upgrade", RELEASE, str(CHART), "-n", ns, "-f", str(values[0]),
              "--set", "pools.cpu-large.resources.requests.cpu=2",
              "--set", "pools.cpu-large.nodeSelector.kubeffmpeg\\.io/pool=cpu",
              "--wait", "--timeout", "90s")
    assert "STATUS: deployed" in out and "REVISION: 2" in out
    cm = kubectl_json(stack_env, "-n", ns, "get", "cm", f"{RELEASE}-kubeffmpeg-pools")
    pools = yaml.safe_load(cm["data"]["pools.yaml"])
    assert set(pools) == {"cpu", "gpu", "cpu-large"}
    assert pools["cpu-large"]["resources"]["requests"]["cpu"] == 2
    # The bootstrap key survives an upgrade (users have already configured it).
    after = kubectl_json(stack_env, "-n", ns, "get", "secret", f"{RELEASE}-kubeffmpeg-bootstrap-key")["data"]
    assert after == before


def test_uninstall_leaves_nothing_behind(stack_env: dict[str, str], helm: str, release: str) -> None:
    ns = release
    subprocess.run(["kubectl", "-n", ns, "delete", "ffj", "--all", "--timeout=60s"], env=stack_env,
                   capture_output=True, timeout=90)
    run(stack_env, helm, "uninstall", RELEASE, "-n", ns, "--wait", "--timeout", "90s")
    kinds = "deploy,svc,cm,secret,sa,role,rolebinding,networkpolicy,pdb"
    left = kubectl_json(stack_env, "-n", ns, "get", kinds, "-l", INSTANCE)["items"]
    assert left == [], [f"{o['kind']}/{o['metadata']['name']}" for o in left]
    cluster_left = kubectl_json(stack_env, "get", "clusterrole,clusterrolebinding", "-l", INSTANCE)["items"]
    assert [o for o in cluster_left if o["metadata"]["name"].endswith(f"-{ns}")] == []
    # The CRD stays (Helm never deletes crds/): other namespaces' FFmpegJobs are not lost.
    run(stack_env, "kubectl", "get", "crd", "ffmpegjobs.kubeffmpeg.io")
    wait_for(lambda: not kubectl_json(stack_env, "-n", ns, "get", "pods", "-l", INSTANCE)["items"], 60,
             "the chart's pods to go")
