"""Admission control in one API process: a token bucket per API key, and a bounded number of
concurrent ffprobe runs with a bounded queue in front of them.

State is in memory, so limits apply per API replica: with N replicas behind a Service a key may
get up to N times its rate. (A shared store would make every request pay a round trip; the
chart's defaults keep N small and documents it.)"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .errors import ApiError


@dataclass
class TokenBucket:
    """`rate` tokens per second up to `burst`; a request takes one."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """0 when a token was taken, else the seconds until one is available."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RateLimiter:
    """One bucket per key (the key's hash), at most `max_keys` remembered (least recently used
    forgotten: a forgotten key starts again with a full bucket)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000) -> None:
        self._clock, self._max = clock, max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    def wait_time(self, key: str, rate: float, burst: int) -> float:
        """0 when the request may go on, else the seconds to wait. rate 0 = unlimited."""
        if rate <= 0:
            return 0.0
        burst = max(1, burst)
        now = self._clock()
        with self._lock:
            b = self._buckets.get(key)
            if b is None or b.rate != rate or b.burst != burst:  # new key, or its limits changed
                b = TokenBucket(rate, burst, float(burst), now)
                self._buckets[key] = b
            self._buckets.move_to_end(key)
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
            return b.take(now)

    def admit(self, key: str, rate: float, burst: int) -> None:
        wait = self.wait_time(key, rate, burst)
        if wait > 0:
            raise too_many_requests(rate, burst, wait)


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def too_many_requests(rate: float, burst: int, wait: float) -> ApiError:
    return ApiError(429, f"Too many requests: the limit is {rate:g} requests per second per API key "
                         f"(bursts of {burst}); retry after {retry_after(wait)} s",
                    headers={"Retry-After": retry_after(wait)})


class Busy(Exception):
    pass


class ConcurrencyGate:
    """At most `limit` holders at once; up to `queue` more wait (at most `timeout` seconds each);
    anyone beyond that is refused at once. Blocking: for code that runs in worker threads."""

    def __init__(self, limit: int, queue: int, timeout: float) -> None:
        self.limit, self.queue, self.timeout = limit, queue, timeout
        self.active = self.waiting = 0
        self._cond = threading.Condition()

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._cond:
            if self.active >= self.limit:
                if self.waiting >= self.queue:
                    raise Busy(f"{self.active} running and {self.waiting} waiting")
                self.waiting += 1
                try:
                    if not self._cond.wait_for(lambda: self.active < self.limit, self.timeout):
                        raise Busy(f"no slot within {self.timeout:g} s")
                finally:
                    self.waiting -= 1
            self.active += 1
        try:
            yield
        finally:
            with self._cond:
                self.active -= 1
                self._cond.notify()

    @contextmanager
    def or_503(self, what: str, retry_seconds: float = 5) -> Iterator[None]:
        """`slot()`, with a refusal as the API's 503 and a Retry-After."""
        try:
            with self.slot():
                yield
        except Busy:
            raise ApiError(503, f"Service busy: too many {what} running; retry shortly",
                           headers={"Retry-After": retry_after(retry_seconds)}) from None
