"""Prometheus metrics of the operator, on their own registry (held in kopf's memo, no globals)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from ffmpegjob_model.model import Phase
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class _PhaseCollector(Collector):
    """`kubeffmpeg_ffmpegjobs{phase}`: how many FFmpegJobs are in each phase right now."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._phase: dict[str, str] = {}

    def set(self, uid: str, phase: str | None) -> None:
        with self._lock:
            if phase is None:
                self._phase.pop(uid, None)
            else:
                self._phase[uid] = phase

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily("kubeffmpeg_ffmpegjobs", "FFmpegJobs by phase", labels=["phase"])
        with self._lock:
            counts = {p.value: 0 for p in Phase}
            for phase in self._phase.values():
                counts[phase] = counts.get(phase, 0) + 1
        for phase, n in sorted(counts.items()):
            g.add_metric([phase], n)
        yield g


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.phases = _PhaseCollector()
        self.registry.register(self.phases)
        self.transitions = Counter(
            "kubeffmpeg_ffmpegjob_transitions_total", "Phase transitions of FFmpegJobs",
            ["phase", "reason"], registry=self.registry,
        )
        self.duration = Histogram(
            "kubeffmpeg_ffmpegjob_duration_seconds", "Job start to terminal phase, from the Job's times",
            ["machine", "phase"], buckets=DURATION_BUCKETS, registry=self.registry,
        )
        self.webhooks = Counter(
            "kubeffmpeg_webhook_deliveries_total", "Webhook POST attempts by outcome "
            "(delivered, retry, rejected, gave_up)", ["outcome"], registry=self.registry,
        )
        self.reconcile = Histogram(
            "kubeffmpeg_reconcile_duration_seconds", "Time spent in one handler run", ["handler"],
            buckets=RECONCILE_BUCKETS, registry=self.registry,
        )

    def serve(self, port: int) -> None:
        if port:
            start_http_server(port, registry=self.registry)
