"""Tenant storage on S3 (boto3) in the layout of `ffmpegjob_model.storage_layout`: directories
with metadata, files, presigned URLs signed for the public endpoint, imports of URL inputs."""

from __future__ import annotations

import mimetypes
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.exceptions import ClientError
from ffmpegjob_model.fetch import DownloadFailed, download
from ffmpegjob_model.s3client import s3_client
from ffmpegjob_model.settings import S3Settings
from ffmpegjob_model.storage_layout import (
    DEFAULT_DIR_TTL,
    DirectoryMeta,
    dir_meta_key,
    dir_prefix,
    file_key,
    new_dir_id,
    tenant_dirs_prefix,
)
from ffmpegjob_model.urls import URLRules, storage_key_for_url
from pydantic import ValidationError

CHUNK = 1024 * 1024


class ImportFailed(Exception):
    """A URL input that could not be imported; `refused` when the URL rules refused it."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


@dataclass(frozen=True)
class StoredFile:
    dir_id: str
    file_name: str
    size: int
    content_type: str
    modified: datetime


def guess_type(name: str, stored: str | None = None) -> str:
    """The file's media type from its name; uploads through curl often send a meaningless one."""
    guessed, _ = mimetypes.guess_type(name)
    if guessed:
        return guessed
    if stored and stored not in ("binary/octet-stream", "application/x-www-form-urlencoded"):
        return stored
    return "application/octet-stream"


def now() -> datetime:
    return datetime.now(UTC)


class Storage:
    def __init__(self, s3: S3Settings) -> None:
        self.settings = s3
        self.bucket = s3.bucket
        # As many pooled connections as uvicorn's thread pool has threads.
        self.client = s3_client(s3, max_pool_connections=64)
        self.public = s3_client(s3, public=True)  # signs URLs handed to users (no request made)

    # ------------------------------------------------------------------------------ directories
    def create_dir(self, tenant: str, ttl: int = DEFAULT_DIR_TTL, temporary: bool = False,
                   dir_id: str | None = None) -> DirectoryMeta:
        meta = DirectoryMeta(id=dir_id or new_dir_id(), tenant=tenant, ttl=ttl, temporary=temporary)
        self.client.put_object(Bucket=self.bucket, Key=dir_meta_key(tenant, meta.id),
                               Body=meta.model_dump_json().encode(), ContentType="application/json")
        return meta

    def get_dir(self, tenant: str, dir_id: str) -> DirectoryMeta | None:
        """The tenant's directory, or None when it does not exist, is another's, or expired."""
        try:
            raw = self.client.get_object(Bucket=self.bucket, Key=dir_meta_key(tenant, dir_id))["Body"].read()
            meta = DirectoryMeta.model_validate_json(raw)
        except ClientError as e:
            if _missing(e):
                return None
            raise
        except ValidationError:
            return None
        return None if meta.expired() or meta.tenant != tenant else meta

    def list_dirs(self, tenant: str) -> list[DirectoryMeta]:
        out: list[DirectoryMeta] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=tenant_dirs_prefix(tenant)
        ):
            for obj in page.get("Contents", []):
                dir_id = obj["Key"][len(tenant_dirs_prefix(tenant)) :].removesuffix(".json")
                meta = self.get_dir(tenant, dir_id)
                if meta is not None:
                    out.append(meta)
        return sorted(out, key=lambda m: m.created)

    # ------------------------------------------------------------------------------------ files
    def list_files(self, tenant: str, dir_id: str) -> list[StoredFile]:
        prefix = dir_prefix(tenant, dir_id)
        out: list[StoredFile] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                name = obj["Key"][len(prefix) :]
                if name and "/" not in name:
                    out.append(StoredFile(dir_id, name, int(obj["Size"]), guess_type(name), obj["LastModified"]))
        return sorted(out, key=lambda f: f.modified)

    def head_file(self, tenant: str, dir_id: str, name: str) -> StoredFile | None:
        try:
            h = self.client.head_object(Bucket=self.bucket, Key=file_key(tenant, dir_id, name))
        except ClientError as e:
            if _missing(e):
                return None
            raise
        return StoredFile(dir_id, name, int(h["ContentLength"]), guess_type(name, h.get("ContentType")),
                          h["LastModified"])

    def delete_file(self, tenant: str, dir_id: str, name: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=file_key(tenant, dir_id, name))

    def presign_put(self, tenant: str, dir_id: str, name: str, expires: int) -> str:
        return str(self.public.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": file_key(tenant, dir_id, name)}, ExpiresIn=expires
        ))

    def presign_get(self, tenant: str, dir_id: str, name: str, expires: int, internal: bool = False) -> str:
        c = self.client if internal else self.public
        return str(c.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": file_key(tenant, dir_id, name)}, ExpiresIn=expires
        ))

    # ---------------------------------------------------------------------------------- imports
    def own_key(self, url: str) -> str | None:
        """The object key when `url` is a presigned URL of this system's bucket."""
        return storage_key_for_url(url, self.settings)

    def copy_in(self, src_key: str, tenant: str, dir_id: str, name: str) -> int:
        dest = file_key(tenant, dir_id, name)
        try:
            self.client.copy({"Bucket": self.bucket, "Key": src_key}, self.bucket, dest)
            return int(self.client.head_object(Bucket=self.bucket, Key=dest)["ContentLength"])
        except ClientError as e:
            if _missing(e):
                raise ImportFailed("the stored file the URL points to does not exist (or its link expired)") from None
            raise

    def import_url(self, url: str, tenant: str, dir_id: str, name: str, rules: URLRules,
                   max_bytes: int, timeout: float) -> int:
        """Download `url` into storage under the URL rules (`ffmpegjob_model.fetch.download`: each
        redirect and the connected address are checked again). Returns the size in bytes."""
        with tempfile.SpooledTemporaryFile(max_size=16 * CHUNK) as buf:
            try:
                size = download(url, buf, rules, max_bytes=max_bytes, read_timeout=timeout,
                                user_agent="kubeffmpeg-api")
            except DownloadFailed as e:
                raise ImportFailed(str(e), refused=e.refused) from None
            buf.seek(0)
            self.client.upload_fileobj(buf, self.bucket, file_key(tenant, dir_id, name),
                                       ExtraArgs={"ContentType": guess_type(name)})
            return size


def _missing(e: ClientError) -> bool:
    code = str(e.response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket")
