"""Multipart uploads of large files on both surfaces (docs/large-files.md): `/uploads/*` beside
the "FFmpeg API" surface's `/file` (into a directory, the file then a storage path `dir_id/name`),
`/api/uploads/*` beside the "Very Good FFmpeg" surface's `/api/tmp-file` (a temporary file with
a `download_url`). Both drive the one `Uploads` service (uploads.py):

    POST   .../uploads                       initiate: upload id, part size and count, first part URLs
    GET    .../uploads/{id}                  the parts storage holds and those missing (resume)
    POST   .../uploads/{id}/urls             presigned URLs of more parts (or fresh ones)
    POST   .../uploads/{id}/complete         join the parts (with their ETags) into the file
    DELETE .../uploads/{id}                  abort: the parts are deleted
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path
from ffmpegjob_model.multipart import MAX_URL_BATCH, UploadRecord
from ffmpegjob_model.storage_layout import DEFAULT_DIR_TTL, valid_file_name

from ..errors import ERROR_RESPONSES, ApiError
from ..services import Auth, Services, Svc
from ..upload_schemas import (
    Aborted,
    AbortResponse,
    CompletedFile,
    CompleteRequest,
    CompleteResponse,
    MultipartInitRequest,
    MultipartUploadOut,
    MultipartUploadResponse,
    PartUrl,
    PartUrlsOut,
    PartUrlsRequest,
    PartUrlsResponse,
    UploadedPart,
    VgfAbortResponse,
    VgfCompleteResponse,
    VgfMultipartUploadResponse,
    VgfPartUrlsResponse,
)
from .ffmpeg_api import require_dir

router = APIRouter(responses=ERROR_RESPONSES)
vgf_router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)
TAG, VGF_TAG = "Files", "Very Good FFmpeg"
UploadId = Annotated[str, Path(description="The upload's id (`up_...`)", min_length=1, max_length=64)]


# ------------------------------------------------------------------------------------- shared
def _initiate(svc: Services, tenant: str, req: MultipartInitRequest, vgf: bool) -> MultipartUploadOut:
    if not valid_file_name(req.file_name):
        raise ApiError(400, f"Invalid file_name {req.file_name!r}: 1-255 characters, no slashes")
    s = svc.settings
    if vgf:
        if req.dir_id is not None:
            raise ApiError(400, "dir_id: not accepted here; a temporary file gets its own directory")
        ttl = max(s.tmp_file_seconds, s.multipart_upload_seconds)
        dir_id = svc.storage.create_dir(tenant, ttl, temporary=True).id
    elif req.dir_id is not None:
        require_dir(svc, tenant, req.dir_id)
        dir_id = req.dir_id
    else:
        dir_id = svc.storage.create_dir(tenant, max(DEFAULT_DIR_TTL, s.multipart_upload_seconds), temporary=True).id
    record = svc.uploads.initiate(tenant, dir_id, req.file_name, req.file_size, req.part_size,
                                  s.multipart_upload_seconds)
    first = list(range(1, min(record.plan.count, MAX_URL_BATCH) + 1))
    return _out(svc, record, vgf, urls=svc.uploads.part_urls(record, first, s.multipart_url_seconds))


def _out(svc: Services, r: UploadRecord, vgf: bool, urls: list[tuple[int, str]] | None = None,
         listed: bool = False) -> MultipartUploadOut:
    out = MultipartUploadOut(
        upload_id=r.id, dir_id=r.dir_id, file_name=r.file_name, file_path=f"{r.dir_id}/{r.file_name}",
        file_size=r.size, part_size=r.part_size, part_count=r.plan.count,
        parts=[PartUrl(part_number=n, url=u) for n, u in urls or []],
        urls_expire_in_seconds=svc.settings.multipart_url_seconds, expires_at=r.expires,
        download_url=_download_url(svc, r) if vgf else None,
    )
    if listed:
        stored = svc.uploads.list_parts(r)
        out.uploaded_parts = [UploadedPart(part_number=p.part_number, etag=p.etag, size=p.size) for p in stored]
        have = {p.part_number for p in stored}
        out.missing_parts = [n for n in range(1, r.plan.count + 1) if n not in have]
    return out


def _download_url(svc: Services, r: UploadRecord) -> str:
    return svc.storage.presign_get(r.tenant, r.dir_id, r.file_name, svc.settings.tmp_file_seconds)


def _urls(svc: Services, tenant: str, upload_id: str, req: PartUrlsRequest) -> PartUrlsOut:
    record = svc.uploads.get(tenant, upload_id)
    expires = svc.settings.multipart_url_seconds
    urls = svc.uploads.part_urls(record, req.part_numbers, expires)
    return PartUrlsOut(parts=[PartUrl(part_number=n, url=u) for n, u in urls], expires_in_seconds=expires)


def _complete(svc: Services, tenant: str, upload_id: str, req: CompleteRequest | None, vgf: bool) -> CompletedFile:
    record = svc.uploads.get(tenant, upload_id)
    if svc.storage.get_dir(tenant, record.dir_id) is None:  # expired (and swept) meanwhile
        svc.uploads.abort(record)
        raise ApiError(404, f"Directory not found: {record.dir_id} (it expired before the upload was completed)")
    parts = None if req is None or req.parts is None else [(p.part_number, p.etag) for p in req.parts]
    size = svc.uploads.complete(record, parts)
    return CompletedFile(
        dir_id=record.dir_id, file_name=record.file_name, file_path=f"{record.dir_id}/{record.file_name}",
        file_size=size, download_url=_download_url(svc, record) if vgf else None,
        expires_in_seconds=svc.settings.tmp_file_seconds if vgf else None,
    )


def _abort(svc: Services, tenant: str, upload_id: str) -> None:
    svc.uploads.abort(svc.uploads.get(tenant, upload_id))


# ------------------------------------------------------------------- "FFmpeg API" surface
@router.post("/uploads", response_model=MultipartUploadResponse, tags=[TAG],
             summary="Extension: start a multipart upload of a large file (docs/large-files.md)")
def initiate(who: Auth, svc: Svc, req: MultipartInitRequest) -> MultipartUploadResponse:
    return MultipartUploadResponse(upload=_initiate(svc, who.tenant, req, vgf=False))


@router.get("/uploads/{uploadId}", response_model=MultipartUploadResponse, tags=[TAG],
            summary="Extension: a multipart upload, with the parts storage holds and those missing")
def status(who: Auth, svc: Svc, uploadId: UploadId) -> MultipartUploadResponse:
    return MultipartUploadResponse(upload=_out(svc, svc.uploads.get(who.tenant, uploadId), False, listed=True))


@router.post("/uploads/{uploadId}/urls", response_model=PartUrlsResponse, tags=[TAG],
             summary="Extension: presigned URLs of parts of a multipart upload")
def part_urls(who: Auth, svc: Svc, uploadId: UploadId, req: PartUrlsRequest) -> PartUrlsResponse:
    out = _urls(svc, who.tenant, uploadId, req)
    return PartUrlsResponse(parts=out.parts, expires_in_seconds=out.expires_in_seconds)


@router.post("/uploads/{uploadId}/complete", response_model=CompleteResponse, tags=[TAG],
             summary="Extension: join the uploaded parts into the file")
def complete(who: Auth, svc: Svc, uploadId: UploadId,
             req: Annotated[CompleteRequest | None, Body()] = None) -> CompleteResponse:
    return CompleteResponse(file=_complete(svc, who.tenant, uploadId, req, vgf=False))


@router.delete("/uploads/{uploadId}", response_model=AbortResponse, tags=[TAG],
               summary="Extension: abort a multipart upload (its parts are deleted)")
def abort(who: Auth, svc: Svc, uploadId: UploadId) -> AbortResponse:
    _abort(svc, who.tenant, uploadId)
    return AbortResponse(upload_id=uploadId)


# ------------------------------------------------------------- "Very Good FFmpeg" surface
@vgf_router.post("/uploads", response_model=VgfMultipartUploadResponse, tags=[VGF_TAG],
                 summary="Extension: a temporary file uploaded in parts (the large-file `/api/tmp-file`)")
def vgf_initiate(who: Auth, svc: Svc, req: MultipartInitRequest) -> VgfMultipartUploadResponse:
    return VgfMultipartUploadResponse(data=_initiate(svc, who.tenant, req, vgf=True))


@vgf_router.get("/uploads/{uploadId}", response_model=VgfMultipartUploadResponse, tags=[VGF_TAG],
                summary="Extension: a multipart upload, with the parts storage holds and those missing")
def vgf_status(who: Auth, svc: Svc, uploadId: UploadId) -> VgfMultipartUploadResponse:
    return VgfMultipartUploadResponse(data=_out(svc, svc.uploads.get(who.tenant, uploadId), True, listed=True))


@vgf_router.post("/uploads/{uploadId}/urls", response_model=VgfPartUrlsResponse, tags=[VGF_TAG],
                 summary="Extension: presigned URLs of parts of a multipart upload")
def vgf_part_urls(who: Auth, svc: Svc, uploadId: UploadId, req: PartUrlsRequest) -> VgfPartUrlsResponse:
    return VgfPartUrlsResponse(data=_urls(svc, who.tenant, uploadId, req))


@vgf_router.post("/uploads/{uploadId}/complete", response_model=VgfCompleteResponse, tags=[VGF_TAG],
                 summary="Extension: join the uploaded parts into the temporary file")
def vgf_complete(who: Auth, svc: Svc, uploadId: UploadId,
                 req: Annotated[CompleteRequest | None, Body()] = None) -> VgfCompleteResponse:
    return VgfCompleteResponse(data=_complete(svc, who.tenant, uploadId, req, vgf=True))


@vgf_router.delete("/uploads/{uploadId}", response_model=VgfAbortResponse, tags=[VGF_TAG],
                   summary="Extension: abort a multipart upload (its parts are deleted)")
def vgf_abort(who: Auth, svc: Svc, uploadId: UploadId) -> VgfAbortResponse:
    _abort(svc, who.tenant, uploadId)
    return VgfAbortResponse(data=Aborted(upload_id=uploadId))
