"""Webhooks as the REST surfaces see them: the signing secret every REST job points at, the
delivery record of a job, redelivery requests and the rotation of a tenant's signing secret.

The operator delivers (operator/ffmpeg_operator/delivery.py); the API only reads its record in
`status.webhook` and asks for a redelivery with the annotation `kubeffmpeg.io/webhook-redeliver`."""

from __future__ import annotations

from typing import Any, Literal

from ffmpegjob_model.model import GROUP, PLURAL, VERSION, SecretKeyRef, Webhook
from ffmpegjob_model.webhooks import REDELIVER_ANNOTATION, new_delivery_id, store_signing_secret
from pydantic import BaseModel, Field

from .errors import ApiError
from .jobs import rest_status
from .services import Services
from .settings import ApiSettings

DeliveryState = Literal["none", "pending", "retrying", "delivered", "failed"]


def webhook_spec(settings: ApiSettings, tenant: str, url: str | None) -> Webhook | None:
    """A REST job's webhook, signed with its tenant's secret."""
    if not url:
        return None
    return Webhook(url=url, secret_ref=SecretKeyRef(name=settings.webhook_secrets_secret, key=tenant))


# ------------------------------------------------------------------------------------- bodies
class DeliveryAttemptOut(BaseModel):
    delivery_id: str | None = Field(default=None, description="`X-Webhook-Id` of the attempt")
    attempt: int | None = Field(default=None, description="`X-Webhook-Attempt`: 1, 2, ... within a delivery")
    time: str
    status_code: int | None = Field(default=None, description="The receiver's answer; absent when none came")
    error: str | None = None


class WebhookDeliveries(BaseModel):
    job_id: str
    webhook_url: str | None = None
    state: DeliveryState = Field(description="none: the job has no webhook; pending: the job has not finished "
                                             "or the first attempt is under way; retrying: an attempt failed, "
                                             "the next is scheduled; delivered; failed: retries spent or refused")
    delivery_id: str | None = Field(default=None, description="The current delivery")
    attempt_count: int = 0
    next_attempt_at: str | None = None
    delivered_at: str | None = None
    attempts: list[DeliveryAttemptOut] = Field(default_factory=list, description="Latest attempts, oldest first")


class WebhookDeliveriesResponse(BaseModel):
    ok: bool = True
    webhook: WebhookDeliveries


class VgfWebhookDeliveriesResponse(BaseModel):
    data: WebhookDeliveries


class Redelivery(BaseModel):
    job_id: str
    delivery_id: str = Field(description="The new delivery's `X-Webhook-Id`")


class RedeliveryResponse(BaseModel):
    ok: bool = True
    job_id: str
    delivery_id: str
    message: str = "Redelivery scheduled"


class VgfRedeliveryResponse(BaseModel):
    data: Redelivery


class SigningSecretResponse(BaseModel):
    ok: bool = True
    tenant: str
    secret: str = Field(description="Shown once. Verify `X-Webhook-Signature` with it.")
    message: str = "Deliveries from now on are signed with this secret; the previous one no longer verifies"


# -------------------------------------------------------------------------------------- views
def _time(value: Any) -> str | None:
    return str(value) if value else None


def deliveries(obj: dict[str, Any]) -> WebhookDeliveries:
    spec, st = obj.get("spec") or {}, obj.get("status") or {}
    url = (spec.get("webhook") or {}).get("url")
    rec = st.get("webhook") or {}
    attempts = [DeliveryAttemptOut(delivery_id=a.get("deliveryId"), attempt=a.get("attempt"), time=str(a.get("time")),
                                   status_code=a.get("statusCode"), error=a.get("error"))
                for a in rec.get("attempts") or []]
    state: DeliveryState
    if not url:
        state = "none"
    elif rec.get("delivered") and not _redelivery_pending(obj):
        state = "delivered"
    elif rec.get("gaveUp") and not _redelivery_pending(obj):
        state = "failed"
    elif rec.get("nextAttemptAt"):
        state = "retrying"
    else:
        state = "pending"
    return WebhookDeliveries(
        job_id=obj["metadata"]["name"], webhook_url=url, state=state, delivery_id=rec.get("deliveryId"),
        attempt_count=int(rec.get("attemptCount") or 0) if rec.get("deliveryId") else len(attempts),
        next_attempt_at=_time(rec.get("nextAttemptAt")), delivered_at=_time(rec.get("deliveredAt")),
        attempts=attempts,
    )


def _redelivery_pending(obj: dict[str, Any]) -> bool:
    asked = ((obj.get("metadata") or {}).get("annotations") or {}).get(REDELIVER_ANNOTATION)
    return bool(asked) and asked != ((obj.get("status") or {}).get("webhook") or {}).get("redelivery")


# ------------------------------------------------------------------------------------ actions
def redeliver(svc: Services, tenant: str, job_id: str) -> str:
    """Ask the operator for a new delivery of a finished job's webhook; returns its id."""
    obj = svc.jobs.get(tenant, job_id)
    if not ((obj.get("spec") or {}).get("webhook") or {}).get("url"):
        raise ApiError(409, "The job has no webhook_url: there is nothing to redeliver")
    status = rest_status(obj)
    if status in ("pending", "processing"):
        raise ApiError(409, f"The job is still {status}: its webhook is sent when it finishes")
    delivery_id = new_delivery_id()
    svc.kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, svc.kube.namespace, PLURAL, obj["metadata"]["name"],
        {"metadata": {"annotations": {REDELIVER_ANNOTATION: delivery_id}}})
    return delivery_id


def rotate_signing_secret(svc: Services, tenant: str) -> str:
    secret, _ = store_signing_secret(svc.kube.core, svc.kube.namespace, svc.settings.webhook_secrets_secret,
                                     tenant, rotate=True)
    return secret
