"""The app's long-lived clients, built once per process, and the auth dependency."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated

from fastapi import Depends, Header, Request
from ffmpegjob_model.pools import NodePool
from ffmpegjob_model.settings import S3Settings

from .errors import VGF_PREFIX, ApiError
from .jobs import Jobs
from .keystore import KeyIndex, Quota, RateLimit, decode_secret
from .kube import Kube, TTLCache, load_api_client
from .ratelimit import ConcurrencyGate, RateLimiter
from .settings import ApiSettings
from .storage import Storage
from .uploads import Uploads
from .watcher import JobWatcher


@dataclass
class Services:
    settings: ApiSettings
    kube: Kube
    storage: Storage
    jobs: Jobs
    watcher: JobWatcher
    keys: TTLCache[KeyIndex]
    limiter: RateLimiter = field(default_factory=RateLimiter)
    probe_gate: ConcurrencyGate = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        self.probe_gate = ConcurrencyGate(s.ffprobe_max_concurrent, s.ffprobe_max_queue,
                                          s.ffprobe_queue_timeout_seconds)

    @cached_property
    def uploads(self) -> Uploads:
        """Multipart uploads of large files, on the same storage."""
        return Uploads(self.storage, self.settings)

    @classmethod
    def build(cls, settings: ApiSettings) -> Services:
        kube = Kube(load_api_client(), settings.ffmpeg_namespace)
        s3 = S3Settings()
        pools: TTLCache[dict[str, NodePool]] = TTLCache(
            lambda: kube.read_pools(settings.pools_configmap), settings.pools_cache_seconds
        )
        keys = TTLCache(
            lambda: KeyIndex(decode_secret(kube.read_secret_data(settings.api_keys_secret) or {})),
            settings.auth_cache_seconds,
        )
        return cls(settings, kube, Storage(s3), Jobs(kube, settings, s3, pools), JobWatcher(kube), keys)


@dataclass(frozen=True)
class Caller:
    tenant: str
    quota: Quota


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


UNAUTHORIZED = ApiError(401, "Invalid API key", headers={"WWW-Authenticate": 'Basic realm="kubeffmpeg"'})


MISSING = ApiError(400, "Missing Authorization header")


def caller(
    request: Request,
    svc: Annotated[Services, Depends(services)],
    authorization: Annotated[str | None, Header(description="`Basic <key>` or `Bearer <key>`")] = None,
) -> Caller:
    if not (authorization or "").strip() and not request.url.path.startswith(VGF_PREFIX):
        raise MISSING  # the "FFmpeg API" service answers a request without the header so
    index = svc.keys.get()
    found = index.match(authorization)
    if found is None:
        index = svc.keys.refresh(min_age=1.0)  # a key created a moment ago works without waiting
        found = index.match(authorization)
    if found is None:
        raise UNAUTHORIZED
    tenant, key_hash = found
    admit(svc, key_hash, index.tenants[tenant].rate_limit)
    return Caller(tenant, index.tenants[tenant].quota)


def admit(svc: Services, key_hash: str, limit: RateLimit) -> None:
    """The key's token bucket (429 with Retry-After when it is empty)."""
    rate = limit.requests_per_second
    burst = limit.burst
    svc.limiter.admit(key_hash, svc.settings.rate_limit_requests_per_second if rate is None else rate,
                      svc.settings.rate_limit_burst if burst is None else burst)


Svc = Annotated[Services, Depends(services)]
Auth = Annotated[Caller, Depends(caller)]
