"""The app's long-lived clients, built once per process, and the auth dependency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from ffmpegjob_model.pools import NodePool
from ffmpegjob_model.settings import S3Settings

from .errors import VGF_PREFIX, ApiError
from .jobs import Jobs
from .keystore import KeyIndex, Quota, decode_secret
from .kube import Kube, TTLCache, load_api_client
from .settings import ApiSettings
from .storage import Storage
from .watcher import JobWatcher


@dataclass
class Services:
    settings: ApiSettings
    kube: Kube
    storage: Storage
    jobs: Jobs
    watcher: JobWatcher
    keys: TTLCache[KeyIndex]

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
    tenant = index.lookup(authorization)
    if tenant is None:
        index = svc.keys.refresh(min_age=1.0)  # a key created a moment ago works without waiting
        tenant = index.lookup(authorization)
    if tenant is None:
        raise UNAUTHORIZED
    return Caller(tenant, index.tenants[tenant].quota)


Svc = Annotated[Services, Depends(services)]
Auth = Annotated[Caller, Depends(caller)]
