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
        self._at = -float("inf")  # when the value's read began
        self._forced_at = -float("inf")

    def _read(self, now: float) -> T:
        self._value = self._load()
        self._at = now
        return self._value

    def get(self) -> T:
        with self._lock:
            now = time.monotonic()
            if self._value is None or now - self._at >= self._ttl:
                return self._read(now)
            return self._value

    def refresh(self, min_age: float) -> T:
        """A value read after this call began (a key created a moment ago is in it). Forced
        re-reads are at most one per `min_age` seconds (callers trigger them, e.g. by presenting
        unknown keys): a caller that comes sooner waits for the next one, at most `min_age`, and
        callers waiting together share it."""
        asked = time.monotonic()
        while True:
            with self._lock:
                if self._value is not None and self._at >= asked:
                    return self._value
                now = time.monotonic()
                wait = self._forced_at + min_age - now
                if wait <= 0:
                    self._forced_at = now
                    return self._read(now)
            time.sleep(wait)


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
