"""What a worker pod may do on storage: presigned URLs, handed over by the operator.

A worker pod holds no storage credentials. For each job the operator presigns exactly the
requests its pod needs (GET of its inputs, PUT or multipart upload of its declared outputs,
scratch objects of split chunks or checkpoints) and puts them, as the JSON of `Grants`, in a
per-job Secret mounted as a file (`GRANTS_MOUNT/GRANTS_FILE`, path in `$GRANTS_FILE_ENV`). Every
URL expires with the job (`expires_at`). The worker speaks plain HTTP to those URLs.

Presigned URLs are SigV4 query-string signatures: the method, the host, the key (and for uploads
the signed headers, here `Content-Type`) are fixed by the signature; the body is not. So a PUT URL
lets its holder write that one key, until it expires, and nothing else.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

# The grants file's location and the part sizes live in plain.py: the worker reads the file
# without pydantic (plain.GrantsView).
from .plain import GRANTS_FILE as GRANTS_FILE
from .plain import GRANTS_FILE_ENV as GRANTS_FILE_ENV
from .plain import GRANTS_MOUNT as GRANTS_MOUNT
from .plain import MAX_PART_BYTES as MAX_PART_BYTES
from .plain import MIN_PART_BYTES as MIN_PART_BYTES

GRANTS_SECRET_SUFFIX = "-grants"
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4's limit


def grants_secret_name(job_name: str) -> str:
    return f"{job_name}{GRANTS_SECRET_SUFFIX}"


class MultipartGrant(BaseModel):
    """An upload the operator initiated (it holds the UploadId): part URLs `part_urls[i]` for
    PartNumber i+1, then complete (POST the part list) or abort (DELETE)."""

    upload_id: str
    part_urls: list[str] = Field(min_length=1, max_length=10000)
    complete_url: str
    abort_url: str


class ObjectGrant(BaseModel):
    """What the holder may do with one object key: any of read, write (PUT or multipart), delete."""

    key: str = Field(description="The object key; for messages, never used to build a request.")
    get_url: str | None = None
    put_url: str | None = None
    delete_url: str | None = None
    content_type: str | None = Field(
        default=None, description="Signed into put_url: a PUT must send exactly this Content-Type.")
    multipart: MultipartGrant | None = None


class PrefixGrant(BaseModel):
    """A presigned POST policy: uploads of any name under `prefix` (multipart/form-data: the
    `fields`, then `key` = prefix + name, then `file`), each at most `max_bytes`. For outputs whose
    names are not known in advance; a POST carries one object of at most 5 GiB."""

    prefix: str
    url: str
    fields: dict[str, str]
    max_bytes: int


class Grants(BaseModel):
    """The content of a worker pod's grants file (one job's pod, or one index of it)."""

    version: Literal[1] = 1
    expires_at: datetime
    inputs: dict[str, ObjectGrant] = Field(
        default_factory=dict, description="Input name -> read grant, for inputs held in our storage.")
    outputs: dict[str, ObjectGrant] = Field(
        default_factory=dict, description="Declared output file name -> write (and delete) grant.")
    output_prefix: PrefixGrant | None = None
    scratch: dict[str, ObjectGrant] = Field(
        default_factory=dict,
        description="Logical name -> grant, for the job's own scratch objects (checkpoints, split "
                    "chunks): whatever other pods of the same job write or read.")
    scratch_prefix: PrefixGrant | None = None

    def dump(self) -> str:
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Grants:
        return cls.model_validate_json(Path(path).read_text())
