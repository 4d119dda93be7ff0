"""What both REST surfaces check the same way before compiling a request (compile.py): the pool
(the request's, else `DEFAULT_MACHINE`) and the webhook URL, into one `Submission`."""

from __future__ import annotations

from ffmpegjob_model.gpu import Fallback
from ffmpegjob_model.queueing import Priority

from .compile import Submission
from .jobs import check_webhook
from .services import Services
from .webhooks import webhook_spec


def submission(svc: Services, tenant: str, machine: str | None, webhook_url: str | None,
               unresolvable_ok: bool = False, priority: Priority | None = None,
               fallback: Fallback | None = None) -> Submission:
    """400 for an unknown pool or a refused webhook URL. `unresolvable_ok`: a webhook host that
    does not resolve (now) is accepted ("Very Good FFmpeg"); forbidden addresses never are."""
    pool = svc.jobs.machine(machine or svc.settings.default_machine)
    check_webhook(webhook_url, svc.jobs.url_rules, unresolvable_ok=unresolvable_ok)
    return Submission(tenant=tenant, machine=pool, webhook=webhook_spec(svc.settings, tenant, webhook_url),
                      ttl_seconds_after_finished=svc.settings.job_ttl_seconds_after_finished, priority=priority,
                      fallback=fallback)
