"""Webhook deliveries: what the operator (which sends them), the API (which lists them, asks for
redeliveries and hands out signing secrets) and receivers agree on.

Every delivery is a POST of a JSON body with these headers:

- `X-Webhook-Id`: the delivery id. Retries of one delivery keep it; a redelivery gets a new one.
  Receivers deduplicate on it (delivery is at least once).
- `X-Webhook-Attempt`: 1 for the first try of a delivery, 2 for its first retry, ...
- `X-Webhook-Timestamp`: Unix seconds when this attempt was sent.
- `X-Webhook-Signature`: `sha256=` + hex HMAC-SHA256(secret, f"{timestamp}.{body}").

Signing secrets are kept per tenant in one Secret (`WEBHOOK_SECRETS_SECRET`, data key = tenant);
an FFmpegJob names the one that signs its deliveries with `spec.webhook.secretRef`, and one without
a ref is signed with its tenant's secret (created on first use).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
import uuid
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from .model import GROUP

ID_HEADER = "X-Webhook-Id"
ATTEMPT_HEADER = "X-Webhook-Attempt"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
SIGNATURE_HEADER = "X-Webhook-Signature"

# Set by the API (or by hand) to ask the operator for a new delivery of a finished job's webhook.
# The value becomes the new delivery's id when it is a valid id, so the caller knows what to expect.
REDELIVER_ANNOTATION = f"{GROUP}/webhook-redeliver"
DELIVERY_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_DELIVERY_ID = re.compile(DELIVERY_ID_PATTERN)

DEFAULT_SECRETS_SECRET = "kubeffmpeg-webhook-secrets"
SECRET_PREFIX = "whsec_"


# ---------------------------------------------------------------------------------- signatures
def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, signature: str, tolerance: float = 300,
           now: float | None = None) -> bool:
    """What a receiver does: a fresh timestamp (no replays) and a matching signature."""
    try:
        age = abs((now if now is not None else time.time()) - float(timestamp))
    except ValueError:
        return False
    return age <= tolerance and hmac.compare_digest(sign(secret, timestamp, body), signature)


# -------------------------------------------------------------------------------- delivery ids
def first_delivery_id(uid: str) -> str:
    """The id of a job's first delivery: derived from its uid, so that it is the same after an
    operator restart even if the restart came before the id was recorded."""
    return "whd_" + uuid.uuid5(uuid.NAMESPACE_URL, f"{GROUP}/ffmpegjob/{uid}").hex[:24]


def new_delivery_id() -> str:
    return "whd_" + secrets.token_hex(12)


def delivery_id_of_request(value: str) -> str:
    """A redelivery request (the annotation's value) -> the id of the delivery it starts."""
    value = value.strip()
    if _DELIVERY_ID.fullmatch(value):
        return value
    return "whd_" + hashlib.sha256(value.encode()).hexdigest()[:24]


# ---------------------------------------------------------------------------- signing secrets
def new_signing_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def store_signing_secret(core: client.CoreV1Api, namespace: str, name: str, tenant: str,
                         rotate: bool = False) -> tuple[str, bool]:
    """The tenant's signing secret, created when missing (or replaced when `rotate`).
    Returns (secret, created). Concurrent writers are resolved with the resourceVersion."""
    for _ in range(5):
        try:
            sec: Any = core.read_namespaced_secret(name, namespace)
        except ApiException as e:
            if e.status != 404:
                raise
            sec = None
        current = (sec.data or {}).get(tenant) if sec is not None else None
        if current and not rotate:
            return base64.b64decode(current).decode(), False
        value = new_signing_secret()
        encoded = base64.b64encode(value.encode()).decode()
        try:
            if sec is None:
                core.create_namespaced_secret(namespace, client.V1Secret(
                    metadata=client.V1ObjectMeta(name=name, labels={"app.kubernetes.io/part-of": "kubeffmpeg"}),
                    type="Opaque", data={tenant: encoded}))
            else:
                core.patch_namespaced_secret(name, namespace, {
                    "metadata": {"resourceVersion": sec.metadata.resource_version},
                    "data": {tenant: encoded}})
            return value, True
        except ApiException as e:
            if e.status != 409:
                raise
    raise RuntimeError(f"Secret {namespace}/{name} kept changing; try again")
