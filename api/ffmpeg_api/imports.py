"""Bringing a job's inputs into storage before it is queued (the "FFmpeg API" seed's URL rule),
and turning presigned URLs of our own bucket back into the tenant's storage paths."""

from __future__ import annotations

from ffmpegjob_model.storage_layout import storage_path_of_key, tenant_files_prefix
from ffmpegjob_model.urls import URLRules

from .errors import ApiError
from .storage import ImportFailed, Storage


def own_storage_path(storage: Storage, tenant: str, url: str) -> str | None:
    """`dir_id/file_name` when `url` is a presigned URL of one of the tenant's files; a URL into
    the bucket outside the tenant is refused as not found (it is someone else's)."""
    key = storage.own_key(url)
    if key is None:
        return None
    parts = storage_path_of_key(tenant, key)
    if parts is None or storage.head_file(tenant, *parts) is None:
        raise ApiError(404, f"Input file not found: {url.split('?', 1)[0]}")
    return f"{parts[0]}/{parts[1]}"


def import_input(storage: Storage, tenant: str, url: str, dir_id: str, name: str,
                 rules: URLRules, max_bytes: int, timeout: float) -> int:
    """Copy or download `url` to `dir_id/name`; returns its size."""
    key = storage.own_key(url)
    try:
        if key is not None:
            if not key.startswith(tenant_files_prefix(tenant)):
                raise ApiError(404, f"Input file not found: {url.split('?', 1)[0]}")
            return storage.copy_in(key, tenant, dir_id, name)
        return storage.import_url(url, tenant, dir_id, name, rules, max_bytes, timeout)
    except ImportFailed as e:
        if e.refused:
            raise ApiError(400, f"Invalid task format: input URL refused: {e}") from None
        raise ApiError(502, f"Could not import input URL: {e}") from None


