"""The webhook of a finished FFmpegJob: one kopf daemon per job with a delivery to make.

The daemon runs while a delivery is unsettled (or a redelivery is asked for with the annotation
`kubeffmpeg.io/webhook-redeliver`). It makes one attempt (`deliver`: the POST and nothing else)
when the record in `status.webhook` says one is due, writes the outcome and the next due time
there (`record_attempt`: all the bookkeeping), and sleeps until then: an operator
restarted in between reads the same record and keeps the same schedule. Once the delivery is
settled the daemon waits for kopf to stop it (a daemon that returned on its own would never be
spawned again for the object, and a later redelivery would go unnoticed).
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
WAKE = "webhook_wake"  # per-object memo key: an asyncio.Event set on every event of the object
log = logging.getLogger("ffmpeg_operator")


def schedule(c: Context) -> webhooks.Schedule:
    s = c.settings
    return webhooks.Schedule(max_attempts=s.webhook_max_attempts, initial=s.webhook_backoff_initial,
                             factor=s.webhook_backoff_factor, cap=s.webhook_backoff_max,
                             jitter=s.webhook_backoff_jitter)


def redelivery_request(meta: Any) -> str | None:
    value = (meta.get("annotations") or {}).get(REDELIVER_ANNOTATION)
    return str(value) if value else None


def wants_delivery(spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, **_: Any) -> bool:
    if not spec.get("webhook") or status.get("phase") not in TERMINAL:
        return False
    hook = status.get("webhook") or {}
    request = redelivery_request(meta)
    if request and request != hook.get("redelivery"):
        return True
    return not webhooks.settled(hook)


@kopf.on.event(*FFJ)
async def wake_delivery(memo: kopf.Memo, **_: Any) -> None:
    """Any change of the object wakes its sleeping daemon, which re-reads the live object (a
    redelivery request must not wait for the current back-off)."""
    event = memo.get(WAKE)
    if isinstance(event, asyncio.Event):
        event.set()


async def sleep(stopped: kopf.DaemonStopped, wake: asyncio.Event, seconds: float | None) -> None:
    """Until `seconds` pass, the object changes or kopf stops the daemon."""
    async def until_stopped() -> None:
        await stopped.wait()

    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(until_stopped())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await w


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


@kopf.daemon(*FFJ, when=wants_delivery, cancellation_timeout=5, backoff=10)
async def webhook_daemon(body: kopf.Body, spec: kopf.Spec, meta: kopf.Meta, memo: kopf.Memo,
                         stopped: kopf.DaemonStopped, logger: kopf.Logger, **_: Any) -> None:
    c = ctx(memo)
    ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
    wake = asyncio.Event()
    memo[WAKE] = wake
    sched = schedule(c)
    record = webhooks.resume(dict((body.get("status") or {}).get("webhook") or {}), first_delivery_id(uid))

    async def write() -> None:
        await asyncio.to_thread(c.kube.patch_status, ns, name, {"webhook": record})

    while not stopped:
        wake.clear()
        request = redelivery_request(meta)  # `meta` and `body` are live: kopf keeps them current
        if request and request != record.get("redelivery"):
            record = webhooks.start_delivery(record, delivery_id_of_request(request), redelivery=request)
            await write()
            post(dict(body), "Normal", "WebhookRedelivery", f"redelivery {record['deliveryId']} requested")
        if webhooks.settled(record):
            await sleep(stopped, wake, None)
            continue
        due = webhooks.due_at(record)
        if due is not None and due > now():
            await sleep(stopped, wake, webhooks.seconds_until(due, now()))
            continue
        attempt = await deliver(c, body, record, logger)
        record = await record_attempt(c, dict(body), record, attempt, sched)


async def deliver(c: Context, body: kopf.Body, record: dict[str, Any], logger: kopf.Logger) -> webhooks.Attempt:
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
        logger.warning("webhook %s attempt %d to %s: %s", record["deliveryId"], n, url, a.error)
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
