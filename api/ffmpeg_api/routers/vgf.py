"""The "Very Good FFmpeg" surface (seed 000; `/api/*`), as the service's own SDKs call it (Python `very-good-ffmpeg`,
the TypeScript SDK of its n8n node): `POST /api/ffmpeg` (`?wait=true`), `GET /api/jobs/{id}`,
`GET /api/jobs?limit&offset`, `POST /api/jobs/{id}/cancel`, `POST /api/tmp-file`. Bodies are
wrapped in `{"data": ...}`; the job object is built by `ffmpegjob_model.payloads.vgf_job`, which
the operator also sends as the webhook body. `/api/ffmpeg/{id}` (GET, DELETE, POST .../cancel)
and `GET /api/ffmpeg` are kept as aliases."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response
from ffmpegjob_model import payloads
from ffmpegjob_model.model import InputFile, OutputLocation
from ffmpegjob_model.storage_layout import split_result_path, valid_file_name
from starlette.concurrency import run_in_threadpool

from .. import presets
from ..compile import check_vgf_names, vgf_spec
from ..errors import ERROR_RESPONSES, ApiError
from ..imports import own_storage_path
from ..jobs import OVER_QUOTA_ANNOTATION, job_tenant, new_job_name
from ..schemas import (
    PagingParams,
    TmpFileRequest,
    TmpFileResponse,
    TmpFileUrls,
    VgfJob,
    VgfJobList,
    VgfJobPatch,
    VgfJobRequest,
    VgfJobResponse,
)
from ..services import Auth, Caller, Services, Svc
from ..submission import submission
from ..uploads import single_put_check

router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)
JobId = Annotated[str, Path(description="The job's id", min_length=1, max_length=253)]
TAG = "Very Good FFmpeg"
# The service's docs: `?wait=true` holds the request at most 5 minutes, then answers the job as it is.
WAIT_MAX_SECONDS = 300.0
# An annotation holds the original request unless it is this large (the spec has it too).
ANNOTATION_MAX = 64 * 1024
# Earlier status words of this surface, still accepted by the list filter.
LEGACY_STATUS = {"pending": "queued", "processing": "running", "completed": "succeeded"}


def view(svc: Services, obj: dict[str, Any]) -> VgfJob:
    tenant = job_tenant(obj)

    def presign(storage_path: str, expires: int) -> str:
        parts = split_result_path(storage_path)
        if parts is None:
            raise ValueError(f"not a storage path: {storage_path!r}")
        return svc.storage.presign_get(tenant, parts[0], parts[1], expires)

    return VgfJob.model_validate(payloads.vgf_job(obj, presign))


def submit_vgf_job(svc: Services, who: Caller, req: VgfJobRequest) -> dict[str, Any]:
    """Create the FFmpegJob of a "Very Good FFmpeg" request; returns it as the API server stored it."""
    tenant = who.tenant
    sub = submission(svc, tenant, req.machine, req.webhook_url, unresolvable_ok=True, priority=req.priority,
                     fallback=req.fallback)
    sources: dict[str, str] = {}
    for name, url in req.input_files.items():
        url = url.strip()
        if "://" not in url:
            raise ApiError(400, f"input_files.{name}: {url!r} is not a URL")
        # A temp file's download_url (or any presigned URL of our bucket) is read from storage.
        sources[name] = own_storage_path(svc.storage, tenant, url) or url
    # The output directory is created once the job is known to be acceptable.
    timeout = req.timeout_seconds or payloads.VGF_DEFAULT_TIMEOUT_SECONDS
    if req.template is not None:  # a preset (docs/presets.md): input_files keys are its input names
        if req.ffmpeg_commands or req.output_files:
            raise ApiError(400, "template: leave ffmpeg_commands and output_files out, the template gives them")
        check_vgf_names(req.input_files, [])
        inputs = [InputFile(name=n, source=sources[n]) for n in req.input_files]
        spec = presets.template_spec(svc, req.template, sub, inputs, "pending", timeout, req.parallel)
    else:
        spec = vgf_spec(req, sub, sources, output_dir="pending", timeout_seconds=timeout)
    # An input or webhook host that does not resolve is accepted: the job fails when it is
    # fetched, with an error_message, as on the service. Forbidden addresses stay a 400.
    svc.jobs.validate(spec, unresolvable_ok=True)
    queued = svc.jobs.check_quota(tenant, who.quota)
    # Outputs are kept as long as their download links are valid (7 days after the job ends).
    keep = payloads.VGF_OUTPUT_URL_SECONDS + spec.timeout_seconds
    spec.output = OutputLocation(dir_id=svc.storage.create_dir(tenant, keep, temporary=True).id)
    original = json.dumps({"input_files": req.input_files, "ffmpeg_commands": req.ffmpeg_commands}
                          | ({"template": req.template.model_dump()} if req.template else {}), separators=(",", ":"))
    annotations = {payloads.VGF_REQUEST_ANNOTATION: original} if len(original) <= ANNOTATION_MAX else {}
    if queued:
        annotations[OVER_QUOTA_ANNOTATION] = "true"
    return svc.jobs.create(new_job_name(), spec, payloads.SURFACE_VGF, annotations or None)


@router.post("/ffmpeg", response_model=VgfJobResponse, tags=[TAG],
             summary="Submit a job; with ?wait=true the answer comes when it finished (at most 5 minutes)")
async def create_job(req: VgfJobRequest, who: Auth, svc: Svc, response: Response,
                     wait: Annotated[bool, Query(description="Wait for the job to finish")] = False) -> VgfJobResponse:
    obj: dict[str, Any] | None = await run_in_threadpool(submit_vgf_job, svc, who, req)
    if obj is not None and OVER_QUOTA_ANNOTATION in ((obj.get("metadata") or {}).get("annotations") or {}):
        response.status_code = 202  # over the tenant's active-job quota: accepted, queued (docs/queueing.md)
    if wait and obj is not None:
        # The object create returned doubles as the answer: no second read when not waiting.
        obj = await svc.watcher.wait(obj["metadata"]["name"], min(svc.settings.sync_wait_seconds, WAIT_MAX_SECONDS))
    if obj is None or not obj.get("spec"):
        raise ApiError(404, "Job not found (it was deleted)")
    return VgfJobResponse(data=await run_in_threadpool(view, svc, obj))


def _get(who: Caller, svc: Services, job_id: str) -> VgfJobResponse:
    return VgfJobResponse(data=view(svc, svc.jobs.get(who.tenant, job_id)))


@router.get("/jobs/{job_id}", response_model=VgfJobResponse, tags=[TAG], summary="One job")
def get_job(who: Auth, svc: Svc, job_id: JobId) -> VgfJobResponse:
    return _get(who, svc, job_id)


@router.get("/ffmpeg/{job_id}", response_model=VgfJobResponse, tags=[TAG], summary="One job (alias)")
def get_job_alias(who: Auth, svc: Svc, job_id: JobId) -> VgfJobResponse:
    return _get(who, svc, job_id)


def _list(who: Caller, svc: Services, status: str | None, limit: int, offset: int) -> VgfJobList:
    want = LEGACY_STATUS.get(status, status) if status else None
    if want is not None and want not in payloads.VGF_STATUSES:
        raise ApiError(400, f"status must be one of {', '.join(payloads.VGF_STATUSES)}")
    objs = [o for o in svc.jobs.list(who.tenant)
            if want is None or payloads.VGF_STATUS[payloads.phase_of(o)] == want]
    objs.sort(key=lambda o: (o["metadata"].get("creationTimestamp", ""), o["metadata"]["name"]), reverse=True)
    page = objs[offset : offset + limit]
    return VgfJobList(data=[view(svc, o) for o in page],
                      pagingParams=PagingParams(limit=limit, offset=offset, total=len(objs),
                                                hasMore=offset + len(page) < len(objs)))


Limit = Annotated[int, Query(ge=1, le=1000, description="Jobs per page")]
Offset = Annotated[int, Query(ge=0, description="Jobs to skip")]
StatusFilter = Annotated[str | None, Query(description="Extension: only jobs in this status", max_length=16)]


@router.get("/jobs", response_model=VgfJobList, tags=[TAG], summary="Your jobs, newest first")
def list_jobs(who: Auth, svc: Svc, status: StatusFilter = None, limit: Limit = 50, offset: Offset = 0) -> VgfJobList:
    return _list(who, svc, status, limit, offset)


@router.get("/ffmpeg", response_model=VgfJobList, tags=[TAG], summary="Your jobs, newest first (alias)")
def list_jobs_alias(who: Auth, svc: Svc, status: StatusFilter = None, limit: Limit = 50,
                    offset: Offset = 0) -> VgfJobList:
    return _list(who, svc, status, limit, offset)


def _cancel(svc: Services, who: Caller, job_id: str) -> VgfJobResponse:
    try:
        svc.jobs.cancel(who.tenant, job_id, ("pending", "processing"))
    except ApiError as e:
        if e.status != 409:
            raise
        word = payloads.VGF_STATUS[payloads.phase_of(svc.jobs.get(who.tenant, job_id))]
        if word not in payloads.VGF_TERMINAL:
            raise  # it kept changing while being cancelled: the message says to retry
        raise ApiError(409, f"Cannot cancel job in '{word}' status. Only queued or running jobs can be "
                            "cancelled.") from None
    job = view(svc, svc.jobs.get(who.tenant, job_id))
    if job.status in ("queued", "running"):
        # The operator records it in a moment; the request is accepted and cannot be undone.
        job.status = "cancelled"
        job.error_message = payloads.CANCELLED_MESSAGE
    return VgfJobResponse(data=job)


CONFLICT: dict[int | str, dict[str, Any]] = {409: {"description": "The job already finished"}}


@router.post("/jobs/{job_id}/cancel", response_model=VgfJobResponse, tags=[TAG], responses=CONFLICT,
             summary="Cancel a queued or running job")
def cancel_job(who: Auth, svc: Svc, job_id: JobId) -> VgfJobResponse:
    return _cancel(svc, who, job_id)


@router.post("/ffmpeg/{job_id}/cancel", response_model=VgfJobResponse, tags=[TAG], responses=CONFLICT,
             summary="Cancel (alias)")
def cancel_job_alias(who: Auth, svc: Svc, job_id: JobId) -> VgfJobResponse:
    return _cancel(svc, who, job_id)


@router.delete("/ffmpeg/{job_id}", response_model=VgfJobResponse, tags=[TAG], responses=CONFLICT,
               summary="Cancel (alias)")
def delete_job(who: Auth, svc: Svc, job_id: JobId) -> VgfJobResponse:
    return _cancel(svc, who, job_id)


@router.patch("/jobs/{job_id}", response_model=VgfJobResponse, tags=[TAG],
              responses={409: {"description": "The job is no longer queued"}},
              summary="Extension: change a queued job's priority (docs/queueing.md)")
def patch_job(who: Auth, svc: Svc, job_id: JobId, req: VgfJobPatch) -> VgfJobResponse:
    return VgfJobResponse(data=view(svc, svc.jobs.set_priority(who.tenant, job_id, req.priority)))


@router.post("/tmp-file", response_model=TmpFileResponse, tags=[TAG],
             summary="Presigned PUT upload and GET download URLs for one file, valid for one hour")
def tmp_file(who: Auth, svc: Svc, req: Annotated[TmpFileRequest | None, Body()] = None) -> TmpFileResponse:
    name = (req.file_name if req else None) or "input"
    if not valid_file_name(name):
        raise ApiError(400, f"Invalid file_name {name!r}: 1-255 characters, no slashes")
    single_put_check(svc.settings, req.file_size if req else None, "/api/uploads")
    ttl = svc.settings.tmp_file_seconds
    d = svc.storage.create_dir(who.tenant, ttl, temporary=True)
    return TmpFileResponse(data=TmpFileUrls(
        upload_url=svc.storage.presign_put(who.tenant, d.id, name, ttl),
        download_url=svc.storage.presign_get(who.tenant, d.id, name, ttl),
        expires_in_seconds=ttl,
    ))
