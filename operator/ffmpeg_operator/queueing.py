"""Queueing on Kueue (ffmpegjob_model.queueing has the names): the labels that hand a Job to
Kueue, the tenants' LocalQueues, user suspend/resume and priority changes of queued Jobs, and the
`Queued` condition and `status.queue` (position) computed from Kueue's Workloads.

Kueue decides; nothing here orders or admits anything. The position is the Workload's place
among the pending Workloads of its LocalQueue (the tenant's queue for the pool), in the order
Kueue uses inside one LocalQueue (priority, then creation time): exact there. Between tenants
Kueue's admission fair sharing decides, by each LocalQueue's recent usage; `waiting` says how
many Workloads wait in the pool's ClusterQueue altogether."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from ffmpegjob_model.model import FINISHED_LABEL, GROUP, PLURAL, VERSION, FFmpegJobSpec
from ffmpegjob_model.queueing import (
    JOB_UID_LABEL,
    KUEUE_GROUP,
    KUEUE_VERSION,
    PRIORITY_CLASS_LABEL,
    QUEUE_NAME_LABEL,
    QUEUED_CONDITION,
    priority_of,
)
from kubernetes.client.rest import ApiException

from .jobs import queue_labels
from .kube import Written, write_status
from .settings import OperatorSettings
from .status import TERMINAL, get_condition, set_condition

if TYPE_CHECKING:
    from .context import Context

log = logging.getLogger("ffmpeg_operator.queueing")
# The Jobs of one FFmpegJob: ffj-<uid>, ffj-<uid>-r<n> (re-created), ffj-<uid>-stitch.
_JOB_NAME = re.compile(r"^ffj-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(-r\d+|-stitch)?$")


# --------------------------------------------------------------------------------- Job labels
def is_queued(job: dict[str, Any]) -> bool:
    """A Job Kueue manages (it carries a queue name)."""
    return QUEUE_NAME_LABEL in ((job.get("metadata") or {}).get("labels") or {})


# ------------------------------------------------------------------------------ LocalQueues
class LocalQueues:
    """The tenants' LocalQueues, created on first use (tenants come and go with API keys):
    `<pool>-<tenant>` pointing at the pool's ClusterQueue. Known ones are remembered."""

    def __init__(self, settings: OperatorSettings) -> None:
        self.settings = settings
        self._known: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def ensure(self, c: Context, manifest: dict[str, Any]) -> None:
        labels = manifest["metadata"].get("labels") or {}
        name, ns = labels.get(QUEUE_NAME_LABEL), manifest["metadata"]["namespace"]
        pool = labels.get(f"{GROUP}/pool")
        if not name or not pool or not self.settings.kueue_enabled:
            return
        with self._lock:
            if (ns, name) in self._known:
                return
        cluster_queue = c.pools.get()[pool].cluster_queue if pool in c.pools.get() else None
        if not cluster_queue:
            return  # a queue name the user's own labels chose: theirs to provide
        body = {
            "apiVersion": f"{KUEUE_GROUP}/{KUEUE_VERSION}", "kind": "LocalQueue",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"app.kubernetes.io/managed-by": "kubeffmpeg-operator",
                                    f"{GROUP}/pool": pool}},
            "spec": {"clusterQueue": cluster_queue},
        }
        custom = c.kube.custom
        try:
            custom.create_namespaced_custom_object(KUEUE_GROUP, KUEUE_VERSION, ns, "localqueues", body)
            log.info("created LocalQueue %s/%s", ns, name)
        except ApiException as e:
            if e.status != 409:
                raise
            old = cast(dict[str, Any], custom.get_namespaced_custom_object(KUEUE_GROUP, KUEUE_VERSION, ns,
                                                                           "localqueues", name))
            if (old.get("spec") or {}).get("clusterQueue") != cluster_queue:
                # The pool's ClusterQueue changed; a LocalQueue's is immutable: replace it (its
                # waiting Workloads wait on, and are picked up by the new one).
                log.info("LocalQueue %s/%s pointed at %s: re-created for %s", ns, name,
                         (old.get("spec") or {}).get("clusterQueue"), cluster_queue)
                custom.delete_namespaced_custom_object(KUEUE_GROUP, KUEUE_VERSION, ns, "localqueues", name)
                custom.create_namespaced_custom_object(KUEUE_GROUP, KUEUE_VERSION, ns, "localqueues", body)
        with self._lock:
            self._known.add((ns, name))


# ----------------------------------------------------------------- suspend, resume, priority
def _workloads_of_job(c: Context, namespace: str, job: dict[str, Any]) -> list[dict[str, Any]]:
    uid = job["metadata"].get("uid")
    out = cast(dict[str, Any], c.kube.custom.list_namespaced_custom_object(
        KUEUE_GROUP, KUEUE_VERSION, namespace, "workloads", label_selector=f"{JOB_UID_LABEL}={uid}"))
    return list(out.get("items") or [])


def set_suspended(c: Context, namespace: str, job_name: str, pool_name: str, spec: FFmpegJobSpec,
                  suspend: bool) -> None:
    """The user's `spec.suspend` on a Job. A Job Kueue manages is stopped and started through its
    Workload (`spec.active`); flipping its suspend flag would be undone by Kueue. A Job created
    suspended before Kueue knew it gets its queue labels on resume (Kueue then admits it)."""
    job = c.kube.read_job(namespace, job_name)
    if job is None:
        return
    if is_queued(job):
        for wl in _workloads_of_job(c, namespace, job):
            c.kube.custom.patch_namespaced_custom_object(
                KUEUE_GROUP, KUEUE_VERSION, namespace, "workloads", wl["metadata"]["name"],
                {"spec": {"active": not suspend}})
        return
    labels = queue_labels(c.settings, pool_name, c.pools.get()[pool_name], spec.model_copy(update={"suspend": False}))
    if not suspend and labels:
        c.queues.ensure(c, {"metadata": {"namespace": namespace,
                                         "labels": {**labels, f"{GROUP}/pool": pool_name}}})
        c.kube.batch.patch_namespaced_job(job_name, namespace, {"metadata": {"labels": labels}})
        return
    c.kube.batch.patch_namespaced_job(job_name, namespace, {"spec": {"suspend": suspend}})


def set_priority(c: Context, namespace: str, job_names: list[str], priority: str | None) -> None:
    """A changed `spec.priority`: Kueue re-reads a managed Job's priority-class label and updates
    its Workload (and so its place in the queue)."""
    for name in job_names:
        job = c.kube.read_job(namespace, name)
        if job is None or not is_queued(job):
            continue
        c.kube.batch.patch_namespaced_job(
            name, namespace, {"metadata": {"labels": {PRIORITY_CLASS_LABEL: priority_of(priority)}}})


# ------------------------------------------------------------------ positions (pure)
@dataclass(frozen=True)
class QueueEntry:
    ffmpegjob_uid: str
    local_queue: str
    cluster_queue: str | None
    admitted: bool
    position: int | None  # 1-based, among the pending Workloads of its LocalQueue
    waiting: int | None  # pending Workloads in the ClusterQueue
    reason: str
    message: str
    priority: str | None


def _cond(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == type_), None)


def _true(obj: dict[str, Any], type_: str) -> bool:
    c = _cond(obj, type_)
    return bool(c and c.get("status") == "True")


def ffmpegjob_uid(workload: dict[str, Any]) -> str | None:
    for ref in (workload.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == "Job" and (m := _JOB_NAME.match(str(ref.get("name", "")))):
            return m.group(1)
    return None


def queue_entries(workloads: list[dict[str, Any]], lq_to_cq: dict[str, str]) -> dict[str, QueueEntry]:
    """Per FFmpegJob uid, where its (current) Workload stands."""
    pending: dict[str, list[dict[str, Any]]] = {}
    live: list[tuple[str, dict[str, Any]]] = []
    for wl in workloads:
        uid = ffmpegjob_uid(wl)
        if uid is None or _true(wl, "Finished") or (wl.get("metadata") or {}).get("deletionTimestamp"):
            continue
        live.append((uid, wl))
        if not _true(wl, "QuotaReserved") and (wl.get("spec") or {}).get("active", True):
            pending.setdefault(str(wl["spec"].get("queueName", "")), []).append(wl)
    order: dict[str, int] = {}
    per_cq: dict[str, int] = {}
    for lq, items in pending.items():
        items.sort(key=lambda w: (-int(w["spec"].get("priority") or 0),
                                  str(w["metadata"].get("creationTimestamp") or ""), w["metadata"]["name"]))
        for i, wl in enumerate(items, 1):
            order[wl["metadata"]["uid"]] = i
        cq = lq_to_cq.get(lq)
        if cq:
            per_cq[cq] = per_cq.get(cq, 0) + len(items)
    out: dict[str, QueueEntry] = {}
    for uid, wl in live:
        spec = wl.get("spec") or {}
        lq = str(spec.get("queueName", ""))
        cq = lq_to_cq.get(lq) or ((wl.get("status") or {}).get("admission") or {}).get("clusterQueue")
        admitted = _true(wl, "QuotaReserved")
        reserved = _cond(wl, "QuotaReserved") or {}
        if admitted:
            reason, message = "Admitted", f"admitted by ClusterQueue {cq}"
        elif not spec.get("active", True):
            reason, message = "Inactive", "stopped (spec.suspend); the Workload is inactive"
        else:
            reason = str(reserved.get("reason") or "Pending")
            message = str(reserved.get("message") or "waiting for Kueue")
        entry = QueueEntry(uid, lq, cq, admitted, order.get(wl["metadata"]["uid"]),
                           per_cq.get(cq or "") if not admitted else None, reason, message,
                           spec.get("priorityClassName"))
        # A split job has two Workloads (chunks, then stitch): the pending one speaks for it.
        if uid not in out or (out[uid].admitted and not admitted):
            out[uid] = entry
    return out


def queue_patch(status: dict[str, Any], entry: QueueEntry | None, now: datetime,
                generation: int | None) -> dict[str, Any]:
    """The `queue` and `Queued` condition an FFmpegJob's status should have (empty: as is)."""
    if entry is None:
        return {}
    conds = status.get("conditions")
    if entry.admitted:
        if status.get("queue") is None and (get_condition(conds, QUEUED_CONDITION) or {}).get("status") == "False":
            return {}
        patch: dict[str, Any] = {"queue": None}
        patch["conditions"] = set_condition(conds, QUEUED_CONDITION, "False", "Admitted", entry.message, now,
                                            generation)
        return patch
    queue = {"localQueue": entry.local_queue, "clusterQueue": entry.cluster_queue, "position": entry.position,
             "waiting": entry.waiting, "reason": entry.reason, "message": entry.message[:1024],
             "priority": entry.priority}
    queue = {k: v for k, v in queue.items() if v is not None}
    where = f"position {entry.position} in LocalQueue {entry.local_queue}" if entry.position else \
        f"in LocalQueue {entry.local_queue}"
    new_conds = set_condition(conds, QUEUED_CONDITION, "True", entry.reason, f"{where}: {entry.message}", now,
                              generation)
    patch = {}
    if status.get("queue") != queue:
        patch["queue"] = queue
    if new_conds != [dict(c) for c in conds or []]:
        patch["conditions"] = new_conds
    return patch


# ------------------------------------------------------------------------------- the loop
def queue_round(c: Context, now: datetime) -> int:
    """One pass: read the Workloads and LocalQueues, write what changed. Status writes are
    conditional (resourceVersion): one that loses a race waits for the next round."""
    ns = c.settings.watched_namespace()
    custom = c.kube.custom
    if ns == "*":
        wls = cast(dict[str, Any], custom.list_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, "workloads"))
        lqs = cast(dict[str, Any], custom.list_cluster_custom_object(KUEUE_GROUP, KUEUE_VERSION, "localqueues"))
    else:
        wls = cast(dict[str, Any], custom.list_namespaced_custom_object(KUEUE_GROUP, KUEUE_VERSION, ns, "workloads"))
        lqs = cast(dict[str, Any], custom.list_namespaced_custom_object(KUEUE_GROUP, KUEUE_VERSION, ns,
                                                                        "localqueues"))
    lq_to_cq = {q["metadata"]["name"]: q["spec"].get("clusterQueue") for q in lqs.get("items") or []}
    entries = queue_entries(list(wls.get("items") or []), lq_to_cq)
    if not entries:
        return 0
    written = 0
    for ffj in _unfinished_ffmpegjobs(c, ns):
        meta, st = ffj["metadata"], ffj.get("status") or {}
        if st.get("phase") in TERMINAL or meta.get("deletionTimestamp"):
            continue
        patch = queue_patch(st, entries.get(meta["uid"]), now, meta.get("generation"))
        if not patch:
            continue
        if write_status(c.kube, meta["namespace"], meta["name"], patch, meta.get("resourceVersion")) is Written.DONE:
            written += 1
    return written


def _unfinished_ffmpegjobs(c: Context, ns: str, page: int = 500) -> Iterator[dict[str, Any]]:
    """FFmpegJobs not labelled finished (the operator labels them when they end), a page at a time."""
    token: str | None = None
    while True:
        kw: dict[str, Any] = {"limit": page, "label_selector": f"{FINISHED_LABEL}!=true"}
        if token:
            kw["_continue"] = token
        if ns == "*":
            data = cast(dict[str, Any], c.kube.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kw))
        else:
            data = cast(dict[str, Any], c.kube.custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, **kw))
        yield from data.get("items") or []
        token = (data.get("metadata") or {}).get("continue")
        if not token:
            return


async def queue_watcher(c: Context) -> None:
    while True:
        try:
            await asyncio.to_thread(queue_round, c, datetime.now(UTC))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # Kueue or the API server away: the next round retries
            log.warning("queue status round failed: %s", e)
        await asyncio.sleep(c.settings.kueue_status_seconds)
