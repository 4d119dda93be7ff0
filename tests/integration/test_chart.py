"""The Helm chart, rendered with the real helm binary: what a platform engineer checks before
installing it (pools, RBAC, secrets, optional extras), and that its settings reach the operator
under the names the operator reads."""

from __future__ import annotations

import base64
import ipaddress
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from devstack.paths import REPO_ROOT, binaries
from ffmpeg_api.keystore import KeyIndex, decode_secret, hash_key
from ffmpeg_api.settings import ApiSettings
from ffmpeg_operator.identity import manifests as identity_manifests
from ffmpeg_operator.jobs import child_labels
from ffmpeg_operator.settings import OperatorSettings
from ffmpegjob_model.grants import Grants
from ffmpegjob_model.model import FFmpegJobSpec
from ffmpegjob_model.pools import POOLS_KEY, parse_pools
from ffmpegjob_model.settings import S3Settings

CHART = REPO_ROOT / "charts" / "kubeffmpeg"
Doc = dict[str, Any]
S3_ENV = {"S3_ENDPOINT_URL", "S3_PUBLIC_ENDPOINT_URL", "S3_BUCKET", "S3_REGION"}


@pytest.fixture(scope="module")
def helm() -> str:
    return str(binaries().helm / "helm")


def run_helm(helm: str, *args: str, values: Doc | None = None,
             tmp: Path | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [helm, *args]
    if values is not None:
        assert tmp is not None
        f = tmp / "values.yaml"
        f.write_text(yaml.safe_dump(values))
        cmd += ["-f", str(f)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def render(helm: str, tmp_path: Path, values: Doc | None = None, *sets: str) -> list[Doc]:
    args = ["template", "rel", str(CHART), "-n", "media"]
    for s in sets:
        args += ["--set", s]
    out = run_helm(helm, *args, values=values or {}, tmp=tmp_path)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def render_fails(helm: str, tmp_path: Path, values: Doc) -> str:
    out = run_helm(helm, "template", "rel", str(CHART), values=values, tmp=tmp_path)
    assert out.returncode != 0, "rendering should have been refused"
    return out.stderr


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def kinds(docs: list[Doc]) -> set[str]:
    return {d["kind"] for d in docs}


def container(deploy: Doc) -> Doc:
    return dict(deploy["spec"]["template"]["spec"]["containers"][0])


def plain_env(c: Doc) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}


def rules(role: Doc) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs, merged over the rules."""
    out: dict[tuple[str, str], set[str]] = {}
    for r in role["rules"]:
        for g in r["apiGroups"]:
            for res in r["resources"]:
                out.setdefault((g, res), set()).update(r["verbs"])
    return out


# ------------------------------------------------------------------------------- basics
def test_helm_lint_strict(helm: str) -> None:
    out = subprocess.run([helm, "lint", "--strict", str(CHART)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("file", ["ffmpegjobs.yaml", "ffmpegjobtemplates.yaml"])
def test_chart_crd_is_the_generated_crd(file: str) -> None:
    chart_crd = CHART / "crds" / file
    assert chart_crd.read_text() == (REPO_ROOT / "crds" / file).read_text(), \
        f"charts/kubeffmpeg/crds/{file} is stale: run `make crds`"


def test_presets_ship_by_default_and_are_values_driven(helm: str, tmp_path: Path) -> None:
    """The shipped FFmpegJobTemplates (docs/presets.md) render from presets/<name>.yaml, each a
    usable template; `presets.shipped` picks them, `presets.extra` adds one, `enabled` drops all."""
    from ffmpegjob_model.templates import read_template

    docs = [d for d in render(helm, tmp_path) if d["kind"] == "FFmpegJobTemplate"]
    assert sorted(d["metadata"]["name"] for d in docs) == sorted(p.stem for p in (CHART / "presets").glob("*.yaml"))
    for d in docs:
        assert d["metadata"]["namespace"] == "media"
        shipped = yaml.safe_load((CHART / "presets" / f"{d['metadata']['name']}.yaml").read_text())
        assert d["spec"] == shipped["spec"]
        read_template(d)
    extra = {"outputs": [{"name": "o.wav"}], "commands": ["-f lavfi -i sine=d=1 {{o.wav}}"]}
    docs = render(helm, tmp_path, {"presets": {"shipped": ["h264-720p"], "extra": {"beep": extra}}})
    assert {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "FFmpegJobTemplate"}.keys() \
        == {"h264-720p", "beep"}
    assert not [d for d in render(helm, tmp_path, {"presets": {"enabled": False}}) if d["kind"] == "FFmpegJobTemplate"]
    assert "presets" in render_fails(helm, tmp_path, {"presets": {"shipped": ["nope"]}})


def test_operator_reads_templates_and_api_lists_them(helm: str, tmp_path: Path) -> None:
    roles = {d["metadata"]["name"]: d for d in render(helm, tmp_path) if d["kind"] == "Role"}
    def verbs(role: str) -> set[str]:
        return {v for r in roles[role]["rules"] if "ffmpegjobtemplates" in r.get("resources", []) for v in r["verbs"]}
    assert verbs("rel-kubeffmpeg-operator") == {"get"}
    assert verbs("rel-kubeffmpeg-api") == {"get", "list"}


def test_default_render_has_the_whole_install(helm: str, tmp_path: Path) -> None:
    docs = render(helm, tmp_path)
    assert {"Deployment", "Service", "ConfigMap", "Secret", "ServiceAccount", "Role", "RoleBinding"} <= kinds(docs)
    # Off unless asked for; the NetworkPolicies are on by default.
    assert not kinds(docs) & {"PodDisruptionBudget", "ServiceMonitor", "Ingress"}
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "NetworkPolicy"} == {
        "rel-kubeffmpeg-worker", "rel-kubeffmpeg-api", "rel-kubeffmpeg-operator"}
    cluster_scoped = [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    assert all(d["metadata"].get("namespace") == "media" for d in docs if d not in cluster_scoped)
    # The only cluster-wide right is kopf's read-only discovery of CRDs and namespaces.
    cr = one(docs, "ClusterRole")
    assert rules(cr) == {("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
                         ("", "namespaces"): {"list", "watch"}}
    # Named after the namespace too: two releases of the same name in two namespaces do not clash.
    assert cr["metadata"]["name"].endswith("-media")


def test_deployments_are_non_root_with_read_only_root(helm: str, tmp_path: Path) -> None:
    docs = render(helm, tmp_path)
    for name, command in (("rel-kubeffmpeg-operator", ["ffmpeg-operator"]), ("rel-kubeffmpeg-api", ["ffmpeg-api"])):
        d = one(docs, "Deployment", name)
        pod = d["spec"]["template"]["spec"]
        c = container(d)
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        # Explicit command: runtimes that cannot read an image's entrypoint still start it.
        assert c["command"] == command
        assert c["image"] == f"ghcr.io/kubeffmpeg/{name.rsplit('-', 1)[1]}:0.1.0"
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]


# ------------------------------------------------------------------------------- pools
def pools_of(docs: list[Doc]) -> Doc:
    cm = one(docs, "ConfigMap", "rel-kubeffmpeg-pools")
    return dict(yaml.safe_load(cm["data"][POOLS_KEY]))


def test_default_pools_are_cpu_and_gpu_and_parse_as_the_operator_does(helm: str, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, {"image": {"tag": "9.9.9"}, "s3": {"endpoint": "http://minio.minio:9000"}})
    cm = one(docs, "ConfigMap", "rel-kubeffmpeg-pools")
    pools = parse_pools(cm["data"][POOLS_KEY])  # the operator's own parser; extra keys are refused there
    assert set(pools) == {"cpu", "gpu"}
    gpu, cpu = pools["gpu"], pools["cpu"]
    assert str(gpu.resources["limits"]["nvidia.com/gpu"]) == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in gpu.tolerations
    assert gpu.node_selector == {"kubeffmpeg.io/pool": "gpu"}
    assert cpu.node_selector == {"kubeffmpeg.io/pool": "cpu"} and "nvidia.com/gpu" not in str(cpu.resources)
    assert cpu.image == "ghcr.io/kubeffmpeg/worker:9.9.9"
    assert gpu.image == "ghcr.io/kubeffmpeg/worker-gpu:9.9.9"
    # Workers get the non-secret S3 settings from their pool, and never credentials.
    assert cpu.env["S3_ENDPOINT_URL"] == "http://minio.minio:9000" and cpu.env["S3_BUCKET"] == "ffmpeg"
    assert not [k for p in pools.values() for k in p.env if k.startswith("AWS_")]
    assert cpu.runtime_class_name is None  # the cluster's default runtime unless asked


def test_runtime_class_for_a_sandbox_around_ffmpeg(helm: str, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, {"worker": {"runtimeClassName": "gvisor"},
                                   "pools": {"gpu": {"runtimeClassName": "kata"}}})
    pools = parse_pools(one(docs, "ConfigMap", "rel-kubeffmpeg-pools")["data"][POOLS_KEY])
    assert pools["cpu"].runtime_class_name == "gvisor" and pools["gpu"].runtime_class_name == "kata"


def test_adding_a_pool_is_values_only(helm: str, tmp_path: Path) -> None:
    big = {
        "image": "registry.example.com/ffmpeg/worker-av1:2",
        "nodeSelector": {"node.kubernetes.io/instance-type": "c7i.8xlarge"},
        "resources": {"requests": {"cpu": "16", "memory": "16Gi"}},
        "ephemeralStorage": "200Gi",
        "maxTimeoutSeconds": 3600,
        "env": {"FFMPEG_THREADS": 16},
    }
    docs = render(helm, tmp_path, {"pools": {"cpu-large": big}})
    pools = parse_pools(one(docs, "ConfigMap", "rel-kubeffmpeg-pools")["data"][POOLS_KEY])
    assert set(pools) == {"cpu", "gpu", "cpu-large"}
    p = pools["cpu-large"]
    assert p.image == big["image"] and p.ephemeral_storage == "200Gi" and p.max_timeout_seconds == 3600
    assert p.env["FFMPEG_THREADS"] == "16"  # env values are strings, as pod env needs
    assert pools["cpu"].ephemeral_storage == "10Gi"  # worker.ephemeralStorage default


def test_a_default_pool_can_be_removed_but_not_all(helm: str, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, None, "pools.gpu=null")
    assert set(pools_of(docs)) == {"cpu"}
    # Helm drops null keys before the schema check, which then finds no pool at all.
    assert "'/pools': minProperties" in render_fails(helm, tmp_path, {"pools": {"cpu": None, "gpu": None}})


def test_schema_refuses_bad_pools_and_values(helm: str, tmp_path: Path) -> None:
    assert "gpuCount" in render_fails(helm, tmp_path, {"pools": {"gpu": {"gpuCount": 1}}})
    assert "Bad_Pool" in render_fails(helm, tmp_path, {"pools": {"Bad_Pool": {"image": "x"}}})
    assert "replicas" in render_fails(helm, tmp_path, {"operator": {"replicas": "two"}})
    assert "endpoint" in render_fails(helm, tmp_path, {"s3": {"endpoint": "minio:9000"}})


# ------------------------------------------------------------------------------- settings contract
def operator_settings(docs: list[Doc], monkeypatch: pytest.MonkeyPatch) -> tuple[OperatorSettings, S3Settings]:
    """Read the rendered operator env the way the operator process will."""
    c = container(one(docs, "Deployment", "rel-kubeffmpeg-operator"))
    for k, v in plain_env(c).items():
        monkeypatch.setenv(k, v)
    return OperatorSettings(), S3Settings()


def test_operator_reads_the_chart_objects_by_their_rendered_names(
        helm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render(helm, tmp_path, {
        "s3": {"endpoint": "http://minio:9000", "publicEndpoint": "https://s3.example.com", "bucket": "media"},
        "operator": {"urlAllowHosts": ["hooks.internal", "10.1.2.3"], "urlAllowHttp": True,
                     "metrics": {"port": 9100}},
    })
    s, s3 = operator_settings(docs, monkeypatch)
    one(docs, "ConfigMap", s.pools_configmap)
    assert (s.grant_multipart_parts, s.grant_queue_seconds) == (16, 86400)
    assert s.watched_namespace() == "media" and s.leader_election is True
    assert s.url_allow_hosts == "hooks.internal,10.1.2.3" and s.url_allow_http is True
    assert s.metrics_port == 9100
    assert (s3.endpoint_url, s3.public_endpoint, s3.bucket) == ("http://minio:9000", "https://s3.example.com", "media")
    # Every variable the chart sets is one the operator (or the shared S3 settings) reads.
    known = {n.upper() for n in OperatorSettings.model_fields} | S3_ENV | {"POD_NAME", "LOG_LEVEL", "TMPDIR"}
    c = container(one(docs, "Deployment", "rel-kubeffmpeg-operator"))
    assert {e["name"] for e in c["env"]} <= known


def test_operator_liveness_probe_on_every_replica(helm: str, tmp_path: Path) -> None:
    # A standby waiting on the Lease answers /healthz too (ffmpeg_operator.standby).
    ha = container(one(render(helm, tmp_path), "Deployment", "rel-kubeffmpeg-operator"))
    assert ha["livenessProbe"]["httpGet"]["path"] == "/healthz"
    off = container(one(render(helm, tmp_path, {"operator": {"livenessPort": 0}}), "Deployment",
                        "rel-kubeffmpeg-operator"))
    assert "livenessProbe" not in off


# ------------------------------------------------------------------------------- RBAC
def roles(docs: list[Doc]) -> dict[str, dict[tuple[str, str], set[str]]]:
    return {d["metadata"]["name"]: rules(d) for d in docs if d["kind"] == "Role"}


def test_workers_get_no_rights_from_the_chart_and_the_operator_can_grant_each_job_its_own(
        helm: str, tmp_path: Path) -> None:
    docs = render(helm, tmp_path)
    assert set(roles(docs)) == {"rel-kubeffmpeg-operator", "rel-kubeffmpeg-api"}
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"} == {
        "rel-kubeffmpeg-operator", "rel-kubeffmpeg-api"}
    # RBAC escalation: a Role may grant only what its creator holds. The per-job Role's rules
    # are a subset of the operator's (no escalate or bind verb is needed).
    grants = Grants.model_validate({"expires_at": "2030-01-01T00:00:00Z"})
    job_role = identity_manifests("ffj-u", "clip", "media", {}, {}, grants)["Role"]
    assert rules(job_role) == {("kubeffmpeg.io", "ffmpegjobs"): {"get"},
                               ("kubeffmpeg.io", "ffmpegjobs/status"): {"get", "patch"}}
    op = roles(docs)["rel-kubeffmpeg-operator"]
    assert all(verbs <= op[res] for res, verbs in rules(job_role).items())


def test_operator_rbac_is_least_privilege(helm: str, tmp_path: Path) -> None:
    docs = render(helm, tmp_path)
    r = roles(docs)["rel-kubeffmpeg-operator"]
    assert r[("kubeffmpeg.io", "ffmpegjobs")] >= {"get", "list", "watch", "patch"}
    assert r[("kubeffmpeg.io", "ffmpegjobs/status")] >= {"patch"}
    assert r[("batch", "jobs")] >= {"create", "list", "watch", "delete"}
    assert r[("", "pods")] == {"get", "list", "watch"}  # read only
    assert r[("", "events")] >= {"create"}
    # Webhook secrets are read; each job's grants Secret, ServiceAccount, Role and RoleBinding
    # are created before its Job and deleted when it ends.
    assert r[("", "secrets")] == {"get", "create", "delete", "patch"} and r[("", "configmaps")] == {"get"}
    assert r[("", "serviceaccounts")] == {"create", "delete"}
    assert r[("rbac.authorization.k8s.io", "roles")] == {"create", "delete"}
    assert r[("rbac.authorization.k8s.io", "rolebindings")] == {"create", "delete"}
    assert not any({"escalate", "bind", "impersonate"} & verbs for verbs in r.values())
    # patch only on the tenants' webhook signing secrets (one is added on a tenant's first webhook)
    role = one(docs, "Role", "rel-kubeffmpeg-operator")
    patchable = [n for rule in role["rules"] if "secrets" in rule["resources"] and "patch" in rule["verbs"]
                 for n in rule.get("resourceNames", ["*"])]
    assert patchable == ["rel-kubeffmpeg-webhook-secrets"]
    assert ("coordination.k8s.io", "leases") in r
    assert not any("*" in verbs or "*" in res for (_, res), verbs in r.items())
    role = one(docs, "Role", "rel-kubeffmpeg-operator")
    cm_rule = next(x for x in role["rules"] if "configmaps" in x["resources"])
    assert cm_rule["resourceNames"] == ["rel-kubeffmpeg-pools"]
    no_le = roles(render(helm, tmp_path, {"operator": {"leaderElection": {"enabled": False}}}))
    assert ("coordination.k8s.io", "leases") not in no_le["rel-kubeffmpeg-operator"]


def test_a_warm_pool_reaches_the_configmap_and_adds_only_the_rights_it_needs(helm: str, tmp_path: Path) -> None:
    """Warm pools are off by default (the operator's pods stay read-only, above); a pool with
    `warm.replicas` > 0 lets the operator start, claim and delete its warm pods and give tokens
    (docs/warm-pools.md), and reaches the pools ConfigMap as the operator parses it."""
    values = {"pools": {"cpu": {"warm": {"replicas": 2, "maxJobsPerPod": 5}}}}
    docs = render(helm, tmp_path, values)
    pools = parse_pools(one(docs, "ConfigMap", "rel-kubeffmpeg-pools")["data"][POOLS_KEY])
    warm = pools["cpu"].warm
    assert warm is not None and (warm.replicas, warm.max_jobs_per_pod) == (2, 5)
    assert pools["gpu"].warm is None
    r = roles(docs)["rel-kubeffmpeg-operator"]
    assert r[("", "pods")] == {"get", "list", "watch", "create", "patch", "delete"}
    assert r[("", "serviceaccounts/token")] == {"create"}
    assert {"list", "watch"} <= r[("", "secrets")]
    off = roles(render(helm, tmp_path, {"pools": {"cpu": {"warm": {"replicas": 0}}}}))["rel-kubeffmpeg-operator"]
    assert off[("", "pods")] == {"get", "list", "watch"} and ("", "serviceaccounts/token") not in off
    assert "warm" in render_fails(helm, tmp_path, {"pools": {"cpu": {"warm": {"replicas": -1}}}})


def test_api_rbac_touches_ffmpegjobs_not_jobs_or_pods(helm: str, tmp_path: Path) -> None:
    docs = render(helm, tmp_path)
    r = roles(docs)["rel-kubeffmpeg-api"]
    assert r[("kubeffmpeg.io", "ffmpegjobs")] == {"create", "get", "list", "watch", "patch", "delete"}
    assert ("batch", "jobs") not in r and ("", "pods") not in r
    assert ("kubeffmpeg.io", "ffmpegjobs/status") not in r  # status is the operator's and the worker's
    role = one(docs, "Role", "rel-kubeffmpeg-api")
    for rule in role["rules"]:
        if {"secrets", "configmaps"} & set(rule["resources"]):
            assert rule.get("resourceNames"), f"API rule on {rule['resources']} is not limited by name"
    # Each component runs under its own service account.
    for comp in ("operator", "api"):
        pod = one(docs, "Deployment", f"rel-kubeffmpeg-{comp}")["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == f"rel-kubeffmpeg-{comp}"


# ------------------------------------------------------------------------------- secrets
def env_from_secrets(deploy: Doc) -> list[str]:
    return [e["secretRef"]["name"] for e in container(deploy).get("envFrom", [])]


def test_s3_credentials_secret_created_from_values(helm: str, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, {"s3": {"accessKey": "AKIA123", "secretKey": "s3cr3t"}})
    secret = one(docs, "Secret", "rel-kubeffmpeg-s3")
    assert secret["stringData"] == {"AWS_ACCESS_KEY_ID": "AKIA123", "AWS_SECRET_ACCESS_KEY": "s3cr3t"}
    for comp in ("operator", "api"):
        assert env_from_secrets(one(docs, "Deployment", f"rel-kubeffmpeg-{comp}")) == ["rel-kubeffmpeg-s3"]
    assert "secretKey" in render_fails(helm, tmp_path, {"s3": {"accessKey": "AKIA123"}})


def test_s3_existing_secret_is_used_and_not_created(helm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render(helm, tmp_path, {"s3": {"existingSecret": "my-s3", "accessKey": "ignored", "secretKey": "x"}})
    assert not [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-s3")]
    assert "ignored" not in json.dumps(docs)
    for comp in ("operator", "api"):
        assert env_from_secrets(one(docs, "Deployment", f"rel-kubeffmpeg-{comp}")) == ["my-s3"]
    # Worker pods never get the S3 Secret (they get presigned URLs from the operator).
    assert "my-s3" not in json.dumps(one(docs, "ConfigMap", "rel-kubeffmpeg-pools"))


def b64(secret: Doc) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_bootstrap_api_key_is_stored_hashed_where_the_api_looks(
        helm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    acme_hash = hash_key("kff_acme-key")
    docs = render(helm, tmp_path, {"api": {"keys": {"tenants": {"acme": {"keys": [acme_hash],
                                                                            "quota": {"max_active_jobs": 3}}}}}})
    plain = b64(one(docs, "Secret", "rel-kubeffmpeg-bootstrap-key"))["api-key"]
    assert plain.startswith("kff_") and len(plain) > 40
    store = one(docs, "Secret", "rel-kubeffmpeg-api-keys")
    assert plain not in json.dumps(b64(store)), "the key store must hold hashes only"
    # The API's own parser finds both tenants and maps each key to its tenant.
    index = KeyIndex(decode_secret(store["data"]))
    assert index.lookup(f"Bearer {plain}") == "default"
    assert index.lookup("Bearer kff_acme-key") == "acme"
    assert index.tenants["acme"].quota.max_active_jobs == 3
    # The API reads the store under the name the chart gave it, and may read nothing else.
    api = container(one(docs, "Deployment", "rel-kubeffmpeg-api"))
    for k, v in plain_env(api).items():
        monkeypatch.setenv(k, v)
    settings = ApiSettings()
    assert settings.api_keys_secret == "rel-kubeffmpeg-api-keys"
    assert (settings.ffmpeg_namespace, settings.pools_configmap) == ("media", "rel-kubeffmpeg-pools")
    assert settings.api_port == 8000 and settings.import_max_bytes == 5 * 1024**3
    api_role = one(docs, "Role", "rel-kubeffmpeg-api")
    names = [n for rule in api_role["rules"] if "secrets" in rule["resources"] for n in rule["resourceNames"]]
    assert names == ["rel-kubeffmpeg-api-keys", "rel-kubeffmpeg-webhook-secrets"]
    # Every variable the chart sets is one the API (or the shared settings) reads.
    known = {n.upper() for n in ApiSettings.model_fields} | S3_ENV | {"URL_ALLOW_HOSTS", "URL_ALLOW_HTTP",
                                                                        "LOG_LEVEL", "TMPDIR"}
    assert {e["name"] for e in api["env"]} <= known
    # Random per install: two renders never share a key.
    assert b64(one(render(helm, tmp_path), "Secret", "rel-kubeffmpeg-bootstrap-key"))["api-key"] != plain


def test_api_keys_existing_secret(helm: str, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, {"api": {"keys": {"existingSecret": "my-keys"}}})
    assert not [d for d in docs if d["kind"] == "Secret" and "-key" in d["metadata"]["name"]]
    env = {e["name"]: e.get("value") for e in container(one(docs, "Deployment", "rel-kubeffmpeg-api"))["env"]}
    assert env["API_KEYS_SECRET"] == "my-keys"
    api_role = one(docs, "Role", "rel-kubeffmpeg-api")
    assert [n for rule in api_role["rules"] if "secrets" in rule["resources"] for n in rule["resourceNames"]] \
        == ["my-keys", "rel-kubeffmpeg-webhook-secrets"]
    assert "keys" in render_fails(helm, tmp_path, {"api": {"keys": {"tenants": {"acme": {"keys": ["not-a-hash"]}}}}})


def test_webhook_schedule_rate_limits_and_signing_secrets_reach_the_components(
        helm: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render(helm, tmp_path, {
        "operator": {"webhook": {"maxAttempts": 20, "backoffInitialSeconds": 30, "backoffFactor": 3,
                                 "backoffMaxSeconds": 7200, "backoffJitter": 0}},
        "api": {"rateLimit": {"requestsPerSecond": 2.5, "burst": 5},
                "ffprobe": {"maxConcurrent": 2, "maxQueue": 3, "queueTimeoutSeconds": 9}},
    })
    s, _ = operator_settings(docs, monkeypatch)
    assert (s.webhook_max_attempts, s.webhook_backoff_initial, s.webhook_backoff_factor, s.webhook_backoff_max,
            s.webhook_backoff_jitter) == (20, 30, 3, 7200, 0)
    for k, v in plain_env(container(one(docs, "Deployment", "rel-kubeffmpeg-api"))).items():
        monkeypatch.setenv(k, v)
    a = ApiSettings()
    assert (a.rate_limit_requests_per_second, a.rate_limit_burst) == (2.5, 5)
    assert (a.ffprobe_max_concurrent, a.ffprobe_max_queue, a.ffprobe_queue_timeout_seconds) == (2, 3, 9)
    # Both components use the one Secret the chart creates; the bootstrap tenant has a secret in it.
    assert a.webhook_secrets_secret == s.webhook_secrets_secret == "rel-kubeffmpeg-webhook-secrets"
    assert b64(one(docs, "Secret", s.webhook_secrets_secret))["default"].startswith("whsec_")
    # The defaults publish the documented schedule: 16 attempts over more than 24 hours.
    d, _ = operator_settings(render(helm, tmp_path), monkeypatch)
    assert d.webhook_max_attempts == 16 and d.webhook_backoff_max == 4 * 3600
    assert "rate_limit" in render_fails(helm, tmp_path, {"api": {"keys": {"tenants": {"acme": {
        "keys": [hash_key("k")], "rate_limit": {"requests_per_second": -1}}}}}})


# ------------------------------------------------------------------------------- optional extras
def reachable(np: Doc, ip: str, port: int) -> bool:
    """Whether an egress rule of `np` lets a worker connect to ip:port (ipBlock peers only)."""
    addr = ipaddress.ip_address(ip)
    for rule in np["spec"]["egress"]:
        if port not in [p["port"] for p in rule.get("ports", [])]:
            continue
        for peer in rule["to"]:
            block = peer.get("ipBlock")
            if block and addr in ipaddress.ip_network(block["cidr"]) and not any(
                    addr in ipaddress.ip_network(x) for x in block.get("except", [])):
                return True
    return False


def test_network_policy_confines_worker_pods(helm: str, tmp_path: Path) -> None:
    values = {"networkPolicy": {"apiServer": {"cidrs": ["172.20.0.10/32"], "ports": [443]},
                                "s3": {"cidrs": ["10.20.0.0/16"], "ports": [9000]}}}
    docs = render(helm, tmp_path, values)
    np = one(docs, "NetworkPolicy", "rel-kubeffmpeg-worker")
    # The selector matches the labels the operator puts on worker pods.
    labels = child_labels({"uid": "u", "name": "n"}, _spec(), "cpu")
    assert np["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in np["spec"]
    dns = np["spec"]["egress"][0]
    assert dns["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}]
    assert reachable(np, "172.20.0.10", 443)  # the API server, for the job's own identity
    assert reachable(np, "10.20.3.4", 9000)  # the store
    assert reachable(np, "93.184.216.34", 443)  # public HTTPS: URL inputs
    for ip, port in [("169.254.169.254", 80), ("169.254.169.254", 443),  # cloud metadata
                     ("10.96.0.10", 443), ("10.244.1.7", 8000),  # service and pod ranges
                     ("172.20.0.10", 10250), ("192.168.1.1", 443), ("93.184.216.34", 80)]:
        assert not reachable(np, ip, port), (ip, port)
    # Widening is values only.
    wide = one(render(helm, tmp_path, {"networkPolicy": {**values["networkPolicy"], "extraEgress": [
        {"to": [{"ipBlock": {"cidr": "10.96.0.0/12"}}], "ports": [{"protocol": "TCP", "port": 8443}]}]}}),
        "NetworkPolicy", "rel-kubeffmpeg-worker")
    assert reachable(wide, "10.96.0.10", 8443)
    assert "NetworkPolicy" not in kinds(render(helm, tmp_path, {"networkPolicy": {"enabled": False}}))


def test_network_policy_without_a_known_api_server_opens_only_its_ports(helm: str, tmp_path: Path) -> None:
    """`helm template` cannot read the cluster's `kubernetes` Endpoints: the API server rule falls
    back to private addresses on the API server's ports; metadata stays out of reach."""
    np = one(render(helm, tmp_path), "NetworkPolicy", "rel-kubeffmpeg-worker")
    assert reachable(np, "10.0.0.1", 6443) and reachable(np, "10.0.0.1", 443)
    assert not reachable(np, "10.244.1.7", 8000) and not reachable(np, "169.254.169.254", 80)
    assert not reachable(np, "169.254.169.254", 443)


def _spec() -> FFmpegJobSpec:
    examples = yaml.safe_load((REPO_ROOT / "examples" / "cpu-job.yaml").read_text())
    return FFmpegJobSpec.model_validate(examples["spec"])


def test_pdb_service_monitor_and_ingress_toggles(helm: str, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, {
        "pdb": {"enabled": True},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
        "api": {"ingress": {"enabled": True, "className": "nginx", "host": "ffmpeg.example.org",
                            "tls": [{"secretName": "t", "hosts": ["ffmpeg.example.org"]}]}},
    })
    pdbs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PodDisruptionBudget"}
    assert set(pdbs) == {"rel-kubeffmpeg-api", "rel-kubeffmpeg-operator"}
    api_pod_labels = one(docs, "Deployment", "rel-kubeffmpeg-api")["spec"]["template"]["metadata"]["labels"]
    assert pdbs["rel-kubeffmpeg-api"]["spec"]["selector"]["matchLabels"].items() <= api_pod_labels.items()
    sm = one(docs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "prom"
    metrics_svc = one(docs, "Service", "rel-kubeffmpeg-operator-metrics")
    assert sm["spec"]["selector"]["matchLabels"].items() <= metrics_svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] == metrics_svc["spec"]["ports"][0]["name"]
    ing = one(docs, "Ingress")
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["rules"][0]["host"] == "ffmpeg.example.org"
    assert ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "rel-kubeffmpeg-api"
    # No metrics port: no metrics Service and no ServiceMonitor to scrape nothing.
    docs = render(helm, tmp_path, {"serviceMonitor": {"enabled": True}, "operator": {"metrics": {"port": 0}}})
    assert "ServiceMonitor" not in kinds(docs)



def test_service_account_annotations_for_cloud_identity(helm: str, tmp_path: Path) -> None:
    arn = "arn:aws:iam::123456789012:role/kubeffmpeg"
    docs = render(helm, tmp_path, {"serviceAccounts": {"annotations": {"eks.amazonaws.com/role-arn": arn}}})
    sas = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert len(sas) == 2  # operator, api; never the per-job worker identities
    assert all(sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == arn for sa in sas)


def test_kueue_is_off_by_default_and_renders_the_mapping_when_enabled(helm: str, tmp_path: Path) -> None:
    docs = render(helm, tmp_path)
    assert not [d for d in docs if d["apiVersion"].startswith("kueue.x-k8s.io/")]
    assert ("kueue.x-k8s.io", "localqueues") not in roles(docs)["rel-kubeffmpeg-operator"]
    docs = render(helm, tmp_path, {"kueue": {"enabled": True}})
    flavors = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ResourceFlavor"}
    queues = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterQueue"}
    classes = {d["metadata"]["name"]: d["value"] for d in docs if d["kind"] == "WorkloadPriorityClass"}
    assert flavors["gpu"]["spec"]["nodeLabels"] == {"kubeffmpeg.io/pool": "gpu"}
    assert set(queues) == {"kubeffmpeg-cpu", "kubeffmpeg-gpu"}
    gpu = queues["kubeffmpeg-gpu"]["spec"]
    assert {q["spec"]["cohort"] for q in queues.values()} == {"kubeffmpeg"}
    assert gpu["admissionScope"] == {"admissionMode": "UsageBasedAdmissionFairSharing"}
    assert gpu["resourceGroups"][0]["coveredResources"] == ["cpu", "memory", "nvidia.com/gpu"]
    quota = {r["name"]: r["nominalQuota"] for r in gpu["resourceGroups"][0]["flavors"][0]["resources"]}
    assert quota == {"cpu": "32", "memory": "128Gi", "nvidia.com/gpu": "4"}
    assert classes == {"low": 100, "normal": 1000, "high": 10000}
    r = roles(docs)["rel-kubeffmpeg-operator"]
    assert r[("kueue.x-k8s.io", "localqueues")] == {"get", "list", "watch", "create", "delete"}
    assert r[("kueue.x-k8s.io", "workloads")] == {"get", "list", "watch", "patch"}
    env = {e["name"]: e.get("value") for d in docs if d["kind"] == "Deployment"
           for c in d["spec"]["template"]["spec"]["containers"] for e in c.get("env") or []}
    assert env["KUEUE_ENABLED"] == "true" and env["QUOTA_MAX_QUEUED_JOBS"] == "1000"
    # The operator and the API read those settings under these names; the pools name their queues.
    assert OperatorSettings.model_fields["kueue_enabled"] and ApiSettings.model_fields["quota_max_queued_jobs"]
    pools = parse_pools(one(docs, "ConfigMap", "rel-kubeffmpeg-pools")["data"][POOLS_KEY])
    assert pools["cpu"].cluster_queue == "kubeffmpeg-cpu" and pools["gpu"].cluster_queue == "kubeffmpeg-gpu"
    plain = parse_pools(one(render(helm, tmp_path), "ConfigMap", "rel-kubeffmpeg-pools")["data"][POOLS_KEY])
    assert plain["cpu"].cluster_queue is None
    no_fair = render(helm, tmp_path, {"kueue": {"enabled": True, "fairSharing": False}})
    assert all("admissionScope" not in d["spec"] for d in no_fair if d["kind"] == "ClusterQueue")
