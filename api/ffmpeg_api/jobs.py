"""FFmpegJob objects as the REST surfaces see them (in the api, a "job" is always an FFmpegJob,
never a batch Job): create (with quota and machine checks), read within a tenant (another
tenant's job is a 404), cancel, list, usage totals."""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

from ffmpegjob_model import payloads
from ffmpegjob_model.gpu import GpuRefused, place
from ffmpegjob_model.model import API_VERSION, FINISHED_LABEL, KIND, TENANT_LABEL, FFmpegJobSpec, Phase
from ffmpegjob_model.payloads import SURFACE_LABEL
from ffmpegjob_model.pools import NodePool, canonical_machine
from ffmpegjob_model.safety import UnsafeCommand, validate_spec
from ffmpegjob_model.settings import S3Settings
from ffmpegjob_model.split import splittable
from ffmpegjob_model.storage_layout import split_result_path
from ffmpegjob_model.urls import URLRefused, URLRules, URLUnresolvable, check_url
from kubernetes.client.rest import ApiException

from .errors import ApiError
from .keystore import Quota
from .kube import Kube, TTLCache
from .schemas import ResultFileOut, UsageOut, UsageTotals
from .settings import ApiSettings

ACTIVE = (None, Phase.PENDING.value, Phase.RUNNING.value)


def new_job_name() -> str:
    return "job-" + secrets.token_hex(8)


def rest_status(obj: dict[str, Any]) -> str:
    phase = (obj.get("status") or {}).get("phase")
    return Phase(phase).rest_status if phase else "pending"


def job_tenant(obj: dict[str, Any]) -> str:
    return str((obj.get("spec") or {}).get("tenant", "default"))


def check_webhook(url: str | None, rules: URLRules, unresolvable_ok: bool = False) -> None:
    if url is None:
        return
    try:
        check_url(url, rules)
    except URLUnresolvable as e:
        if not unresolvable_ok:
            raise ApiError(400, f"webhook_url refused: {e}") from None
    except URLRefused as e:
        raise ApiError(400, f"webhook_url refused: {e}") from None


class Jobs:
    def __init__(self, kube: Kube, settings: ApiSettings, s3: S3Settings, pools: TTLCache[dict[str, NodePool]],
                 url_rules: URLRules | None = None) -> None:
        self.kube, self.settings, self.s3, self.pools = kube, settings, s3, pools
        # The URL rules (`URL_ALLOW_HOSTS`, `URL_ALLOW_HTTP`), read from the environment once.
        self.url_rules = url_rules if url_rules is not None else URLRules()

    # ---------------------------------------------------------------------------------- create
    def machine(self, requested: str) -> str:
        name = canonical_machine(requested)
        pools = self.pools.get()
        if name not in pools:
            known = ", ".join(sorted({*pools, *(["nvidia"] if "gpu" in pools else [])})) or "none configured"
            raise ApiError(400, f"Unknown machine {requested!r}; available: {known}")
        return name

    def validate(self, spec: FFmpegJobSpec, unresolvable_ok: bool = False) -> None:
        """Refuse an unsafe spec with a 400. `unresolvable_ok`: a URL input whose host does not
        resolve is accepted (the job fails when the worker fetches it), as the "Very Good FFmpeg"
        service does; forbidden addresses are refused either way."""
        try:
            validate_spec(spec, url_rules=self.url_rules, s3=self.s3, unresolvable_ok=unresolvable_ok)
        except UnsafeCommand as e:
            raise ApiError(400, f"Invalid command: {e}") from None
        self.check_gpu(spec)
        if spec.parallel is not None and spec.parallel.mode is None:  # `auto` falls back to one pod
            reason = splittable(spec)
            if reason is not None:
                raise ApiError(400, f"Not splittable (parallel): {reason}")

    def check_gpu(self, spec: FFmpegJobSpec) -> None:
        """400 naming the GPU capability the job's pool lacks, unless it may fall back (gpu.py)."""
        pools = self.pools.get()
        if spec.machine not in pools:
            return
        try:
            place(spec, spec.machine, pools)
        except GpuRefused as e:
            raise ApiError(400, f"Invalid command: {e}") from None

    def check_quota(self, tenant: str, quota: Quota) -> bool:
        """Refuse a job over the tenant's quota (403). With Kueue a job over the active-job quota
        is accepted and queued instead (True: the caller answers 202), unless the tenant already
        has `quota_max_queued_jobs` jobs waiting (429). False: within quota."""
        max_active = quota.max_active_jobs if quota.max_active_jobs is not None else self.settings.quota_max_active_jobs
        max_gb_sec = quota.max_gb_sec if quota.max_gb_sec is not None else self.settings.quota_max_gb_sec
        if not max_active and not max_gb_sec:
            return False
        # Only unfinished jobs are listed unless a gb_sec budget needs every job's usage.
        selector = f"{TENANT_LABEL}={tenant}" + ("" if max_gb_sec else f",{FINISHED_LABEL}!=true")
        jobs = self.kube.list_ffmpegjobs(selector)
        if max_gb_sec:
            used = totals(jobs).gb_sec
            if used >= max_gb_sec:
                raise ApiError(403, f"Quota exceeded: {used:g} gb_sec used (limit {max_gb_sec:g})")
        active = sum(1 for j in jobs if (j.get("status") or {}).get("phase") in ACTIVE)
        if not max_active or active < max_active:
            return False
        if not self.settings.kueue_enabled:
            raise ApiError(403, f"Quota exceeded: {active} jobs pending or processing (limit {max_active})")
        max_queued = quota.max_queued_jobs if quota.max_queued_jobs is not None else self.settings.quota_max_queued_jobs
        waiting = sum(1 for j in jobs if (j.get("status") or {}).get("phase") in (None, Phase.PENDING.value))
        if waiting >= max_queued:
            raise ApiError(429, f"Queue full: {waiting} jobs of this tenant are waiting (limit {max_queued}); "
                                f"submit again when some have started")
        return True

    def create(self, name: str, spec: FFmpegJobSpec, surface: str,
               annotations: dict[str, str] | None = None) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": name,
            "namespace": self.kube.namespace,
            "labels": {TENANT_LABEL: spec.tenant, SURFACE_LABEL: surface},
        }
        if annotations:
            metadata["annotations"] = annotations
        body = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": metadata,
            "spec": spec.to_k8s(),
        }
        try:
            return self.kube.create_ffmpegjob(body)
        except ApiException as e:
            if e.status in (400, 422):  # the CRD's schema or CEL rules refused it
                raise ApiError(400, f"Invalid task format: {_k8s_message(e)}") from None
            raise

    # ------------------------------------------------------------------------------------ read
    def get(self, tenant: str, name: str) -> dict[str, Any]:
        obj = self.kube.get_ffmpegjob(name) if _valid_name(name) else None
        if obj is None or job_tenant(obj) != tenant:
            raise ApiError(404, "Job not found")
        return obj

    def list(self, tenant: str) -> list[dict[str, Any]]:
        return self.kube.list_ffmpegjobs(f"{TENANT_LABEL}={tenant}")

    def cancel(self, tenant: str, name: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        """Set spec.cancel (the operator stops the Job); refused unless the REST status is allowed.
        The patch carries the resourceVersion read, so a job that starts meanwhile is not cancelled."""
        for attempt in range(10):  # a new job's status is written several times in its first second
            if attempt:
                time.sleep(0.05 * attempt)
            obj = self.get(tenant, name)
            status = rest_status(obj)
            if status not in allowed:
                only = " or ".join(allowed)
                raise ApiError(409, f"Cannot cancel job in '{status}' status. Only {only} jobs can be cancelled.")
            try:
                self.kube.patch_ffmpegjob_spec(name, {"cancel": True}, obj["metadata"].get("resourceVersion"))
                return obj
            except ApiException as e:
                if e.status != 409:
                    raise
        raise ApiError(409, "The job changed while it was being cancelled; check its status and retry")

    def set_priority(self, tenant: str, name: str, priority: str) -> dict[str, Any]:
        """Change a waiting job's `spec.priority` (Kueue re-orders it; docs/queueing.md). Refused
        once the job runs or ended; conditional on the resourceVersion read, like cancel."""
        for attempt in range(10):
            if attempt:
                time.sleep(0.05 * attempt)
            obj = self.get(tenant, name)
            if phase_of(obj) != Phase.PENDING:
                raise ApiError(409, f"Cannot change the priority of a job in '{rest_status(obj)}' status. "
                                    f"Only queued jobs can be reprioritised.")
            try:
                self.kube.patch_ffmpegjob_spec(name, {"priority": priority}, obj["metadata"].get("resourceVersion"))
                spec = {**(obj.get("spec") or {}), "priority": priority}
                return {**obj, "spec": spec}
            except ApiException as e:
                if e.status != 409:
                    raise
        raise ApiError(409, "The job changed while its priority was being set; check its status and retry")


_K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def _valid_name(name: str) -> bool:
    return bool(_K8S_NAME.fullmatch(name))


def _k8s_message(e: ApiException) -> str:
    try:
        return str(json.loads(e.body or "{}").get("message", e.reason))
    except ValueError:
        return str(e.reason)


status_of = payloads.status_of
phase_of = payloads.phase_of
# Set on a job accepted over the tenant's active-job quota and left to Kueue's queue (202).
OVER_QUOTA_ANNOTATION = "kubeffmpeg.io/accepted-over-quota"


def results(obj: dict[str, Any], presign: Callable[[str, str, str], str]) -> list[ResultFileOut]:
    """The job's result with fresh download links; `presign(tenant, dir_id, file_name)`."""
    st, tenant = status_of(obj), job_tenant(obj)
    out: list[ResultFileOut] = []
    for r in st.result or []:
        parts = split_result_path(r.storage_path)
        if parts is None:
            continue
        out.append(ResultFileOut(file_name=r.file_name, size_bytes=r.size_bytes,
                                 download_url=presign(tenant, *parts), media=r.media))
    return out


def usage_of(obj: dict[str, Any]) -> UsageOut:
    """A finished job's usage; never null (see `payloads.usage_or_estimate`)."""
    return UsageOut(**payloads.usage_dict(payloads.usage_or_estimate(obj)))


def error_of(obj: dict[str, Any]) -> str:
    """The "FFmpeg API" failure text, `FFmpeg processing error: <detail>` (as its webhooks say)."""
    return payloads.ffmpeg_api_error(obj)


def totals(jobs: list[dict[str, Any]]) -> UsageTotals:
    by_status: dict[str, int] = {}
    t = {"time_sec": 0.0, "input_size_gb": 0.0, "output_size_gb": 0.0, "gb_sec": 0.0}
    for j in jobs:
        s = rest_status(j)
        by_status[s] = by_status.get(s, 0) + 1
        u = status_of(j).usage
        if u:
            for k in t:
                t[k] += float(getattr(u, k))
    return UsageTotals(jobs=len(jobs), jobs_by_status=by_status, **{k: round(v, 6) for k, v in t.items()})
