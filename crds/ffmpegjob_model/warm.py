"""Warm pools: what the operator and a warm worker pod agree on (docs/warm-pools.md).

A pool with `warm` settings keeps pre-started worker pods (`warm-<pool>-<random>`) that wait for
work. The operator claims an idle one for a new FFmpegJob with a conditional write on the pod's
labels (its `resourceVersion`), then hands the job over in a per-claim Secret
`<pod>-claim` that the pod's own identity may read by name only (get/watch with
`resourceNames`). The pod forks a fresh worker process per job, which runs as the job's own
identity (a token of the job's ServiceAccount in the claim) with the job's grants, exactly as
in a Job's pod; after it the pod wipes its scratch folder and reports the exit code in
`status.warm` of the FFmpegJob (with the job's token, which the job's Role allows).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from .model import GROUP

# Pod labels: which pool a warm pod serves, and whether it is idle (claimable) or claimed.
WARM_POOL_LABEL = f"{GROUP}/warm-pool"
WARM_STATE_LABEL = f"{GROUP}/warm-state"
IDLE, CLAIMED = "idle", "claimed"
# Pod annotations the operator writes with the claim.
WARM_JOB_ANNOTATION = f"{GROUP}/warm-job"  # the FFmpegJob's name
WARM_JOB_UID_ANNOTATION = f"{GROUP}/warm-job-uid"  # and its uid (a re-created name is another job)
WARM_SERVED_ANNOTATION = f"{GROUP}/warm-served"  # jobs claimed on this pod so far
WARM_DEADLINE_ANNOTATION = f"{GROUP}/warm-deadline"  # Unix seconds: the claimed job's deadline

# The claim Secret's keys.
CLAIM_JOB = "job.json"  # {"name", "namespace", "uid"}
CLAIM_GRANTS = "grants.json"  # the job's Grants (ffmpegjob_model.grants), as in `<job>-grants`
CLAIM_TOKEN = "token"  # a token of the job's ServiceAccount (bound to the warm pod, short-lived)

# The warm pod's environment (besides a Job pod's storage and URL settings).
ENV_MODE = "FFMPEG_WORKER_MODE"
MODE_WARM = "warm"
ENV_POD = "WARM_POD_NAME"
ENV_NAMESPACE = "WARM_NAMESPACE"
ENV_API_SERVER = "WARM_API_SERVER"  # https://host:port of the API server
ENV_CA_FILE = "WARM_CA_FILE"  # the cluster CA (the kube-root-ca.crt ConfigMap, mounted)
ENV_TOKEN = "WARM_TOKEN"  # the pod's own token (read once, then removed from the environment)
ENV_MAX_JOBS = "WARM_MAX_JOBS"  # the pod exits (and is replaced) after this many jobs
CA_MOUNT = "/var/run/kubeffmpeg/ca"
CA_CONFIGMAP = "kube-root-ca.crt"
CA_KEY = "ca.crt"


def claim_secret_name(pod: str) -> str:
    return f"{pod}-claim"


def token_secret_name(pod: str) -> str:
    return f"{pod}-token"


def warm_pod_prefix(pool: str) -> str:
    return f"warm-{pool}-"


class WarmPool(BaseModel):
    """A pool's warm-pod settings (NodePool.warm; absent: no warm pods)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    replicas: int = Field(default=0, ge=0, le=100,
                          description="Warm pods kept for the pool, idle and busy together (0: off).")
    max_jobs_per_pod: int = Field(
        default=1, ge=1, le=10000,
        description="Jobs a warm pod runs before it is replaced (1: every job gets a pod nobody used).")
    max_idle_seconds: int = Field(
        default=3600, ge=60, le=7 * 24 * 3600,
        description="An idle warm pod older than this is replaced (its own token expires soon after).")
