"""The batch/v1 Job that runs one FFmpegJob: a pure function of the FFmpegJob and its pool."""

from __future__ import annotations

import re
from typing import Any

from ffmpegjob_model.exitcodes import EXIT_INVALID, EXIT_SCRATCH, EXIT_STEP, EXIT_TERMINATED, FINAL_EXIT_CODES
from ffmpegjob_model.grants import GRANTS_FILE, GRANTS_FILE_ENV, GRANTS_MOUNT, grants_secret_name
from ffmpegjob_model.model import API_VERSION, GROUP, KIND, TENANT_LABEL, FFmpegJobSpec
from ffmpegjob_model.pools import NodePool
from ffmpegjob_model.queueing import PRIORITY_CLASS_LABEL, QUEUE_NAME_LABEL, local_queue_name, priority_of
from ffmpegjob_model.scratch import SCRATCH_LIMIT_ENV
from ffmpegjob_model.settings import S3Settings

from .settings import OperatorSettings

# Labels every child carries; the operator watches Jobs and pods by these.
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "kubeffmpeg-operator"
LABEL_UID = f"{GROUP}/ffmpegjob-uid"
LABEL_NAME = f"{GROUP}/ffmpegjob"
LABEL_POOL = f"{GROUP}/pool"
LABEL_TENANT = TENANT_LABEL
# Label values are at most 63 characters, object names 253: the name also goes in an annotation.
ANNOTATION_NAME = f"{GROUP}/ffmpegjob-name"
# Kueue's labels are carried over so that a Kueue-managed cluster queues the Job.
PASSTHROUGH_LABELS = ("kueue.x-k8s.io/queue-name", "kueue.x-k8s.io/priority-class")

SCRATCH = "/scratch"
CONTAINER = "worker"
# Any non-root id works; 65532 (distroless' "nonroot") is the USER of every image and the
# chart's securityContext too: tests/unit/test_packaging.py keeps them equal to this one.
NONROOT_UID = 65532
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def job_name(uid: str, restart: int = 0) -> str:
    """Unique per FFmpegJob and attempt, stable across retries: a repeated create hits 409, never
    a twin. `restart` counts the Jobs re-created because an earlier one was deleted unfinished."""
    return f"ffj-{uid}" if restart <= 0 else f"ffj-{uid}-r{restart}"


# ------------------------------------------------------------------------------ pod failures
# What a failed worker pod means, in the Job's own `podFailurePolicy` (the Job controller acts on
# it) and in `failure_action` (the operator reads the same verdict from the pods, to finish
# without waiting for the controller). Rules are checked in order, the first match wins.
IGNORE, FAIL_JOB, COUNT = "Ignore", "FailJob", "Count"


def pod_failure_policy(container: str = CONTAINER) -> dict[str, Any]:
    """Disruption is not failure; a deterministic failure is not retried.

    - a `DisruptionTarget` condition (eviction, drain, preemption, node shutdown): retried, not
      counted against backoffLimit;
    - the worker stopped by SIGTERM (exit 143: its pod was deleted): likewise;
    - a command failed (exit 1), the job was refused by the safety rules (exit 2) or its inputs
      do not fit the pool's scratch space (exit 4): the Job fails at once;
    - anything else (exit 3, storage or API trouble; a crash): counted against backoffLimit.
    Needs `restartPolicy: Never` and `podReplacementPolicy: Failed` (both set by `build_job`).
    """
    return {"rules": [
        {"action": IGNORE, "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": IGNORE, "onExitCodes": {"containerName": container, "operator": "In",
                                           "values": [EXIT_TERMINATED]}},
        {"action": FAIL_JOB, "onExitCodes": {"containerName": container, "operator": "In",
                                             "values": sorted(FINAL_EXIT_CODES)}},
    ]}


def exit_code(pod: dict[str, Any], container: str = CONTAINER) -> int | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == container:
            term = (cs.get("state") or {}).get("terminated") or {}
            code = term.get("exitCode")
            return int(code) if code is not None else None
    return None


def disrupted(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "DisruptionTarget" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def failure_action(pod: dict[str, Any], container: str = CONTAINER) -> str:
    """What `pod_failure_policy` does with this Failed pod: IGNORE, FAIL_JOB or COUNT."""
    if disrupted(pod):
        return IGNORE
    code = exit_code(pod, container)
    if code == EXIT_TERMINATED:
        return IGNORE
    if code in FINAL_EXIT_CODES:
        return FAIL_JOB
    return COUNT


# FFmpegJob reason for a worker that ended the Job through the FailJob rule.
FINAL_EXIT_REASONS = {EXIT_STEP: "CommandFailed", EXIT_INVALID: "ValidationFailed", EXIT_SCRATCH: "ScratchTooSmall"}


def child_labels(meta: dict[str, Any], spec: FFmpegJobSpec, pool_name: str) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": "kubeffmpeg",
        "app.kubernetes.io/component": "worker",
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_UID: meta["uid"],
        LABEL_POOL: pool_name,
        LABEL_TENANT: spec.tenant,
    }
    name = meta["name"]
    if len(name) <= 63 and _LABEL_VALUE.match(name):
        labels[LABEL_NAME] = name
    own = meta.get("labels") or {}
    labels.update({k: own[k] for k in PASSTHROUGH_LABELS if k in own})
    return labels


def queue_labels(settings: OperatorSettings, pool_name: str, pool: NodePool, spec: FFmpegJobSpec) -> dict[str, str]:
    """The labels that hand a Job to Kueue (queueing.py): none when Kueue is off, for a pool that
    no ClusterQueue serves, or while the user suspends the job (Kueue would admit a suspended Job
    it manages; the labels come on resume)."""
    if not settings.kueue_enabled or not pool.cluster_queue or spec.suspend:
        return {}
    return {QUEUE_NAME_LABEL: local_queue_name(pool_name, spec.tenant),
            PRIORITY_CLASS_LABEL: priority_of(spec.priority)}


def owner_reference(meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def storage_env(s3: S3Settings | None) -> dict[str, str]:
    """Where storage is, never how to sign for it: the worker recognises URLs of our own bucket
    by these; it reads and writes only through the presigned URLs of its grants file."""
    if s3 is None:
        return {}
    env = {"S3_BUCKET": s3.bucket, "S3_REGION": s3.region}
    if s3.endpoint_url:
        env["S3_ENDPOINT_URL"] = s3.endpoint_url
    if s3.public_endpoint_url:
        env["S3_PUBLIC_ENDPOINT_URL"] = s3.public_endpoint_url
    return env


def worker_env(meta: dict[str, Any], pool: NodePool, settings: OperatorSettings,
               s3: S3Settings | None = None) -> list[dict[str, Any]]:
    env = {
        **storage_env(s3),
        GRANTS_FILE_ENV: f"{GRANTS_MOUNT}/{GRANTS_FILE}",
        "FFMPEGJOB_NAME": meta["name"],
        "FFMPEGJOB_NAMESPACE": meta["namespace"],
        "FFMPEG_WORKDIR": SCRATCH,
        # The root filesystem is read-only: everything that writes goes to the scratch volume.
        "HOME": SCRATCH,
        "TMPDIR": SCRATCH,
        "URL_ALLOW_HOSTS": settings.url_allow_hosts,
        "URL_ALLOW_HTTP": "true" if settings.url_allow_http else "false",
        # The worker checks the inputs it downloads fit before FFmpeg starts (scratch.py).
        SCRATCH_LIMIT_ENV: pool.ephemeral_storage,
    }
    env.update(pool.env)
    return [{"name": k, "value": v} for k, v in env.items()]


def build_job(body: dict[str, Any], spec: FFmpegJobSpec, pool_name: str, pool: NodePool,
              settings: OperatorSettings, s3: S3Settings | None = None, restart: int = 0) -> dict[str, Any]:
    """The Job manifest. Scheduling fields come only from the pool; a queueing system may later
    change suspend/nodeSelector/tolerations on the live Job and the operator leaves them be.
    A re-created Job (`restart` > 0, named `ffj-<uid>-r<n>`) gets what is left of the back-off
    budget.

    Its pods run as the job's own ServiceAccount and read their storage grants from the job's
    Secret (identity.py): both are named after the FFmpegJob's first Job (`ffj-<uid>`), so every
    attempt shares them, and exist before it."""
    meta = body["metadata"]
    identity = job_name(meta["uid"])
    labels = child_labels(meta, spec, pool_name)
    for key, value in queue_labels(settings, pool_name, pool, spec).items():
        labels.setdefault(key, value)  # a queue the user's own labels name wins
    annotations = {ANNOTATION_NAME: meta["name"]}
    deadline = min(spec.timeout_seconds, pool.max_timeout_seconds)
    job_spec: dict[str, Any] = {
        "backoffLimit": max(0, spec.backoff_limit - restart),
        "podFailurePolicy": pod_failure_policy(),
        "activeDeadlineSeconds": deadline,
        # Kueue admits (unsuspends) a Job that carries a queue name.
        "suspend": spec.suspend or QUEUE_NAME_LABEL in labels,
        # Pods are replaced only once fully gone, so one attempt never overlaps another.
        "podReplacementPolicy": "Failed",
        "template": {
            "metadata": {"labels": labels, "annotations": annotations},
            "spec": {
                "restartPolicy": "Never",
                "serviceAccountName": identity,
                "automountServiceAccountToken": True,
                "enableServiceLinks": False,
                "nodeSelector": dict(pool.node_selector),
                "tolerations": [dict(t) for t in pool.tolerations],
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": NONROOT_UID,
                    "runAsGroup": NONROOT_UID,
                    "fsGroup": NONROOT_UID,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [
                    {
                        "name": CONTAINER,
                        "image": pool.image,
                        "imagePullPolicy": pool.image_pull_policy,
                        "command": list(settings.worker_command),
                        "env": worker_env(meta, pool, settings, s3),
                        "resources": pool.resources,
                        "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH},
                                         {"name": "grants", "mountPath": GRANTS_MOUNT, "readOnly": True}],
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                    }
                ],
                "volumes": [
                    {"name": "scratch", "emptyDir": {"sizeLimit": pool.ephemeral_storage}},
                    {"name": "grants", "secret": {"secretName": grants_secret_name(identity), "defaultMode": 0o440}},
                ],
            },
        },
    }
    if pool.runtime_class_name:
        job_spec["template"]["spec"]["runtimeClassName"] = pool.runtime_class_name
    if spec.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = spec.ttl_seconds_after_finished
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(meta["uid"], restart),
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(meta)],
        },
        "spec": job_spec,
    }


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == uid for r in refs)


def owner_name(obj: dict[str, Any]) -> str | None:
    """The FFmpegJob a Job or pod belongs to (Jobs: ownerReference; pods: the annotation)."""
    meta = obj.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("apiVersion", "").startswith(f"{GROUP}/"):
            return str(ref["name"])
    name = (meta.get("annotations") or {}).get(ANNOTATION_NAME)
    return str(name) if name else None
