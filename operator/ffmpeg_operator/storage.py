"""S3 access of the operator: presigned result links for webhooks, and the sweep that deletes
expired storage directories with their files (storage_layout.py's format, shared with the api)."""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from ffmpegjob_model.multipart import UploadRecord, uploads_prefix
from ffmpegjob_model.s3client import s3_client
from ffmpegjob_model.settings import S3Settings
from ffmpegjob_model.storage_layout import (
    SCRATCH_ROOT,
    DirectoryMeta,
    dir_prefix,
    file_key,
    scratch_prefix,
    split_result_path,
)
from pydantic import ValidationError

log = logging.getLogger("ffmpeg_operator.storage")
DIRS_ROOT = "dirs/"


class Presigner:
    """Presigned GET links for a tenant's stored files (signed locally: no request is made)."""

    def __init__(self, s3: S3Settings, expires: int) -> None:
        self.bucket, self.expires = s3.bucket, expires
        self.client = s3_client(s3, public=True)

    def url(self, tenant: str, storage_path: str, expires: int | None = None) -> str:
        parts = split_result_path(storage_path)
        if parts is None:
            raise ValueError(f"not a storage path: {storage_path!r}")
        key = file_key(tenant, *parts)
        return str(self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires or self.expires
        ))


def outputs_stored(client: Any, bucket: str, tenant: str, result: list[dict[str, Any]]) -> bool:
    """Every file of a result is in storage at its recorded size. A worker writes its result
    while the last uploads finish (worker.py `publish`), so a result alone does not prove them.
    One listing per output directory, not a request per file (a folder output has thousands)."""
    wanted: dict[str, int | None] = {}
    prefixes: set[str] = set()
    for f in result:
        parts = split_result_path(str(f.get("storagePath", "")))
        if parts is None:
            return False
        size = f.get("sizeBytes")
        wanted[file_key(tenant, *parts)] = None if size is None else int(size)
        prefixes.add(dir_prefix(tenant, parts[0]))
    stored: dict[str, int] = {}
    for prefix in prefixes:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            stored.update((o["Key"], int(o["Size"])) for o in page.get("Contents", []))
    return all(key in stored and (size is None or stored[key] == size) for key, size in wanted.items())


def sweep_expired_dirs(client: Any, bucket: str, now: datetime) -> list[str]:
    """Delete every expired directory (files first, metadata last, so a crash mid-way leaves a
    directory that the next sweep finds again). Returns `tenant/dir_id` of what was removed."""
    removed: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=DIRS_ROOT):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if not key.endswith(".json"):
                continue
            try:
                raw = client.get_object(Bucket=bucket, Key=key)["Body"].read()
                meta = DirectoryMeta.model_validate_json(raw)
            except ClientError:
                continue  # deleted in between
            except ValidationError as e:
                log.warning("skipping unreadable directory metadata %s: %s", key, e)
                continue
            if not meta.expired(now):
                continue
            prefix = dir_prefix(meta.tenant, meta.id)
            for fpage in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                keys = [{"Key": o["Key"]} for o in fpage.get("Contents", [])]
                if keys:
                    client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            client.delete_object(Bucket=bucket, Key=key)
            removed.append(f"{meta.tenant}/{meta.id}")
    return removed


def sweep_expired_uploads(client: Any, bucket: str, now: datetime) -> list[str]:
    """Abort every multipart upload (docs/large-files.md) its client neither completed nor aborted
    in time: its parts are deleted, then its record. Returns `tenant/upload_id` of each."""
    removed: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=uploads_prefix()):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            try:
                record = UploadRecord.model_validate_json(client.get_object(Bucket=bucket, Key=key)["Body"].read())
            except ClientError:
                continue  # completed or aborted in between
            except ValidationError as e:
                log.warning("skipping unreadable upload record %s: %s", key, e)
                continue
            if not record.expired(now):
                continue
            try:
                client.abort_multipart_upload(Bucket=bucket, Key=record.key, UploadId=record.s3_upload_id)
            except ClientError as e:
                if str(e.response.get("Error", {}).get("Code", "")) not in ("NoSuchUpload", "404"):
                    raise
            client.delete_object(Bucket=bucket, Key=key)
            removed.append(f"{record.tenant}/{record.id}")
    return removed


def delete_prefix(client: Any, bucket: str, prefix: str, older_than: datetime | None = None) -> int:
    """Delete every object under `prefix` (only those last written before `older_than`, if
    given). Returns how many were deleted."""
    n = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])
                if older_than is None or o["LastModified"] < older_than]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
            n += len(keys)
    return n


def delete_scratch(client: Any, bucket: str, tenant: str, job_uid: str) -> int:
    """A finished job's scratch objects (checkpoints of a chain's steps): whatever the outcome."""
    return delete_prefix(client, bucket, scratch_prefix(tenant, job_uid))


def sweep_scratch(client: Any, bucket: str, live_uids: Collection[str], now: datetime,
                  min_age: timedelta = timedelta(minutes=10)) -> list[str]:
    """Scratch left by jobs that are no longer running (deleted while the store was down, or an
    operator that died between the terminal status and the clean-up). Objects younger than
    `min_age` are kept: a job created after `live_uids` was listed may already be writing."""
    removed: list[str] = []
    for tpage in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=SCRATCH_ROOT, Delimiter="/"):
        for tp in tpage.get("CommonPrefixes", []):
            for upage in client.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix=tp["Prefix"], Delimiter="/"):
                for up in upage.get("CommonPrefixes", []):
                    uid = up["Prefix"].rstrip("/").rsplit("/", 1)[-1]
                    if uid not in live_uids and delete_prefix(client, bucket, up["Prefix"], now - min_age):
                        removed.append(up["Prefix"])
    return removed
