"""Which Job states the FFmpegJobs' statuses already reflect, so that a Job event that changes
nothing the status is computed from costs no API round trip.

Every Job event used to mean a read of the FFmpegJob (and often a status write): a Job created
suspended alone brings two events (ADDED, then MODIFIED when the Job controller adds its
`Suspended` condition), which in a burst of 1,000 queued jobs were 2,000 reads and 1,000 writes
on top of what the creation itself costs. Now:

- the create handler writes the status the Job it just created implies (`observe` on the
  manifest: Pending, and Suspended for a suspended Job) and records the Job's fingerprint;
- a Job event whose fingerprint equals the one last handled is skipped; any other is synced
  as before and its fingerprint recorded once the sync returned.

The fingerprint covers what `status.observe`, `sync` and the split code read of a Job: its
suspend flag, completions, back-off limit, deadline, deletion timestamp and its whole status
except the Job controller's own `Suspended` condition (and empty or zero counters). Pod events
are never skipped, and the housekeeping round recomputes every unfinished job from fresh lists
regardless, so a skipped event can delay nothing by more than one round.

One small hash per live Job (forgotten when the Job is deleted); thread-safe (kopf runs sync
handlers in a thread pool).
"""

from __future__ import annotations

import json
import threading
from typing import Any

SPEC_FIELDS = ("suspend", "completions", "completionMode", "backoffLimit", "backoffLimitPerIndex",
               "activeDeadlineSeconds")
# What the API server fills in when a manifest leaves it out.
SPEC_DEFAULTS: dict[str, Any] = {"suspend": False, "completions": 1, "completionMode": "NonIndexed",
                                 "backoffLimit": 6}


def fingerprint(job: dict[str, Any]) -> int:
    meta, spec, status = job.get("metadata") or {}, job.get("spec") or {}, job.get("status") or {}
    conds = [c for c in status.get("conditions") or [] if c.get("type") != "Suspended"]
    st = {k: v for k, v in status.items() if k != "conditions" and v not in (None, 0, "", [], {})}
    key = {
        "deleting": bool(meta.get("deletionTimestamp")),
        "spec": {k: spec.get(k, SPEC_DEFAULTS.get(k)) for k in SPEC_FIELDS},
        "status": st,
        "conditions": conds,
    }
    return hash(json.dumps(key, sort_keys=True, default=str))


class JobMemory:
    """(namespace, Job name) -> the fingerprint of the Job state last reflected in a status."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], int] = {}
        self._created: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(job: dict[str, Any]) -> tuple[str, str]:
        meta = job.get("metadata") or {}
        return str(meta.get("namespace") or ""), str(meta.get("name") or "")

    def unchanged(self, job: dict[str, Any]) -> bool:
        """True when this Job state was handled already: its event needs no sync."""
        fp = fingerprint(job)
        with self._lock:
            return self._seen.get(self._key(job)) == fp

    def remember(self, job: dict[str, Any]) -> None:
        fp = fingerprint(job)
        with self._lock:
            self._seen[self._key(job)] = fp

    def forget(self, job: dict[str, Any]) -> None:
        with self._lock:
            self._seen.pop(self._key(job), None)
            self._created.pop(self._key(job), None)

    def expect(self, manifest: dict[str, Any]) -> None:
        """A Job was just created from `manifest` (with its namespace): its first events are
        the creation itself, which the creator reflects in the status (`created`)."""
        meta, spec = manifest["metadata"], manifest.get("spec") or {}
        # Labels stay: a suspended Job with Kueue's queue label is Queued, not Suspended (status.py).
        slim = {"metadata": {"name": meta["name"], "namespace": meta["namespace"], "labels": meta.get("labels") or {}},
                "spec": {k: spec[k] for k in SPEC_FIELDS if k in spec}, "status": {}}
        fp = fingerprint(slim)
        with self._lock:
            self._seen[self._key(slim)] = fp
            self._created[self._key(slim)] = slim

    def created(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Job `expect` recorded (taken once), as its ADDED event will show it."""
        with self._lock:
            return self._created.pop((namespace, name), None)

    def __len__(self) -> int:
        return len(self._seen)
