"""The boto3 client the worker reads inputs and writes outputs with."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from ffmpegjob_model.settings import S3Settings


def s3_client(s3: S3Settings, pool: int = 32) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        region_name=s3.region,
        aws_access_key_id=s3.access_key_id,
        aws_secret_access_key=s3.secret_access_key,
        # Path style works on every S3-compatible store (MinIO, Ceph) as well as on AWS.
        config=Config(
            s3={"addressing_style": "path"},
            signature_version="s3v4",  # presigned GETs too (SigV2 is refused by newer AWS regions)
            retries={"max_attempts": 5, "mode": "standard"},
            max_pool_connections=pool,
        ),
    )


def is_missing(exc: Exception) -> bool:
    """True for botocore's 404/NoSuchKey errors."""
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


def presigned_get(s3_client: Any, bucket: str, key: str, seconds: int) -> str:
    """A GET URL FFmpeg can read (and seek in, with range requests) without credentials.
    Computed locally: no request to storage."""
    url: str = s3_client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=max(60, min(seconds, 7 * 24 * 3600))
    )
    return url
