"""The one way the api and the operator build a boto3 S3 client (worker pods hold no storage
credentials: they use the presigned URLs of their grants, grants.py). boto3 is imported when a
client is built, so the contract package does not depend on it (extra `s3`)."""

from __future__ import annotations

from typing import Any

from .settings import S3Settings


def s3_client(s3: S3Settings, *, public: bool = False, max_pool_connections: int = 10) -> Any:
    """A client for `S3_ENDPOINT_URL` (where the components reach the store), or with
    `public=True` for `S3_PUBLIC_ENDPOINT_URL` (signs URLs handed to users; makes no requests).
    SigV4, path-style addressing, three attempts per request."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=s3.public_endpoint if public else s3.endpoint_url,
        region_name=s3.region,
        aws_access_key_id=s3.access_key_id,
        aws_secret_access_key=s3.secret_access_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=max_pool_connections),
    )
