"""Leader election on a coordination.k8s.io Lease, as client-go's leaderelection does it.

kopf has no leader election of its own (its peering pauses duplicates but, with equal
priorities, pauses them all, and needs its own CRDs). So the operator process first waits for
the Lease, then runs kopf in standalone mode; a replica that cannot renew within the lease
duration exits, and its Deployment restarts it as a standby. Two replicas are therefore safe:
one works, the other waits on the Lease.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from ffmpegjob_model.times import format_micro_time, parse_time
from kubernetes import client
from kubernetes.client.rest import ApiException

log = logging.getLogger("ffmpeg_operator.leader")


def lease_is_free(spec: dict[str, Any], identity: str, now: datetime) -> bool:
    """Free when unheld, held by us, or not renewed within its duration."""
    holder = spec.get("holderIdentity")
    if not holder or holder == identity:
        return True
    renewed = parse_time(spec.get("renewTime")) or parse_time(spec.get("acquireTime"))
    duration = int(spec.get("leaseDurationSeconds") or 15)
    return renewed is None or renewed + timedelta(seconds=duration) < now


class LeaseLock:
    def __init__(self, coord: client.CoordinationV1Api, namespace: str, name: str, identity: str,
                 duration: int) -> None:
        self.coord, self.namespace, self.name = coord, namespace, name
        self.identity, self.duration = identity, duration

    def try_acquire(self) -> bool:
        """One acquire-or-renew round; conflicts (another replica wrote first) mean no."""
        now = datetime.now(UTC)
        try:
            resp: Any = self.coord.read_namespaced_lease(self.name, self.namespace, _preload_content=False)
            lease: dict[str, Any] = json.loads(resp.data)
        except ApiException as e:
            if e.status != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": self.duration,
                         "acquireTime": format_micro_time(now), "renewTime": format_micro_time(now),
                         "leaseTransitions": 0},
            }
            try:
                self.coord.create_namespaced_lease(self.namespace, cast(Any, body))
            except ApiException as e2:
                if e2.status == 409:
                    return False
                raise
            return True
        spec = lease.get("spec") or {}
        if not lease_is_free(spec, self.identity, now):
            return False
        if spec.get("holderIdentity") != self.identity:
            spec["acquireTime"] = format_micro_time(now)
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        spec.update(holderIdentity=self.identity, leaseDurationSeconds=self.duration, renewTime=format_micro_time(now))
        lease["spec"] = spec
        try:
            self.coord.replace_namespaced_lease(self.name, self.namespace, cast(Any, lease))
        except ApiException as e:
            if e.status == 409:
                return False
            raise
        return True

    def release(self) -> None:
        """On a clean shutdown: hand the Lease over now rather than after it expires."""
        try:
            resp: Any = self.coord.read_namespaced_lease(self.name, self.namespace, _preload_content=False)
            lease: dict[str, Any] = json.loads(resp.data)
            if (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"]["holderIdentity"] = None
            self.coord.replace_namespaced_lease(self.name, self.namespace, cast(Any, lease))
        except ApiException as e:
            log.warning("lease release failed: %s", e.reason)

    def acquire(self) -> None:
        """Block until this process leads."""
        log.info("waiting for Lease %s/%s as %s", self.namespace, self.name, self.identity)
        while True:
            try:
                if self.try_acquire():
                    log.info("leading as %s", self.identity)
                    return
            except ApiException as e:
                log.warning("lease acquire failed: %s", e.reason)
            time.sleep(max(1.0, self.duration / 3))

    def keep(self, on_lost: Callable[[], None]) -> threading.Thread:
        """Renew in the background; call `on_lost` once renewing has failed for a whole lease."""

        def loop() -> None:
            last_ok = time.monotonic()
            while True:
                time.sleep(max(1.0, self.duration / 3))
                try:
                    if self.try_acquire():
                        last_ok = time.monotonic()
                        continue
                except Exception as e:  # API unreachable: keep trying until the lease runs out
                    log.warning("lease renew failed: %s", e)
                if time.monotonic() - last_ok > self.duration:
                    log.error("lost the Lease %s/%s", self.namespace, self.name)
                    on_lost()
                    return

        t = threading.Thread(target=loop, name="lease-renewer", daemon=True)
        t.start()
        return t
