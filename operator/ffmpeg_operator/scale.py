"""kopf settings for thousands of FFmpegJobs (issue 15; figures in bench/README.md).

- Jobs and pods are watched with a label selector (the operator's own children only), not every
  Job and pod of the namespace (or the cluster, with `FFMPEG_NAMESPACE=*`) filtered client-side:
  kopf's handler filter `labels=` does not narrow the watch itself, so every foreign pod's every
  change used to be streamed, parsed and given a kopf worker.
- All of an object's due handlers run in one processing cycle (kopf's `all_at_once` lifecycle),
  not one per cycle (kopf's default, `asap`): a new FFmpegJob has two creation handlers
  (`ensure_job`, and the `spec.suspend` field handler, which does nothing on creation), and one
  per cycle meant a second cycle for each: one more PATCH of the FFmpegJob (progress
  annotations), one more watch event, one more pass through kopf per job.
- kopf's diff base ("essence") is built from the spec, labels and annotations only, without
  first deep-copying the whole object: kopf's own `build` deep-copies the body (managedFields
  and status included) on every event and then throws most of it away; that copy was the
  operator's largest single CPU item in a burst (py-spy: ~14% of its busy samples).
- Async handlers run their blocking part in kopf's thread pool (`in_thread`), so cheap
  decisions (a Job event that changes nothing, a metrics gauge) never wait for a thread.
- kopf's own HTTP session (watches, its patches, events) keeps at most `KOPF_CONNECTIONS`
  connections (`login`): kopf's default connector has no limit, so a burst of hundreds of
  concurrent patches opened a new TLS connection for each (py-spy: TLS handshakes were ~16% of
  the operator's busy samples in a 1,000 burst); requests beyond the limit wait for a free one.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import warnings
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar, cast

import aiohttp
import kopf

from . import jobs

CHILD_SELECTOR = f"{jobs.LABEL_MANAGED_BY}={jobs.MANAGED_BY}"


# Passed to kopf.operator() (main.py): kopf resolves the lifecycle before start-up handlers run.
LIFECYCLE = kopf.lifecycles.all_at_once


T = TypeVar("T")
# The watches (FFmpegJobs, Jobs, pods) hold one each; the rest serve requests. 24 was too few:
# in a 5,000 burst kopf's patches waited for a connection past their timeout (8,407 retries).
KOPF_CONNECTIONS = 100
EXECUTOR = "sync-executor"  # memo key: kopf's own pool for sync handlers


class LeanDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's annotation diff base, built from a slim view of the object: what kopf's `build`
    keeps (everything but metadata and status; of metadata only labels and annotations, plus
    any extra fields handlers ask for) is all that is handed to it."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        fields = [".".join(f) if isinstance(f, (tuple, list)) else str(f) for f in extra_fields or ()]
        if any(f.startswith(("metadata", "status")) for f in fields):
            return super().build(body=body, extra_fields=extra_fields)
        meta = body.get("metadata") or {}
        slim = {k: v for k, v in body.items() if k not in ("metadata", "status")}
        slim["metadata"] = {k: meta[k] for k in ("labels", "annotations") if k in meta}
        return super().build(body=kopf.Body(cast(kopf.RawBody, slim)), extra_fields=extra_fields)


def tune_for_scale(settings: kopf.OperatorSettings, memo: kopf.Memo) -> None:
    memo[EXECUTOR] = settings.execution.executor
    old = settings.persistence.diffbase_storage
    if isinstance(old, kopf.AnnotationsDiffBaseStorage) and not isinstance(old, LeanDiffBaseStorage):
        settings.persistence.diffbase_storage = LeanDiffBaseStorage(
            prefix=old.prefix, key=old.key, v1=old.v1, ignored_fields=old.ignored_fields)
    settings.watching.label_selectors["batch", "v1", "jobs"] = CHILD_SELECTOR
    settings.watching.label_selectors["", "v1", "pods"] = CHILD_SELECTOR


async def in_thread(memo: kopf.Memo, fn: Callable[..., T], *args: Any) -> T:
    """Run blocking work from an async handler in the pool kopf runs sync handlers in (its size
    is `settings.execution.max_workers`), with the handler's context (kopf.event needs it)."""
    executor: Executor | None = memo.get(EXECUTOR)
    run = functools.partial(contextvars.copy_context().run, fn, *args)
    return await asyncio.get_running_loop().run_in_executor(executor, run)


@kopf.on.login()
async def login(logger: kopf.Logger, settings: kopf.OperatorSettings, **kwargs: Any) -> kopf.AiohttpSession | None:
    """kopf's own login (the client library's in-cluster config, else KUBECONFIG), on a session
    with a bounded connection pool."""
    info = kopf.login_via_client(logger=logger, settings=settings, **kwargs)
    if info is None:
        return None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="kopf")
        auth = info.as_aiohttp_basic_auth()
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=KOPF_CONNECTIONS, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(), auth=auth, trust_env=info.trust_env,
    )
    return kopf.AiohttpSession(server=info.server, priority=info.priority, default_namespace=info.default_namespace,
                               expiration=info.expiration, aiohttp_session=session)
