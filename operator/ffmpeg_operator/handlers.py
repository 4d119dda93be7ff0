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
from ffmpegjob_model import gpu
from ffmpegjob_model.grants import grants_secret_name
from ffmpegjob_model.lenient import read_spec
from ffmpegjob_model.model import GROUP, PLURAL, TERMINAL, VERSION, FFmpegJobSpec, Phase
from ffmpegjob_model.pools import NodePool, canonical_machine
from ffmpegjob_model.queueing import QUEUE_NAME_LABEL
from ffmpegjob_model.safety import validate_spec
from ffmpegjob_model.templates import TEMPLATE_CONDITION
from ffmpegjob_model.times import parse_time
from kubernetes.client import V1DeleteOptions, V1Preconditions
from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from . import fallback, identity, jobs, presets, queueing, split, warm, webhooks
from .context import Context, PoolsUnavailable
from .grants import abort_unfinished, job_grants
from .kube import CONFLICT_RETRIES, Written, drain, write_status
from .scale import in_thread, tune_for_scale
from .status import get_condition, observe, set_condition, terminal_patch
from .storage import delete_scratch, outputs_stored, sweep_expired_dirs, sweep_expired_uploads, sweep_scratch

FFJ = (GROUP, VERSION, PLURAL)
CHILDREN = {jobs.LABEL_MANAGED_BY: jobs.MANAGED_BY}
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
    tune_for_scale(settings, memo)
    if "ctx" not in memo:
        memo["ctx"] = await asyncio.to_thread(Context.from_env)
    c = ctx(memo)
    global _event_kube
    _event_kube = c.kube
    c.metrics.serve(c.settings.metrics_port)
    memo["sweeper"] = asyncio.create_task(storage_sweeper(c))
    memo["housekeeper"] = asyncio.create_task(housekeeper(c))
    if c.settings.kueue_enabled:
        memo["queue_watcher"] = asyncio.create_task(queueing.queue_watcher(c))
    memo["warm_keeper"] = asyncio.create_task(warm.keeper(c))


@kopf.on.cleanup()
async def stop_background(memo: kopf.Memo, **_: Any) -> None:
    for key in ("sweeper", "housekeeper", "queue_watcher", "warm_keeper"):
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
        # Outside kopf's handlers (the housekeeping loop's thread) kopf has no event queue: the
        # Event is written directly, and logged.
        meta = body.get("metadata") or {}
        log.log(logging.WARNING if kind == "Warning" else logging.INFO, "%s/%s %s: %s",
                meta.get("namespace"), meta.get("name"), reason, message)
        kube = _event_kube
        if kube is not None:
            try:
                kube.create_event(body, kind, reason, message, "kubeffmpeg-operator")
            except Exception as e:  # an event is worth a log line, never a failed reconcile
                log.warning("could not post event %s on %s: %s", reason, meta.get("name"), e)


_event_kube: Any = None  # set at start-up: the Kube that posts Events outside kopf's handlers


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
        clean_scratch(c, body)
        st = {**(body.get("status") or {}), **patch}
        start, end = parse_time(st.get("startTime")), parse_time(st.get("completionTime"))
        if start and end:
            machine = str((body.get("spec") or {}).get("machine", ""))
            c.metrics.duration.labels(machine, new).observe(max(0.0, (end - start).total_seconds()))


def clean_scratch(c: Context, body: dict[str, Any]) -> None:
    """A finished chain's checkpoints go, whatever the outcome (in the background: the terminal
    status and the webhook must not wait for storage). What a store outage leaves behind,
    housekeeping's scratch sweep finds later."""
    spec, meta = body.get("spec") or {}, body.get("metadata") or {}
    if len(spec.get("commands") or []) < 2 or not meta.get("uid"):
        return
    tenant, uid, name = str(spec.get("tenant") or "default"), str(meta["uid"]), meta.get("name")

    def run() -> None:
        try:
            n = delete_scratch(c.storage, c.s3.bucket, tenant, uid)
            if n:
                log.info("deleted %d checkpoint objects of FFmpegJob %s", n, name)
        except Exception as e:
            log.warning("could not delete the scratch of FFmpegJob %s (the sweep retries): %s", name, e)

    c.background.submit(run)


def fail(c: Context, body: dict[str, Any], patch: kopf.Patch, reason: str, message: str) -> None:
    st = dict(body.get("status") or {})
    p = terminal_patch(st, Phase.FAILED, reason, message, now(), body["metadata"].get("generation"))
    patch.status.update(p)
    record_transition(c, body, st.get("phase"), p)


# ---------------------------------------------------------------------------- create / resume
def safety_problems(c: Context, spec: FFmpegJobSpec) -> list[str]:
    """The shared command-safety rules (what CEL cannot check), with the URL rules and S3
    settings the api and the worker use (a URL of our own bucket passes all three). URL inputs
    are checked for syntax here and resolved by the worker when it connects: a DNS hiccup must
    not fail a job."""
    try:
        validate_spec(spec, check_urls=False, url_rules=c.url_rules, s3=c.s3)
    except ValueError as e:  # UnsafeCommand, URLRefused
        return [str(e)]
    return []


class Refused(Exception):
    """The FFmpegJob cannot run as written: it ends Failed with this reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


def plan(c: Context, spec: dict[str, Any]) -> tuple[FFmpegJobSpec, str, NodePool]:
    """The validated spec and its pool, or Refused. Read leniently: fields of a newer CRD that
    this operator does not know are logged once and ignored. A job that falls back to the CPU
    (fallback.py) comes back rewritten, with the fallback pool."""
    placed = placement(c, spec)
    return placed.spec, placed.machine, placed.worker_pool()


def placement(c: Context, spec: dict[str, Any]) -> gpu.Placement:
    """`plan`, with what the job's pool lacked when it fell back to the CPU."""
    try:
        model = read_spec(dict(spec))
    except ValidationError as e:
        raise Refused("ValidationFailed", f"invalid spec: {e}") from None
    problems = safety_problems(c, model)
    if problems:
        raise Refused("ValidationFailed", "; ".join(problems))
    pools = c.pools.get()  # PoolsUnavailable: a configuration fault, retried by the caller
    pool_name = canonical_machine(model.machine)
    if pool_name not in pools:
        raise Refused("UnknownMachine",
                      f"machine {model.machine!r} is not a node pool; known: {', '.join(sorted(pools)) or 'none'}")
    try:
        return fallback.placement(model, pool_name, pools)
    except fallback.GpuRefused as e:
        raise Refused("ValidationFailed", str(e)) from None


def create_job(c: Context, obj: dict[str, Any], model: FFmpegJobSpec, pool_name: str, pool: NodePool,
               restart: int = 0, expect: bool = False) -> str:
    """Create (or adopt) the FFmpegJob's Job; its name. Idempotent: the name is deterministic."""
    meta = obj["metadata"]
    manifest = jobs.build_job(obj, model, pool_name, pool, c.settings, c.s3, restart=restart)
    name = str(manifest["metadata"]["name"])
    grant_identity(c, obj, model, manifest)
    c.queues.ensure(c, manifest)
    # Before the request: the Job's first watch event may come before the answer does.
    expected = {**manifest, "metadata": {**manifest["metadata"], "namespace": meta["namespace"]}}
    if expect:  # the caller writes the status this Job implies: its first events change nothing
        c.job_memory.expect(expected)
    try:
        drain(c.kube.batch.create_namespaced_job(meta["namespace"], cast(Any, manifest), _preload_content=False))
        log.info("created Job %s", name)
    except ApiException as e:
        c.job_memory.forget(expected)
        if e.status != 409:
            raise
        existing = c.kube.read_job(meta["namespace"], name)
        if existing is None:
            raise kopf.TemporaryError(f"Job {name} exists and vanished; retrying", delay=1) from e
        if not jobs.owned_by(existing, meta["uid"]):
            raise Refused("JobNameTaken", f"a Job named {name} exists and is not this FFmpegJob's") from e
        log.info("adopted existing Job %s", name)
    except Exception:
        c.job_memory.forget(expected)
        raise
    return name


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
            cancel_ffmpegjob(c, obj)
            return
        if st.get("jobName"):
            # Resumed: the Job was created before. Whether it still exists, and what its pods
            # say, is the reconciler's business (a deleted Job is re-created there).
            sync(c, meta["namespace"], meta["name"])
            return
        try:
            if presets.needs_resolution(dict(spec)):  # kubectl-applied, from an FFmpegJobTemplate
                obj, st = resolve_template(c, obj, st)
            placed = placement(c, dict(obj["spec"]))
            model, pool_name, pool = placed.spec, placed.machine, placed.worker_pool()
            fell_back = fallback.record(st, placed, now(), obj["metadata"].get("generation"))
            if fell_back:  # recorded before a split job's own status writes, which build on it
                st["conditions"] = fell_back["conditions"]
                obj["status"] = {**(obj.get("status") or {}), "conditions": st["conditions"]}
                patch.status.update(fell_back)
            if warm.enabled(pool) and warm.start(c, obj, model, pool_name, pool, patch, record_transition):
                return  # an idle warm pod runs it (warm.py); none idle: a Job, as always
            if model.parallel is not None:  # split-and-stitch (split.py), or one pod with the reason why
                started = split.start(c, obj, model, pool_name, pool, patch, c.url_rules,
                                      lambda reason, msg: fail(c, obj, patch, reason, msg))
                if started.handled:
                    return
                st["conditions"] = started.conditions
            name = create_job(c, obj, model, pool_name, pool, expect=True)
        except Refused as e:
            fail(c, obj, patch, e.reason, e.message)
            return
        except PoolsUnavailable as e:
            post(obj, "Warning", "PoolsUnavailable", str(e))
            raise kopf.TemporaryError(str(e), delay=15) from e
        t = now()
        generation = obj["metadata"].get("generation")  # a template job's is one on: its spec was filled
        conds = set_condition(st.get("conditions"), "Submitted", "True", "JobCreated",
                                     f"Job {name} on pool {pool_name}", t, generation)
        desired = {"jobName": name, "conditions": conds, "observedGeneration": generation}
        if fell_back:
            desired["fallback"] = fell_back["fallback"]
        if not st.get("phase"):
            # The New -> Pending event (record_transition) is the one JobCreated event.
            desired.update(phase=Phase.PENDING.value, reason="JobCreated",
                           message=f"Job {name} created on pool {pool_name}")
        # What the new Job implies (Pending; Suspended when created suspended) is written now,
        # so its first events find nothing to write (jobmemory.py).
        written = {**desired, **implied_status({**st, **desired}, c, meta["namespace"], name, t, generation)}
        patch.status.update({k: v for k, v in written.items() if st.get(k) != v})
        record_transition(c, obj, st.get("phase"), desired)


def resolve_template(c: Context, obj: dict[str, Any], st: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fill a template job's commands and outputs (presets.py), checked by the same rules as any
    job before they are written; (the FFmpegJob as stored now, its status with a TemplateResolved
    condition). Refused (ValidationFailed) for a missing template, bad parameters or unsafe commands."""
    meta = obj["metadata"]
    try:
        resolved, message = presets.resolve(c, meta["namespace"], dict(obj["spec"]))
        plan(c, resolved)  # safety and pool before anything is written
        stored = presets.write(c, meta["namespace"], meta["name"], resolved)
    except presets.TemplateRefused as e:
        raise Refused("ValidationFailed", str(e)) from None
    obj = {**obj, "metadata": stored.get("metadata") or meta, "spec": stored.get("spec") or resolved}
    conds = set_condition(st.get("conditions"), TEMPLATE_CONDITION, "True", "Resolved", message, now(),
                          obj["metadata"].get("generation"))
    return obj, {**st, "conditions": conds}


def implied_status(st: dict[str, Any], c: Context, namespace: str, name: str, t: datetime,
                   generation: int | None) -> dict[str, Any]:
    """The status patch a Job just created (no status, no pods yet) implies."""
    job = c.job_memory.created(namespace, name)
    if job is None:  # adopted, not created: its events are synced as they come
        return {}
    return observe(st, job, [], t, generation, c.settings.pod_start_timeout_seconds).patch


def grant_identity(c: Context, body: dict[str, Any], spec: FFmpegJobSpec, manifest: dict[str, Any]) -> None:
    """The pod's ServiceAccount, Role, RoleBinding and storage grants (identity.py), before the
    Job. URLs expire with the job: its deadline, the time a pod may take to start and, for a Job
    created suspended (a queue admits it later), the time it may wait.

    They are named after the FFmpegJob's first Job (`ffj-<uid>`) and shared by every attempt; a
    re-created Job (`ffj-<uid>-r<n>`) gets freshly presigned grants (`renew_grants`): the earlier
    ones may be near their expiry, and their multipart uploads aborted."""
    meta, job = body["metadata"], manifest["spec"]
    queued = job.get("suspend") or any(k in manifest["metadata"]["labels"] for k in jobs.PASSTHROUGH_LABELS)
    expires = (job["activeDeadlineSeconds"] + c.settings.pod_start_timeout_seconds + 300
               + (c.settings.grant_queue_seconds if queued else 0))
    name, labels, owner = jobs.job_name(meta["uid"]), manifest["metadata"]["labels"], jobs.owner_reference(meta)
    attempt = str(manifest["metadata"]["name"])
    if attempt != name:
        renew_grants(c, meta["namespace"], name, attempt)
    # Presigning initiates the outputs' multipart uploads (storage round trips): meanwhile the
    # ServiceAccount and Role are created.
    grants = c.io.submit(job_grants, c.signer, spec, c.s3, expires, c.settings.grant_multipart_parts,
                         str(meta["uid"]))
    objects: dict[str, Any] = identity.manifests(name, meta["name"], meta["namespace"], labels, owner, None)
    objects["Secret"] = c.io.submit(lambda: with_attempt(
        identity.secret_manifest(name, meta["namespace"], labels, owner, grants.result()), attempt))
    if not identity.ensure(c.kube, objects, c.io):
        abort_unfinished(c.signer, grants.result())  # the Secret from an earlier run stays the pod's


ANNOTATION_GRANTS_FOR = f"{GROUP}/grants-for-job"  # the Job whose attempt a grants Secret was presigned for


def with_attempt(secret: dict[str, Any], job_name: str) -> dict[str, Any]:
    secret["metadata"].setdefault("annotations", {})[ANNOTATION_GRANTS_FOR] = job_name
    return secret


def renew_grants(c: Context, namespace: str, name: str, attempt: str) -> None:
    """Before the Job `attempt` is re-created: the grants Secret of an earlier attempt is
    replaced (immutable, so deleted, its open multipart uploads aborted first). One presigned for
    this very attempt (a retried handler) is kept: its pod may be reading it already."""
    try:
        secret = c.kube.core.read_namespaced_secret(grants_secret_name(name), namespace)
    except ApiException as e:
        if e.status == 404:
            return
        raise
    if ((secret.metadata and secret.metadata.annotations) or {}).get(ANNOTATION_GRANTS_FOR) == attempt:
        return
    with contextlib.suppress(Exception):  # a Secret it cannot parse is replaced all the same
        old = identity.read_grants(c.kube, namespace, name)
        if old is not None:
            abort_unfinished(c.signer, old)
    # Only the Secret just read: two handlers renewing at once must not delete the other's new one
    # (a pod whose Secret is missing does not start).
    uid = secret.metadata.uid if secret.metadata else None
    try:
        c.kube.core.delete_namespaced_secret(grants_secret_name(name), namespace,
                                             body=V1DeleteOptions(preconditions=V1Preconditions(uid=uid)))
    except ApiException as e:
        if e.status not in (404, 409):
            raise
        return
    log.info("renewing the storage grants of %s for the re-created Job %s", name, attempt)


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
def cancel_ffmpegjob(c: Context, body: dict[str, Any]) -> None:
    """The terminal status is written first, then the Job goes: whoever sees the Job vanish
    finds a finished FFmpegJob, never one to re-create."""
    meta = body["metadata"]
    st = dict(body.get("status") or {})
    jname = st.get("jobName") or jobs.job_name(meta["uid"])
    p = terminal_patch(st, Phase.CANCELLED, "Cancelled", "cancelled by spec.cancel", now(),
                              meta.get("generation"))
    if p:
        try:
            c.kube.patch_status(meta["namespace"], meta["name"], p)
        except ApiException as e:
            if e.status != 404:
                raise
            return
    c.kube.delete_job(meta["namespace"], jname)
    split.cancel(c, body)
    warm.stop(c, body)
    record_transition(c, body, st.get("phase"), p)


@kopf.on.field(*FFJ, field="spec.cancel", new=True)
def on_cancel(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    obj = dict(body)
    if (obj.get("status") or {}).get("phase") in TERMINAL:
        return
    c = ctx(memo)
    with timed(c, "cancel"):
        cancel_ffmpegjob(c, obj)


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
        if c.settings.kueue_enabled:  # through Kueue: its Workload, or the queue labels on resume
            model, pool_name, _pool = plan(c, dict(body.get("spec") or {}))
            queueing.set_suspended(c, meta["namespace"], st["jobName"], pool_name, model, bool(new))
        else:
            c.kube.batch.patch_namespaced_job(st["jobName"], meta["namespace"], {"spec": {"suspend": bool(new)}})
    except ApiException as e:
        if e.status != 404:
            raise
    except Refused:
        return
    post(dict(body), "Normal", "Suspended" if new else "Resumed", f"Job {st['jobName']} suspend={bool(new)}")


@kopf.on.field(*FFJ, field="spec.priority")
def on_priority(old: Any, new: Any, body: kopf.Body, meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
    """A queued job's priority changed (`kubectl patch`, PATCH on the API): Kueue re-reads the
    Job's priority-class label and re-orders its queue."""
    st = dict(body.get("status") or {})
    if old == new or st.get("phase") in TERMINAL or not st.get("jobName"):
        return
    c = ctx(memo)
    if not c.settings.kueue_enabled:
        return
    names = [st["jobName"], split.stitch_job_name(meta["uid"])] if st.get("split") else [st["jobName"]]
    queueing.set_priority(c, meta["namespace"], names, new)
    post(dict(body), "Normal", "PriorityChanged", f"priority {old or 'normal'} -> {new or 'normal'}")


# ------------------------------------------------------------------------- status from children
def sync(c: Context, namespace: str, name: str | None, job: dict[str, Any] | None = None) -> None:
    """Recompute one FFmpegJob's status from its Job and pods; conditional write, retried from
    fresh state when another writer got in between. A Job that is gone while the FFmpegJob is
    unfinished is re-created as a new attempt, or ends the FFmpegJob (`missing_job`).

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
        if st.get("warm"):  # run by a warm pod, no Job (warm.py)
            warm.sync(c, ffj, record_transition)
            return
        jname = st.get("jobName") or jobs.job_name(meta["uid"])
        if job is None or attempt > 0 or job["metadata"].get("name") != jname:
            job = c.kube.read_job(namespace, jname)
        if job is not None and job["metadata"].get("deletionTimestamp") and st.get("jobName"):
            job = None  # being deleted: as good as gone
        if job is None:
            if not st.get("jobName"):
                return  # not created yet: the create handler's business
            if missing_job(c, ffj) is Written.CONFLICT:
                continue
            return
        if not jobs.owned_by(job, meta["uid"]):
            return
        juid = job["metadata"].get("uid")
        pods = [] if never_ran(job) else [
            p for p in c.kube.list_pods(namespace, f"{jobs.LABEL_UID}={meta['uid']}") if jobs.owned_by(p, juid)]
        out = observe(st, job, pods, now(), meta.get("generation"), c.settings.pod_start_timeout_seconds)
        if not out.patch:
            return
        written = write_status(c.kube, namespace, name, out.patch, meta.get("resourceVersion"))
        if written is Written.CONFLICT:
            continue  # written in between: recompute from the new state
        if written is Written.GONE:
            return
        if out.stop_job:  # the terminal status is written: now the Job may go
            c.kube.delete_job(namespace, jname)
        record_transition(c, ffj, st.get("phase"), out.patch)
        return
    log.warning("gave up writing the status of FFmpegJob %s/%s: %d conflicting writes in a row; "
                "the next event or housekeeping round retries", namespace, name, CONFLICT_RETRIES)


def missing_job(c: Context, ffj: dict[str, Any]) -> Written:
    """The FFmpegJob is unfinished and its Job is gone (deleted by hand, by a clean-up tool, by a
    TTL, or while the operator was down). Re-create it as a new attempt while attempts remain
    (`spec.backoffLimit` bounds the re-creations too), else end the FFmpegJob `JobDeleted`.
    A worker whose recorded result is all in storage finished the work: Succeeded.
    Conditional write: CONFLICT when it lost one (the caller re-reads and decides again)."""
    meta, spec, st = ffj["metadata"], ffj.get("spec") or {}, dict(ffj.get("status") or {})
    ns, name, gen = meta["namespace"], meta["name"], meta.get("generation")
    gone = str(st.get("jobName"))
    restarts = int(st.get("jobRestarts") or 0)
    new_name: str | None = None
    result = st.get("result")
    if result is not None and outputs_stored(c.storage, c.s3.bucket, str(spec.get("tenant") or "default"), result):
        patch = terminal_patch(st, Phase.SUCCEEDED, "Completed",
                               f"all outputs uploaded (the Job {gone} was deleted afterwards)", now(), gen)
    else:
        try:
            model, pool_name, pool = plan(c, spec)
            limit = model.backoff_limit
            if restarts >= limit:
                raise Refused("JobDeleted",
                              f"the Job {gone} was deleted before the work finished and no attempts remain "
                              f"(backoffLimit {limit}, Jobs re-created {restarts})")
            new_name = create_job(c, ffj, model, pool_name, pool, restart=restarts + 1)
        except Refused as e:
            patch = terminal_patch(st, Phase.FAILED, e.reason, e.message, now(), gen)
        else:
            message = (f"the Job {gone} was deleted before the work finished; Job {new_name} is attempt "
                       f"{restarts + 2} of {limit + 1}")
            conds = set_condition(st.get("conditions"), "Submitted", "True", "JobRecreated", message, now(), gen)
            if get_condition(conds, "Running"):
                conds = set_condition(conds, "Running", "False", "JobRecreated", message, now(), gen)
            patch = {"jobName": new_name, "jobRestarts": restarts + 1, "phase": Phase.PENDING.value,
                     "reason": "JobRecreated", "message": message, "conditions": conds, "observedGeneration": gen}
        if result is not None:  # recorded, but not all in storage: the work did not finish
            patch.update(result=None, usage=None)
    written = write_status(c.kube, ns, name, patch, meta.get("resourceVersion"))
    if written is not Written.DONE:
        return written
    if new_name is not None:
        post(ffj, "Warning", "JobRecreated", str(patch["message"]))
        c.metrics.transitions.labels(Phase.PENDING.value, "JobRecreated").inc()
    else:
        record_transition(c, ffj, st.get("phase"), patch)
    return Written.DONE


def never_ran(job: dict[str, Any]) -> bool:
    jst = job.get("status") or {}
    return bool((job.get("spec") or {}).get("suspend")) and not any(
        jst.get(k) for k in ("active", "succeeded", "failed", "startTime"))


@kopf.on.event("batch", "v1", "jobs", labels=CHILDREN)
async def on_job_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Async, so that an event the status reflects already is dropped on the event loop, not
    queued with its body behind the thread pool's busy handlers (scale.in_thread)."""
    c = ctx(memo)
    job = dict(body)
    if type == "DELETED":
        c.job_memory.forget(job)
    elif c.job_memory.unchanged(job):
        return  # the status reflects this Job state already (jobmemory.py)
    await in_thread(memo, job_event, c, type, job)


def job_event(c: Context, type: str | None, job: dict[str, Any]) -> None:
    with timed(c, "job_event"):
        # A DELETED Job is looked up afresh: gone, it is re-created or the FFmpegJob ends.
        sync(c, job["metadata"]["namespace"], jobs.owner_name(job), job=None if type == "DELETED" else job)
    if type != "DELETED":
        c.job_memory.remember(job)


@kopf.on.event("", "v1", "pods", labels=CHILDREN)
def on_pod_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    if type == "DELETED":
        return
    c = ctx(memo)
    with timed(c, "pod_event"):
        sync(c, body["metadata"]["namespace"], jobs.owner_name(dict(body)))


@kopf.on.event(*FFJ)
async def track_phase(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    # Async: a gauge update needs no thread (each FFmpegJob event waited for one in a burst).
    uid = body["metadata"].get("uid", "")
    phase = None if type == "DELETED" else (body.get("status") or {}).get("phase")
    ctx(memo).metrics.phases.set(uid, phase or (None if type == "DELETED" else Phase.PENDING.value))


# -------------------------------------------------------------------------------------- webhooks
# Delivered by a task per delivery in delivery.py (signing, retry schedule, redeliveries).


# --------------------------------------------------------------------------------------- clean-up
def housekeeping_round(c: Context) -> None:
    """Level-triggered reconciliation, besides the event handlers: what a missed event, a broken
    watch or an operator that was down would otherwise leave wrong. One round is three paginated
    LISTs (FFmpegJobs, then the operator's Jobs and pods, by label) and an in-memory comparison:
    - a finished job past its `ttlSecondsAfterFinished` (and with its webhook settled) is deleted,
      its Job and pod going with it through their ownerReferences;
    - every unfinished job's status is recomputed from the listed Job and pods (`observe`, pure);
      only where that differs from what the status says, or the Job is missing, does `sync` read
      the objects afresh and write (conditionally) - a quiet round writes nothing;
    - scratch objects of jobs that are no longer unfinished are swept.
    One loop rather than a kopf timer or daemon per object: thousands of queued FFmpegJobs would
    otherwise each hold a task, and each task its own GETs, to find nothing changed."""
    t = now()
    ns = c.settings.watched_namespace()
    live: list[dict[str, Any]] = []
    for ffj in c.kube.iter_ffmpegjobs(ns):
        meta, spec, st = ffj["metadata"], ffj.get("spec") or {}, ffj.get("status") or {}
        if meta.get("deletionTimestamp"):
            continue
        if st.get("phase") in TERMINAL:
            if ttl_expired(spec, st, t):
                log.info("TTL expired: deleting FFmpegJob %s/%s", meta["namespace"], meta["name"])
                c.kube.delete_ffmpegjob(meta["namespace"], meta["name"], meta["uid"])
        else:
            # Only what the round reads: not managedFields and annotations, times thousands.
            slim = {k: meta.get(k) for k in ("name", "namespace", "uid", "generation", "resourceVersion")}
            live.append({"metadata": slim, "status": st, "tenant": spec.get("tenant") or "default"})
    if live:
        reconcile_live(c, ns, live, t)
    try:
        swept = sweep_scratch(c.storage, c.s3.bucket, {f["metadata"]["uid"] for f in live}, t)
        if swept:
            log.info("swept scratch of finished jobs: %s", ", ".join(swept))
    except Exception as e:  # a store outage: the next round sweeps
        log.warning("scratch sweep failed: %s", e)


def slim_job(job: dict[str, Any]) -> dict[str, Any]:
    """What `observe` reads of a Job: not its pod template (most of its size, times thousands)."""
    meta, spec = job["metadata"], job.get("spec") or {}
    return {"metadata": {**{k: meta.get(k) for k in ("name", "namespace", "uid", "deletionTimestamp")},
                         "labels": {k: v for k, v in (meta.get("labels") or {}).items() if k == QUEUE_NAME_LABEL}},
            "spec": {k: spec.get(k) for k in ("suspend", "completions", "backoffLimit", "activeDeadlineSeconds")},
            "status": job.get("status") or {}}


def reconcile_live(c: Context, ns: str, live: list[dict[str, Any]], t: datetime) -> None:
    selector = f"{jobs.LABEL_MANAGED_BY}={jobs.MANAGED_BY}"
    # Listed after the FFmpegJobs: a Job named in a listed status existed before this list began.
    by_name = {(j["metadata"]["namespace"], j["metadata"]["name"]): slim_job(j) for j in c.kube.iter_jobs(ns, selector)}
    pods_of: dict[str, list[dict[str, Any]]] = {}
    for pod in c.kube.iter_pods(ns, selector):
        pm = pod["metadata"]
        slim = {"metadata": {k: pm.get(k) for k in ("name", "namespace", "uid", "creationTimestamp")},
                "spec": {"nodeName": (pod.get("spec") or {}).get("nodeName")}, "status": pod.get("status") or {}}
        for ref in pm.get("ownerReferences") or []:
            pods_of.setdefault(ref.get("uid", ""), []).append(slim)
    for ffj in live:
        meta, st = ffj["metadata"], ffj["status"]
        jname = st.get("jobName")
        if not jname:
            continue  # not created yet: kopf's create handler (retried) owns it
        job = by_name.get((meta["namespace"], jname))
        if st.get("warm") and (st["warm"].get("exitCode") is None):
            try:  # a warm pod runs it (warm.py): only whether the pod is still there
                warm.check(c, meta["namespace"], meta["name"], str(st["warm"].get("pod")))
            except Exception as e:
                log.warning("reconcile of FFmpegJob %s/%s failed: %s", meta["namespace"], meta["name"], e)
            continue
        try:
            if st.get("split"):  # a graph of two Jobs: split.sync reads and mends it (re-creates what is gone)
                sync(c, meta["namespace"], meta["name"])
            elif job is not None and not job["metadata"].get("deletionTimestamp"):
                pods = pods_of.get(job["metadata"].get("uid", ""), [])
                out = observe(st, job, pods, t, meta.get("generation"), c.settings.pod_start_timeout_seconds)
                if not out.patch:
                    continue
                log.info("reconcile: FFmpegJob %s/%s is behind its Job (%s)", meta["namespace"], meta["name"],
                         ", ".join(sorted(out.patch)))
            else:
                log.info("reconcile: the Job %s of FFmpegJob %s/%s is gone", jname, meta["namespace"], meta["name"])
            sync(c, meta["namespace"], meta["name"])
        except Exception as e:  # one job's trouble must not stop the round
            log.warning("reconcile of FFmpegJob %s/%s failed: %s", meta["namespace"], meta["name"], e)


def ttl_expired(spec: dict[str, Any], status: dict[str, Any], t: datetime) -> bool:
    ttl, done = spec.get("ttlSecondsAfterFinished"), parse_time(status.get("completionTime"))
    if ttl is None or done is None or t < done + timedelta(seconds=int(ttl)):
        return False
    return not spec.get("webhook") or webhooks.settled(status.get("webhook") or {})


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS. A burst of events leaves glibc's heap at its
    high-water mark (large JSON bodies are malloc'd, not pymalloc'd) though Python freed them."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


async def housekeeper(c: Context) -> None:
    """A first round soon after start-up (what happened while no operator ran), then one every
    `resync_seconds`."""
    delay = min(2.0, c.settings.resync_seconds)
    while True:
        await asyncio.sleep(delay)
        delay = c.settings.resync_seconds
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
            removed = await asyncio.to_thread(sweep_expired_dirs, c.storage, c.s3.bucket, now())
            if removed:
                log.info("deleted expired storage directories: %s", ", ".join(removed))
            aborted = await asyncio.to_thread(sweep_expired_uploads, c.storage, c.s3.bucket, now())
            if aborted:
                log.info("aborted expired multipart uploads: %s", ", ".join(aborted))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a store outage must not end the loop
            log.warning("storage sweep failed: %s", e)
        await asyncio.sleep(c.settings.cleanup_interval_seconds)
