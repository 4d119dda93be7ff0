"""Settings the components share: how to reach S3. Read from the environment (envmodel.py)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from .envmodel import EnvModel


class S3Settings(EnvModel):
    """`S3_ENDPOINT_URL` is how pods reach the store; `S3_PUBLIC_ENDPOINT_URL` is what presigned
    URLs handed to users are signed for (defaults to the former)."""

    env_prefix: ClassVar[str] = "S3_"

    endpoint_url: str | None = None
    public_endpoint_url: str | None = None
    bucket: str = "ffmpeg"
    region: str = "us-east-1"
    access_key_id: str | None = Field(default=None, validation_alias="AWS_ACCESS_KEY_ID")
    secret_access_key: str | None = Field(default=None, validation_alias="AWS_SECRET_ACCESS_KEY")

    @property
    def public_endpoint(self) -> str | None:
        return self.public_endpoint_url or self.endpoint_url
