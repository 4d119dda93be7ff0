"""Test media, generated once with lavfi and cached under bench/.cache (gitignored)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from ffmpegjob_model.storage_layout import file_key

from .common import CACHE, TENANT


def tiny_clip() -> Path:
    """1 s, 160x120, 10 fps H.264: FFmpeg's own time is negligible next to the control path."""
    out = CACHE / "tiny.mp4"
    if not out.exists():
        _make(out, ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=1",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"])
    return out


def big_clip() -> Path:
    """About 100 MB: 60 s of 1280x720 30 fps MPEG-4 Part 2 at 20 Mbit/s plus AAC (quick to make
    and to decode, so the data path is not lost in encoder time)."""
    out = CACHE / "big-100mb.mp4"
    if not out.exists():
        _make(out, ["-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30:duration=60",
                    "-f", "lavfi", "-i", "sine=frequency=440:duration=60",
                    "-c:v", "mpeg4", "-b:v", "20M", "-maxrate", "20M", "-bufsize", "20M",
                    "-c:a", "aac", "-shortest"])
    return out


def _make(out: Path, args: list[str]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args, str(tmp)], check=True)
    tmp.replace(out)


def upload(s3: Any, bucket: str, path: Path, dir_id: str, name: str = "in.mp4") -> str:
    """Store `path` as `<dir_id>/<name>` of the bench tenant; returns the storage path."""
    s3.upload_file(str(path), bucket, file_key(TENANT, dir_id, name))
    return f"{dir_id}/{name}"


def s3_client(env: dict[str, str]) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=env["S3_ENDPOINT_URL"], aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name=env["S3_REGION"])


def delete_prefix(s3: Any, bucket: str, dir_id: str) -> None:
    prefix = f"files/{TENANT}/{dir_id}/"
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
