"""Webhook payloads, signatures and which failures are retried."""

from __future__ import annotations

import json

import httpx
from ffmpeg_operator.webhooks import encode, headers, payload, retryable, sign, verify

SUCCEEDED = {
    "phase": "Succeeded",
    "result": [{"fileName": "out.mp4", "sizeBytes": 1234, "storagePath": "dir_demo/out.mp4"}],
    "usage": {"timeSec": 12.5, "inputSizeGb": 0.098, "outputSizeGb": 0.015, "gbSec": 1.4125},
}


def test_success_payload_is_the_seed_shape() -> None:
    body = payload("job_1", SUCCEEDED, lambda p: f"https://s3.example/{p}?sig")
    assert body == {
        "job_id": "job_1", "status": "completed",
        "result": [{"file_name": "out.mp4", "size_bytes": 1234, "download_url": "https://s3.example/dir_demo/out.mp4?sig"}],
        "usage": {"time_sec": 12.5, "input_size_gb": 0.098, "output_size_gb": 0.015, "gb_sec": 1.4125},
    }


def test_failure_and_cancel_payloads() -> None:
    fail = payload("j", {"phase": "Failed", "error": "FFmpeg processing error: Invalid input format"}, str)
    assert fail == {"job_id": "j", "status": "failed", "error": "FFmpeg processing error: Invalid input format"}
    assert payload("j", {"phase": "Cancelled"}, str)["status"] == "cancelled"


def test_signature_round_trip_and_tamper() -> None:
    body = encode({"a": 1})
    h = headers(body, b"s3cr3t", now=1_700_000_000)
    ts, sig = h["X-Webhook-Timestamp"], h["X-Webhook-Signature"]
    assert sig == sign(b"s3cr3t", ts, body) and sig.startswith("sha256=")
    assert verify(b"s3cr3t", ts, body, sig, now=1_700_000_010)
    assert not verify(b"s3cr3t", ts, body + b" ", sig, now=1_700_000_010)
    assert not verify(b"other", ts, body, sig, now=1_700_000_010)
    assert not verify(b"s3cr3t", ts, body, sig, now=1_700_001_000)  # replay after 5 minutes
    assert "X-Webhook-Signature" not in headers(body, None, now=1)
    assert json.loads(body) == {"a": 1}


def test_retry_classification() -> None:
    codes = (200, 204, 301, 400, 401, 404, 408, 410, 429, 500, 503)
    assert [c for c in codes if retryable(c, None)] == [408, 429, 500, 503]
    assert retryable(None, httpx.ReadTimeout("slow"))
    assert retryable(None, httpx.ConnectError("refused"))
    assert not retryable(None, httpx.UnsupportedProtocol("ftp"))
