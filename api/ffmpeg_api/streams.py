"""Live event streams of jobs, fed by the process's one shared FFmpegJob watch.

The watch thread hands every FFmpegJob event to `StreamHub.dispatch`, which looks the job up
among the open streams and puts the object on each stream's queue (on that stream's event
loop). A stream therefore costs a queue and a task, never a watch of its own. Streams per API key
are bounded (`events_max_streams_per_key`); one more is a 429."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError
from .watcher import JobWatcher

RESYNC: dict[str, Any] = {"resync": True}  # put on every queue after the watch re-listed
DELETED_MARK = "deleted"


@dataclass(eq=False)
class Subscription:
    name: str
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)


@dataclass(eq=False)
class Slot:
    """One open stream of a key; `release` may be called more than once."""

    hub: StreamHub
    key: str
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.hub._release(self.key)


class StreamHub:
    def __init__(self, watcher: JobWatcher, max_per_key: int) -> None:
        self.watcher, self.max_per_key = watcher, max_per_key
        self._subs: dict[str, list[Subscription]] = defaultdict(list)
        self._open: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._observing = False

    # ----------------------------------------------------------------------------- per key
    def acquire(self, key: str) -> Slot:
        with self._lock:
            if self.max_per_key and self._open[key] >= self.max_per_key:
                raise ApiError(429, f"Too many open event streams for this API key (limit {self.max_per_key}); "
                                    "close one or poll the job instead", headers={"Retry-After": "5"})
            self._open[key] += 1
        return Slot(self, key)

    def _release(self, key: str) -> None:
        with self._lock:
            self._open[key] -= 1
            if self._open[key] <= 0:
                del self._open[key]

    def open_streams(self) -> int:
        with self._lock:
            return sum(self._open.values())

    # ------------------------------------------------------------------------- per job
    def subscribe(self, name: str) -> Subscription:
        if not self._observing:
            self._observing = True
            self.watcher.observe(self.dispatch)
        sub = Subscription(name, asyncio.get_running_loop())
        with self._lock:
            self._subs[name].append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            lst = self._subs.get(sub.name)
            if lst is None:
                return
            lst[:] = [s for s in lst if s is not sub]
            if not lst:
                del self._subs[sub.name]

    def dispatch(self, kind: str, obj: dict[str, Any]) -> None:
        """Called from the watch thread for each event."""
        if kind == "RESYNC":  # events may have been missed: one read per job with streams, not per stream
            with self._lock:
                names = list(self._subs)
            for name in names:
                try:
                    current = self.watcher.kube.get_ffmpegjob(name)
                except Exception:
                    self._put(name, RESYNC)  # each stream reads it again itself
                    continue
                self._put(name, current if current is not None else {DELETED_MARK: True, "metadata": {"name": name}})
            return
        name = (obj.get("metadata") or {}).get("name", "")
        self._put(name, {DELETED_MARK: True, **obj} if kind == "DELETED" else obj)

    def _put(self, name: str, item: dict[str, Any]) -> None:
        with self._lock:
            subs = list(self._subs.get(name, ()))
        for s in subs:
            s.loop.call_soon_threadsafe(s.queue.put_nowait, item)
