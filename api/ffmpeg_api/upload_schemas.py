"""Request and response bodies of multipart uploads (routers/uploads.py, docs/large-files.md)."""

from __future__ import annotations

from datetime import datetime

from ffmpegjob_model.multipart import MAX_OBJECT_BYTES, MAX_PART_BYTES, MAX_PARTS, MAX_URL_BATCH, MIN_PART_BYTES
from pydantic import BaseModel, ConfigDict, Field


class _Req(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MultipartInitRequest(_Req):
    file_name: str = Field(min_length=1, max_length=255)
    file_size: int = Field(ge=0, le=MAX_OBJECT_BYTES, description="The whole file's size in bytes.")
    part_size: int | None = Field(
        default=None, ge=MIN_PART_BYTES, le=MAX_PART_BYTES,
        description="Bytes per part (all but the last); default: the server's (64 MiB), grown so "
                    "that the file fits in 10,000 parts.")
    dir_id: str | None = Field(default=None, description="`/uploads` only: an existing directory; "
                                                         "default: a new temporary one.")


class PartUrl(BaseModel):
    part_number: int
    url: str = Field(description="Presigned PUT of this part: send exactly its bytes; keep the "
                                 "answer's ETag header for completing.")


class UploadedPart(BaseModel):
    part_number: int
    etag: str
    size: int


class MultipartUploadOut(BaseModel):
    upload_id: str
    dir_id: str
    file_name: str
    file_path: str
    file_size: int
    part_size: int
    part_count: int
    parts: list[PartUrl] = Field(default_factory=list, description=(
        f"Presigned part URLs: on initiating, those of the first parts (at most {MAX_URL_BATCH}); "
        "ask `.../urls` for others, or for fresh ones once they expire."))
    urls_expire_in_seconds: int
    expires_at: datetime = Field(description="An upload not completed by then is aborted.")
    uploaded_parts: list[UploadedPart] | None = Field(default=None, description=(
        "GET only: the parts storage holds (a client resuming uploads the `missing_parts`)."))
    missing_parts: list[int] | None = None
    download_url: str | None = Field(default=None, description="`/api/uploads` only: the file's presigned "
                                                               "GET, valid once the upload is completed.")


class MultipartUploadResponse(BaseModel):
    ok: bool = True
    upload: MultipartUploadOut


class VgfMultipartUploadResponse(BaseModel):
    data: MultipartUploadOut


class PartUrlsRequest(_Req):
    part_numbers: list[int] = Field(min_length=1, max_length=MAX_URL_BATCH)


class PartUrlsOut(BaseModel):
    parts: list[PartUrl]
    expires_in_seconds: int


class PartUrlsResponse(PartUrlsOut):
    ok: bool = True


class VgfPartUrlsResponse(BaseModel):
    data: PartUrlsOut


class Aborted(BaseModel):
    upload_id: str
    aborted: bool = True


class AbortResponse(Aborted):
    ok: bool = True


class VgfAbortResponse(BaseModel):
    data: Aborted


class CompletePart(_Req):
    part_number: int = Field(ge=1, le=MAX_PARTS)
    etag: str = Field(min_length=1, max_length=200)


class CompleteRequest(_Req):
    parts: list[CompletePart] | None = Field(default=None, max_length=MAX_PARTS, description=(
        "Every part with the ETag its PUT answered (S3 checks them); omitted: the parts storage "
        "holds, as listed."))


class CompletedFile(BaseModel):
    dir_id: str
    file_name: str
    file_path: str
    file_size: int
    download_url: str | None = Field(default=None, description="`/api/uploads` only: presigned GET.")
    expires_in_seconds: int | None = None


class CompleteResponse(BaseModel):
    ok: bool = True
    file: CompletedFile


class VgfCompleteResponse(BaseModel):
    data: CompletedFile
