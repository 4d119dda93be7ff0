"""The REST view of a job's webhook deliveries, and the endpoints in the OpenAPI document."""

from __future__ import annotations

from typing import Any

from ffmpeg_api.openapi import document
from ffmpeg_api.settings import ApiSettings
from ffmpeg_api.webhooks import deliveries, webhook_spec
from ffmpegjob_model.webhooks import REDELIVER_ANNOTATION


def job(status: dict[str, Any] | None = None, url: str | None = "https://hooks.example/x",
        annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "job-1", "annotations": annotations or {}},
            "spec": {"webhook": {"url": url}} if url else {}, "status": status or {}}


ATTEMPT = {"time": "2026-01-01T12:00:00Z", "deliveryId": "whd_a", "attempt": 1, "statusCode": 503, "error": "HTTP 503"}


def test_states() -> None:
    assert deliveries(job(url=None)).state == "none"
    assert deliveries(job({"phase": "Running"})).state == "pending"
    retrying = deliveries(job({"webhook": {"deliveryId": "whd_a", "attemptCount": 1, "attempts": [ATTEMPT],
                                           "nextAttemptAt": "2026-01-01T12:00:02Z"}}))
    assert (retrying.state, retrying.attempt_count, retrying.next_attempt_at) == ("retrying", 1, "2026-01-01T12:00:02Z")
    assert retrying.attempts[0].status_code == 503 and retrying.attempts[0].delivery_id == "whd_a"
    done = {"webhook": {"deliveryId": "whd_a", "attemptCount": 1, "delivered": True, "redelivery": None}}
    assert deliveries(job(done)).state == "delivered"
    # A redelivery asked for and not yet picked up is pending, not delivered.
    assert deliveries(job(done, annotations={REDELIVER_ANNOTATION: "whd_b"})).state == "pending"
    assert deliveries(job({"webhook": {"deliveryId": "whd_a", "gaveUp": True}})).state == "failed"


def test_rest_jobs_are_signed_with_the_tenants_secret() -> None:
    hook = webhook_spec(ApiSettings(webhook_secrets_secret="sigs"), "acme", "https://h.example/x")
    assert hook is not None and hook.to_k8s() == {"url": "https://h.example/x",
                                                  "secretRef": {"name": "sigs", "key": "acme"}}
    assert webhook_spec(ApiSettings(), "acme", None) is None


def test_openapi_documents_the_webhook_endpoints_and_429() -> None:
    paths = document()["paths"]
    for path, method in (("/job/{jobId}/webhooks", "get"), ("/job/{jobId}/webhooks/redeliver", "post"),
                         ("/api/ffmpeg/{job_id}/webhooks", "get"), ("/api/ffmpeg/{job_id}/webhooks/redeliver", "post"),
                         ("/api/jobs/{job_id}/webhooks", "get"), ("/api/jobs/{job_id}/webhooks/redeliver", "post"),
                         ("/webhook-secret/rotate", "post")):
        responses = paths[path][method]["responses"]
        assert "404" in responses and "429" in responses, path
    assert "202" in paths["/job/{jobId}/webhooks/redeliver"]["post"]["responses"]
    assert "429" in paths["/api/ffmpeg"]["post"]["responses"]
