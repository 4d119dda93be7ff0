"""The worker's only API-server traffic: read its FFmpegJob, merge-patch `ffmpegjobs/status`."""

from __future__ import annotations

import logging
from typing import Any, cast

from ffmpegjob_model.lenient import read_ffmpegjob
from ffmpegjob_model.model import GROUP, PLURAL, VERSION, FFmpegJob
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

log = logging.getLogger("ffmpeg_worker.kube")
MERGE_PATCH = "application/merge-patch+json"


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, ApiException):
        return exc.status in (409, 429, 500, 502, 503, 504) or exc.status == 0
    return isinstance(exc, OSError)


_retry = retry(
    retry=retry_if_exception(_transient),
    wait=wait_exponential(multiplier=0.2, max=5),
    stop=stop_after_attempt(6),
    reraise=True,
)




class JobClient:
    def __init__(self, api: client.ApiClient, namespace: str, name: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace, self.name = namespace, name

    @_retry
    def get(self) -> FFmpegJob:
        obj = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)
        # Leniently: fields of a newer CRD are logged once and ignored (docs/CONTRACTS.md).
        return read_ffmpegjob(cast(dict[str, Any], obj))

    @_retry
    def patch_status(self, status: dict[str, Any]) -> None:
        """Merge-patch the given status fields (camelCase, as on the wire)."""
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, PLURAL, self.name, {"status": status}, _content_type=MERGE_PATCH
        )

    def try_patch_status(self, status: dict[str, Any]) -> bool:
        """Progress is best effort: a failed patch is logged, never fails the job."""
        try:
            self.patch_status(status)
            return True
        except Exception as exc:
            log.warning("status patch failed: %s", exc)
            return False
