"""`ffmpeg-operator`: run the kopf operator (leader-elected, see leader.py) with the settings
from the environment."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import tracemalloc
from typing import Any, cast

import kopf
from kubernetes import client

from . import delivery, handlers, scale  # registers the handlers with kopf
from .context import Context
from .leader import LeaseLock
from .settings import OperatorSettings
from .standby import StandbyHealth

__all__ = ["delivery", "handlers", "main"]


def dump_allocations(*_: object) -> None:
    """SIGUSR1 with PYTHONTRACEMALLOC set: log where the operator's memory was allocated."""
    if not tracemalloc.is_tracing():
        logging.getLogger("ffmpeg_operator").warning("SIGUSR1: start with PYTHONTRACEMALLOC=5 to trace memory")
        return
    for stat in tracemalloc.take_snapshot().statistics("traceback")[:15]:
        logging.getLogger("ffmpeg_operator").warning("%s\n%s", stat, "\n".join(stat.traceback.format()[-6:]))


def main(argv: list[str] | None = None) -> int:
    settings = OperatorSettings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGUSR1, dump_allocations)
    ctx = Context.from_env(settings)
    namespace = settings.watched_namespace()
    lock: LeaseLock | None = None
    identity = settings.identity()
    if settings.leader_election:
        lock = LeaseLock(client.CoordinationV1Api(ctx.kube.api), settings.home_namespace(),
                         settings.leader_lease_name, identity, settings.leader_lease_seconds)
        if settings.liveness_port:
            with StandbyHealth(settings.liveness_port):
                lock.acquire()
        else:
            lock.acquire()
        # Losing the lease means another replica may be working: stop at once, never overlap.
        lock.keep(on_lost=lambda: os._exit(1))
    liveness = f"http://0.0.0.0:{settings.liveness_port}/healthz" if settings.liveness_port else None
    try:
        asyncio.run(kopf.operator(
            clusterwide=namespace == "*",
            namespaces=[] if namespace == "*" else [namespace],
            standalone=True,  # exclusivity comes from the Lease above, not from kopf's peering
            # Else kopf derives one from the user name, and an image's non-root uid has none.
            identity=cast(Any, identity),
            liveness_endpoint=liveness,
            lifecycle=scale.LIFECYCLE,
            memo=kopf.Memo(ctx=ctx),
        ))
    finally:
        if lock is not None:
            lock.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
