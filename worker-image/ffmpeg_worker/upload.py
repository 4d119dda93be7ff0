"""Upload a job's declared outputs: multipart, several parts and several files at a time.
All or nothing: when one upload fails, the ones already written are deleted again."""

from __future__ import annotations

import contextlib
import mimetypes
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig
from ffmpegjob_model.storage_layout import file_key

MB = 1024 * 1024


class UploadFailed(Exception):
    pass


@dataclass(frozen=True)
class Uploaded:
    name: str
    key: str
    size: int


def transfer_config(concurrency: int) -> TransferConfig:
    return TransferConfig(
        multipart_threshold=16 * MB, multipart_chunksize=16 * MB, max_concurrency=concurrency, use_threads=True
    )


def upload_outputs(
    s3: Any, bucket: str, tenant: str, dir_id: str, files: list[Path], concurrency: int = 8
) -> list[Uploaded]:
    config = transfer_config(concurrency)

    def one(path: Path) -> Uploaded:
        key = file_key(tenant, dir_id, path.name)
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        s3.upload_file(str(path), bucket, key, ExtraArgs={"ContentType": ctype}, Config=config)
        return Uploaded(path.name, key, path.stat().st_size)

    done: list[Uploaded] = []
    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, min(len(files), 4))) as pool:
        for path, fut in [(p, pool.submit(one, p)) for p in files]:
            try:
                done.append(fut.result())
            except Exception as exc:
                errors.append(f"{path.name}: {exc}")
    if errors:
        for u in done:  # no partial result: remove what was written
            with contextlib.suppress(Exception):
                s3.delete_object(Bucket=bucket, Key=u.key)
        raise UploadFailed("upload failed: " + "; ".join(errors))
    return done
