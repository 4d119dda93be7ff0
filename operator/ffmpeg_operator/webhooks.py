"""Webhook delivery: the seed's payloads, signed attempts, and the retry schedule.

The headers and the signature scheme are the contract's (`ffmpegjob_model.webhooks`). The delivery
record in `status.webhook` is the whole state of a delivery: its id, the attempts made, when the
next one is due. The operator writes it after every attempt and resumes from it after a restart,
so the schedule is kept across restarts (delivery is at least once). Everything here is pure
except `post_once`.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from ffmpegjob_model import payloads
from ffmpegjob_model.times import format_time, parse_time
from ffmpegjob_model.webhooks import (
    ATTEMPT_HEADER,
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    verify,
)

__all__ = ["ATTEMPT_HEADER", "ID_HEADER", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "sign", "verify"]

USER_AGENT = "kubeffmpeg-operator/0.1"
ERROR_MAX = 500


# ------------------------------------------------------------------------------------- payloads
def payload(job_id: str, status: dict[str, Any], download_url: Callable[[str], str]) -> dict[str, Any]:
    """The "FFmpeg API" seed's success/failure bodies; `download_url(storage_path)` presigns one
    result. (The operator picks the body by surface: `ffmpegjob_model.payloads.webhook_body`.)"""
    return payloads.ffmpeg_api_webhook(job_id, {"status": status}, download_url)


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=False).encode()


def headers(body: bytes, secret: bytes | None, now: float, delivery_id: str = "", attempt: int = 1) -> dict[str, str]:
    ts = str(int(now))
    out = {"Content-Type": "application/json", "User-Agent": USER_AGENT, TIMESTAMP_HEADER: ts,
           ATTEMPT_HEADER: str(attempt)}
    if delivery_id:
        out[ID_HEADER] = delivery_id
    if secret:
        out[SIGNATURE_HEADER] = sign(secret, ts, body)
    return out


# ------------------------------------------------------------------------------------- schedule
@dataclass(frozen=True)
class Schedule:
    """Exponential back-off with a cap: the wait after attempt k (1-based) is
    min(initial x factor^(k-1), cap), stretched by up to `jitter` (a fraction) so that receivers
    coming back from an outage are not hit by every sender at once. `max_attempts` in all."""

    max_attempts: int = 16
    initial: float = 15.0
    factor: float = 2.0
    cap: float = 4 * 3600.0
    jitter: float = 0.1

    def delay_after(self, attempt: int) -> float:
        """The nominal wait after attempt `attempt` (no jitter)."""
        return min(self.cap, self.initial * self.factor ** max(0, attempt - 1))

    def next_delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float | None:
        """The wait before the next attempt, None when `attempt` was the last one."""
        if attempt >= self.max_attempts:
            return None
        return self.delay_after(attempt) * (1 + self.jitter * rng())

    def table(self) -> list[tuple[int, float, float]]:
        """(attempt, nominal wait before it, nominal time since the first attempt) for every attempt."""
        rows, t = [(1, 0.0, 0.0)], 0.0
        for k in range(2, self.max_attempts + 1):
            wait = self.delay_after(k - 1)
            t += wait
            rows.append((k, wait, t))
        return rows

    def span(self) -> float:
        """Nominal time from the first attempt to the last."""
        return self.table()[-1][2]


def human(seconds: float) -> str:
    """12 s, 4 min 30 s, 2 h 8 min: for the published table."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min" + (f" {s % 60} s" if s % 60 else "")
    h, m = s // 3600, s % 3600 // 60
    return f"{h} h" + (f" {m} min" if m else "")


def schedule_markdown(schedule: Schedule) -> str:
    """The table docs/webhooks.md publishes (a test keeps the two equal)."""
    lines = ["| attempt | wait before it | since the first attempt |", "|---|---|---|"]
    for k, wait, t in schedule.table():
        lines.append(f"| {k} | {human(wait) if k > 1 else '-'} | {human(t) if k > 1 else '-'} |")
    return "\n".join(lines)


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
    retry_after: float | None = None  # the receiver's Retry-After, in seconds

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def record(self, delivery_id: str | None = None, attempt: int | None = None) -> dict[str, Any]:
        rec: dict[str, Any] = {"time": format_time(self.time)}
        if delivery_id:
            rec["deliveryId"] = delivery_id
        if attempt:
            rec["attempt"] = attempt
        if self.status_code is not None:
            rec["statusCode"] = self.status_code
        if self.error:
            rec["error"] = self.error[:ERROR_MAX]
        return rec


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None  # the HTTP-date form is rare from webhook receivers; the schedule applies


async def post_once(client: httpx.AsyncClient, url: str, body: bytes, secret: bytes | None,
                    delivery_id: str = "", attempt: int = 1) -> Attempt:
    """One POST. Redirects are not followed: a webhook that moved must be reconfigured."""
    now = datetime.now(UTC)
    try:
        hdrs = headers(body, secret, now.timestamp(), delivery_id, attempt)
        resp = await client.post(url, content=body, headers=hdrs)
    except httpx.HTTPError as e:
        return Attempt(now, error=f"{type(e).__name__}: {e}" if str(e) else type(e).__name__,
                       retry=retryable(None, e))
    err = None if resp.is_success else f"HTTP {resp.status_code}: {resp.text[:200]}"
    return Attempt(now, status_code=resp.status_code, error=err, retry=retryable(resp.status_code, None),
                   retry_after=parse_retry_after(resp.headers.get("Retry-After")))


# ------------------------------------------------------------------------------ delivery record
def start_delivery(record: dict[str, Any], delivery_id: str, redelivery: str | None = None) -> dict[str, Any]:
    """A new delivery (the first one, or a redelivery): attempt count 0, due now. The history of
    earlier attempts is kept."""
    out = {**record, "deliveryId": delivery_id, "attemptCount": 0, "delivered": False, "gaveUp": False,
           "deliveredAt": None, "nextAttemptAt": None}
    if redelivery is not None:
        out["redelivery"] = redelivery
    return out


def resume(record: dict[str, Any], first_id: str) -> dict[str, Any]:
    """The record as an older operator may have left it (attempts without ids): give the running
    delivery its id and count, keeping the attempts made."""
    if record.get("deliveryId"):
        return record
    made = len(record.get("attempts") or [])
    return {**start_delivery(record, first_id), "attemptCount": made,
            "delivered": bool(record.get("delivered")), "gaveUp": bool(record.get("gaveUp")),
            "deliveredAt": record.get("deliveredAt")}


def settled(record: dict[str, Any]) -> bool:
    return bool(record.get("delivered") or record.get("gaveUp"))


def due_at(record: dict[str, Any]) -> datetime | None:
    return parse_time(record.get("nextAttemptAt"))


def after_attempt(record: dict[str, Any], a: Attempt, schedule: Schedule, keep: int,
                  rng: Callable[[], float] = random.random) -> dict[str, Any]:
    """The record once attempt `a` is made: delivered, given up, or the next attempt scheduled
    (never sooner than the receiver's Retry-After, never later than the schedule's cap)."""
    n = int(record.get("attemptCount") or 0) + 1
    attempts = [*(record.get("attempts") or []), a.record(record.get("deliveryId"), n)][-keep:]
    out = {**record, "attemptCount": n, "attempts": attempts, "nextAttemptAt": None}
    if a.ok:
        return {**out, "delivered": True, "deliveredAt": format_time(a.time), "gaveUp": False}
    delay = schedule.next_delay(n, rng) if a.retry else None
    if delay is None:
        return {**out, "delivered": False, "gaveUp": True}
    if a.retry_after is not None:
        delay = min(max(delay, a.retry_after), max(schedule.cap, delay))
    # Whole seconds, rounded up: the time written is the time kept, before and after a restart.
    due = a.time + timedelta(seconds=delay)
    due = due.replace(microsecond=0) + timedelta(seconds=1 if due.microsecond else 0)
    return {**out, "nextAttemptAt": format_time(due)}


def seconds_until(t: datetime, now: datetime) -> float:
    return max(0.0, math.ceil((t - now).total_seconds() * 1000) / 1000)
