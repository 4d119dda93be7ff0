"""The web dashboard at `/ui`: server-rendered pages (Jinja2) with a little JavaScript, and the
few JSON views the REST surfaces do not have (a job's whole status, jobs filtered by pool, usage
per day).

The pages hold no data: they are the same for everyone and ask for an API key, which the
browser keeps in `sessionStorage`; their scripts call the REST API with it (`Authorization:
Bearer <key>`), so the dashboard can show and do exactly what the key can. The JSON views here
use the same auth dependency as every other route; another tenant's job is a 404."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from ffmpegjob_model import payloads
from ffmpegjob_model.model import Phase
from pydantic import BaseModel, Field

from .errors import ERROR_RESPONSES, ApiError
from .routers.vgf import view as vgf_view
from .schemas import UsageOut, VgfJob
from .services import Auth, Services, Svc
from .webhooks import WebhookDeliveries, deliveries

HERE = FsPath(__file__).parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(responses=ERROR_RESPONSES)
TAG = "Dashboard"

# Presigned result URLs live on the store's own origin, hence media/img/connect beyond 'self'
# (a preview and a browser upload talk to the store directly). Scripts and styles: ours only.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: http: https:; "
       "media-src 'self' blob: http: https:; connect-src 'self' http: https:; frame-ancestors 'none'; "
       "base-uri 'none'; form-action 'self'; object-src 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
PAGES = {  # path under /ui -> (template, title)
    "login": ("login.html", "Sign in"),
    "jobs": ("jobs.html", "Jobs"),
    "submit": ("submit.html", "New job"),
    "files": ("files.html", "Files"),
    "usage": ("usage.html", "Usage"),
}
STATIC_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}\.(css|js|svg)")
MEDIA_TYPES = {"css": "text/css", "js": "text/javascript", "svg": "image/svg+xml"}


def page(request: Request, template: str, title: str, **context: Any) -> HTMLResponse:
    resp = templates.TemplateResponse(request, template, {"title": title, "page": template.split(".")[0], **context})
    resp.headers.update(SECURITY_HEADERS)
    return resp


# ------------------------------------------------------------------------------------- pages
@router.get("/ui", include_in_schema=False)
@router.get("/ui/", include_in_schema=False)
def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/jobs", status_code=307)


@router.get("/ui/static/{name}", include_in_schema=False)
def ui_static(name: str) -> Response:
    m = STATIC_NAME.fullmatch(name)
    if m is None or not (STATIC / name).is_file():
        raise ApiError(404, "Not found")
    return FileResponse(STATIC / name, media_type=MEDIA_TYPES[m.group(1)],
                        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})


@router.get("/ui/jobs/{job_id}", include_in_schema=False, response_class=HTMLResponse)
def ui_job(request: Request, job_id: Annotated[str, Path(min_length=1, max_length=253)]) -> HTMLResponse:
    return page(request, "job.html", "Job", job_id=job_id)


@router.get("/ui/{name}", include_in_schema=False, response_class=HTMLResponse)
def ui_page(request: Request, name: str) -> HTMLResponse:
    if name not in PAGES:
        raise ApiError(404, "Not found")
    template, title = PAGES[name]
    return page(request, template, title)


# ---------------------------------------------------------------------------- JSON: jobs
class ConditionOut(BaseModel):
    type: str
    status: str
    reason: str = ""
    message: str = ""
    time: str | None = None


class ChunkOut(BaseModel):
    index: int
    phase: str
    percent: float
    attempts: int
    start: float
    end: float | None = None
    time_sec: float | None = None
    frames: int | None = None


class StepOut(BaseModel):
    number: int
    command: str
    state: str = Field(description="done, running, waiting, failed or cancelled")
    percent: float


class JobDetail(VgfJob):
    """The job object of `GET /api/jobs/{id}`, then everything the dashboard's detail page shows."""

    surface: str = Field(description="The surface that submitted it: vgf, ffmpeg-api, or kubectl")
    phase: str
    reason: str | None
    message: str | None
    error: str | None = Field(description="The failing step and the tail of FFmpeg's stderr")
    commands: list[str] = Field(description="The FFmpeg commands as the job runs them (placeholders kept)")
    inputs: dict[str, str] = Field(description="input name -> URL or storage path")
    outputs: list[str]
    filter_complex: str | None
    steps: list[StepOut]
    conditions: list[ConditionOut] = Field(description="Oldest first: the job's timeline")
    chunks: list[ChunkOut]
    attempts: int | None
    duration: str | None
    webhook: WebhookDeliveries


class JobDetailResponse(BaseModel):
    data: JobDetail


class DashboardJobList(BaseModel):
    data: list[VgfJob]
    total: int
    pools: list[str] = Field(description="The pools jobs can name, for the filter")


def _time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def commands_of(spec: dict[str, Any]) -> list[str]:
    """The commands as run; the structured form (FFmpeg API surface) as one readable command."""
    if spec.get("commands"):
        return [str(c) for c in spec["commands"]]
    parts: list[str] = []
    for i in spec.get("inputs") or []:
        parts += [*(i.get("options") or []), "-i", "{{" + str(i.get("name", "")) + "}}"]
    if spec.get("filterComplex"):
        parts += ["-filter_complex", repr(spec["filterComplex"])]
    for o in spec.get("outputs") or []:
        for m in o.get("maps") or []:
            parts += ["-map", m]
        parts += [*(o.get("options") or []), "{{" + str(o.get("name", "")) + "}}"]
    return [" ".join(parts)] if parts else []


def steps_of(commands: list[str], obj: dict[str, Any]) -> list[StepOut]:
    st, phase = payloads.status_of(obj), payloads.phase_of(obj)
    prog = st.progress
    n = len(commands)
    current = prog.step if prog and prog.step else (0 if phase == Phase.PENDING else 1)
    # The job's percent is over all steps; each step's share is 1/n of it.
    job_pct = prog.percent if prog else 0.0
    out: list[StepOut] = []
    for k, cmd in enumerate(commands, start=1):
        if phase == Phase.SUCCEEDED or k < current:
            state, pct = "done", 100.0
        elif k == current and phase == Phase.RUNNING:
            state = "running"
            pct = max(0.0, min(100.0, (job_pct - (k - 1) * 100.0 / n) * n)) if n else job_pct
        elif k == current and phase in (Phase.FAILED, Phase.CANCELLED):
            state, pct = ("failed" if phase == Phase.FAILED else "cancelled"), 0.0
        else:
            state, pct = "waiting", 0.0
        out.append(StepOut(number=k, command=cmd, state=state, percent=round(pct, 1)))
    return out


def detail(svc: Services, obj: dict[str, Any]) -> JobDetail:
    base = vgf_view(svc, obj)
    spec, st = obj.get("spec") or {}, payloads.status_of(obj)
    labels = (obj.get("metadata") or {}).get("labels") or {}
    commands = commands_of(spec)
    conditions = sorted(st.conditions or [], key=lambda c: c.last_transition_time or datetime.min.replace(tzinfo=UTC))
    return JobDetail(
        **base.model_dump(),
        surface=labels.get(payloads.SURFACE_LABEL, "kubectl"),
        phase=payloads.phase_of(obj).value,
        reason=st.reason,
        message=st.message,
        error=st.error,
        commands=commands,
        inputs={str(i.get("name", "")): str(i.get("source", "")) for i in spec.get("inputs") or []},
        outputs=[str(o.get("name", "")) for o in spec.get("outputs") or []],
        filter_complex=spec.get("filterComplex"),
        steps=steps_of(commands, obj),
        conditions=[ConditionOut(type=c.type, status=c.status, reason=c.reason, message=c.message,
                                 time=_time(c.last_transition_time)) for c in conditions],
        chunks=[ChunkOut(index=c.index, phase=c.phase, percent=c.percent, attempts=c.attempts, start=c.start,
                         end=c.end, time_sec=c.time_sec, frames=c.frames) for c in st.chunks or []],
        attempts=st.attempts,
        duration=st.duration,
        webhook=deliveries(obj),
    )


@router.get("/ui/api/jobs/{job_id}", response_model=JobDetailResponse, tags=[TAG],
            summary="One job with everything the dashboard shows: commands, steps, chunks, timeline, webhook")
def job_detail(who: Auth, svc: Svc, job_id: Annotated[str, Path(min_length=1, max_length=253)]) -> JobDetailResponse:
    return JobDetailResponse(data=detail(svc, svc.jobs.get(who.tenant, job_id)))


@router.get("/ui/api/jobs", response_model=DashboardJobList, tags=[TAG],
            summary="Your jobs, newest first, filtered by status and pool")
def job_list(who: Auth, svc: Svc,
             status: Annotated[str | None, Query(max_length=16, description="queued, running, succeeded, ...")] = None,
             pool: Annotated[str | None, Query(max_length=63, description="The job's node pool")] = None,
             limit: Annotated[int, Query(ge=1, le=500)] = 50,
             offset: Annotated[int, Query(ge=0)] = 0) -> DashboardJobList:
    if status and status not in payloads.VGF_STATUSES:
        raise ApiError(400, f"status must be one of {', '.join(payloads.VGF_STATUSES)}")
    objs = [o for o in svc.jobs.list(who.tenant)
            if (not status or payloads.VGF_STATUS[payloads.phase_of(o)] == status)
            and (not pool or str((o.get("spec") or {}).get("machine", "cpu")) == pool)]
    objs.sort(key=lambda o: (o["metadata"].get("creationTimestamp", ""), o["metadata"]["name"]), reverse=True)
    return DashboardJobList(data=[vgf_view(svc, o) for o in objs[offset:offset + limit]], total=len(objs),
                            pools=sorted(svc.jobs.pools.get()))


# --------------------------------------------------------------------------- JSON: usage
class DailyUsage(UsageOut):
    day: str = Field(description="UTC date the jobs finished, YYYY-MM-DD")
    jobs: int


class DailyUsageResponse(BaseModel):
    tenant: str
    days: list[DailyUsage] = Field(description="Newest first; over finished jobs that still exist")
    total: UsageOut


def per_day(jobs: list[dict[str, Any]], day_of: Callable[[dict[str, Any]], str | None]) -> list[DailyUsage]:
    days: dict[str, dict[str, float]] = {}
    for j in jobs:
        if not payloads.phase_of(j).terminal:
            continue
        day = day_of(j)
        if day is None:
            continue
        u = payloads.usage_or_estimate(j)
        d = days.setdefault(day, {"jobs": 0, "time_sec": 0.0, "input_size_gb": 0.0, "output_size_gb": 0.0,
                                  "gb_sec": 0.0})
        d["jobs"] += 1
        for k in ("time_sec", "input_size_gb", "output_size_gb", "gb_sec"):
            d[k] += float(getattr(u, k))
    return [DailyUsage(day=day, jobs=int(d["jobs"]), **{k: round(v, 6) for k, v in d.items() if k != "jobs"})
            for day, d in sorted(days.items(), reverse=True)]


def finished_day(obj: dict[str, Any]) -> str | None:
    st = payloads.status_of(obj)
    when = st.completion_time
    if when is None:
        created = (obj.get("metadata") or {}).get("creationTimestamp")
        return str(created)[:10] if created else None
    return when.astimezone(UTC).strftime("%Y-%m-%d")


@router.get("/ui/api/usage/daily", response_model=DailyUsageResponse, tags=[TAG],
            summary="Your usage per day (UTC) over your finished jobs that still exist")
def usage_daily(who: Auth, svc: Svc) -> DailyUsageResponse:
    days = per_day(svc.jobs.list(who.tenant), finished_day)
    total = {k: round(sum(getattr(d, k) for d in days), 6) for k in ("time_sec", "input_size_gb", "output_size_gb",
                                                                     "gb_sec")}
    return DailyUsageResponse(tenant=who.tenant, days=days, total=UsageOut(**total))
