"""Warm pools (docs/warm-pools.md): pre-started worker pods per pool that take a job without pod
scheduling and container start. The contract with the pod is `ffmpegjob_model.warm`.

- `keep_round` (every second): keeps each warm pool at `warm.replicas` pods, replaces pods that
  ended (after `maxJobsPerPod` jobs, or any failure: the pod exits by itself), idle ones older
  than `maxIdleSeconds`, and times out claimed jobs past their deadline (the pod is deleted).
- `start` (from the create handler): claims an idle pod with a conditional label write (its
  `resourceVersion`: two claims of one pod cannot both win), creates the job's identity and
  grants as for a Job, and hands the job over in the claim Secret `<pod>-claim`. No idle pod:
  False, and the caller creates the Job as usual (a job never waits for a warm pod). A retried
  create finds the pod already claimed for the job's uid and neither claims nor hands over again.
- `on_deleted`: an FFmpegJob deleted while a warm pod runs it frees the pod at once.
- `sync` (from handlers.sync, on every FFmpegJob event that carries `status.warm`): once the
  pod reported the worker's exit code, the job ends as a Job's would (Succeeded with the result,
  CommandFailed, ValidationFailed); another failure, or a pod lost while claimed, gives the job
  to a normal Job (one more attempt).

Each warm pod has its own ServiceAccount `<pod>` whose Role may only get/watch the Secret
`<pod>-claim`; its token is in `<pod>-token` (an environment variable the pod reads once).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from ffmpegjob_model import warm as contract
from ffmpegjob_model.exitcodes import EXIT_INVALID, EXIT_STEP
from ffmpegjob_model.grants import GRANTS_FILE_ENV, grants_secret_name
from ffmpegjob_model.model import GROUP, PLURAL, TERMINAL, VERSION, FFmpegJobSpec, Phase
from ffmpegjob_model.pools import NodePool
from ffmpegjob_model.times import format_time, parse_time
from kubernetes.client.rest import ApiException

from . import identity, jobs
from .context import Context, PoolsUnavailable
from .grants import abort_unfinished, job_grants
from .kube import Written, drain, write_status
from .status import set_condition, terminal_patch
from .storage import outputs_stored

log = logging.getLogger("ffmpeg_operator.warm")
KEEP_SECONDS = 1.0
# The worker stops at the job's timeoutSeconds itself (exit 1, "timed out"); the operator's own
# deadline is the backstop for a worker that does not, a little later.
DEADLINE_GRACE_SECONDS = 15
RUNNING = "Running"
ORPHAN_CHECK_SECONDS = 15.0


@dataclass
class WarmPod:
    name: str
    namespace: str
    pool: str
    state: str
    phase: str
    resource_version: str
    served: int
    job: str | None
    job_uid: str | None
    deadline: float | None
    deleting: bool
    created: datetime | None

    @classmethod
    def of(cls, pod: dict[str, Any]) -> WarmPod:
        meta = pod["metadata"]
        labels, ann = meta.get("labels") or {}, meta.get("annotations") or {}
        deadline = ann.get(contract.WARM_DEADLINE_ANNOTATION)
        return cls(name=meta["name"], namespace=meta["namespace"], pool=labels.get(contract.WARM_POOL_LABEL, ""),
                   state=labels.get(contract.WARM_STATE_LABEL, contract.IDLE),
                   phase=(pod.get("status") or {}).get("phase") or "Pending",
                   resource_version=str(meta.get("resourceVersion") or ""),
                   served=int(ann.get(contract.WARM_SERVED_ANNOTATION) or 0),
                   job=ann.get(contract.WARM_JOB_ANNOTATION), job_uid=ann.get(contract.WARM_JOB_UID_ANNOTATION),
                   deadline=float(deadline) if deadline else None,
                   deleting=bool(meta.get("deletionTimestamp")), created=parse_time(meta.get("creationTimestamp")))

    @property
    def claimable(self) -> bool:
        return self.state == contract.IDLE and self.phase == RUNNING and not self.deleting


class WarmPods:
    """What the operator knows of its warm pods (from its watch and each keeper round's list)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pods: dict[tuple[str, str], WarmPod] = {}
        self.orphans_checked = 0.0  # when keep_round last looked for claims of deleted FFmpegJobs

    def update(self, pod: dict[str, Any]) -> WarmPod:
        wp = WarmPod.of(pod)
        with self.lock:
            old = self.pods.get((wp.namespace, wp.name))
            # A list may be older than the event just applied: keep the newer resourceVersion.
            if old is None or _rv(wp.resource_version) >= _rv(old.resource_version):
                self.pods[(wp.namespace, wp.name)] = wp
        return wp

    def remove(self, namespace: str, name: str) -> None:
        with self.lock:
            self.pods.pop((namespace, name), None)

    def idle(self, namespace: str, pool: str) -> list[WarmPod]:
        with self.lock:
            return [p for p in self.pods.values() if p.namespace == namespace and p.pool == pool and p.claimable]

    def claimed_by(self, namespace: str, uid: str) -> WarmPod | None:
        """The live pod already claimed for the FFmpegJob with this uid, if any."""
        with self.lock:
            return next((p for p in self.pods.values() if p.namespace == namespace and p.job_uid == uid
                         and p.state == contract.CLAIMED and not p.deleting), None)


def _rv(rv: str) -> int:
    try:
        return int(rv)
    except ValueError:
        return 0


def namespace_of(c: Context) -> str | None:
    """Warm pods live beside the FFmpegJobs: one namespace (none when watching all)."""
    ns = c.settings.watched_namespace()
    return None if ns == "*" else ns


def enabled(pool: NodePool) -> bool:
    return pool.warm is not None and pool.warm.replicas > 0


# --------------------------------------------------------------------------------- warm pods
def pod_labels(pool_name: str, state: str = contract.IDLE) -> dict[str, str]:
    # managed-by: the operator watches only its own children's pods (scale.py's selector).
    return {"app.kubernetes.io/name": "kubeffmpeg", "app.kubernetes.io/component": "worker",
            jobs.LABEL_MANAGED_BY: jobs.MANAGED_BY, contract.WARM_POOL_LABEL: pool_name,
            contract.WARM_STATE_LABEL: state}


def pod_manifest(c: Context, namespace: str, name: str, pool_name: str, pool: NodePool) -> dict[str, Any]:
    """A Job's worker pod without a job: the pool's image, scheduling and security context; its
    own ServiceAccount (no token mounted: the supervisor reads `<pod>-token` once); the cluster CA."""
    assert pool.warm is not None
    env = {e["name"]: e["value"] for e in jobs.worker_env({"name": "", "namespace": namespace}, pool,
                                                          c.settings, c.s3)}
    for key in ("FFMPEGJOB_NAME", "FFMPEGJOB_NAMESPACE", GRANTS_FILE_ENV):
        env.pop(key, None)
    env.update({contract.ENV_MODE: contract.MODE_WARM, contract.ENV_POD: name, contract.ENV_NAMESPACE: namespace,
                contract.ENV_API_SERVER: str(c.kube.api.configuration.host),
                contract.ENV_CA_FILE: f"{contract.CA_MOUNT}/{contract.CA_KEY}",
                contract.ENV_MAX_JOBS: str(pool.warm.max_jobs_per_pod)})
    container_env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in env.items()]
    container_env.append({"name": contract.ENV_TOKEN, "valueFrom": {"secretKeyRef": {
        "name": contract.token_secret_name(name), "key": "token"}}})
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": name,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "nodeSelector": dict(pool.node_selector),
        "tolerations": [dict(t) for t in pool.tolerations],
        "securityContext": {"runAsNonRoot": True, "runAsUser": jobs.NONROOT_UID, "runAsGroup": jobs.NONROOT_UID,
                            "fsGroup": jobs.NONROOT_UID, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": jobs.CONTAINER, "image": pool.image, "imagePullPolicy": pool.image_pull_policy,
            "command": list(c.settings.worker_command), "env": container_env, "resources": pool.resources,
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [{"name": "scratch", "mountPath": jobs.SCRATCH},
                             {"name": "ca", "mountPath": contract.CA_MOUNT, "readOnly": True}],
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }],
        "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": pool.ephemeral_storage}},
                    {"name": "ca", "configMap": {"name": contract.CA_CONFIGMAP,
                                                 "items": [{"key": contract.CA_KEY, "path": contract.CA_KEY}]}}],
    }
    if pool.runtime_class_name:
        spec["runtimeClassName"] = pool.runtime_class_name
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": pod_labels(pool_name),
                         "annotations": {contract.WARM_SERVED_ANNOTATION: "0"}},
            "spec": spec}


def pod_identity(name: str, namespace: str, pool_name: str) -> dict[str, dict[str, Any]]:
    """The pod's own ServiceAccount, a Role that may read only its claim Secret, the binding."""
    labels = {**pod_labels(pool_name), "app.kubernetes.io/component": "worker-identity"}
    labels.pop(contract.WARM_STATE_LABEL)
    meta = {"name": name, "namespace": namespace, "labels": labels}
    return {
        "ServiceAccount": {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta,
                           "automountServiceAccountToken": False},
        "Role": {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta,
                 "rules": [{"apiGroups": [""], "resources": ["secrets"],
                            "resourceNames": [contract.claim_secret_name(name)], "verbs": ["get", "list", "watch"]}]},
        "RoleBinding": {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta,
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]},
    }


def create_pod(c: Context, namespace: str, pool_name: str, pool: NodePool) -> str:
    assert pool.warm is not None
    name = f"{contract.warm_pod_prefix(pool_name)}{secrets.token_hex(4)}"
    objs = pod_identity(name, namespace, pool_name)
    _core(c).create_namespaced_service_account(namespace, objs["ServiceAccount"], _preload_content=False)
    _rbac(c).create_namespaced_role(namespace, objs["Role"], _preload_content=False)
    _rbac(c).create_namespaced_role_binding(namespace, objs["RoleBinding"], _preload_content=False)
    seconds = pool.warm.max_idle_seconds + pool.max_timeout_seconds + 600
    req = _core(c).create_namespaced_service_account_token(
        name, namespace, {"spec": {"expirationSeconds": seconds}})
    _core(c).create_namespaced_secret(namespace, {
        "metadata": {"name": contract.token_secret_name(name), "namespace": namespace,
                     "labels": objs["ServiceAccount"]["metadata"]["labels"]},
        "type": "Opaque", "stringData": {"token": req.status.token}}, _preload_content=False)
    _core(c).create_namespaced_pod(namespace, pod_manifest(c, namespace, name, pool_name, pool),
                                      _preload_content=False)
    log.info("started warm pod %s/%s for pool %s", namespace, name, pool_name)
    return name


def _core(c: Context) -> Any:
    return c.kube.core  # manifests are plain dicts, answers read raw: untyped here


def _rbac(c: Context) -> Any:
    return c.kube.rbac


def _ignore_404(call: Callable[[], Any]) -> None:
    try:
        call()
    except ApiException as e:
        if e.status != 404:
            raise


def retire(c: Context, namespace: str, name: str) -> None:
    """The pod and everything made for it go (the rights first)."""
    core, rbac = _core(c), _rbac(c)
    for call in (lambda: rbac.delete_namespaced_role_binding(name, namespace),
                 lambda: rbac.delete_namespaced_role(name, namespace),
                 lambda: core.delete_namespaced_service_account(name, namespace),
                 lambda: core.delete_namespaced_secret(contract.token_secret_name(name), namespace),
                 lambda: core.delete_namespaced_secret(contract.claim_secret_name(name), namespace),
                 lambda: core.delete_namespaced_pod(name, namespace, grace_period_seconds=5)):
        try:
            _ignore_404(call)
        except ApiException as e:
            log.warning("retiring warm pod %s/%s: %s", namespace, name, e.reason)
    log.info("retired warm pod %s/%s", namespace, name)


def keep_round(c: Context) -> None:
    ns = namespace_of(c)
    if ns is None:
        return
    try:
        pools = c.pools.get()
    except PoolsUnavailable:
        return
    warm_pools = {n: p for n, p in pools.items() if enabled(p)}
    with c.warm_pods.lock:
        known = bool(c.warm_pods.pods)
    if not warm_pools and not known:
        return  # off (the default): no request at all; leftover warm pods come from the pod watch
    listed = _core(c).list_namespaced_pod(ns, label_selector=contract.WARM_POOL_LABEL,
                                             _preload_content=False)
    items = json.loads(listed.data)["items"]
    seen = set()
    live: dict[str, int] = {}
    now = time.time()
    # A deletion is seen by `on_deleted`; this catches one made while no operator watched.
    orphan_check = now - c.warm_pods.orphans_checked >= ORPHAN_CHECK_SECONDS
    if orphan_check:
        c.warm_pods.orphans_checked = now
    for pod in items:
        wp = c.warm_pods.update(pod)
        seen.add(wp.name)
        if wp.deleting:
            continue
        pool = warm_pools.get(wp.pool)
        ended = wp.phase in ("Succeeded", "Failed")
        if wp.state == contract.CLAIMED and wp.job:
            if orphan_check and _orphaned(c, wp):
                log.info("warm pod %s/%s: its FFmpegJob %s is gone", ns, wp.name, wp.job)
                retire(c, ns, wp.name)
                continue
            if ended:
                lost(c, ns, wp.job, wp.name, f"warm pod {wp.name} ended ({wp.phase}) while running the job")
            elif wp.deadline is not None and now > wp.deadline:
                timed_out(c, ns, wp.job, wp.name)
                retire(c, ns, wp.name)
                continue
        age = (datetime.now(UTC) - wp.created).total_seconds() if wp.created else 0.0
        too_old = pool is not None and pool.warm is not None and wp.state == contract.IDLE \
            and age > pool.warm.max_idle_seconds
        # A pool no longer warm: its idle pods go now, a busy one once its job is over (after_job).
        if ended or too_old or (pool is None and wp.state == contract.IDLE):
            retire(c, ns, wp.name)
            continue
        live[wp.pool] = live.get(wp.pool, 0) + 1
    with c.warm_pods.lock:
        for key in [k for k in c.warm_pods.pods if k[0] == ns and k[1] not in seen]:
            c.warm_pods.pods.pop(key)
    for pool_name, pool in warm_pools.items():
        assert pool.warm is not None
        extra = live.get(pool_name, 0) - pool.warm.replicas
        if extra > 0:  # replicas lowered: idle pods go
            for wp in c.warm_pods.idle(ns, pool_name)[:extra]:
                retire(c, ns, wp.name)
        for _ in range(-extra):
            try:
                create_pod(c, ns, pool_name, pool)
            except ApiException as e:
                log.warning("could not start a warm pod for pool %s: %s", pool_name, e.reason)
                break


def _orphaned(c: Context, wp: WarmPod) -> bool:
    """The claimed job's FFmpegJob is gone (or its name now belongs to another one)."""
    assert wp.job is not None
    ffj = c.kube.get_ffmpegjob(wp.namespace, wp.job)
    return ffj is None or (wp.job_uid is not None and str(ffj["metadata"].get("uid")) != wp.job_uid)


async def keeper(c: Context) -> None:
    import asyncio

    while True:
        try:
            await asyncio.to_thread(keep_round, c)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # an API hiccup must not end the loop
            log.warning("warm pool round failed: %s", e)
        await asyncio.sleep(KEEP_SECONDS)


def _reported(body: kopf.Body, **_: Any) -> bool:
    st = body.get("status") or {}
    return bool((st.get("warm") or {}).get("exitCode") is not None and st.get("phase") not in TERMINAL)


@kopf.on.event(GROUP, VERSION, PLURAL, when=_reported)
def on_warm_report(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """The warm pod wrote the worker's exit code: the job ends (or gets a Job)."""
    from .handlers import record_transition

    c: Context = memo["ctx"]
    meta = body["metadata"]
    ffj = c.kube.get_ffmpegjob(meta["namespace"], meta["name"])  # fresh: a conditional write follows
    if ffj is not None:
        sync(c, ffj, record_transition)


def _deleted_while_warm(type: str | None, body: kopf.Body, **_: Any) -> bool:
    st = body.get("status") or {}
    deleted = type == "DELETED" or bool(body.get("metadata", {}).get("deletionTimestamp"))
    return deleted and bool((st.get("warm") or {}).get("pod")) and st.get("phase") not in TERMINAL


@kopf.on.event(GROUP, VERSION, PLURAL, when=_deleted_while_warm)
def on_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """An FFmpegJob deleted while a warm pod runs it: the pod goes now (its supervisor kills the
    job's processes), not at the deadline; the keeper starts a fresh one."""
    c: Context = memo["ctx"]
    ns, pod = body["metadata"]["namespace"], str(body["status"]["warm"]["pod"])
    with c.warm_pods.lock:
        wp = c.warm_pods.pods.get((ns, pod))
    if wp is not None and wp.job_uid not in (None, str(body["metadata"].get("uid"))):
        return  # the pod has moved on to another job
    retire(c, ns, pod)


@kopf.on.event("", "v1", "pods", labels={contract.WARM_POOL_LABEL: kopf.PRESENT})
def on_warm_pod(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    c: Context = memo["ctx"]
    pod = dict(body)
    if type == "DELETED":
        c.warm_pods.remove(pod["metadata"]["namespace"], pod["metadata"]["name"])
        wp = WarmPod.of(pod)
        if wp.state == contract.CLAIMED and wp.job:
            lost(c, wp.namespace, wp.job, wp.name, f"warm pod {wp.name} was deleted while running the job")
        return
    c.warm_pods.update(pod)


# ------------------------------------------------------------------------------------- claims
def claim(c: Context, namespace: str, pool_name: str, pool: NodePool, job: str, uid: str,
          deadline: float) -> WarmPod | None:
    """An idle pod of the pool, now claimed for `job`; None when none is idle. The label write is
    conditional on the pod's resourceVersion: of two claims of one pod, one gets 409."""
    for wp in c.warm_pods.idle(namespace, pool_name):
        body = {"metadata": {
            "resourceVersion": wp.resource_version,
            "labels": {contract.WARM_STATE_LABEL: contract.CLAIMED},
            "annotations": {contract.WARM_JOB_ANNOTATION: job, contract.WARM_JOB_UID_ANNOTATION: uid,
                            contract.WARM_SERVED_ANNOTATION: str(wp.served + 1),
                            contract.WARM_DEADLINE_ANNOTATION: str(int(deadline))}}}
        try:
            raw = _core(c).patch_namespaced_pod(wp.name, namespace, body, _preload_content=False)
        except ApiException as e:
            if e.status in (404, 409):
                continue  # someone else's now, or gone
            raise
        return c.warm_pods.update(json.loads(raw.data))
    return None


def start(c: Context, obj: dict[str, Any], model: FFmpegJobSpec, pool_name: str, pool: NodePool,
          patch: kopf.Patch, record: Callable[[Context, dict[str, Any], str | None, dict[str, Any]], None]) -> bool:
    """Run the job on an idle warm pod of its pool; False (nothing done) when none is idle."""
    meta = obj["metadata"]
    ns = meta["namespace"]
    if model.suspend or model.parallel is not None or ns != namespace_of(c):
        return False
    deadline_seconds = min(model.timeout_seconds, pool.max_timeout_seconds)
    uid = str(meta["uid"])
    # A retried create (its status write failed after the claim) finds its own pod again: a
    # second claim would run the job twice.
    wp = c.warm_pods.claimed_by(ns, uid)
    handed_over = wp is not None and _claim_secret_exists(c, ns, wp.name)
    if wp is None:
        wp = claim(c, ns, pool_name, pool, meta["name"], uid,
                   time.time() + deadline_seconds + DEADLINE_GRACE_SECONDS)
    if wp is None:
        return False
    try:
        if not handed_over:
            hand_over(c, obj, model, pool_name, pool, wp, deadline_seconds)
    except Exception as e:
        log.warning("could not hand FFmpegJob %s/%s to warm pod %s (a Job runs it): %s", ns, meta["name"],
                    wp.name, e)
        retire(c, ns, wp.name)
        try:
            drop_grants(c, ns, str(meta["uid"]))
        except Exception as e2:  # the Job's pod may then find grants presigned for the warm attempt
            log.warning("could not drop the warm grants of %s/%s: %s", ns, meta["name"], e2)
        return False
    t = datetime.now(UTC)
    st = dict(obj.get("status") or {})
    gen = meta.get("generation")
    msg = f"warm pod {wp.name} of pool {pool_name}"
    conds = set_condition(st.get("conditions"), "Submitted", "True", "WarmPodClaimed", msg, t, gen)
    conds = set_condition(conds, "PodScheduled", "True", "Scheduled", f"pod {wp.name} (warm)", t, gen)
    conds = set_condition(conds, "Running", "True", "PodRunning", "FFmpeg is running", t, gen)
    desired = {"jobName": wp.name, "phase": Phase.RUNNING.value, "reason": "Running",
               "message": f"FFmpeg is running on {msg}", "conditions": conds, "observedGeneration": gen,
               "startTime": format_time(t), "attempts": 1,
               "warm": {"pod": wp.name, "claimedAt": format_time(t)}}
    patch.status.update(desired)
    record(c, obj, st.get("phase"), desired)
    c.metrics.transitions.labels(Phase.RUNNING.value, "WarmPodClaimed").inc()
    return True


def _claim_secret_exists(c: Context, namespace: str, pod: str) -> bool:
    try:
        drain(_core(c).read_namespaced_secret(contract.claim_secret_name(pod), namespace,
                                              _preload_content=False))
        return True
    except ApiException as e:
        if e.status != 404:
            raise
        return False


def hand_over(c: Context, obj: dict[str, Any], model: FFmpegJobSpec, pool_name: str, pool: NodePool,
              wp: WarmPod, deadline_seconds: int) -> None:
    """The job's identity and grants (as for a Job: identity.py), a token of its ServiceAccount,
    and the claim Secret that the pod is watching for."""
    meta = obj["metadata"]
    ns, uid = meta["namespace"], str(meta["uid"])
    name = jobs.job_name(uid)
    labels, owner = jobs.child_labels(meta, model, pool_name), jobs.owner_reference(meta)
    expires = deadline_seconds + 300
    grants = c.io.submit(job_grants, c.signer, model, c.s3, expires, c.settings.grant_multipart_parts, uid)
    objects: dict[str, Any] = identity.manifests(name, meta["name"], ns, labels, owner, None)
    objects["Secret"] = c.io.submit(lambda: identity.secret_manifest(name, ns, labels, owner, grants.result()))
    if not identity.ensure(c.kube, objects, c.io):
        abort_unfinished(c.signer, grants.result())
        raise RuntimeError(f"the grants Secret of {name} exists already (a retried handler)")
    # Not bound to an object (the API binds a token only to a pod of its own ServiceAccount): it
    # dies with the job's ServiceAccount, deleted when the job ends, or at its expiry.
    token = _core(c).create_namespaced_service_account_token(name, ns, {"spec": {
        "expirationSeconds": max(600, expires)}})
    job = {"name": meta["name"], "namespace": ns, "uid": uid}
    secret = {"metadata": {"name": contract.claim_secret_name(wp.name), "namespace": ns,
                           "labels": {**labels, "app.kubernetes.io/component": "worker-identity"},
                           "ownerReferences": [owner]},
              "type": "Opaque", "immutable": True,
              "stringData": {contract.CLAIM_JOB: json.dumps(job), contract.CLAIM_GRANTS: grants.result().dump(),
                             contract.CLAIM_TOKEN: token.status.token}}
    try:
        _core(c).create_namespaced_secret(ns, secret, _preload_content=False)
    except ApiException as e:
        if e.status != 409:
            raise
        # The previous claim's Secret is not deleted yet: replace it.
        _ignore_404(lambda: _core(c).delete_namespaced_secret(contract.claim_secret_name(wp.name), ns))
        _core(c).create_namespaced_secret(ns, secret, _preload_content=False)
    log.info("FFmpegJob %s/%s claimed warm pod %s", ns, meta["name"], wp.name)


# ---------------------------------------------------------------------------------- endings
def sync(c: Context, ffj: dict[str, Any], record: Callable[[Context, dict[str, Any], str | None, dict[str, Any]],
                                                             None]) -> None:
    """A warm-claimed job whose pod reported the worker's exit: end it, or give it to a Job."""
    meta, st = ffj["metadata"], dict(ffj.get("status") or {})
    w = st.get("warm") or {}
    if st.get("phase") in TERMINAL or w.get("exitCode") is None:
        return
    code = int(w["exitCode"])
    gen = meta.get("generation")
    end = parse_time(w.get("finishedAt")) or datetime.now(UTC)
    ns, pod = meta["namespace"], str(w.get("pod"))
    if code == 0 and st.get("result") is not None:
        p = terminal_patch(st, Phase.SUCCEEDED, "Completed", "all outputs uploaded", datetime.now(UTC), gen, end)
        progress = st.get("progress")
        if progress and progress.get("percent", 0) < 100:
            p["progress"] = {**progress, "percent": 100, "step": progress.get("steps", progress.get("step"))}
    elif code in (EXIT_STEP, EXIT_INVALID):
        reason = jobs.FINAL_EXIT_REASONS[code]
        p = terminal_patch(st, Phase.FAILED, reason, str(st.get("error") or f"the worker exited {code}"),
                           datetime.now(UTC), gen, end)
    else:
        lost(c, ns, meta["name"], pod, f"the worker on warm pod {pod} exited {code}", ffj=ffj, force=True)
        return
    if write_status(c.kube, ns, meta["name"], p, meta.get("resourceVersion")) is not Written.DONE:
        return  # the next event decides again
    record(c, ffj, st.get("phase"), p)
    after_job(c, ns, pod, ok=code == 0)


def after_job(c: Context, namespace: str, pod: str, ok: bool) -> None:
    """The claim is over: its Secret goes; the pod is idle again, unless it is done (then it
    exits by itself and the keeper replaces it)."""
    _ignore_404(lambda: _core(c).delete_namespaced_secret(contract.claim_secret_name(pod), namespace))
    with c.warm_pods.lock:
        wp = c.warm_pods.pods.get((namespace, pod))
    try:
        pools = c.pools.get()
    except PoolsUnavailable:
        pools = {}
    pool = pools.get(wp.pool) if wp else None
    if not ok or wp is None or (pool is not None and pool.warm is not None
                                and wp.served >= pool.warm.max_jobs_per_pod):
        return  # the pod exits by itself; the keeper retires and replaces it
    if pool is None or not enabled(pool):
        retire(c, namespace, pod)  # the pool is no longer warm
        return
    body = {"metadata": {"labels": {contract.WARM_STATE_LABEL: contract.IDLE},
                         "annotations": {contract.WARM_JOB_ANNOTATION: None, contract.WARM_JOB_UID_ANNOTATION: None,
                                         contract.WARM_DEADLINE_ANNOTATION: None}}}
    try:
        raw = _core(c).patch_namespaced_pod(pod, namespace, body, _preload_content=False)
        c.warm_pods.update(json.loads(raw.data))
    except ApiException as e:
        if e.status != 404:
            raise


def lost(c: Context, namespace: str, name: str, pod: str, why: str, ffj: dict[str, Any] | None = None,
         force: bool = False) -> None:
    """The warm attempt ended without a verdict: the job gets a normal Job. A pod that vanished
    or ended (deleted, drained, its node lost) is a disruption, retried whatever `backoffLimit`
    says, as a Job's pod would be (pod_failure_policy: Ignore); a worker that failed to reach
    storage or the API (`force`, from its report) counts as an attempt."""
    from .handlers import Refused, create_job, plan, record_transition

    ffj = ffj or c.kube.get_ffmpegjob(namespace, name)
    if ffj is None:
        return
    meta, st = ffj["metadata"], dict(ffj.get("status") or {})
    w = st.get("warm") or {}
    if st.get("phase") in TERMINAL or w.get("pod") != pod:
        return
    if not force and w.get("exitCode") is not None:
        return  # the pod reported before it went: `sync` ends the job from the report
    gen = meta.get("generation")
    t = datetime.now(UTC)
    try:
        model, pool_name, pool = plan(c, dict(ffj.get("spec") or {}))
        if force and model.backoff_limit < 1:
            raise Refused("BackoffLimitExceeded", f"{why}; no attempts remain (backoffLimit 0)")
        drop_grants(c, namespace, str(meta["uid"]))
        job_name = create_job(c, ffj, model, pool_name, pool)
    except Refused as e:
        p = terminal_patch(st, Phase.FAILED, e.reason, e.message, t, gen)
    else:
        msg = f"{why}; Job {job_name} takes over"
        conds = set_condition(st.get("conditions"), "Running", "False", "WarmPodLost", msg, t, gen)
        p = {"jobName": job_name, "warm": None, "phase": Phase.PENDING.value, "reason": "WarmPodLost",
             "message": msg, "conditions": conds}
    if write_status(c.kube, namespace, name, p, meta.get("resourceVersion")) is not Written.DONE:
        return
    record_transition(c, ffj, st.get("phase"), p)
    _ignore_404(lambda: _core(c).delete_namespaced_secret(contract.claim_secret_name(pod), namespace))


def drop_grants(c: Context, namespace: str, uid: str) -> None:
    """The warm attempt's grants go before a Job takes the job over: they expire with the warm
    attempt's deadline, not a queued Job's, and its open multipart uploads are aborted (the Job
    gets freshly presigned ones; its ServiceAccount, Role and RoleBinding are reused)."""
    name = jobs.job_name(uid)
    grants = identity.read_grants(c.kube, namespace, name)
    if grants is not None:
        abort_unfinished(c.signer, grants)
    _ignore_404(lambda: _core(c).delete_namespaced_secret(grants_secret_name(name), namespace))


def timed_out(c: Context, namespace: str, name: str, pod: str) -> None:
    """The claimed job ran past its deadline: Failed (DeadlineExceeded), as a Job's would, unless
    its result is recorded and every output stored (then only the pod's report was lost:
    Succeeded). The caller deletes the pod (its supervisor kills the job's processes)."""
    from .handlers import record_transition

    ffj = c.kube.get_ffmpegjob(namespace, name)
    if ffj is None:
        return
    meta, st = ffj["metadata"], dict(ffj.get("status") or {})
    if st.get("phase") in TERMINAL or (st.get("warm") or {}).get("pod") != pod:
        return
    deadline = int((ffj.get("spec") or {}).get("timeoutSeconds") or 0)
    result, tenant = st.get("result"), str((ffj.get("spec") or {}).get("tenant") or "default")
    if result is not None and outputs_stored(c.storage, c.s3.bucket, tenant, result):
        # The worker finished and stored everything; only the pod's exit report was lost.
        p = terminal_patch(st, Phase.SUCCEEDED, "Completed",
                           f"all outputs uploaded (warm pod {pod} did not report the worker's exit)",
                           datetime.now(UTC), meta.get("generation"))
    else:
        p = terminal_patch(st, Phase.FAILED, "DeadlineExceeded", f"timed out after {deadline}s on warm pod {pod}",
                           datetime.now(UTC), meta.get("generation"))
    if write_status(c.kube, namespace, name, p, meta.get("resourceVersion")) is not Written.DONE:
        return
    record_transition(c, ffj, st.get("phase"), p)


def check(c: Context, namespace: str, name: str, pod: str) -> None:
    """Housekeeping of a job a warm pod runs: a pod that is gone (deleted while no operator
    watched) gives the job to a Job."""
    with c.warm_pods.lock:
        known = (namespace, pod) in c.warm_pods.pods
    if known:
        return
    try:
        _core(c).read_namespaced_pod(pod, namespace, _preload_content=False)
        return
    except ApiException as e:
        if e.status != 404:
            raise
    lost(c, namespace, name, pod, f"warm pod {pod} is gone")


def stop(c: Context, body: dict[str, Any]) -> None:
    """Cancel of a warm-claimed job (its terminal status written): the pod goes, and with it the
    job's processes (the supervisor kills them on SIGTERM)."""
    w = cast(dict[str, Any], (body.get("status") or {}).get("warm") or {})
    if w.get("pod"):
        retire(c, body["metadata"]["namespace"], str(w["pod"]))
