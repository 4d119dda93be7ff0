"""Operator settings, read once from the environment (pydantic-settings) and handed to the
handlers through kopf's `memo`: no module-level state."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from ffmpegjob_model.webhooks import DEFAULT_SECRETS_SECRET
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    # Where FFmpegJobs live. Empty: the operator pod's own namespace. `*`: every namespace.
    ffmpeg_namespace: str = ""
    pod_namespace: str = Field(default="", description="Downward API: the operator pod's namespace.")
    pod_name: str = Field(default="", description="Downward API: the operator pod's name (its Lease identity).")
    log_level: str = "INFO"
    pools_configmap: str = "kubeffmpeg-pools"
    pools_cache_seconds: float = Field(default=5.0, ge=0, description="How long a read pools map is reused.")
    worker_command: list[str] = Field(default_factory=lambda: ["ffmpeg-worker"])
    # Storage grants of worker pods (grants.py): part URLs of each output's multipart upload
    # (0: single PUTs only, at most 5 GiB an output), and how long a Job created suspended (a
    # queue holds it) may wait before it runs: its URLs must outlive the wait and the run.
    grant_multipart_parts: int = Field(default=16, ge=0, le=1000)
    grant_queue_seconds: int = Field(default=24 * 3600, ge=0)
    # Dev allow-list of the URL rules, passed on to the worker and applied to webhooks.
    url_allow_hosts: str = ""
    url_allow_http: bool = False

    # A pod that is not running this long after its creation (unschedulable, image pull, config
    # error) fails the FFmpegJob instead of leaving it Pending forever.
    pod_start_timeout_seconds: int = Field(default=600, ge=1)
    resync_seconds: float = Field(default=15.0, gt=0, description="Housekeeping: TTLs, re-check of running jobs.")

    # Webhook deliveries (docs/webhooks.md publishes the schedule these defaults make: 16
    # attempts over 24 h 15 min). The wait after attempt k is min(initial x factor^(k-1), max),
    # stretched by up to `jitter` (a fraction).
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_max_attempts: int = Field(default=16, ge=1, le=50)
    webhook_backoff_initial: float = Field(default=15.0, gt=0)
    webhook_backoff_factor: float = Field(default=2.0, ge=1)
    webhook_backoff_max: float = Field(default=4 * 3600.0, gt=0)
    webhook_backoff_jitter: float = Field(default=0.1, ge=0, le=1)
    # Signing secrets per tenant (data key = tenant), for jobs whose webhook names no secretRef.
    webhook_secrets_secret: str = DEFAULT_SECRETS_SECRET
    presign_expiry_seconds: int = Field(default=24 * 3600, ge=60, le=7 * 24 * 3600)

    cleanup_interval_seconds: float = Field(default=60.0, gt=0)

    # Queueing on Kueue (queueing.py): Jobs of a pool that names a ClusterQueue (pools ConfigMap,
    # `clusterQueue`) are created suspended with the queue label of the tenant's LocalQueue for
    # the pool (created on first use), and Kueue admits them. Off: Jobs run at once.
    kueue_enabled: bool = False
    kueue_status_seconds: float = Field(default=2.0, gt=0, description="How often queue positions are refreshed.")

    metrics_port: int = 8090  # 0 disables the Prometheus endpoint
    liveness_port: int = 8080  # kopf's /healthz; 0 disables it
    # One active replica at a time: a coordination.k8s.io Lease (see leader.py).
    leader_election: bool = True
    leader_lease_name: str = "kubeffmpeg-operator"
    leader_lease_seconds: int = Field(default=15, ge=5)

    def watched_namespace(self) -> str:
        """`*` for all namespaces, else one namespace name."""
        if self.ffmpeg_namespace:
            return self.ffmpeg_namespace
        if self.pod_namespace:
            return self.pod_namespace
        if SA_NAMESPACE_FILE.exists():
            return SA_NAMESPACE_FILE.read_text().strip()
        return "default"

    def home_namespace(self) -> str:
        """Where the operator's own objects (pools ConfigMap, Lease) are."""
        ns = self.watched_namespace()
        if ns == "*":
            return self.pod_namespace or "default"
        return ns

    def identity(self) -> str:
        """Who holds the Lease and what kopf calls itself: the pod's name, else host and pid."""
        return self.pod_name or f"{socket.gethostname()}-{os.getpid()}"
