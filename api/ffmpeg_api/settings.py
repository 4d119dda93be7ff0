"""API settings from the environment (pydantic-settings)."""

from __future__ import annotations

from ffmpegjob_model.webhooks import DEFAULT_SECRETS_SECRET
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    api_host: str = "0.0.0.0"
    api_port: int = 8080
    # uvicorn worker processes sharing the port (1: one process). Each has its own caches, rate
    # limiter buckets and ffprobe slots, as a replica has; more processes use more cores.
    api_workers: int = Field(default=1, ge=1, le=64)
    ffmpeg_namespace: str = "ffmpeg"
    pools_configmap: str = "kubeffmpeg-pools"
    api_keys_secret: str = "kubeffmpeg-api-keys"
    # How long the synchronous endpoints wait for a job before answering 503 (poll the job then).
    sync_wait_seconds: float = Field(default=600.0, gt=0)
    # Seconds a read of the key Secret / pools ConfigMap is reused.
    auth_cache_seconds: float = Field(default=10.0, ge=0)
    pools_cache_seconds: float = Field(default=30.0, ge=0)
    # Presigned URL lifetimes (the seeds: 5 minutes for /file, 1 hour for tmp files).
    upload_url_seconds: int = Field(default=300, ge=1)
    download_url_seconds: int = Field(default=300, ge=1)
    result_url_seconds: int = Field(default=3600, ge=1)
    tmp_file_seconds: int = Field(default=3600, ge=1)
    # Imports of URL inputs: the size limit of one file and the time limit of its download.
    import_max_bytes: int = Field(default=5 * 1024**3, ge=1)
    import_timeout_seconds: float = Field(default=300.0, gt=0)
    # Large files (docs/large-files.md): a single presigned PUT (POST /file, POST /api/tmp-file)
    # refuses a declared file_size over this (S3's own limit is 5 GiB); bigger files go in parts.
    single_put_max_bytes: int = Field(default=5 * 1024**3, ge=1)
    # The part size of a multipart upload whose client asks for none (grown to fit 10,000 parts),
    # how long its part URLs are valid, and how long an unfinished upload is kept before abort.
    multipart_part_bytes: int = Field(default=64 * 1024**2, ge=5 * 1024**2, le=5 * 1024**3)
    multipart_url_seconds: int = Field(default=3600, ge=1, le=7 * 24 * 3600)
    multipart_upload_seconds: int = Field(default=24 * 3600, ge=60)
    # Default quotas of a tenant whose key entry sets none (0 = unlimited).
    quota_max_active_jobs: int = Field(default=50, ge=0)
    quota_max_gb_sec: float = Field(default=0.0, ge=0)
    # With Kueue (docs/queueing.md) a tenant over its active-job quota is queued (202), up to this
    # many waiting jobs (then 429); without it, over quota is a 403.
    kueue_enabled: bool = False
    quota_max_queued_jobs: int = Field(default=1000, ge=0)
    job_ttl_seconds_after_finished: int | None = Field(default=7 * 24 * 3600, ge=0)
    job_timeout_seconds: int = Field(default=3600, ge=1)
    # The node pool of a request that names none (both surfaces).
    default_machine: str = Field(default="cpu", min_length=1, max_length=63)
    log_level: str = "INFO"
    # Requests per second per API key (token bucket, per API replica) for tenants whose key
    # entry sets none; 0 = unlimited. The seed documents 10 req/s.
    rate_limit_requests_per_second: float = Field(default=10.0, ge=0)
    rate_limit_burst: int = Field(default=20, ge=1)
    # ffprobe runs at once in one API process, and requests allowed to wait for one (then 503).
    ffprobe_max_concurrent: int = Field(default=4, ge=1)
    ffprobe_max_queue: int = Field(default=16, ge=0)
    ffprobe_queue_timeout_seconds: float = Field(default=30.0, gt=0)
    # Webhook signing secrets, one per tenant (data key = tenant); jobs point at theirs.
    webhook_secrets_secret: str = DEFAULT_SECRETS_SECRET
