"""One shared watch of FFmpegJobs in the namespace, fanning out to the synchronous requests that
wait for a job to finish: N concurrent waits cost one watch connection, not N.

The watch runs in a daemon thread (the kubernetes client is blocking) and is started on the
first wait. A waiter registers first and reads the object once afterwards, so a job that
finished before the registration is not missed; every re-list after a watch error checks all
waiters again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, cast

from ffmpegjob_model.model import GROUP, PLURAL, TERMINAL, VERSION
from kubernetes import watch
from kubernetes.client.rest import ApiException
from starlette.concurrency import run_in_threadpool

from .kube import Kube

log = logging.getLogger("ffmpeg_api.watcher")


def is_terminal(obj: dict[str, Any] | None) -> bool:
    return obj is not None and (obj.get("status") or {}).get("phase") in TERMINAL


class JobWatcher:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[dict[str, Any]]]]] = (
            defaultdict(list)
        )
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._watch: watch.Watch | None = None
        # Called from the watch thread with (event type, object) for every event, and with
        # ("RESYNC", {}) after each re-list (events may have been missed): live event streams.
        self._observers: list[Callable[[str, dict[str, Any]], None]] = []

    def observe(self, fn: Callable[[str, dict[str, Any]], None]) -> None:
        """Register `fn` for every event of the shared watch and start the watch."""
        with self._lock:
            self._observers.append(fn)
        self._ensure_started()

    def _notify(self, kind: str, obj: dict[str, Any]) -> None:
        for fn in self._observers:
            try:
                fn(kind, obj)
            except Exception:
                log.exception("watch observer failed")

    # --------------------------------------------------------------------------------- waiting
    async def wait(self, name: str, timeout: float) -> dict[str, Any] | None:
        """The FFmpegJob once terminal, or its latest state (possibly None) after `timeout`."""
        self._ensure_started()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        with self._lock:
            self._waiters[name].append((loop, fut))
        try:
            current = await run_in_threadpool(self.kube.get_ffmpegjob, name)
            if current is None or is_terminal(current):
                return current
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(fut), timeout)
            return await run_in_threadpool(self.kube.get_ffmpegjob, name)
        finally:
            with self._lock:
                lst = self._waiters.get(name, [])
                lst[:] = [w for w in lst if w[1] is not fut]
                if not lst:
                    self._waiters.pop(name, None)

    def _deliver(self, obj: dict[str, Any]) -> None:
        name = (obj.get("metadata") or {}).get("name", "")
        with self._lock:
            waiters = list(self._waiters.get(name, []))
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_resolve, fut, obj)

    def waiting(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._waiters.values())

    # ------------------------------------------------------------------------------ the watch
    def _ensure_started(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="ffmpegjob-watch", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                rv = self._relist()
                self._stream(rv)
                backoff = 0.5
            except ApiException as e:
                if e.status != 410:  # 410 Gone: resourceVersion too old, re-list at once
                    log.warning("FFmpegJob watch failed: %s %s", e.status, e.reason)
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 10)
            except Exception as e:  # network errors: keep the watch alive, waiters re-read on timeout
                log.warning("FFmpegJob watch error: %s", e)
                time.sleep(backoff)
                backoff = min(backoff * 2, 10)

    def _relist(self) -> str:
        page = cast(dict[str, Any], self.kube.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.kube.namespace, PLURAL, limit=1
        ))
        rv = str((page.get("metadata") or {}).get("resourceVersion", ""))
        with self._lock:
            names = list(self._waiters)
        for name in names:  # events may have been missed while the watch was down
            obj = self.kube.get_ffmpegjob(name)
            if obj is None or is_terminal(obj):
                self._deliver(obj or {"metadata": {"name": name}})
        self._notify("RESYNC", {})
        return rv

    def _stream(self, rv: str) -> None:
        self._watch = watch.Watch()
        for ev in self._watch.stream(
            self.kube.custom.list_namespaced_custom_object, GROUP, VERSION, self.kube.namespace, PLURAL,
            resource_version=rv, timeout_seconds=300, allow_watch_bookmarks=True,
        ):
            if self._stop.is_set():
                self._watch.stop()
                return
            kind, obj = ev.get("type"), ev.get("object") or {}
            if kind == "ERROR":
                code = obj.get("code") if isinstance(obj, dict) else None
                raise ApiException(status=code or 500, reason=str(obj.get("message", "")) if obj else "")
            if kind in ("ADDED", "MODIFIED", "DELETED") and self._observers:
                self._notify(str(kind), obj)
            if kind == "DELETED" or (kind in ("ADDED", "MODIFIED") and is_terminal(obj)):
                self._deliver(obj)


def _resolve(fut: asyncio.Future[dict[str, Any]], obj: dict[str, Any]) -> None:
    if not fut.done():
        fut.set_result(obj)
