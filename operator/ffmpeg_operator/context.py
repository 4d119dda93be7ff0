"""Everything a handler needs, built once at start-up and carried in kopf's `memo`."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ffmpegjob_model.pools import POOLS_KEY, NodePool, parse_pools
from ffmpegjob_model.s3client import s3_client
from ffmpegjob_model.settings import S3Settings
from ffmpegjob_model.urls import URLRules
from kubernetes.client.rest import ApiException

from .grants import Signer
from .jobmemory import JobMemory
from .kube import Kube, load_config
from .metrics import Metrics
from .settings import OperatorSettings
from .storage import Presigner


class PoolsUnavailable(Exception):
    """The pools ConfigMap is missing or unreadable: a configuration fault, retried later."""


@dataclass
class PoolCache:
    """The pools ConfigMap, re-read at most every `ttl` seconds (a burst of FFmpegJobs must not
    mean one ConfigMap read each)."""

    kube: Kube
    namespace: str
    name: str
    ttl: float
    _value: dict[str, NodePool] | None = None
    _read_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self) -> dict[str, NodePool]:
        with self._lock:
            if self._value is not None and time.monotonic() - self._read_at < self.ttl:
                return self._value
            try:
                cm = self.kube.core.read_namespaced_config_map(self.name, self.namespace)
            except ApiException as e:
                raise PoolsUnavailable(f"cannot read ConfigMap {self.namespace}/{self.name}: {e.reason}") from e
            text = (cm.data or {}).get(POOLS_KEY)
            if text is None:
                raise PoolsUnavailable(f"ConfigMap {self.namespace}/{self.name} has no {POOLS_KEY}")
            try:
                self._value = parse_pools(text)
            except ValueError as e:  # pydantic's ValidationError is a ValueError
                raise PoolsUnavailable(f"ConfigMap {self.namespace}/{self.name}: {e}") from e
            self._read_at = time.monotonic()
            return self._value


@dataclass
class Context:
    settings: OperatorSettings
    kube: Kube
    metrics: Metrics
    pools: PoolCache

    @classmethod
    def from_env(cls, settings: OperatorSettings | None = None) -> Context:
        s = settings or OperatorSettings()
        kube = Kube(load_config())
        kube.warm()
        pools = PoolCache(kube, s.home_namespace(), s.pools_configmap, s.pools_cache_seconds)
        return cls(settings=s, kube=kube, metrics=Metrics(), pools=pools)

    @cached_property
    def s3(self) -> S3Settings:
        return S3Settings()

    @cached_property
    def url_rules(self) -> URLRules:
        """The URL rules' dev allow-list (`URL_ALLOW_HOSTS`, `URL_ALLOW_HTTP`), for webhooks and
        spec validation; passed on to worker pods."""
        return URLRules(allow_hosts=self.settings.url_allow_hosts, allow_http=self.settings.url_allow_http)

    @cached_property
    def presigner(self) -> Presigner:
        return Presigner(self.s3, self.settings.presign_expiry_seconds)

    @cached_property
    def storage(self) -> Any:
        """The boto3 client for the operator's own storage work (clean-ups)."""
        return s3_client(self.s3)

    @cached_property
    def signer(self) -> Signer:
        """Presigns the storage grants of worker pods (for the endpoint pods reach)."""
        return Signer(self.s3)

    @cached_property
    def queues(self) -> Any:
        """The tenants' LocalQueues on Kueue (queueing.LocalQueues), created on first use."""
        from .queueing import LocalQueues

        return LocalQueues(self.settings)

    @cached_property
    def io(self) -> ThreadPoolExecutor:
        """Requests a handler overlaps (a job's identity objects); its tasks never wait on each other."""
        return ThreadPoolExecutor(max_workers=16, thread_name_prefix="io")

    @cached_property
    def job_memory(self) -> JobMemory:
        """The Job states the statuses already reflect (jobmemory.py): Job events that change
        nothing are not synced again."""
        return JobMemory()

    @cached_property
    def warm_pods(self) -> Any:
        """The operator's warm pods (warm.WarmPods), from its watch and the keeper's lists."""
        from .warm import WarmPods

        return WarmPods()

    @cached_property
    def background(self) -> ThreadPoolExecutor:
        """Work no handler waits for: releasing a finished job's identity, deleting its scratch."""
        return ThreadPoolExecutor(max_workers=2, thread_name_prefix="background")
