"""Kubernetes API access for the handlers: typed clients and the FFmpegJob status patch."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

from ffmpegjob_model.kubeclient import load_client
from ffmpegjob_model.model import FINISHED_LABEL, GROUP, PLURAL, VERSION
from kubernetes import client
from kubernetes.client.rest import ApiException

# More pooled connections than kopf's handler threads (max_workers, 16): see load_client.
CONNECTION_POOL_SIZE = 32


def load_config() -> client.ApiClient:
    return load_client(CONNECTION_POOL_SIZE)


@dataclass
class Kube:
    api: client.ApiClient

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @property
    def rbac(self) -> client.RbacAuthorizationV1Api:
        return client.RbacAuthorizationV1Api(self.api)

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


def _json(resp: Any) -> dict[str, Any]:
    """Raw JSON, not the client's models: the pure code reads plain dicts with camelCase keys."""
    data: dict[str, Any] = json.loads(resp.data)
    return data
