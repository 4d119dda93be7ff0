"""MinIO on loopback as the stack's S3 server; the bucket is created at start."""

from __future__ import annotations

import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.exceptions import ClientError

from .paths import Binaries
from .processes import ProcessSet


@dataclass(frozen=True)
class S3Config:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def env(self) -> dict[str, str]:
        return {
            "S3_ENDPOINT_URL": self.endpoint,
            "S3_PUBLIC_ENDPOINT_URL": self.endpoint,
            "S3_BUCKET": self.bucket,
            "S3_REGION": self.region,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }


class S3Server:
    def __init__(self, state: Path, bins: Binaries, procs: ProcessSet, port: int, cfg: S3Config) -> None:
        self.state, self.bins, self.procs, self.port, self.cfg = state, bins, procs, port, cfg

    def start(self, timeout: float = 60) -> None:
        self.procs.start(
            "minio",
            [
                self.bins.path("minio"),
                "server",
                str(self.state / "s3"),
                "--address",
                f"127.0.0.1:{self.port}",
                "--console-address",
                f"127.0.0.1:{self.port + 1}",
                "--quiet",
            ],
            env={
                "MINIO_ROOT_USER": self.cfg.access_key,
                "MINIO_ROOT_PASSWORD": self.cfg.secret_key,
                "MINIO_BROWSER": "off",
                "MINIO_UPDATE": "off",
            },
        )
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > deadline or not self.procs.running("minio"):
                raise RuntimeError(f"MinIO did not start; see {self.procs.log('minio')}")
            time.sleep(0.3)
        self.ensure_bucket()

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.cfg.endpoint}/minio/health/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def client(self):  # type: ignore[no-untyped-def]  # boto3 clients are dynamically typed
        return boto3.client(
            "s3",
            endpoint_url=self.cfg.endpoint,
            aws_access_key_id=self.cfg.access_key,
            aws_secret_access_key=self.cfg.secret_key,
            region_name=self.cfg.region,
        )

    def ensure_bucket(self) -> None:
        s3 = self.client()
        try:
            s3.head_bucket(Bucket=self.cfg.bucket)
        except ClientError:
            s3.create_bucket(Bucket=self.cfg.bucket)

    def stop(self) -> None:
        self.procs.stop("minio")
