"""The API's key cache: a key created just after someone else forced a re-read still works."""

from __future__ import annotations

import time

from ffmpeg_api.kube import TTLCache


def test_a_refresh_soon_after_another_waits_and_reads_what_was_added_meanwhile() -> None:
    store = ["old"]
    cache = TTLCache(lambda: list(store), ttl=60)
    assert cache.get() == ["old"]
    assert cache.refresh(min_age=0.3) == ["old"]  # an unknown key: forced re-read
    store.append("new")  # a key created a moment later
    t0 = time.monotonic()
    assert cache.refresh(min_age=0.3) == ["old", "new"]
    assert time.monotonic() - t0 < 0.5  # waited for the bound, not for the TTL


def test_refreshes_are_bounded() -> None:
    loads = []
    cache = TTLCache(lambda: loads.append(1) or len(loads), ttl=60)
    cache.get()
    t0 = time.monotonic()
    for _ in range(3):
        cache.refresh(min_age=0.2)
    assert len(loads) == 4 and time.monotonic() - t0 >= 0.35  # one load per 0.2 s at most
