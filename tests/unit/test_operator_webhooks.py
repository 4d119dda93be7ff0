"""Webhook payloads, signatures, which failures are retried, the retry schedule and the delivery
record the operator resumes from."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from ffmpeg_operator.settings import OperatorSettings
from ffmpeg_operator.webhooks import (
    Attempt,
    Schedule,
    after_attempt,
    due_at,
    encode,
    headers,
    payload,
    resume,
    retryable,
    schedule_markdown,
    sign,
    start_delivery,
    verify,
)
from ffmpegjob_model.webhooks import (
    ATTEMPT_HEADER,
    ID_HEADER,
    delivery_id_of_request,
    first_delivery_id,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

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
    h = headers(body, b"k", now=1, delivery_id="whd_1", attempt=3)
    assert (h[ID_HEADER], h[ATTEMPT_HEADER]) == ("whd_1", "3")
    assert json.loads(body) == {"a": 1}


def test_retry_classification() -> None:
    codes = (200, 204, 301, 400, 401, 404, 408, 410, 429, 500, 503)
    assert [c for c in codes if retryable(c, None)] == [408, 429, 500, 503]
    assert retryable(None, httpx.ReadTimeout("slow"))
    assert retryable(None, httpx.ConnectError("refused"))
    assert not retryable(None, httpx.UnsupportedProtocol("ftp"))


# ------------------------------------------------------------------------------------ schedule
def default_schedule() -> Schedule:
    s = OperatorSettings.model_construct()  # the defaults, whatever the environment says
    return Schedule(s.webhook_max_attempts, s.webhook_backoff_initial, s.webhook_backoff_factor,
                    s.webhook_backoff_max, s.webhook_backoff_jitter)


def test_default_schedule_lasts_more_than_a_day_with_capped_exponential_waits() -> None:
    sched = default_schedule()
    table = sched.table()
    waits = [w for _, w, _ in table[1:]]
    assert len(table) == 16 and waits[:4] == [15, 30, 60, 120]
    assert max(waits) == 4 * 3600 and waits == sorted(waits)  # exponential, then capped
    assert 24 * 3600 <= sched.span() < 26 * 3600


def test_published_table_is_the_schedule_the_operator_runs() -> None:
    assert schedule_markdown(default_schedule()) in DOCS.read_text(), \
        "docs/webhooks.md's table is stale: paste schedule_markdown(default_schedule())"


def test_jitter_only_stretches_and_the_last_attempt_has_no_next() -> None:
    sched = Schedule(max_attempts=3, initial=10, factor=2, cap=100, jitter=0.1)
    assert sched.next_delay(1, lambda: 0.0) == 10 and sched.next_delay(1, lambda: 1.0) == 11
    assert sched.next_delay(2, lambda: 0.5) == 21
    assert sched.next_delay(3) is None


# ----------------------------------------------------------------------------- delivery record
SCHED = Schedule(max_attempts=3, initial=10, factor=2, cap=60, jitter=0)


def test_5xx_schedules_the_next_attempt_of_the_same_delivery_then_gives_up() -> None:
    rec = start_delivery({}, "whd_a")
    rec = after_attempt(rec, Attempt(T0, status_code=503, retry=True), SCHED, keep=10)
    assert rec["attemptCount"] == 1 and due_at(rec) == T0 + timedelta(seconds=10) and not rec["gaveUp"]
    rec = after_attempt(rec, Attempt(T0 + timedelta(seconds=10), status_code=500, retry=True), SCHED, keep=10)
    assert due_at(rec) == T0 + timedelta(seconds=30)
    rec = after_attempt(rec, Attempt(T0 + timedelta(seconds=30), error="ReadTimeout", retry=True), SCHED, keep=10)
    assert rec["gaveUp"] and rec["nextAttemptAt"] is None and rec["attemptCount"] == 3
    assert [(a["deliveryId"], a["attempt"]) for a in rec["attempts"]] == [("whd_a", 1), ("whd_a", 2), ("whd_a", 3)]


def test_4xx_is_final_and_2xx_delivers() -> None:
    rec = after_attempt(start_delivery({}, "whd_a"), Attempt(T0, status_code=400, retry=False), SCHED, keep=10)
    assert rec["gaveUp"] and not rec["delivered"] and rec["attemptCount"] == 1
    ok = after_attempt(start_delivery({}, "whd_b"), Attempt(T0, status_code=204), SCHED, keep=10)
    assert ok["delivered"] and ok["deliveredAt"] == "2026-01-01T12:00:00Z" and ok["nextAttemptAt"] is None


def test_retry_after_is_honoured_up_to_the_cap_and_due_times_are_whole_seconds() -> None:
    t = T0 + timedelta(microseconds=250_000)
    rec = after_attempt(start_delivery({}, "whd_a"), Attempt(t, status_code=429, retry=True, retry_after=45),
                        SCHED, keep=10)
    assert rec["nextAttemptAt"] == "2026-01-01T12:00:46Z"  # 45.25 s, rounded up
    rec = after_attempt(start_delivery({}, "whd_a"), Attempt(T0, status_code=503, retry=True, retry_after=9999),
                        SCHED, keep=10)
    assert due_at(rec) == T0 + timedelta(seconds=60)


def test_history_is_bounded_and_a_redelivery_starts_a_new_count_keeping_it() -> None:
    rec = start_delivery({}, "whd_a")
    for i in range(3):
        rec = after_attempt(rec, Attempt(T0 + timedelta(seconds=i), status_code=500, retry=True), SCHED, keep=2)
    assert len(rec["attempts"]) == 2 and rec["attempts"][-1]["attempt"] == 3
    again = start_delivery(rec, "whd_b", redelivery="whd_b")
    assert (again["deliveryId"], again["attemptCount"], again["gaveUp"], again["redelivery"]) == ("whd_b", 0, False,
                                                                                                "whd_b")
    assert len(again["attempts"]) == 2


def test_a_record_from_an_older_operator_resumes_its_count() -> None:
    old = {"attempts": [{"time": "2026-01-01T12:00:00Z", "statusCode": 503}], "delivered": False}
    rec = resume(old, first_delivery_id("uid-1"))
    assert rec["attemptCount"] == 1 and rec["deliveryId"] == first_delivery_id("uid-1")
    assert resume(rec, "other") is rec


def test_delivery_ids() -> None:
    assert first_delivery_id("u") == first_delivery_id("u") != first_delivery_id("v")
    assert re.fullmatch(r"whd_[0-9a-f]{24}", first_delivery_id("u"))
    assert delivery_id_of_request("whd_abc") == "whd_abc"
    assert re.fullmatch(r"whd_[0-9a-f]{24}", delivery_id_of_request("2026-01-01 please"))


# ------------------------------------------------------------------ the delivery tasks (delivery.py)
def _job(phase: str, hook: dict[str, object] | None = None, annotations: dict[str, str] | None = None) -> dict:
    return {"metadata": {"namespace": "ns", "name": "job-1", "uid": "u-1", "annotations": annotations or {}},
            "spec": {"webhook": {"url": "https://hooks.example/x"}}, "status": {"phase": phase,
                                                                                  "webhook": hook or {}}}


def test_only_a_finished_job_with_an_unsettled_delivery_or_a_new_redelivery_request_wants_one() -> None:
    from ffmpeg_operator.delivery import wants_delivery
    from ffmpegjob_model.webhooks import REDELIVER_ANNOTATION

    assert not wants_delivery(_job("Running"))
    assert wants_delivery(_job("Succeeded"))
    assert not wants_delivery({**_job("Succeeded"), "spec": {}})
    delivered = {"deliveryId": "d1", "delivered": True}
    assert not wants_delivery(_job("Failed", delivered))
    assert wants_delivery(_job("Failed", delivered, {REDELIVER_ANNOTATION: "r1"}))
    assert not wants_delivery(_job("Failed", {**delivered, "redelivery": "r1"}, {REDELIVER_ANNOTATION: "r1"}))


async def test_one_task_per_delivery_woken_by_events_and_ended_once_settled() -> None:
    """A second event wakes the running task instead of starting a twin; once the record is
    settled the task reads that and ends (no object is kept for it); a deletion stops it."""
    import asyncio
    from types import SimpleNamespace

    from ffmpeg_operator import delivery

    reads: list[str] = []
    state = {"body": _job("Succeeded", {"deliveryId": "d1", "nextAttemptAt": "2999-01-01T00:00:00Z"})}

    def get_ffmpegjob(ns: str, name: str) -> dict | None:
        reads.append(name)
        return state["body"]

    c: object = SimpleNamespace(kube=SimpleNamespace(get_ffmpegjob=get_ffmpegjob),
                                settings=OperatorSettings(url_allow_hosts=""))
    d = delivery.Deliveries()
    d.wake_or_start(c, "ns", "job-1")  # type: ignore[arg-type]
    first = d.running[("ns", "job-1")][0]
    await asyncio.sleep(0.05)
    assert reads == ["job-1"] and not first.done()  # asleep until the attempt far in the future
    state["body"] = _job("Succeeded", {"deliveryId": "d1", "delivered": True})
    d.wake_or_start(c, "ns", "job-1")  # type: ignore[arg-type]
    assert d.running[("ns", "job-1")][0] is first
    await asyncio.wait_for(first, 1)
    assert reads == ["job-1", "job-1"] and ("ns", "job-1") not in d.running
    state["body"] = _job("Succeeded", {"deliveryId": "d1", "nextAttemptAt": "2999-01-01T00:00:00Z"})
    d.wake_or_start(c, "ns", "job-1")  # type: ignore[arg-type]
    again = d.running[("ns", "job-1")][0]
    assert again is not first
    await asyncio.sleep(0.05)
    d.stop("ns", "job-1")
    await asyncio.gather(again, return_exceptions=True)
    assert again.cancelled() and ("ns", "job-1") not in d.running
