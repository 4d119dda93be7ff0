"""Where things live in the one S3 bucket; the api, worker and operator must agree on it.

    files/<tenant>/<dir_id>/<file_name>     a stored file ("dir_id/file_name" to users)
    dirs/<tenant>/<dir_id>.json             a directory's metadata (DirectoryMeta)
    scratch/<tenant>/<job uid>/...          a job's own intermediate objects (scratch_prefix):
                                            split segments seg-NNNNN.ext; deleted when the job ends
    scratch/<tenant>/<job uid>/steps/NNN/   a chain's checkpoint: the files step NNN left (its
                                            `done.json` is written last)

A directory is a prefix plus its metadata object; it expires `ttl` seconds after `created`,
and the operator's clean-up deletes expired directories with their files.
"""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING, Any

from .plain import DIR_ID_PATTERN

if TYPE_CHECKING:  # a pydantic model (dirmeta.py); the worker uses this module before loading pydantic
    from .dirmeta import DirectoryMeta as DirectoryMeta

DEFAULT_DIR_TTL = 24 * 3600
TMP_FILE_TTL = 3600
FILE_NAME_MAX = 255

_DIR_ID = re.compile(DIR_ID_PATTERN)


def __getattr__(name: str) -> Any:
    """`DirectoryMeta` is imported when first asked for (dirmeta.py)."""
    if name == "DirectoryMeta":
        from .dirmeta import DirectoryMeta

        return DirectoryMeta
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def new_dir_id() -> str:
    return "dir_" + secrets.token_hex(8)


def valid_dir_id(dir_id: str) -> bool:
    return bool(_DIR_ID.fullmatch(dir_id))


def valid_file_name(name: str) -> bool:
    """1-255 characters, no slashes, not a dot-name that could walk the prefix."""
    return 0 < len(name) <= FILE_NAME_MAX and "/" not in name and "\\" not in name and name not in (".", "..")


def tenant_files_prefix(tenant: str) -> str:
    """Every stored file of a tenant: a key outside it is someone else's."""
    return f"files/{tenant}/"


def file_key(tenant: str, dir_id: str, file_name: str) -> str:
    return f"{dir_prefix(tenant, dir_id)}{file_name}"


def dir_prefix(tenant: str, dir_id: str) -> str:
    return f"{tenant_files_prefix(tenant)}{dir_id}/"


def storage_path_of_key(tenant: str, key: str) -> tuple[str, str] | None:
    """A key of the tenant's stored files -> (dir_id, file_name); None for any other key (another
    tenant's, scratch, metadata, or not a valid storage path)."""
    prefix = tenant_files_prefix(tenant)
    return split_storage_path(key[len(prefix):]) if key.startswith(prefix) else None


def dir_meta_key(tenant: str, dir_id: str) -> str:
    return f"dirs/{tenant}/{dir_id}.json"


def checkpoint_prefix(tenant: str, job_uid: str) -> str:
    """Every checkpoint of one FFmpegJob (a chain's finished steps), inside its scratch prefix."""
    return f"{scratch_prefix(tenant, job_uid)}steps/"


def checkpoint_step_prefix(tenant: str, job_uid: str, step: int) -> str:
    """The files command `step` (1-based) left behind; `CHECKPOINT_DONE` in it marks it complete."""
    return f"{checkpoint_prefix(tenant, job_uid)}{step:03d}/"


CHECKPOINT_DONE = "done.json"


def checkpoint_grant_name(step: int, file_name: str) -> str:
    """The name of a checkpoint object's grant in `Grants.scratch`: its key relative to the
    job's scratch prefix (`steps/NNN/<file>`, `steps/NNN/done.json` for the marker)."""
    return f"steps/{step:03d}/{file_name}"


def tenant_dirs_prefix(tenant: str) -> str:
    return f"dirs/{tenant}/"


def split_storage_path(path: str) -> tuple[str, str] | None:
    """`dir_id/file_name` -> (dir_id, file_name), or None when it is not a valid storage path."""
    dir_id, sep, name = path.partition("/")
    if not sep or not valid_dir_id(dir_id) or not valid_file_name(name):
        return None
    return dir_id, name


def split_result_path(path: str) -> tuple[str, str] | None:
    """A result's `storage_path` -> (dir_id, file name): as `split_storage_path`, and the file
    name may also be a relative path of a directory output's file (`hls/v0/seg_001.ts`), each
    segment a valid file name."""
    dir_id, sep, name = path.partition("/")
    if not sep or not valid_dir_id(dir_id) or not all(valid_file_name(p) for p in name.split("/")):
        return None
    return dir_id, name


SCRATCH_ROOT = "scratch/"


def scratch_prefix(tenant: str, job_uid: str) -> str:
    """`scratch/<tenant>/<job uid>/`: a job's own intermediate objects (split chunks,
    checkpoints), never shown to users; pods get presigned URLs for the keys under it, and the
    operator deletes the prefix when the job ends."""
    return f"{SCRATCH_ROOT}{tenant}/{job_uid}/"


def segment_name(index: int, ext: str) -> str:
    return f"seg-{index:05d}{ext}"


def segment_key(prefix: str, index: int, ext: str) -> str:
    return prefix + segment_name(index, ext)
