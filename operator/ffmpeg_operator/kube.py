"""Kubernetes API access for the handlers: typed clients and the FFmpegJob status patch."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from functools import cached_property
from typing import Any, cast

from ffmpegjob_model.kubeclient import load_client
from ffmpegjob_model.model import FINISHED_LABEL, GROUP, PLURAL, VERSION
from kubernetes import client
from kubernetes.client.rest import ApiException

# More pooled connections than kopf's handler threads (max_workers, 16): see load_client.
CONNECTION_POOL_SIZE = 32


# How often a status sync recomputes from a fresh read after losing a conditional write.
CONFLICT_RETRIES = 5


def load_config() -> client.ApiClient:
    return load_client(CONNECTION_POOL_SIZE)


class Written(Enum):
    """How a conditional status write ended. CONFLICT: someone wrote in between, recompute from a
    fresh read; GONE: the FFmpegJob was deleted meanwhile, nothing left to do."""

    DONE = "done"
    CONFLICT = "conflict"
    GONE = "gone"


def write_status(kube: Kube, namespace: str, name: str, status: dict[str, Any],
                 resource_version: str | None) -> Written:
    """`Kube.patch_status` with its two expected refusals as answers; any other error raises."""
    try:
        kube.patch_status(namespace, name, status, resource_version)
    except ApiException as e:
        if e.status == 409:
            return Written.CONFLICT
        if e.status == 404:
            return Written.GONE
        raise
    return Written.DONE


@dataclass
class Kube:
    api: client.ApiClient

    # One typed API object each, built at start-up (`warm`): the client imports its large generated
    # API modules lazily, on first use, which cost the first burst after a start seconds of CPU.
    @cached_property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @cached_property
    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.api)

    @cached_property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @cached_property
    def rbac(self) -> client.RbacAuthorizationV1Api:
        return client.RbacAuthorizationV1Api(self.api)

    def warm(self) -> None:
        """Import the API modules now, not in the first handler that needs them."""
        for api in (self.core, self.batch, self.custom, self.rbac):
            assert api is not None

    def get_ffmpegjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            raw = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return cast(dict[str, Any], raw)

    def iter_ffmpegjobs(self, namespace: str, page: int = 500) -> Iterator[dict[str, Any]]:
        """Every FFmpegJob in `namespace` (`*`: all namespaces), a page at a time, so that a
        round over thousands of objects never holds them all in memory."""
        token: str | None = None
        while True:
            kw: dict[str, Any] = {"limit": page, "_preload_content": False}
            if token:
                kw["_continue"] = token
            if namespace == "*":
                resp = self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kw)
            else:
                resp = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, **kw)
            data = _json(resp)
            yield from data.get("items") or []
            token = (data.get("metadata") or {}).get("continue")
            if not token:
                return

    def iter_jobs(self, namespace: str, selector: str, page: int = 100) -> Iterator[dict[str, Any]]:
        """The Jobs matching `selector`, a page at a time (small pages: a Job, its pod template
        and managedFields parsed, is ~10 KB of Python objects, and the page is held at once)."""
        def one(**kw: Any) -> Any:
            if namespace == "*":
                return self.batch.list_job_for_all_namespaces(label_selector=selector, **kw)
            return self.batch.list_namespaced_job(namespace, label_selector=selector, **kw)
        yield from _paged(one, page)

    def iter_pods(self, namespace: str, selector: str, page: int = 100) -> Iterator[dict[str, Any]]:
        """The pods matching `selector`, a page at a time."""
        def one(**kw: Any) -> Any:
            if namespace == "*":
                return self.core.list_pod_for_all_namespaces(label_selector=selector, **kw)
            return self.core.list_namespaced_pod(namespace, label_selector=selector, **kw)
        yield from _paged(one, page)

    def create_event(self, obj: dict[str, Any], type_: str, reason: str, message: str, component: str) -> None:
        """A core/v1 Event about `obj`, for code outside kopf's handlers (which have kopf.event)."""
        meta = obj.get("metadata") or {}
        now = datetime.now(UTC)
        self.core.create_namespaced_event(meta["namespace"], cast(Any, {
            "metadata": {"generateName": f"{meta['name']}."[:200], "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
                               "name": meta["name"], "namespace": meta["namespace"], "uid": meta.get("uid")},
            "type": type_, "reason": reason, "message": message[:1024],
            "source": {"component": component}, "reportingComponent": component,
            "firstTimestamp": now.isoformat(), "lastTimestamp": now.isoformat(), "count": 1,
        }))

    def label_finished(self, namespace: str, name: str) -> None:
        try:
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, {"metadata": {"labels": {FINISHED_LABEL: "true"}}})
        except ApiException as e:
            if e.status != 404:
                raise

    def patch_status(self, namespace: str, name: str, status: dict[str, Any],
                     resource_version: str | None = None) -> None:
        """Merge patch of the status subresource. With `resource_version` it is conditional: a
        409 means someone wrote in between and the caller must recompute."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        self.custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, body)

    def delete_ffmpegjob(self, namespace: str, name: str, uid: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name,
                body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid)),
            )
        except ApiException as e:
            if e.status not in (404, 409):
                raise

    def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            resp = self.batch.read_namespaced_job(name, namespace, _preload_content=False)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return _json(resp)

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        resp = self.core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)
        return list(_json(resp).get("items") or [])

    def delete_job(self, namespace: str, name: str) -> bool:
        """Background propagation: the Job goes now, the garbage collector takes its pods."""
        try:
            self.batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return True

    def read_secret_key(self, namespace: str, name: str, key: str) -> bytes | None:
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        value = (secret.data or {}).get(key)
        return base64.b64decode(value) if value is not None else None


def _paged(list_fn: Any, page: int) -> Iterator[dict[str, Any]]:
    token: str | None = None
    while True:
        kw: dict[str, Any] = {"limit": page, "_preload_content": False}
        if token:
            kw["_continue"] = token
        data = _json(list_fn(**kw))
        yield from data.get("items") or []
        token = (data.get("metadata") or {}).get("continue")
        if not token:
            return


def drain(resp: Any) -> None:
    """Read an unparsed answer (`_preload_content=False`) to its end: only then does urllib3 put
    the connection back in the pool; an undrained one costs the next request a TLS handshake."""
    resp.data  # noqa: B018


def _json(resp: Any) -> dict[str, Any]:
    """Raw JSON, not the client's models: the pure code reads plain dicts with camelCase keys."""
    data: dict[str, Any] = json.loads(resp.data)
    return data
