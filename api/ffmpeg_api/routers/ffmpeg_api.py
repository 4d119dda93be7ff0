"""The "FFmpeg API" surface (seed 001; `/ffmpeg/*`, `/job/*`, `/ffprobe/*`, `/file*`,
`/directory*`): processing, jobs, ffprobe, files and directories. The "Very Good FFmpeg" surface
is routers/vgf.py; both compile to the one FFmpegJob spec in compile.py."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path
from fastapi.responses import JSONResponse
from ffmpegjob_model.model import FFmpegJobSpec, InputFile, Usage
from ffmpegjob_model.payloads import SURFACE_FFMPEG_API, failure_detail, fallback_fields, queue_fields
from ffmpegjob_model.probe import ProbeFailed, ProbeOptionsError, probe
from ffmpegjob_model.storage_layout import DEFAULT_DIR_TTL, valid_dir_id, valid_file_name
from ffmpegjob_model.times import format_time
from ffmpegjob_model.urls import URLRefused
from starlette.concurrency import run_in_threadpool

from .. import presets
from ..compile import Submission, TaskPlan, ffmpeg_api_spec, plan_task
from ..errors import ERROR_RESPONSES, ApiError
from ..imports import import_input
from ..jobs import error_of, new_job_name, rest_status, results, status_of, usage_of
from ..schemas import (
    AnalyzeRequest,
    AnalyzeResponse,
    AsyncAccepted,
    CreateDirectoryRequest,
    CreateDirectoryResponse,
    DeletedInfo,
    DeleteFileResponse,
    DirectoriesResponse,
    DirectoryFilesResponse,
    DirectoryOut,
    DirFileOut,
    DownloadInfo,
    DownloadResponse,
    FileInfo,
    FileInfoResponse,
    FileRecord,
    JobResponse,
    OkMessage,
    ProcessRequest,
    ProcessResponse,
    RegisterFileRequest,
    RegisterFileResponse,
    UploadInfo,
    UsageOut,
)
from ..services import Auth, Caller, Services, Svc
from ..submission import submission
from ..uploads import single_put_check

router = APIRouter(responses=ERROR_RESPONSES)

DirId = Annotated[str, Path(description="Directory ID (1-64 chars, A-Z a-z 0-9 _ -)", min_length=1, max_length=64)]
FileName = Annotated[str, Path(description="File name (1-255 chars, no slashes)", min_length=1, max_length=255)]
JobId = Annotated[str, Path(description="The job id", min_length=1, max_length=253)]


def check_path(dir_id: str, file_name: str | None = None) -> None:
    if not valid_dir_id(dir_id):
        raise ApiError(400, f"Invalid dirId {dir_id!r}: 1-64 characters of A-Z a-z 0-9 _ -")
    if file_name is not None and not valid_file_name(file_name):
        raise ApiError(400, f"Invalid fileName {file_name!r}: 1-255 characters, no slashes")


def require_dir(svc: Services, tenant: str, dir_id: str) -> None:
    check_path(dir_id)
    if svc.storage.get_dir(tenant, dir_id) is None:
        raise ApiError(404, f"Directory not found: {dir_id}")


# ----------------------------------------------------------------------------------- processing
def submit_ffmpeg_api_task(svc: Services, who: Caller, req: ProcessRequest) -> str:
    """Everything before an "FFmpeg API" task runs: checks, directories, URL imports, then the
    FFmpegJob; returns its name (the job id)."""
    plan = plan_task(req.task)
    tenant = who.tenant
    if plan.input_dir is not None:
        require_dir(svc, tenant, plan.input_dir)
        for p in plan.inputs:
            if p.url is None and svc.storage.head_file(tenant, plan.input_dir, p.file_name or "") is None:
                raise ApiError(404, f"File not found: {p.storage_path}")
    if req.task.output_dir_id is not None and req.task.output_dir_id != plan.input_dir:
        require_dir(svc, tenant, req.task.output_dir_id)
    sub = submission(svc, tenant, req.machine, req.webhook_url, priority=req.priority, fallback=req.fallback)
    output_dir = plan.output_dir
    if output_dir is None:
        output_dir = svc.storage.create_dir(tenant, DEFAULT_DIR_TTL, temporary=True).id
    import_dir = plan.input_dir or output_dir
    for p in plan.inputs:
        if p.url is not None:
            p.dir_id = import_dir
    if req.task.template is not None:  # a preset (docs/presets.md)
        spec = template_task_spec(svc, req, plan, sub, output_dir)
    else:
        spec = ffmpeg_api_spec(req.task, plan, sub, output_dir, svc.settings.job_timeout_seconds)
    svc.jobs.validate(spec)
    svc.jobs.check_quota(tenant, who.quota)
    for p in plan.inputs:  # imported only once everything else is known to be acceptable
        if p.url is not None:
            import_input(svc.storage, tenant, p.url, import_dir, p.file_name or "", svc.jobs.url_rules,
                         svc.settings.import_max_bytes, svc.settings.import_timeout_seconds)
    name = new_job_name()
    svc.jobs.create(name, spec, SURFACE_FFMPEG_API)
    return name


def template_task_spec(svc: Services, req: ProcessRequest, plan: TaskPlan, sub: Submission,
                       output_dir: str) -> FFmpegJobSpec:
    """A task that names a template: its inputs (no options) are the template's inputs in order;
    the template's outputs may not overwrite a stored input of the same directory."""
    task, template = req.task, req.task.template
    assert template is not None
    if task.outputs or task.filter_complex or any(i.options for i in task.inputs):
        raise ApiError(400, "Invalid task format: with a template, leave outputs, filter_complex and input "
                            "options out (the template gives them)")
    names = presets.input_names(svc, template, len(plan.inputs))
    inputs = [InputFile(name=n, source=p.storage_path) for n, p in zip(names, plan.inputs, strict=True)]
    spec = presets.template_spec(svc, template, sub, inputs, output_dir, svc.settings.job_timeout_seconds,
                                 task.parallel)
    if output_dir == plan.input_dir:
        stored = {p.file_name for p in plan.inputs if p.url is None}
        for o in spec.outputs:
            if o.name in stored:
                raise ApiError(400, f"Invalid task format: output file {o.name!r} conflicts with an input file "
                                    f"in directory {output_dir}")
    return spec


def presigner(svc: Services) -> Any:
    return lambda tenant, d, f: svc.storage.presign_get(tenant, d, f, svc.settings.result_url_seconds)


@router.post("/ffmpeg/process", response_model=ProcessResponse, tags=["Processing"],
             summary="Process synchronously: waits for the job and returns its result")
async def process(req: ProcessRequest, who: Auth, svc: Svc) -> Any:
    name = await run_in_threadpool(submit_ffmpeg_api_task, svc, who, req)
    obj = await svc.watcher.wait(name, svc.settings.sync_wait_seconds)
    if obj is None or not obj.get("spec"):
        raise ApiError(500, f"FFmpeg processing failed: job {name} was deleted before it finished")
    status = rest_status(obj)
    if status in ("pending", "processing"):
        raise ApiError(503, f"Job {name} is still {status} after {svc.settings.sync_wait_seconds:g}s; "
                            f"poll GET /job/{name} for its result")
    if status != "completed":
        error = f"FFmpeg processing failed: {failure_detail(status_of(obj))}" if status == "failed" else error_of(obj)
        return JSONResponse({"ok": False, "job_id": name, "error": error}, status_code=500)
    return ProcessResponse(job_id=name, result=results(obj, presigner(svc)), usage=usage_of(obj))


@router.post("/ffmpeg/process/async", status_code=202, response_model=AsyncAccepted, tags=["Processing"],
             summary="Queue a task; returns a job id at once")
def process_async(req: ProcessRequest, who: Auth, svc: Svc) -> AsyncAccepted:
    return AsyncAccepted(job_id=submit_ffmpeg_api_task(svc, who, req))


@router.post("/ffmpeg/run", status_code=410, tags=["Processing"], deprecated=True,
             summary="Removed legacy endpoint: use POST /ffmpeg/process")
def ffmpeg_run() -> JSONResponse:
    return JSONResponse(
        {"ok": False, "error": "POST /ffmpeg/run is deprecated and no longer available: upload files with "
                               "POST /file and process them with POST /ffmpeg/process (see the Migration Guide)"},
        status_code=410,
    )


# ------------------------------------------------------------------------------------------ jobs
@router.get("/job/{jobId}", response_model=JobResponse, response_model_exclude_none=True, tags=["Jobs"])
def get_job(who: Auth, svc: Svc, jobId: JobId) -> JobResponse:
    obj = svc.jobs.get(who.tenant, jobId)
    status = rest_status(obj)
    if status == "completed":
        return JobResponse(ok=True, job_id=jobId, status="completed", result=results(obj, presigner(svc)),
                           usage=usage_of(obj), **fallback_fields(obj))
    if status in ("failed", "cancelled"):
        return JobResponse(ok=False, job_id=jobId, status=status, error=error_of(obj), **fallback_fields(obj))
    return JobResponse(ok=True, job_id=jobId, status=status, **queue_fields(obj), **fallback_fields(obj))


@router.delete("/job/{jobId}", response_model=OkMessage, tags=["Jobs"],
               responses={409: {"description": "Only pending jobs can be cancelled"}})
def cancel_job(who: Auth, svc: Svc, jobId: JobId) -> OkMessage:
    svc.jobs.cancel(who.tenant, jobId, ("pending",))
    return OkMessage(message="Job cancelled successfully")


# -------------------------------------------------------------------------------------- ffprobe
@router.post("/ffprobe/analyze", response_model=AnalyzeResponse, tags=["Analysis"])
def analyze(req: AnalyzeRequest, who: Auth, svc: Svc) -> AnalyzeResponse:
    path = req.file_path.strip()
    opts = req.probe.model_dump(exclude_none=True) if req.probe else None
    size = 0
    if "://" in path:
        target, check = path, True
    else:
        parts = path.split("/", 1)
        if len(parts) != 2:
            raise ApiError(400, f"Invalid file_path {path!r}: use 'dir_id/filename' or an HTTPS URL")
        check_path(*parts)
        require_dir(svc, who.tenant, parts[0])
        info = svc.storage.head_file(who.tenant, parts[0], parts[1])
        if info is None:
            raise ApiError(404, f"File not found: {path}")
        size = info.size
        target, check = svc.storage.presign_get(who.tenant, parts[0], parts[1], 300, internal=True), False
    start = time.monotonic()
    try:
        with svc.probe_gate.or_503("ffprobe runs"):
            result = probe(target, opts, url_rules=svc.jobs.url_rules, check_urls=check)
    except URLRefused as e:
        raise ApiError(400, f"URL refused: {e}") from None
    except ProbeOptionsError as e:
        raise ApiError(400, str(e)) from None
    except ProbeFailed as e:
        raise ApiError(500, f"FFprobe analysis failed: {e}") from None
    elapsed = time.monotonic() - start
    if not size and isinstance(result.get("format"), dict):
        try:
            size = int(result["format"].get("size") or 0)
        except ValueError:
            size = 0
    u = Usage.compute(elapsed, size, len(json.dumps(result).encode()))
    return AnalyzeResponse(result=result, usage=UsageOut(**u.model_dump()))


# ----------------------------------------------------------------------------------------- files
@router.post("/file", response_model=RegisterFileResponse, tags=["Files"],
             summary="Register a file and get a presigned PUT URL")
def register_file(req: RegisterFileRequest, who: Auth, svc: Svc) -> RegisterFileResponse:
    if not valid_file_name(req.file_name):
        raise ApiError(400, f"Invalid file_name {req.file_name!r}: 1-255 characters, no slashes")
    single_put_check(svc.settings, req.file_size, "/uploads")
    if req.dir_id is not None:
        require_dir(svc, who.tenant, req.dir_id)
        dir_id = req.dir_id
    else:
        dir_id = svc.storage.create_dir(who.tenant, DEFAULT_DIR_TTL, temporary=True).id
    expires = svc.settings.upload_url_seconds
    url = svc.storage.presign_put(who.tenant, dir_id, req.file_name, expires)
    return RegisterFileResponse(
        file=FileRecord(dir_id=dir_id, file_name=req.file_name, file_path=f"{dir_id}/{req.file_name}",
                        added_on=format_time(datetime.now(UTC))),
        upload=UploadInfo(url=url, expiresInSeconds=expires),
    )


def stored_file(svc: Services, tenant: str, dir_id: str, file_name: str) -> Any:
    check_path(dir_id, file_name)
    require_dir(svc, tenant, dir_id)
    info = svc.storage.head_file(tenant, dir_id, file_name)
    if info is None:
        raise ApiError(404, f"File not found: {dir_id}/{file_name}")
    return info


@router.get("/file/{dirId}/{fileName}", response_model=FileInfoResponse, tags=["Files"])
def file_info(who: Auth, svc: Svc, dirId: DirId, fileName: FileName) -> FileInfoResponse:
    info = stored_file(svc, who.tenant, dirId, fileName)
    return FileInfoResponse(file_info=FileInfo(file_path=f"{dirId}/{fileName}", file_type=info.content_type,
                                               file_size=info.size))


@router.get("/file/download/{dirId}/{fileName}", response_model=DownloadResponse, tags=["Files"])
def download(who: Auth, svc: Svc, dirId: DirId, fileName: FileName) -> DownloadResponse:
    info = stored_file(svc, who.tenant, dirId, fileName)
    expires = svc.settings.download_url_seconds
    return DownloadResponse(download=DownloadInfo(
        url=svc.storage.presign_get(who.tenant, dirId, fileName, expires), expiresInSeconds=expires,
        file_path=f"{dirId}/{fileName}", file_size=info.size, file_type=info.content_type,
    ))


@router.delete("/file/{dirId}/{fileName}", response_model=DeleteFileResponse, tags=["Files"])
def delete_file(who: Auth, svc: Svc, dirId: DirId, fileName: FileName) -> DeleteFileResponse:
    stored_file(svc, who.tenant, dirId, fileName)
    svc.storage.delete_file(who.tenant, dirId, fileName)
    return DeleteFileResponse(deleted=DeletedInfo(file_path=f"{dirId}/{fileName}"))


# ----------------------------------------------------------------------------------- directories
@router.post("/directory", response_model=CreateDirectoryResponse, tags=["Directories"])
def create_directory(who: Auth, svc: Svc, req: Annotated[CreateDirectoryRequest | None, Body()] = None) -> Any:
    ttl = (req.ttl if req else None) or DEFAULT_DIR_TTL
    meta = svc.storage.create_dir(who.tenant, ttl)
    return CreateDirectoryResponse(directory=DirectoryOut(id=meta.id, ttl=meta.ttl, added_on=format_time(meta.created)))


@router.get("/directory", response_model=DirectoriesResponse, tags=["Directories"])
def list_directories(who: Auth, svc: Svc) -> DirectoriesResponse:
    return DirectoriesResponse(directories=[DirectoryOut(id=m.id, ttl=m.ttl, added_on=format_time(m.created))
                                            for m in svc.storage.list_dirs(who.tenant)])


@router.get("/directory/{dirId}", response_model=DirectoryFilesResponse, tags=["Directories"])
def list_directory(who: Auth, svc: Svc, dirId: DirId) -> DirectoryFilesResponse:
    require_dir(svc, who.tenant, dirId)
    return DirectoryFilesResponse(files=[DirFileOut(file_name=f.file_name, added_on=format_time(f.modified),
                                                    size_bytes=f.size)
                                         for f in svc.storage.list_files(who.tenant, dirId)])
