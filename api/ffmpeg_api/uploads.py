"""Multipart uploads of large files (docs/large-files.md), shared by both REST surfaces.

The API initiates the S3 multipart upload itself and keeps its S3 UploadId in a record under the
tenant's prefix (`ffmpegjob_model.multipart.UploadRecord`); clients name the upload by the
record's own id, so one tenant cannot reach another's upload (not found, as for files). Parts
go straight to storage through presigned part URLs, in parallel, in any order; a client that
stopped asks which parts storage already has and uploads the rest."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from botocore.exceptions import ClientError
from ffmpegjob_model.multipart import (
    PartPlanError,
    UploadRecord,
    check_parts,
    new_upload_id,
    plan_parts,
    upload_record_key,
    valid_upload_id,
)
from ffmpegjob_model.storage_layout import file_key
from pydantic import ValidationError

from .errors import ApiError
from .settings import ApiSettings
from .storage import Storage, guess_type


@dataclass(frozen=True)
class StoredPart:
    part_number: int
    etag: str
    size: int
    last_modified: datetime


def single_put_check(settings: ApiSettings, size: int | None, multipart_path: str) -> None:
    """The single-PUT flows refuse a declared size over the limit: such a file goes in parts."""
    limit = settings.single_put_max_bytes
    if size is not None and size > limit:
        raise ApiError(400, f"file_size {size} is over the single-upload limit of {limit} bytes: "
                            f"upload it in parts with a multipart upload (POST {multipart_path}; "
                            "docs/large-files.md)")


class Uploads:
    def __init__(self, storage: Storage, settings: ApiSettings) -> None:
        self.storage, self.settings = storage, settings
        self.client, self.bucket = storage.client, storage.bucket

    # ---------------------------------------------------------------------------------- records
    def initiate(self, tenant: str, dir_id: str, file_name: str, size: int, part_size: int | None,
                 ttl: int) -> UploadRecord:
        try:
            plan = plan_parts(size, part_size, self.settings.multipart_part_bytes)
        except PartPlanError as e:
            raise ApiError(400, str(e)) from None
        key = file_key(tenant, dir_id, file_name)
        content_type = guess_type(file_name)
        created = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, ContentType=content_type)
        record = UploadRecord(id=new_upload_id(), tenant=tenant, dir_id=dir_id, file_name=file_name, key=key,
                              s3_upload_id=str(created["UploadId"]), size=size, part_size=plan.part_size,
                              content_type=content_type, ttl=ttl)
        self.client.put_object(Bucket=self.bucket, Key=upload_record_key(tenant, record.id),
                               Body=record.model_dump_json().encode(), ContentType="application/json")
        return record

    def get(self, tenant: str, upload_id: str) -> UploadRecord:
        """The tenant's open upload, else 404 (unknown, another tenant's, finished or expired)."""
        missing = ApiError(404, f"Upload not found: {upload_id}")
        if not valid_upload_id(upload_id):
            raise missing
        try:
            raw = self.client.get_object(Bucket=self.bucket, Key=upload_record_key(tenant, upload_id))["Body"].read()
            record = UploadRecord.model_validate_json(raw)
        except ClientError as e:
            if _missing(e):
                raise missing from None
            raise
        except ValidationError:
            raise missing from None
        if record.tenant != tenant or record.expired():
            raise missing
        return record

    def _forget(self, record: UploadRecord) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=upload_record_key(record.tenant, record.id))

    # ------------------------------------------------------------------------------------ parts
    def part_urls(self, record: UploadRecord, numbers: list[int], expires: int) -> list[tuple[int, str]]:
        count = record.plan.count
        bad = [n for n in numbers if not 1 <= n <= count]
        if bad:
            raise ApiError(400, f"part numbers {bad[:10]} are outside 1..{count}")
        return [(n, str(self.storage.public.generate_presigned_url(
            "upload_part",
            Params={"Bucket": self.bucket, "Key": record.key, "UploadId": record.s3_upload_id, "PartNumber": n},
            ExpiresIn=expires,
        ))) for n in sorted(set(numbers))]

    def list_parts(self, record: UploadRecord) -> list[StoredPart]:
        """The parts storage holds (every page of ListParts)."""
        out: list[StoredPart] = []
        marker = 0
        while True:
            try:
                page = self.client.list_parts(Bucket=self.bucket, Key=record.key, UploadId=record.s3_upload_id,
                                              PartNumberMarker=marker, MaxParts=1000)
            except ClientError as e:
                if _no_upload(e):
                    self._forget(record)
                    raise ApiError(404, f"Upload not found: {record.id}") from None
                raise
            out += [StoredPart(int(p["PartNumber"]), str(p["ETag"]), int(p["Size"]), p["LastModified"])
                    for p in page.get("Parts", [])]
            if not page.get("IsTruncated"):
                return out
            marker = int(page["NextPartNumberMarker"])

    def complete(self, record: UploadRecord, parts: list[tuple[int, str]] | None) -> int:
        """Join the parts into the file (the client's ETags, else the ones storage lists); 400
        naming missing or wrong-sized parts. Returns the file's size."""
        stored = {p.part_number: p for p in self.list_parts(record)}
        problems = check_parts(record.plan, {n: p.size for n, p in stored.items()})
        if parts is not None:
            given = dict(parts)
            if len(given) != len(parts):
                raise ApiError(400, "each part_number may appear once in parts")
            unknown = sorted(set(given) - set(stored))
            if unknown:
                problems.insert(0, f"parts {unknown[:10]} were not uploaded")
            elif set(given) != set(range(1, record.plan.count + 1)):
                problems.insert(0, f"parts must list every part 1..{record.plan.count}")
        if problems:
            raise ApiError(400, f"Cannot complete upload {record.id}: " + "; ".join(problems))
        etags = parts or [(n, p.etag) for n, p in stored.items()]
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=record.key, UploadId=record.s3_upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in sorted(etags)]},
            )
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall"):
                raise ApiError(400, f"Cannot complete upload {record.id}: {code}: "
                                    f"{e.response.get('Error', {}).get('Message', '')}") from None
            if _no_upload(e):
                self._forget(record)
                raise ApiError(404, f"Upload not found: {record.id}") from None
            raise
        self._forget(record)
        info = self.storage.head_file(record.tenant, record.dir_id, record.file_name)
        return info.size if info is not None else record.size

    def abort(self, record: UploadRecord) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=record.key, UploadId=record.s3_upload_id)
        except ClientError as e:
            if not _no_upload(e):
                raise
        self._forget(record)


def _missing(e: ClientError) -> bool:
    return str(e.response.get("Error", {}).get("Code", "")) in ("404", "NoSuchKey", "NotFound")


def _no_upload(e: ClientError) -> bool:
    return str(e.response.get("Error", {}).get("Code", "")) in ("NoSuchUpload", "404")
