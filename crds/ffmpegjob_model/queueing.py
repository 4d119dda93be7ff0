"""Queueing on Kueue: the names the chart, the local stack, the operator and the api agree on.

With Kueue enabled (chart value `kueue.enabled`, operator setting `KUEUE_ENABLED`), every Job of
an FFmpegJob is created suspended with the queue label of its tenant's LocalQueue for its pool and
the label of its priority class; Kueue admits it (unsuspends it) when its pool's ClusterQueue has
quota. One ResourceFlavor and one ClusterQueue per pool, all ClusterQueues in one cohort, one
LocalQueue per (tenant, pool) in the jobs' namespace, three WorkloadPriorityClasses.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal

KUEUE_GROUP = "kueue.x-k8s.io"
KUEUE_VERSION = "v1beta1"
QUEUE_NAME_LABEL = f"{KUEUE_GROUP}/queue-name"
PRIORITY_CLASS_LABEL = f"{KUEUE_GROUP}/priority-class"
# Kueue copies the Job's UID to its Workload under this label.
JOB_UID_LABEL = f"{KUEUE_GROUP}/job-uid"

Priority = Literal["low", "normal", "high"]
DEFAULT_PRIORITY: Priority = "normal"
# WorkloadPriorityClass name -> value (higher is admitted first within a tenant's queue).
PRIORITY_VALUES: dict[str, int] = {"low": 100, "normal": 1000, "high": 10000}
DEFAULT_COHORT = "kubeffmpeg"

# The FFmpegJob condition that says where a queued job stands.
QUEUED_CONDITION = "Queued"
QUEUED_REASON = "Queued"  # the phase reason of a Job waiting for admission

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def flavor_name(pool: str) -> str:
    return pool


def cluster_queue_name(pool: str, prefix: str = "kubeffmpeg-") -> str:
    return f"{prefix}{pool}"


def local_queue_name(pool: str, tenant: str) -> str:
    """`<pool>-<tenant>`: a DNS label (it is a label value too, so at most 63 characters).
    Tenant ids may hold capitals and `_`; such a name (or a long one) gets a digest suffix, so
    that two tenants never share a queue."""
    plain = f"{pool}-{tenant}"
    if len(plain) <= 63 and _DNS_LABEL.match(plain):
        return plain
    digest = hashlib.sha256(f"{pool}/{tenant}".encode()).hexdigest()[:8]
    base = re.sub(r"[^a-z0-9-]", "-", plain.lower())[:50].strip("-")
    return f"{base}-{digest}"


def priority_of(value: str | None) -> str:
    return value if value in PRIORITY_VALUES else DEFAULT_PRIORITY
