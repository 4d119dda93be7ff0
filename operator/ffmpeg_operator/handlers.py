"""kopf handlers: FFmpegJob -> batch/v1 Job, status from the Job and its pods, cancel/suspend,
webhooks, TTL and storage clean-up.

Every handler is idempotent and reads what it needs from the API server: a retried, resumed or
duplicated run converges on the same state. Status writes from Job/pod events are conditional
(resourceVersion), so two handlers racing on one FFmpegJob never undo each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import kopf
from ffmpegjob_model.model import GROUP, PLURAL, VERSION, FFmpegJobSpec, Phase
from ffmpegjob_model.pools import canonical_machine
from ffmpegjob_model.safety import validate_spec
from ffmpegjob_model.urls import URLRules
from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from . import identity, jobs, split
from .context import Context, PoolsUnavailable
from .grants import abort_unfinished, job_grants
from .status import TERMINAL, observe, parse_time, set_condition, terminal_patch
from .storage import s3_client, sweep_expired_dirs

FFJ = (GROUP, VERSION, PLURAL)
CHILDREN = {jobs.LABEL_MANAGED_BY: jobs.MANAGED_BY}
CONFLICT_RETRIES = 5
log = logging.getLogger("ffmpeg_operator")


def ctx(memo: kopf.Memo) -> Context:
    c: Context = memo["ctx"]
    return c


@contextlib.contextmanager
def timed(c: Context, handler: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        c.metrics.reconcile.labels(handler).observe(time.perf_counter() - t0)


def url_rules(c: Context) -> URLRules:
    return URLRules(allow_hosts=c.settings.url_allow_hosts, allow_http=c.settings.url_allow_http)


def now() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------------------------- start-up
@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # kopf's own bookkeeping goes to annotations: the CRD's status schema prunes unknown fields.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING  # transitions post their own events
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.networking.request_timeout = 30
    settings.execution.max_workers = 16
    if "ctx" not in memo:
        memo["ctx"] = await asyncio.to_thread(Context.from_env)
    c = ctx(memo)
    c.metrics.serve(c.settings.metrics_port)
    memo["sweeper"] = asyncio.create_task(storage_sweeper(c))
    memo["housekeeper"] = asyncio.create_task(housekeeper(c))


@kopf.on.cleanup()
async def stop_background(memo: kopf.Memo, **_: Any) -> None:
    for key in ("sweeper", "housekeeper"):
        task = memo.get(key)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


@kopf.on.probe(id="pools")
def probe_pools(memo: kopf.Memo, **_: Any) -> list[str]:
    """Liveness detail: the pools this operator can place jobs on."""
    return sorted(ctx(memo).pools.get())


# ------------------------------------------------------------------------------------- events
def post(body: dict[str, Any], kind: str, reason: str, message: str) -> None:
    try:
        kopf.event(cast(kopf.Body, body), type=kind, reason=reason, message=message[:1024])
    except LookupError:
        # Outside kopf's handlers (the housekeeping loop's thread) kopf has no event queue; the
        # transition is in the status all the same, and in the log.
        meta = body.get("metadata") or {}
        log.log(logging.WARNING if kind == "Warning" else logging.INFO, "%s/%s %s: %s",
                meta.get("namespace"), meta.get("name"), reason, message)


def record_transition(c: Context, body: dict[str, Any], old: str | None, patch: dict[str, Any]) -> None:
    new = patch.get("phase")
    if not new or new == old:
        return
    reason = str(patch.get("reason") or new)
    kind = "Warning" if new == Phase.FAILED.value else "Normal"
    post(body, kind, reason, f"{old or 'New'} -> {new}: {patch.get('message') or ''}".rstrip(": "))
    c.metrics.transitions.labels(new, reason).inc()
    if new in TERMINAL:
        meta = body.get("metadata") or {}
        if (body.get("status") or {}).get("jobName") or patch.get("jobName"):
            c.background.submit(release_identity, c, meta["namespace"], jobs.job_name(meta["uid"]))
        try:
            c.kube.label_finished(meta["namespace"], meta["name"])
        except ApiException as e:  # the status already says it; the label only speeds up clients
            log.warning("could not label %s/%s finished: %s", meta.get("namespace"), meta.get("name"), e.reason)
        st = {**(body.get("status") or {}), **patch}
        start, end = parse_time(st.get("startTime")), parse_time(st.get("completionTime"))
        if start and end:
            machine = str((body.get("spec") or {}).get("machine", ""))
            c.metrics.duration.labels(machine, new).observe(max(0.0, (end - start).total_seconds()))


def fail(c: Context, body: dict[str, Any], patch: kopf.Patch, reason: str, message: str) -> None:
    st = dict(body.get("status") or {})
    p = terminal_patch(st, Phase.FAILED, reason, message, now(), body["metadata"].get("generation"))
    patch.status.update(p)
    record_transition(c, body, st.get("phase"), p)


# ---------------------------------------------------------------------------- create / resume
def safety_problems(spec: FFmpegJobSpec, rules: URLRules) -> list[str]:
    """The shared command-safety rules (what CEL cannot check). URL inputs are checked for
    syntax here and resolved by the worker when it connects: a DNS hiccup must not fail a job."""
    try:
        validate_spec(spec, check_urls=False, url_rules=rules)
    except ValueError as e:  # UnsafeCommand, URLRefused
        return [str(e)]
    return []


@kopf.on.resume(*FFJ)
@kopf.on.create(*FFJ)
def ensure_job(body: kopf.Body, spec: kopf.Spec, meta: kopf.Meta, patch: kopf.Patch, memo: kopf.Memo,
               logger: kopf.Logger, **_: Any) -> None:
    c = ctx(memo)
    obj = dict(body)
    st = dict(obj.get("status") or {})
    if st.get("phase") in TERMINAL:
        return
    with timed(c, "ensure_job"):
        if spec.get("cancel"):
            cancel_job(c, obj, patch)
            return
        try:
            model = FFmpegJobSpec.model_validate(dict(spec))
        except ValidationError as e:
            fail(c, obj, patch, "ValidationFailed", f"invalid spec: {e}")
            return
        problems = safety_problems(model, url_rules(c))
        if problems:
            fail(c, obj, patch, "ValidationFailed", "; ".join(problems))
            return
        try:
            pools = c.pools.get()
        except PoolsUnavailable as e:
            post(obj, "Warning", "PoolsUnavailable", str(e))
            raise kopf.TemporaryError(str(e), delay=15) from e
        pool_name = canonical_machine(model.machine)
        if pool_name not in pools:
            fail(c, obj, patch, "UnknownMachine",
                 f"machine {model.machine!r} is not a node pool; known: {', '.join(sorted(pools)) or 'none'}")
            return
        if model.parallel is not None:  # split-and-stitch: split.py, or one pod with the reason why
            started = split.start(c, obj, model, pool_name, pools[pool_name], patch, url_rules(c),
                                  lambda reason, msg: fail(c, obj, patch, reason, msg))
            if started.handled:
                return
            st["conditions"] = started.conditions
        manifest = jobs.build_job(obj, model, pool_name, pools[pool_name], c.settings, c.s3)
        name = manifest["metadata"]["name"]
        if not st.get("jobName"):  # else the Job exists, and the identity was made before it
            grant_identity(c, obj, model, manifest)
        try:
            c.kube.batch.create_namespaced_job(meta["namespace"], cast(Any, manifest))
            logger.info("created Job %s", name)
        except ApiException as e:
            if e.status != 409:
                raise
            existing = c.kube.read_job(meta["namespace"], name)
            if existing is None:
                raise kopf.TemporaryError(f"Job {name} exists and vanished; retrying", delay=1) from e
            if not jobs.owned_by(existing, meta["uid"]):
                fail(c, obj, patch, "JobNameTaken", f"a Job named {name} exists and is not this FFmpegJob's")
                return
            logger.info("adopted existing Job %s", name)
        t = now()
        conds = set_condition(st.get("conditions"), "Submitted", "True", "JobCreated",
                                     f"Job {name} on pool {pool_name}", t, meta.get("generation"))
        desired = {"jobName": name, "conditions": conds, "observedGeneration": meta.get("generation")}
        if not st.get("phase"):
            # The New -> Pending event (record_transition) is the one JobCreated event.
            desired.update(phase=Phase.PENDING.value, reason="JobCreated",
                           message=f"Job {name} created on pool {pool_name}")
        patch.status.update({k: v for k, v in desired.items() if st.get(k) != v})
        record_transition(c, obj, st.get("phase"), desired)


def grant_identity(c: Context, body: dict[str, Any], spec: FFmpegJobSpec, manifest: dict[str, Any]) -> None:
    """The pod's ServiceAccount, Role, RoleBinding and storage grants (identity.py), before the
    Job. URLs expire with the job: its deadline, the time a pod may take to start and, for a Job
    created suspended (a queue admits it later), the time it may wait."""
    meta, job = body["metadata"], manifest["spec"]
    queued = job.get("suspend") or any(k in manifest["metadata"]["labels"] for k in jobs.PASSTHROUGH_LABELS)
    expires = (job["activeDeadlineSeconds"] + c.settings.pod_start_timeout_seconds + 300
               + (c.settings.grant_queue_seconds if queued else 0))
    name, labels, owner = manifest["metadata"]["name"], manifest["metadata"]["labels"], jobs.owner_reference(meta)
    # Presigning initiates the outputs' multipart uploads (storage round trips): meanwhile the
    # ServiceAccount and Role are created.
    grants = c.io.submit(job_grants, c.signer, spec, c.s3, expires, c.settings.grant_multipart_parts)
    objects: dict[str, Any] = identity.manifests(name, meta["name"], meta["namespace"], labels, owner, None)
    objects["Secret"] = c.io.submit(lambda: identity.secret_manifest(name, meta["namespace"], labels, owner,
                                                                     grants.result()))
    if not identity.ensure(c.kube, objects, c.io):
        abort_unfinished(c.signer, grants.result())  # the Secret from an earlier run stays the pod's


def release_identity(c: Context, namespace: str, name: str) -> None:
    """A finished job's pods need nothing any more: abort the uploads they left open, then
    delete the identity and the grants (the FFmpegJob's ownerReference would, later)."""
    try:
        grants = identity.read_grants(c.kube, namespace, name)
        if grants is not None:
            abort_unfinished(c.signer, grants)
        identity.delete(c.kube, namespace, name)
    except Exception as e:  # the garbage collector takes them with the FFmpegJob anyway
        log.warning("could not release the identity of %s/%s: %s", namespace, name, e)


# ---------------------------------------------------------------------------- cancel / suspend
def cancel_job(c: Context, body: dict[str, Any], patch: kopf.Patch) -> None:
    meta = body["metadata"]
    st = dict(body.get("status") or {})
    jname = st.get("jobName") or jobs.job_name(meta["uid"])
    c.kube.delete_job(meta["namespace"], jname)
    split.cancel(c, body)
    p = terminal_patch(st, Phase.CANCELLED, "Cancelled", "cancelled by spec.cancel", now(),
                              meta.get("generation"))
    patch.status.update(p)
    record_transition(c, body, st.get("phase"), p)


@kopf.on.field(*FFJ, field="spec.cancel", new=True)
def on_cancel(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    obj = dict(body)
    if (obj.get("status") or {}).get("phase") in TERMINAL:
        return
    c = ctx(memo)
    with timed(c, "cancel"):
        cancel_job(c, obj, patch)


@kopf.on.field(*FFJ, field="spec.suspend")
def on_suspend(old: Any, new: Any, body: kopf.Body, meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
    """Only a change the user made is passed on; a queueing system's own flips of the Job's
    suspend are never reverted, because nothing here reconciles the field continuously."""
    if old is None or bool(old) == bool(new):
        return
    st = dict(body.get("status") or {})
    if st.get("phase") in TERMINAL or not st.get("jobName"):
        return
    c = ctx(memo)
    try:
        c.kube.batch.patch_namespaced_job(st["jobName"], meta["namespace"], {"spec": {"suspend": bool(new)}})
    except ApiException as e:
        if e.status != 404:
            raise
    post(dict(body), "Normal", "Suspended" if new else "Resumed", f"Job {st['jobName']} suspend={bool(new)}")


# ------------------------------------------------------------------------- status from children
def sync(c: Context, namespace: str, name: str | None, job: dict[str, Any] | None = None) -> None:
    """Recompute one FFmpegJob's status from its Job and pods; conditional write, retried.

    `job` is the Job as a watch event just delivered it, which saves a read; a suspended Job that
    never ran has no pods, which saves the pod list (what a burst of queued jobs is made of)."""
    if not name:
        return
    for attempt in range(CONFLICT_RETRIES):
        ffj = c.kube.get_ffmpegjob(namespace, name)
        if ffj is None:
            return
        meta, st = ffj["metadata"], dict(ffj.get("status") or {})
        if st.get("phase") in TERMINAL or meta.get("deletionTimestamp"):
            return
        if split.is_split(ffj):
            split.sync(c, ffj, record_transition)
            return
        jname = st.get("jobName") or jobs.job_name(meta["uid"])
        if job is None or attempt > 0:
            job = c.kube.read_job(namespace, jname)
        if job is None or not jobs.owned_by(job, meta["uid"]):
            return
        pods = [] if never_ran(job) else c.kube.list_pods(namespace, f"{jobs.LABEL_UID}={meta['uid']}")
        out = observe(st, job, pods, now(), meta.get("generation"), c.settings.pod_start_timeout_seconds)
        if not out.patch:
            return
        if out.stop_job:
            c.kube.delete_job(namespace, jname)
        try:
            c.kube.patch_status(namespace, name, out.patch, meta.get("resourceVersion"))
        except ApiException as e:
            if e.status == 409:
                continue  # written in between: recompute from the new state
            if e.status == 404:
                return
            raise
        record_transition(c, ffj, st.get("phase"), out.patch)
        return


def never_ran(job: dict[str, Any]) -> bool:
    jst = job.get("status") or {}
    return bool((job.get("spec") or {}).get("suspend")) and not any(
        jst.get(k) for k in ("active", "succeeded", "failed", "startTime"))


@kopf.on.event("batch", "v1", "jobs", labels=CHILDREN)
def on_job_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    if type == "DELETED":
        return
    c = ctx(memo)
    with timed(c, "job_event"):
        sync(c, body["metadata"]["namespace"], jobs.owner_name(dict(body)), job=dict(body))


@kopf.on.event("", "v1", "pods", labels=CHILDREN)
def on_pod_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    if type == "DELETED":
        return
    c = ctx(memo)
    with timed(c, "pod_event"):
        sync(c, body["metadata"]["namespace"], jobs.owner_name(dict(body)))


@kopf.on.event(*FFJ)
def track_phase(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    uid = body["metadata"].get("uid", "")
    phase = None if type == "DELETED" else (body.get("status") or {}).get("phase")
    ctx(memo).metrics.phases.set(uid, phase or (None if type == "DELETED" else Phase.PENDING.value))


# -------------------------------------------------------------------------------------- webhooks
# Delivered by the daemon in delivery.py (signing, retry schedule, redeliveries).


# --------------------------------------------------------------------------------------- clean-up
def housekeeping_round(c: Context) -> None:
    """One LIST of every FFmpegJob, then what only the passing of time changes:
    - a finished job past its `ttlSecondsAfterFinished` (and with its webhook settled) is deleted,
      its Job and pod going with it through their ownerReferences;
    - an unfinished job that is not queued is re-observed (a pod that never starts fails it).
    One loop rather than a kopf timer per object: thousands of queued FFmpegJobs would otherwise
    each hold a task that wakes up to find nothing changed."""
    t = now()
    for ffj in c.kube.iter_ffmpegjobs(c.settings.watched_namespace()):
        meta, spec, st = ffj["metadata"], ffj.get("spec") or {}, ffj.get("status") or {}
        if meta.get("deletionTimestamp"):
            continue
        if st.get("phase") in TERMINAL:
            if ttl_expired(spec, st, t):
                log.info("TTL expired: deleting FFmpegJob %s/%s", meta["namespace"], meta["name"])
                c.kube.delete_ffmpegjob(meta["namespace"], meta["name"], meta["uid"])
        elif st.get("jobName") and not spec.get("suspend") and st.get("reason") != "Suspended":
            sync(c, meta["namespace"], meta["name"])


def ttl_expired(spec: dict[str, Any], status: dict[str, Any], t: datetime) -> bool:
    ttl, done = spec.get("ttlSecondsAfterFinished"), parse_time(status.get("completionTime"))
    if ttl is None or done is None or t < done + timedelta(seconds=int(ttl)):
        return False
    hook = status.get("webhook") or {}
    return not spec.get("webhook") or bool(hook.get("delivered") or hook.get("gaveUp"))


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS. A burst of events leaves glibc's heap at its
    high-water mark (large JSON bodies are malloc'd, not pymalloc'd) though Python freed them."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


async def housekeeper(c: Context) -> None:
    while True:
        await asyncio.sleep(c.settings.resync_seconds)
        try:
            with timed(c, "housekeeping"):
                await asyncio.to_thread(housekeeping_round, c)
                release_free_memory()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # an API hiccup must not end the loop
            log.warning("housekeeping round failed: %s", e)


async def storage_sweeper(c: Context) -> None:
    """Expired storage directories (and with them temporary files) are deleted periodically."""
    while True:
        try:
            removed = await asyncio.to_thread(sweep_expired_dirs, s3_client(c.s3), c.s3.bucket, now())
            if removed:
                log.info("deleted expired storage directories: %s", ", ".join(removed))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a store outage must not end the loop
            log.warning("storage sweep failed: %s", e)
        await asyncio.sleep(c.settings.cleanup_interval_seconds)
