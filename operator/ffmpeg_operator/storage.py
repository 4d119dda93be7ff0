"""S3 access of the operator: presigned result links for webhooks, and the sweep that deletes
expired storage directories with their files (storage_layout.py's format, shared with the api)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from ffmpegjob_model.settings import S3Settings
from ffmpegjob_model.storage_layout import DirectoryMeta, dir_prefix, file_key, split_storage_path
from pydantic import ValidationError

log = logging.getLogger("ffmpeg_operator.storage")
DIRS_ROOT = "dirs/"


def s3_client(s3: S3Settings, public: bool = False) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=s3.public_endpoint if public else s3.endpoint_url,
        region_name=s3.region,
        aws_access_key_id=s3.access_key_id,
        aws_secret_access_key=s3.secret_access_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


class Presigner:
    """Presigned GET links for a tenant's stored files (signed locally: no request is made)."""

    def __init__(self, s3: S3Settings, expires: int) -> None:
        self.bucket, self.expires = s3.bucket, expires
        self.client = s3_client(s3, public=True)

    def url(self, tenant: str, storage_path: str, expires: int | None = None) -> str:
        parts = split_storage_path(storage_path)
        if parts is None:
            raise ValueError(f"not a storage path: {storage_path!r}")
        key = file_key(tenant, *parts)
        return str(self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires or self.expires
        ))


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
