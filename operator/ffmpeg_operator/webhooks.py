"""Webhook delivery: the seed's payloads, HMAC signatures, and bounded retries.

Receivers verify `X-Webhook-Signature: sha256=<hex>` = HMAC-SHA256(secret, f"{timestamp}.{body}")
with `timestamp` from `X-Webhook-Timestamp` (Unix seconds; reject old ones to stop replays).
Every attempt is reported to a callback so that the caller records it in status; the caller
resumes from that record after a restart (at-least-once delivery).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from ffmpegjob_model import payloads
from tenacity import AsyncRetrying, retry_if_result, stop_after_attempt, wait_exponential_jitter

SIGNATURE_HEADER = "X-Webhook-Signature"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
USER_AGENT = "kubeffmpeg-operator/0.1"
ERROR_MAX = 500


# ------------------------------------------------------------------------------------- payloads
def payload(job_id: str, status: dict[str, Any], download_url: Callable[[str], str]) -> dict[str, Any]:
    """The "FFmpeg API" seed's success/failure bodies; `download_url(storage_path)` presigns one
    result. (The operator picks the body by surface: `ffmpegjob_model.payloads.webhook_body`.)"""
    return payloads.ffmpeg_api_webhook(job_id, {"status": status}, download_url)


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=False).encode()


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, signature: str, tolerance: float = 300,
           now: float | None = None) -> bool:
    """What a receiver does (used by tests and documented for users)."""
    if abs((now if now is not None else time.time()) - float(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def headers(body: bytes, secret: bytes | None, now: float) -> dict[str, str]:
    ts = str(int(now))
    out = {"Content-Type": "application/json", "User-Agent": USER_AGENT, TIMESTAMP_HEADER: ts}
    if secret:
        out[SIGNATURE_HEADER] = sign(secret, ts, body)
    return out


# -------------------------------------------------------------------------------------- retries
def retryable(status_code: int | None, error: BaseException | None) -> bool:
    """Transient: timeouts, connection failures, 408, 429 and 5xx. Any other answer is final."""
    if error is not None:
        return isinstance(error, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError)
    if status_code is None:
        return False
    return status_code in (408, 429) or 500 <= status_code <= 599


@dataclass
class Attempt:
    time: datetime
    status_code: int | None = None
    error: str | None = None
    retry: bool = False

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"time": self.time.strftime("%Y-%m-%dT%H:%M:%SZ")}
        if self.status_code is not None:
            rec["statusCode"] = self.status_code
        if self.error:
            rec["error"] = self.error[:ERROR_MAX]
        return rec


async def post_once(client: httpx.AsyncClient, url: str, body: bytes, secret: bytes | None) -> Attempt:
    now = datetime.now(UTC)
    try:
        resp = await client.post(url, content=body, headers=headers(body, secret, now.timestamp()))
    except httpx.HTTPError as e:
        return Attempt(now, error=f"{type(e).__name__}: {e}", retry=retryable(None, e))
    err = None if resp.is_success else f"HTTP {resp.status_code}: {resp.text[:200]}"
    return Attempt(now, status_code=resp.status_code, error=err, retry=retryable(resp.status_code, None))


async def deliver(url: str, body: bytes, secret: bytes | None, *, attempts_left: int, timeout: float,
                  backoff_initial: float, backoff_max: float,
                  on_attempt: Callable[[Attempt], Awaitable[None]]) -> Attempt | None:
    """POST until a 2xx, a final answer, or `attempts_left` tries; returns the last attempt.
    Redirects are not followed: a webhook that moved must be reconfigured, not chased."""
    if attempts_left <= 0:
        return None
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:

        async def once() -> Attempt:
            attempt = await post_once(client, url, body, secret)
            await on_attempt(attempt)  # recorded before sleeping: a restart resumes from here
            return attempt

        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts_left),
            wait=wait_exponential_jitter(initial=backoff_initial, max=backoff_max),
            retry=retry_if_result(lambda a: a.retry),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
        )
        result: Attempt | None = await retrying(once)
        return result
