"""Endpoints of both surfaces: health and per-tenant usage totals."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from ..errors import ERROR_RESPONSES
from ..jobs import totals
from ..schemas import UsageResponse
from ..services import Auth, Svc

router = APIRouter(responses=ERROR_RESPONSES)


class Health(BaseModel):
    ok: bool = True


@router.get("/healthz", response_model=Health, tags=["Service"], summary="Liveness (no auth)")
def healthz() -> Health:
    return Health()


@router.get("/usage", response_model=UsageResponse, tags=["Service"],
            summary="Your usage: totals over your jobs that still exist")
def usage(who: Auth, svc: Svc) -> UsageResponse:
    return UsageResponse(tenant=who.tenant, usage=totals(svc.jobs.list(who.tenant)))
