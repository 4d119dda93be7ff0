"""The "Very Good FFmpeg" surface (seed 000): jobs with named URL inputs and chained commands,
temporary files. Bodies are wrapped in `{"data": ...}` as the seed's tmp-file answer is."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from ffmpegjob_model.model import FFmpegJobSpec, InputFile, OutputFile, OutputLocation, Webhook
from ffmpegjob_model.storage_layout import DEFAULT_DIR_TTL, valid_file_name
from ffmpegjob_model.urls import URLRules
from starlette.concurrency import run_in_threadpool

from ..compile import check_vgf_names, parallel_spec
from ..errors import ERROR_RESPONSES, ApiError
from ..imports import own_storage_path
from ..jobs import check_webhook, error_of, new_job_name, rest_status, results, status_of, usage_of
from ..schemas import (
    JobStatus,
    TmpFileRequest,
    TmpFileResponse,
    TmpFileUrls,
    VgfJob,
    VgfJobList,
    VgfJobRequest,
    VgfJobResponse,
    VgfProgress,
)
from ..services import Auth, Caller, Services, Svc

router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)
JobId = Annotated[str, Path(description="The job's id", min_length=1, max_length=253)]


def _time(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else value.isoformat().replace("+00:00", "Z")


def view(svc: Services, obj: dict[str, Any]) -> VgfJob:
    st, spec = status_of(obj), obj.get("spec") or {}
    status = rest_status(obj)
    return VgfJob(
        id=obj["metadata"]["name"],
        status=status,
        machine=str(spec.get("machine", "cpu")),
        created_at=_time(obj["metadata"].get("creationTimestamp")),
        started_at=_time(st.start_time),
        completed_at=_time(st.completion_time),
        progress=VgfProgress(**st.progress.model_dump()) if st.progress else None,
        result=results(obj, lambda t, d, f: svc.storage.presign_get(t, d, f, svc.settings.result_url_seconds))
        if status == "completed" else None,
        usage=usage_of(obj),
        error=error_of(obj) if status in ("failed", "cancelled") else None,
        webhook_url=(spec.get("webhook") or {}).get("url"),
    )


def submit(svc: Services, who: Caller, req: VgfJobRequest) -> dict[str, Any]:
    """Create the FFmpegJob; returns it as the API server stored it."""
    check_vgf_names(req.input_files, req.output_files)
    tenant, rules = who.tenant, URLRules()
    machine = svc.jobs.machine(req.machine)
    check_webhook(req.webhook_url, rules)
    inputs: list[InputFile] = []
    for name, url in req.input_files.items():
        url = url.strip()
        if "://" not in url:
            raise ApiError(400, f"input_files.{name}: {url!r} is not a URL")
        # A temp file's download_url (or any presigned URL of our bucket) is read from storage.
        source = own_storage_path(svc.storage, tenant, url) or url
        inputs.append(InputFile(name=name, source=source))
    spec = FFmpegJobSpec(
        tenant=tenant,
        inputs=inputs,
        outputs=[OutputFile(name=n) for n in req.output_files],
        commands=req.ffmpeg_commands,
        machine=machine,
        output=OutputLocation(dir_id="pending"),
        webhook=Webhook(url=req.webhook_url) if req.webhook_url else None,
        timeout_seconds=svc.settings.job_timeout_seconds,
        ttl_seconds_after_finished=svc.settings.job_ttl_seconds_after_finished,
        parallel=parallel_spec(req.parallel),
    )
    svc.jobs.validate(spec)
    svc.jobs.check_quota(tenant, who.quota)
    spec.output = OutputLocation(dir_id=svc.storage.create_dir(tenant, DEFAULT_DIR_TTL, temporary=True).id)
    return svc.jobs.create(new_job_name(), spec, "vgf")


@router.post("/ffmpeg", response_model=VgfJobResponse, response_model_exclude_none=True, tags=["Very Good FFmpeg"],
             summary="Submit a job; with ?wait=true the answer carries its result")
async def create_job(req: VgfJobRequest, who: Auth, svc: Svc,
                     wait: Annotated[bool, Query(description="Wait for the job to finish")] = False) -> VgfJobResponse:
    obj: dict[str, Any] | None = await run_in_threadpool(submit, svc, who, req)
    if wait and obj is not None:
        # The object create returned doubles as the answer: no second read when not waiting.
        obj = await svc.watcher.wait(obj["metadata"]["name"], svc.settings.sync_wait_seconds)
    if obj is None or not obj.get("spec"):
        raise ApiError(404, "Job not found (it was deleted)")
    return VgfJobResponse(data=await run_in_threadpool(view, svc, obj))


@router.get("/ffmpeg/{job_id}", response_model=VgfJobResponse, response_model_exclude_none=True,
            tags=["Very Good FFmpeg"])
def get_job(who: Auth, svc: Svc, job_id: JobId) -> VgfJobResponse:
    return VgfJobResponse(data=view(svc, svc.jobs.get(who.tenant, job_id)))


@router.get("/ffmpeg", response_model=VgfJobList, response_model_exclude_none=True, tags=["Very Good FFmpeg"],
            summary="List your jobs, newest first")
def list_jobs(who: Auth, svc: Svc,
              status: Annotated[JobStatus | None, Query()] = None,
              limit: Annotated[int, Query(ge=1, le=100)] = 20,
              offset: Annotated[int, Query(ge=0)] = 0) -> VgfJobList:
    objs = [o for o in svc.jobs.list(who.tenant) if status is None or rest_status(o) == status]
    objs.sort(key=lambda o: (o["metadata"].get("creationTimestamp", ""), o["metadata"]["name"]), reverse=True)
    page = objs[offset : offset + limit]
    return VgfJobList(data=[view(svc, o) for o in page], total=len(objs), limit=limit, offset=offset)


def _cancel(svc: Services, who: Caller, job_id: str) -> VgfJobResponse:
    svc.jobs.cancel(who.tenant, job_id, ("pending", "processing"))
    obj = svc.jobs.get(who.tenant, job_id)
    job = view(svc, obj)
    if job.status in ("pending", "processing"):
        job.status = "cancelled"  # the operator records it in a moment; the request is accepted
    return VgfJobResponse(data=job)


@router.delete("/ffmpeg/{job_id}", response_model=VgfJobResponse, response_model_exclude_none=True,
               tags=["Very Good FFmpeg"], responses={409: {"description": "The job already finished"}})
def delete_job(who: Auth, svc: Svc, job_id: JobId) -> VgfJobResponse:
    return _cancel(svc, who, job_id)


@router.post("/ffmpeg/{job_id}/cancel", response_model=VgfJobResponse, response_model_exclude_none=True,
             tags=["Very Good FFmpeg"], responses={409: {"description": "The job already finished"}})
def cancel_job(who: Auth, svc: Svc, job_id: JobId) -> VgfJobResponse:
    return _cancel(svc, who, job_id)


@router.post("/tmp-file", response_model=TmpFileResponse, tags=["Very Good FFmpeg"],
             summary="Presigned PUT upload and GET download URLs for one file, valid for one hour")
def tmp_file(who: Auth, svc: Svc, req: Annotated[TmpFileRequest | None, Body()] = None) -> TmpFileResponse:
    name = (req.file_name if req else None) or "input"
    if not valid_file_name(name):
        raise ApiError(400, f"Invalid file_name {name!r}: 1-255 characters, no slashes")
    ttl = svc.settings.tmp_file_seconds
    d = svc.storage.create_dir(who.tenant, ttl, temporary=True)
    return TmpFileResponse(data=TmpFileUrls(
        upload_url=svc.storage.presign_put(who.tenant, d.id, name, ttl),
        download_url=svc.storage.presign_get(who.tenant, d.id, name, ttl),
        expires_in_seconds=ttl,
    ))


