"""Watch events with client-side timestamps. Kubernetes' own timestamps have one-second
resolution, too coarse for tens of milliseconds, so each event is stamped (time.monotonic())
when it reaches this process; both ends of a latency are stamped the same way, so the watch's
own delivery delay cancels out to first order."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import watch

Handler = Callable[[str, dict[str, Any], float], None]


class Watcher(threading.Thread):
    """Calls `handler(type, object, monotonic time)` for every event of `list_fn(*args,
    label_selector=...)` from now on, restarting the watch from the last resourceVersion."""

    def __init__(self, list_fn: Callable[..., Any], args: tuple[Any, ...], selector: str, handler: Handler) -> None:
        super().__init__(daemon=True)
        self.list_fn, self.args, self.selector, self.handler = list_fn, args, selector, handler
        self.ready = threading.Event()
        self._halt = threading.Event()
        self._w: watch.Watch | None = None

    def run(self) -> None:
        import json

        first = self.list_fn(*self.args, label_selector=self.selector, limit=1, _preload_content=False)
        rv = json.loads(first.data)["metadata"]["resourceVersion"]
        while not self._halt.is_set():
            self._w = watch.Watch()
            self.ready.set()
            try:
                for ev in self._w.stream(self.list_fn, *self.args, label_selector=self.selector,
                                         resource_version=rv, timeout_seconds=300, deserialize=False):
                    t = time.monotonic()
                    obj = ev["object"]
                    if ev["type"] == "ERROR":  # 410 Gone: start over from now
                        rv = None
                        break
                    rv = obj["metadata"]["resourceVersion"]
                    self.handler(ev["type"], obj, t)
            except Exception:
                if self._halt.is_set():
                    return
                time.sleep(0.2)
            if rv is None:
                first = self.list_fn(*self.args, label_selector=self.selector, limit=1,
                                     _preload_content=False)
                rv = json.loads(first.data)["metadata"]["resourceVersion"]

    def stop(self) -> None:
        self._halt.set()
        if self._w is not None:
            with contextlib.suppress(Exception):
                self._w.stop()
