"""The Job manifest built for an FFmpegJob and its pool."""

from __future__ import annotations

from typing import Any

from ffmpeg_operator.jobs import LABEL_UID, build_job, job_name, owned_by, owner_name
from ffmpeg_operator.settings import OperatorSettings
from ffmpegjob_model.grants import GRANTS_FILE_ENV, GRANTS_MOUNT
from ffmpegjob_model.model import FFmpegJobSpec
from ffmpegjob_model.pools import parse_pools
from ffmpegjob_model.settings import S3Settings

POOLS = parse_pools("""
gpu:
  image: worker:gpu
  nodeSelector: {kubeffmpeg.io/pool: gpu}
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
  resources: {limits: {nvidia.com/gpu: "1"}}
  ephemeralStorage: 5Gi
  maxTimeoutSeconds: 600
  env: {FFMPEG_HWACCEL: cuda}
  runtimeClassName: gvisor
""")


def body(**labels: str) -> dict[str, Any]:
    return {"apiVersion": "kubeffmpeg.io/v1alpha1", "kind": "FFmpegJob",
            "metadata": {"name": "clip", "namespace": "ffmpeg", "uid": "0c5e-uid", "labels": labels}}


def spec(**kw: Any) -> FFmpegJobSpec:
    return FFmpegJobSpec.model_validate({
        "inputs": [{"name": "in.mp4", "source": "dir_demo/in.mp4"}], "outputs": [{"name": "out.mp4"}],
        "commands": ["-i {{in.mp4}} {{out.mp4}}"], "output": {"dirId": "dir_demo"}, "machine": "gpu", **kw})


def test_job_carries_pool_placement_and_limits() -> None:
    job = build_job(body(), spec(timeoutSeconds=3600, backoffLimit=2, ttlSecondsAfterFinished=60),
                    "gpu", POOLS["gpu"], OperatorSettings(),
                    S3Settings.model_validate({"endpoint_url": "http://minio:9000", "bucket": "media",
                                               "AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s3cr3t"}))
    pod = job["spec"]["template"]["spec"]
    assert job["metadata"]["name"] == job_name("0c5e-uid") == "ffj-0c5e-uid"
    assert job["spec"]["activeDeadlineSeconds"] == 600  # the pool's cap wins over the spec
    assert job["spec"]["backoffLimit"] == 2
    assert job["spec"]["ttlSecondsAfterFinished"] == 60
    assert job["spec"]["suspend"] is False
    assert pod["nodeSelector"] == {"kubeffmpeg.io/pool": "gpu"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "ffj-0c5e-uid"  # the job's own identity (identity.py)
    assert pod["runtimeClassName"] == "gvisor"
    c = pod["containers"][0]
    assert c["image"] == "worker:gpu" and c["command"] == ["ffmpeg-worker"]
    assert c["resources"] == {"limits": {"nvidia.com/gpu": "1"}}
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["FFMPEGJOB_NAME"] == "clip" and env["FFMPEGJOB_NAMESPACE"] == "ffmpeg"
    assert env["FFMPEG_WORKDIR"] == "/scratch" and env["FFMPEG_HWACCEL"] == "cuda"
    # Where storage is, never a credential: the pod reads and writes through its grants file.
    assert "envFrom" not in c
    assert (env["S3_ENDPOINT_URL"], env["S3_BUCKET"]) == ("http://minio:9000", "media")
    assert not any("AKIA" in v or "s3cr3t" in v or k.startswith("AWS_") for k, v in env.items())
    assert env[GRANTS_FILE_ENV] == f"{GRANTS_MOUNT}/grants.json"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["volumes"] == [
        {"name": "scratch", "emptyDir": {"sizeLimit": "5Gi"}},
        {"name": "grants", "secret": {"secretName": "ffj-0c5e-uid-grants", "defaultMode": 0o440}},
    ]
    assert {"name": "grants", "mountPath": GRANTS_MOUNT, "readOnly": True} in c["volumeMounts"]


def test_ownership_labels_and_queue_passthrough() -> None:
    job = build_job(body(**{"kueue.x-k8s.io/queue-name": "media", "team": "x"}), spec(suspend=True),
                    "gpu", POOLS["gpu"], OperatorSettings())
    ref = job["metadata"]["ownerReferences"][0]
    assert ref == {"apiVersion": "kubeffmpeg.io/v1alpha1", "kind": "FFmpegJob", "name": "clip",
                   "uid": "0c5e-uid", "controller": True, "blockOwnerDeletion": True}
    labels = job["metadata"]["labels"]
    assert labels["kueue.x-k8s.io/queue-name"] == "media" and "team" not in labels
    assert labels[LABEL_UID] == "0c5e-uid"
    assert job["spec"]["template"]["metadata"]["labels"] == labels
    assert job["spec"]["suspend"] is True
    assert "ttlSecondsAfterFinished" not in job["spec"]
    assert owned_by(job, "0c5e-uid") and not owned_by(job, "other")
    assert owner_name(job) == "clip"
    assert owner_name({"metadata": job["spec"]["template"]["metadata"]}) == "clip"  # pods: annotation


def test_long_names_stay_out_of_label_values() -> None:
    b = body()
    b["metadata"]["name"] = "n" * 100
    job = build_job(b, spec(), "gpu", POOLS["gpu"], OperatorSettings())
    assert all(len(v) <= 63 for v in job["metadata"]["labels"].values())
    assert owner_name(job) == "n" * 100


def test_job_has_the_pod_failure_policy_and_a_re_created_job_the_rest_of_the_budget() -> None:
    from ffmpeg_operator.jobs import pod_failure_policy

    job = build_job(body(), spec(backoffLimit=2), "gpu", POOLS["gpu"], OperatorSettings())
    js = job["spec"]
    assert js["podFailurePolicy"] == pod_failure_policy()
    assert js["template"]["spec"]["restartPolicy"] == "Never" and js["podReplacementPolicy"] == "Failed"
    rules = js["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    fail_job = {"containerName": "worker", "operator": "In", "values": [1, 2, 4]}
    assert {"action": "FailJob", "onExitCodes": fail_job} in rules
    again = build_job(body(), spec(backoffLimit=2), "gpu", POOLS["gpu"], OperatorSettings(), restart=1)
    assert again["metadata"]["name"] == job["metadata"]["name"] + "-r1"
    assert again["spec"]["backoffLimit"] == 1
