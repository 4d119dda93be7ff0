"""A per-job identity for worker pods: a ServiceAccount whose Role names only its own FFmpegJob,
and a Secret with the job's storage grants (ffmpegjob_model.grants).

    ServiceAccount ffj-<uid>             the pods of Job ffj-<uid> run as it
    Role/RoleBinding ffj-<uid>           get ffmpegjobs/<name>; get, patch ffmpegjobs/<name>/status
    Secret ffj-<uid>-grants              grants.json, mounted read-only at GRANTS_MOUNT

They are created before the Job (a pod naming a ServiceAccount that does not exist yet is refused
by admission, and the Job controller then backs off for a second or more), owned by the FFmpegJob
(so the garbage collector takes them with it, and with it the Job), and deleted by the operator
as soon as the FFmpegJob is finished: the identity lives as long as the job's work.

The operator can grant only what it holds itself (RBAC escalation rules): the Role's rules are
a subset of its own on ffmpegjobs and ffmpegjobs/status.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from ffmpegjob_model.grants import GRANTS_FILE, Grants, grants_secret_name
from ffmpegjob_model.model import GROUP, PLURAL
from kubernetes.client.rest import ApiException

from .kube import Kube, drain

log = logging.getLogger("ffmpeg_operator.identity")


def identity_labels(labels: dict[str, str]) -> dict[str, str]:
    return {**labels, "app.kubernetes.io/component": "worker-identity"}


def _meta(name: str, namespace: str, labels: dict[str, str], owner: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": identity_labels(labels), "ownerReferences": [owner]}


def manifests(name: str, ffj_name: str, namespace: str, labels: dict[str, str], owner: dict[str, Any],
              grants: Grants | None) -> dict[str, dict[str, Any]]:
    """kind -> manifest, in the order they must be created (the Secret only with `grants`)."""
    out: dict[str, dict[str, Any]] = {
        "ServiceAccount": {
            "apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, namespace, labels, owner),
            "automountServiceAccountToken": True,
        },
        "Role": {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": _meta(name, namespace, labels, owner),
            "rules": [
                {"apiGroups": [GROUP], "resources": [PLURAL], "resourceNames": [ffj_name], "verbs": ["get"]},
                {"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "resourceNames": [ffj_name],
                 "verbs": ["get", "patch"]},
            ],
        },
        "RoleBinding": {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": _meta(name, namespace, labels, owner),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    }
    if grants is not None:
        out["Secret"] = secret_manifest(name, namespace, labels, owner, grants)
    return out


def secret_manifest(name: str, namespace: str, labels: dict[str, str], owner: dict[str, Any],
                    grants: Grants) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque", "immutable": True,
        "metadata": _meta(grants_secret_name(name), namespace, labels, owner),
        "stringData": {GRANTS_FILE: grants.dump()},
    }


def _creators(kube: Kube, namespace: str) -> dict[str, Callable[[dict[str, Any]], Any]]:
    # The answers are drained, not parsed into the client's models (CPU per job saved).
    raw: dict[str, Any] = {"_preload_content": False}
    return {
        "ServiceAccount": lambda b: drain(kube.core.create_namespaced_service_account(namespace, b, **raw)),
        "Role": lambda b: drain(kube.rbac.create_namespaced_role(namespace, b, **raw)),
        "RoleBinding": lambda b: drain(kube.rbac.create_namespaced_role_binding(namespace, b, **raw)),
        "Secret": lambda b: drain(kube.core.create_namespaced_secret(namespace, b, **raw)),
    }


def ensure(kube: Kube, objects: dict[str, Any], pool: Executor | None = None) -> bool:
    """Create each object; one that exists already (a retried or resumed handler) is kept.
    False when the grants Secret existed: the grants just presigned are not the pod's.

    The Secret may be a Future (its grants are being presigned). With a pool, the requests
    overlap: ServiceAccount and Role at once, then RoleBinding and Secret at once. Pool tasks
    never wait on each other; only the calling thread waits."""
    namespace = objects["ServiceAccount"]["metadata"]["namespace"]
    create = _creators(kube, namespace)

    def one(kind: str) -> bool:
        body = objects[kind]
        body = body.result() if isinstance(body, Future) else body
        try:
            create[kind](body)
            return True
        except ApiException as e:
            if e.status != 409:
                raise
            return False

    if pool is None:
        return [one(k) for k in ("ServiceAccount", "Role", "RoleBinding", "Secret")][-1]
    sa, role = pool.submit(one, "ServiceAccount"), pool.submit(one, "Role")
    role.result()  # a RoleBinding to a missing Role is refused (escalation check)
    rb = pool.submit(one, "RoleBinding")
    fresh = one("Secret")
    sa.result(), rb.result()
    return fresh


def read_grants(kube: Kube, namespace: str, name: str) -> Grants | None:
    try:
        secret = kube.core.read_namespaced_secret(grants_secret_name(name), namespace)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    raw = (secret.data or {}).get(GRANTS_FILE)
    return Grants.model_validate_json(base64.b64decode(raw)) if raw else None


def delete(kube: Kube, namespace: str, name: str) -> None:
    """Remove the identity, the rights first (404s are fine: deleted already, or never made)."""
    calls: list[Callable[[], Any]] = [
        lambda: kube.rbac.delete_namespaced_role_binding(name, namespace),
        lambda: kube.rbac.delete_namespaced_role(name, namespace),
        lambda: kube.core.delete_namespaced_service_account(name, namespace),
        lambda: kube.core.delete_namespaced_secret(grants_secret_name(name), namespace),
    ]
    for call in calls:
        try:
            call()
        except ApiException as e:
            if e.status != 404:
                raise
