"""Webhook deliveries on both surfaces: list a job's attempts, ask for a redelivery, rotate the
tenant's signing secret. Another tenant's job is a 404, as everywhere."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from ..errors import ERROR_RESPONSES
from ..services import Auth, Svc
from ..webhooks import (
    Redelivery,
    RedeliveryResponse,
    SigningSecretResponse,
    VgfRedeliveryResponse,
    VgfWebhookDeliveriesResponse,
    WebhookDeliveriesResponse,
    deliveries,
    redeliver,
    rotate_signing_secret,
)

router = APIRouter(responses=ERROR_RESPONSES)
VgfJobId = Annotated[str, Path(description="The job's id", min_length=1, max_length=253)]
JobId = Annotated[str, Path(description="The job id", min_length=1, max_length=253)]
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"description": "The job has not finished, or has no webhook_url"}}


# ------------------------------------------------------------------------ "FFmpeg API" surface
@router.get("/job/{jobId}/webhooks", response_model=WebhookDeliveriesResponse, tags=["Jobs"],
            summary="The job's webhook deliveries: state, current delivery, latest attempts")
def job_webhooks(who: Auth, svc: Svc, jobId: JobId) -> WebhookDeliveriesResponse:
    return WebhookDeliveriesResponse(webhook=deliveries(svc.jobs.get(who.tenant, jobId)))


@router.post("/job/{jobId}/webhooks/redeliver", status_code=202, response_model=RedeliveryResponse,
             tags=["Jobs"], responses=CONFLICT, summary="Send the finished job's webhook again (a new delivery id)")
def job_redeliver(who: Auth, svc: Svc, jobId: JobId) -> RedeliveryResponse:
    return RedeliveryResponse(job_id=jobId, delivery_id=redeliver(svc, who.tenant, jobId))


# ---------------------------------------------------------------------- "Very Good FFmpeg" surface
@router.get("/api/jobs/{job_id}/webhooks", response_model=VgfWebhookDeliveriesResponse,
            tags=["Very Good FFmpeg"], summary="The job's webhook deliveries: state, current delivery, latest attempts")
@router.get("/api/ffmpeg/{job_id}/webhooks", response_model=VgfWebhookDeliveriesResponse,
            tags=["Very Good FFmpeg"], summary="The job's webhook deliveries (alias)")
def vgf_webhooks(who: Auth, svc: Svc, job_id: VgfJobId) -> VgfWebhookDeliveriesResponse:
    return VgfWebhookDeliveriesResponse(data=deliveries(svc.jobs.get(who.tenant, job_id)))


@router.post("/api/jobs/{job_id}/webhooks/redeliver", status_code=202, response_model=VgfRedeliveryResponse,
             tags=["Very Good FFmpeg"], responses=CONFLICT,
             summary="Send the finished job's webhook again (a new delivery id)")
@router.post("/api/ffmpeg/{job_id}/webhooks/redeliver", status_code=202, response_model=VgfRedeliveryResponse,
             tags=["Very Good FFmpeg"], responses=CONFLICT, summary="Send the finished job's webhook again (alias)")
def vgf_redeliver(who: Auth, svc: Svc, job_id: VgfJobId) -> VgfRedeliveryResponse:
    return VgfRedeliveryResponse(data=Redelivery(job_id=job_id, delivery_id=redeliver(svc, who.tenant, job_id)))


# ------------------------------------------------------------------------------------ both
@router.post("/webhook-secret/rotate", response_model=SigningSecretResponse, tags=["Service"],
             summary="Replace your webhook signing secret; the new one is shown once")
def rotate_secret(who: Auth, svc: Svc) -> SigningSecretResponse:
    return SigningSecretResponse(tenant=who.tenant, secret=rotate_signing_secret(svc, who.tenant))
