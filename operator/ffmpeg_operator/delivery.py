"""The webhook of a finished FFmpegJob: one asyncio task per job with a delivery to make.

The task runs while a delivery is unsettled (or a redelivery is asked for with the annotation
`kubeffmpeg.io/webhook-redeliver`). Each round it reads the FFmpegJob afresh, makes one attempt
(`deliver`: the POST and nothing else) when the record in `status.webhook` says one is due,
writes the outcome and the next due time there (`record_attempt`: all the bookkeeping), and
sleeps until then or until the object changes: an operator restarted in between reads the same
record (kopf's first listing gives every FFmpegJob an event) and keeps the same schedule. A
settled delivery ends its task; a later redelivery request starts a new one.

Not a kopf daemon: for a resource with a daemon handler, kopf keeps the last body of *every*
object of that resource for as long as the object exists (`live_fresh_body`, in kopf's
processing of spawning causes), finished or not, whether or not the daemon's filter matches.
With thousands of finished FFmpegJobs that is memory held for nothing; the 5,000-FFmpegJob
benchmark's peak did not move with this change, though (bench/README.md, issue 15).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import httpx
import kopf
from ffmpegjob_model import payloads
from ffmpegjob_model.model import TERMINAL
from ffmpegjob_model.urls import URLRefused, check_url
from ffmpegjob_model.webhooks import (
    REDELIVER_ANNOTATION,
    delivery_id_of_request,
    first_delivery_id,
    store_signing_secret,
)

from . import webhooks
from .context import Context
from .handlers import FFJ, ctx, now, post

ATTEMPTS_KEPT = 20
RETRY_AFTER_ERROR_SECONDS = 10.0  # a round that raised (API server away): as kopf's daemon back-off was
log = logging.getLogger("ffmpeg_operator")


def schedule(c: Context) -> webhooks.Schedule:
    s = c.settings
    return webhooks.Schedule(max_attempts=s.webhook_max_attempts, initial=s.webhook_backoff_initial,
                             factor=s.webhook_backoff_factor, cap=s.webhook_backoff_max,
                             jitter=s.webhook_backoff_jitter)


def redelivery_request(meta: Any) -> str | None:
    value = (meta.get("annotations") or {}).get(REDELIVER_ANNOTATION)
    return str(value) if value else None


def wants_delivery(body: dict[str, Any]) -> bool:
    spec, status, meta = body.get("spec") or {}, body.get("status") or {}, body.get("metadata") or {}
    if not spec.get("webhook") or status.get("phase") not in TERMINAL:
        return False
    hook = status.get("webhook") or {}
    request = redelivery_request(meta)
    if request and request != hook.get("redelivery"):
        return True
    return not webhooks.settled(hook)


class Deliveries:
    """The deliveries in flight, by FFmpegJob: a task and the event that wakes it."""

    def __init__(self) -> None:
        self.running: dict[tuple[str, str], tuple[asyncio.Task[None], asyncio.Event]] = {}

    def wake_or_start(self, c: Context, namespace: str, name: str) -> None:
        key = (namespace, name)
        entry = self.running.get(key)
        if entry is not None and not entry[0].done():
            entry[1].set()
            return
        wake = asyncio.Event()
        task = asyncio.create_task(run_delivery(c, namespace, name, wake), name=f"webhook {namespace}/{name}")
        self.running[key] = (task, wake)
        task.add_done_callback(lambda t: self._done(key, t))

    def wake(self, namespace: str, name: str) -> None:
        entry = self.running.get((namespace, name))
        if entry is not None:
            entry[1].set()

    def _done(self, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        if self.running.get(key, (None,))[0] is task:
            del self.running[key]

    def stop(self, namespace: str, name: str) -> None:
        entry = self.running.get((namespace, name))
        if entry is not None:
            entry[0].cancel()

    async def stop_all(self) -> None:
        tasks = [t for t, _ in self.running.values()]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t


@kopf.on.startup()
async def start_deliveries(memo: kopf.Memo, **_: Any) -> None:
    # In the operator's memo before any object is seen: each object's memo is a shallow copy of
    # it, so every event handler finds this one registry.
    memo["deliveries"] = Deliveries()


def deliveries(memo: kopf.Memo) -> Deliveries:
    d = memo["deliveries"]
    assert isinstance(d, Deliveries)
    return d


@kopf.on.event(*FFJ)
async def wake_delivery(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Every event of an FFmpegJob: a delivery to make starts its task, or wakes it (a
    redelivery request must not wait for the current back-off); a deleted job's task stops."""
    meta = body.get("metadata") or {}
    ns, name = str(meta.get("namespace")), str(meta.get("name"))
    d = deliveries(memo)
    if type == "DELETED":
        d.stop(ns, name)
    elif wants_delivery(dict(body)):
        d.wake_or_start(ctx(memo), ns, name)
    else:
        d.wake(ns, name)


@kopf.on.cleanup()
async def stop_deliveries(memo: kopf.Memo, **_: Any) -> None:
    await deliveries(memo).stop_all()


async def sleep(wake: asyncio.Event, seconds: float | None) -> None:
    """Until `seconds` pass or the object changes."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), timeout=seconds)


async def signing_secret(c: Context, ns: str, spec: dict[str, Any]) -> bytes:
    """`spec.webhook.secretRef`, else the tenant's secret: every delivery is signed. A tenant's
    entry in the signing-secrets Secret (where the API's refs point) is created on first use."""
    ref = (spec.get("webhook") or {}).get("secretRef")
    tenants_secret = c.settings.webhook_secrets_secret
    if ref and ref["name"] != tenants_secret:
        key = ref.get("key", "secret")
        value = await asyncio.to_thread(c.kube.read_secret_key, ns, ref["name"], key)
        if value is None:
            raise kopf.TemporaryError(f"webhook secret {ref['name']}/{key} not found", delay=30)
        return value
    tenant = str(ref.get("key", "secret") if ref else spec.get("tenant") or "default")
    secret, created = await asyncio.to_thread(store_signing_secret, c.kube.core, ns, tenants_secret, tenant)
    if created:
        log.info("created the webhook signing secret of tenant %s in %s/%s", tenant, ns, tenants_secret)
    return secret.encode()


async def run_delivery(c: Context, ns: str, name: str, wake: asyncio.Event) -> None:
    """Deliver the FFmpegJob's webhook until it is settled (or the job is gone)."""
    sched = schedule(c)
    while True:
        wake.clear()
        try:
            if not await delivery_round(c, ns, name, wake, sched):
                return
        except asyncio.CancelledError:
            raise
        except Exception as e:  # an API hiccup: the next round reads the record again
            log.warning("webhook of %s/%s: %s; trying again in %gs", ns, name, e, RETRY_AFTER_ERROR_SECONDS)
            await sleep(wake, RETRY_AFTER_ERROR_SECONDS)


async def delivery_round(c: Context, ns: str, name: str, wake: asyncio.Event, sched: webhooks.Schedule) -> bool:
    """One round on the FFmpegJob as it is now: start a requested redelivery, make the attempt
    that is due, or sleep until one is. False when there is nothing (more) to deliver."""
    body = await asyncio.to_thread(c.kube.get_ffmpegjob, ns, name)
    if body is None or not wants_delivery(body):
        return False
    meta = body["metadata"]
    record = webhooks.resume(dict((body.get("status") or {}).get("webhook") or {}), first_delivery_id(meta["uid"]))
    request = redelivery_request(meta)
    if request and request != record.get("redelivery"):
        record = webhooks.start_delivery(record, delivery_id_of_request(request), redelivery=request)
        await asyncio.to_thread(c.kube.patch_status, ns, name, {"webhook": record})
        post(body, "Normal", "WebhookRedelivery", f"redelivery {record['deliveryId']} requested")
    if webhooks.settled(record):
        return False
    due = webhooks.due_at(record)
    if due is not None and due > now():
        await sleep(wake, webhooks.seconds_until(due, now()))
        return True
    attempt = await deliver(c, body, record)
    await record_attempt(c, body, record, attempt, sched)
    return True


async def deliver(c: Context, body: dict[str, Any], record: dict[str, Any]) -> webhooks.Attempt:
    """One POST of the current delivery, and nothing else: what the attempt came to. A refused
    URL or a payload that cannot be built is an attempt that failed for good (no retry)."""
    spec, meta = dict(body.get("spec") or {}), dict(body.get("metadata") or {})
    url = str(spec["webhook"]["url"])
    try:
        await asyncio.to_thread(check_url, url, c.url_rules)
    except URLRefused as e:
        return webhooks.Attempt(now(), error=str(e))
    secret = await signing_secret(c, meta["namespace"], spec)
    tenant = str(spec.get("tenant", "default"))
    try:
        # Built per attempt: download URLs in a late retry are as fresh as in the first.
        # In the shape of the surface that submitted the job (ffmpegjob_model.payloads); the
        # job id both surfaces show is the FFmpegJob's name.
        data = webhooks.encode(payloads.webhook_body(
            dict(body), meta["name"], lambda p, exp: c.presigner.url(tenant, p, exp),
            c.settings.presign_expiry_seconds))
    except ValueError as e:
        return webhooks.Attempt(now(), error=f"cannot build the payload: {e}")
    n = int(record.get("attemptCount") or 0) + 1
    async with httpx.AsyncClient(timeout=c.settings.webhook_timeout_seconds, follow_redirects=False) as client:
        a = await webhooks.post_once(client, url, data, secret, str(record["deliveryId"]), n)
    if not a.ok:
        log.warning("webhook %s attempt %d to %s: %s", record["deliveryId"], n, url, a.error)
    return a


async def record_attempt(c: Context, body: dict[str, Any], record: dict[str, Any], a: webhooks.Attempt,
                         sched: webhooks.Schedule) -> dict[str, Any]:
    """The bookkeeping of one attempt, in one place: the new delivery record (delivered, given
    up, or the next attempt's due time) written to `status.webhook`, then the metrics and an
    event once the delivery settled. Returns the record."""
    record = webhooks.after_attempt(record, a, sched, ATTEMPTS_KEPT)
    meta = body["metadata"]
    await asyncio.to_thread(c.kube.patch_status, meta["namespace"], meta["name"], {"webhook": record})
    c.metrics.webhooks.labels("delivered" if a.ok else ("retry" if a.retry else "rejected")).inc()
    url = (body.get("spec") or {}).get("webhook", {}).get("url")
    if record.get("delivered"):
        post(body, "Normal", "WebhookDelivered",
             f"webhook {record['deliveryId']} delivered to {url} (HTTP {a.status_code})")
    elif record.get("gaveUp"):
        c.metrics.webhooks.labels("gave_up").inc()
        post(body, "Warning", "WebhookFailed",
             f"webhook {record['deliveryId']} not delivered after {record.get('attemptCount')} attempts: "
             f"{a.error}")
    return record
