"""Kubernetes access of the API: FFmpegJob objects, the key Secret and the pools ConfigMap."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

from ffmpegjob_model.kubeclient import load_client
from ffmpegjob_model.model import GROUP, PLURAL, VERSION
from ffmpegjob_model.pools import POOLS_KEY, NodePool, parse_pools
from kubernetes import client
from kubernetes.client.rest import ApiException

__all__ = ["Kube", "TTLCache", "load_api_client"]

T = TypeVar("T")


def load_api_client() -> client.ApiClient:
    """A pool large enough for the concurrent requests of uvicorn's thread pool."""
    return load_client(64)


class TTLCache(Generic[T]):
    """One value re-read at most every `ttl` seconds (stale values never outlive it)."""

    def __init__(self, load: Callable[[], T], ttl: float) -> None:
        self._load, self._ttl = load, ttl
        self._lock = threading.Lock()
        self._value: T | None = None
        self._at = -float("inf")
        self._forced_at = -float("inf")

    def get(self) -> T:
        with self._lock:
            if self._value is None or time.monotonic() - self._at >= self._ttl:
                self._value = self._load()
                self._at = time.monotonic()
            return self._value

    def refresh(self, min_age: float) -> T:
        """Re-read now unless a forced re-read happened less than `min_age` ago (bounds re-reads
        that callers can trigger, e.g. by presenting unknown keys). A scheduled re-read does not
        count: it may predate what the caller is looking for, such as a key created a moment ago."""
        with self._lock:
            now = time.monotonic()
            if now - self._forced_at >= min_age and now - self._at > 0.05:
                self._value = None
                self._forced_at = now
        return self.get()


class Kube:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    # ------------------------------------------------------------------------------ FFmpegJobs
    def create_ffmpegjob(self, body: dict[str, Any]) -> dict[str, Any]:
        return cast(
            dict[str, Any],
            self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body),
        )

    def get_ffmpegjob(self, name: str) -> dict[str, Any] | None:
        try:
            raw = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return cast(dict[str, Any], raw)

    def list_ffmpegjobs(self, label_selector: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cont: str | None = None
        while True:
            kw: dict[str, Any] = {"label_selector": label_selector, "limit": 500}
            if cont:
                kw["_continue"] = cont
            page = cast(dict[str, Any],
                        self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, **kw))
            items += page.get("items", [])
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                return items

    def patch_ffmpegjob_spec(self, name: str, spec: dict[str, Any], resource_version: str | None = None) -> None:
        body: dict[str, Any] = {"spec": spec}
        if resource_version:  # optimistic concurrency: refuse if the object changed since it was read
            body["metadata"] = {"resourceVersion": resource_version}
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, body)

    # ---------------------------------------------------------------------------- Secret, pools
    def read_secret_data(self, name: str) -> dict[str, str] | None:
        try:
            sec = self.core.read_namespaced_secret(name, self.namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return {str(k): str(v) for k, v in (sec.data or {}).items()}

    def read_pools(self, configmap: str) -> dict[str, NodePool]:
        try:
            cm = self.core.read_namespaced_config_map(configmap, self.namespace)
        except ApiException as e:
            if e.status == 404:
                return {}
            raise
        return parse_pools((cm.data or {}).get(POOLS_KEY, ""))
