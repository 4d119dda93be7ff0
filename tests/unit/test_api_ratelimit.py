"""Admission control of the API: the per-key token bucket and the ffprobe concurrency gate."""

from __future__ import annotations

import threading
import time

import pytest
from ffmpeg_api.errors import ApiError
from ffmpeg_api.keystore import TenantEntry, decode_secret, encode_entry
from ffmpeg_api.ratelimit import Busy, ConcurrencyGate, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_bucket_allows_the_burst_then_the_rate() -> None:
    clock = Clock()
    rl = RateLimiter(clock)
    assert [rl.wait_time("k", 10, 20) for _ in range(20)] == [0.0] * 20
    wait = rl.wait_time("k", 10, 20)
    assert wait == pytest.approx(0.1)
    clock.t += 0.1
    assert rl.wait_time("k", 10, 20) == 0.0  # one token refilled
    assert rl.wait_time("k", 10, 20) > 0
    clock.t += 100  # refills to the burst, not beyond
    assert sum(rl.wait_time("k", 10, 20) == 0 for _ in range(25)) == 20


def test_keys_have_their_own_buckets_and_zero_is_unlimited() -> None:
    rl = RateLimiter(Clock())
    for _ in range(3):
        rl.wait_time("a", 1, 3)
    assert rl.wait_time("a", 1, 3) > 0 and rl.wait_time("b", 1, 3) == 0
    assert all(rl.wait_time("c", 0, 1) == 0 for _ in range(1000))


def test_refusal_is_a_429_with_retry_after_in_whole_seconds() -> None:
    rl = RateLimiter(Clock())
    rl.admit("k", 0.5, 1)
    with pytest.raises(ApiError) as e:
        rl.admit("k", 0.5, 1)
    assert e.value.status == 429 and e.value.headers == {"Retry-After": "2"}
    assert "0.5 requests per second" in e.value.message


def test_bucket_memory_is_bounded() -> None:
    rl = RateLimiter(Clock(), max_keys=100)
    for i in range(1000):
        rl.wait_time(f"k{i}", 1, 1)
    assert len(rl._buckets) == 100


def test_tenant_rate_limit_round_trips_through_the_key_store() -> None:
    entry = TenantEntry(keys=["a" * 64])
    entry.rate_limit.requests_per_second, entry.rate_limit.burst = 2.5, 4
    back = decode_secret({"acme": encode_entry(entry)})["acme"]
    assert (back.rate_limit.requests_per_second, back.rate_limit.burst) == (2.5, 4)
    assert decode_secret({"old": encode_entry(TenantEntry(keys=["b" * 64]))})["old"].rate_limit.burst is None


def test_gate_runs_n_queues_m_and_refuses_the_rest() -> None:
    gate = ConcurrencyGate(limit=2, queue=1, timeout=5)
    release = threading.Event()
    entered: list[int] = []

    def hold(i: int) -> None:
        with gate.slot():
            entered.append(i)
            release.wait(5)

    threads = [threading.Thread(target=hold, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while (gate.active, gate.waiting) != (2, 1) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (gate.active, gate.waiting) == (2, 1)
    with pytest.raises(Busy), gate.slot():
        pass
    with pytest.raises(ApiError) as e, gate.or_503("ffprobe runs"):
        pass
    assert e.value.status == 503 and "Retry-After" in (e.value.headers or {})
    release.set()
    for t in threads:
        t.join(5)
    assert sorted(entered) == [0, 1, 2] and (gate.active, gate.waiting) == (0, 0)


def test_gate_queue_wait_is_bounded() -> None:
    gate = ConcurrencyGate(limit=1, queue=1, timeout=0.2)
    with gate.slot():
        t0 = time.monotonic()
        with pytest.raises(Busy), gate.slot():
            pass
        assert 0.15 < time.monotonic() - t0 < 2
