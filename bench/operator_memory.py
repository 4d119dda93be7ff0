"""Operator RSS while many FFmpegJobs exist (5,000 by default, created suspended): measured after
every one has its Job and the operator has settled, then clean-up."""

from __future__ import annotations

import argparse
import time
from typing import Any

from .common import (
    ProcSampler,
    api_client,
    delete_run,
    machine,
    operator_pid,
    run_id,
    stack_env,
    target,
    wait_idle,
    write_result,
)
from .fleet import create_fleet


def run(n: int = 5000, threads: int = 16, settle_s: float = 30) -> dict[str, Any]:
    started = machine()
    env = stack_env()
    ns = env["FFMPEG_NAMESPACE"]
    api = api_client(env, pool=threads * 2)
    rid = run_id()
    try:
        fleet = create_fleet(api, ns, rid, n, threads, timeout=900)
        # The operator may not go fully idle with thousands of live FFmpegJobs (its housekeeping
        # loop lists them all), so "settled" is: CPU under half a core over 10 s, or settle_s elapsed.
        idle, share = wait_idle(operator_pid(), threshold=0.5, window=10, timeout=settle_s)
        sampler = ProcSampler(operator_pid)
        sampler.start()
        time.sleep(10)
        sampler.stop()
        rss, peak10 = sampler.last_mb, sampler.peak_mb
    except BaseException:
        delete_run(api, ns, rid, timeout=1200)
        raise
    figures = {
        "ffmpegjobs": n,
        "suspended": True,
        "note": "created with spec.suspend=true: the Jobs are created suspended and no pod runs",
        "jobs_seen": fleet.jobs_seen,
        "create_s": round(fleet.created_s, 1),
        "all_jobs_s": None if fleet.all_jobs_s is None else round(fleet.all_jobs_s, 1),
        "create_errors": fleet.create_errors,
        "api_requests_per_ffmpegjob": fleet.requests_per_job,
        "api_requests_per_ffmpegjob_total": round(sum(fleet.requests_per_job.values()), 2),
        "operator_rss_before_mb": round(fleet.operator_rss_start_mb, 1),
        "operator_rss_peak_during_creation_mb": round(fleet.operator_rss_peak_mb, 1),
        "operator_rss_mb": round(rss, 1),
        "operator_rss_peak_10s_after_settle_mb": round(peak10, 1),
        "operator_settled": idle,
        "operator_cpu_share_at_rest": round(share, 2),
        "operator_restarts_during_run": fleet.operator_restarts + sampler.restarts,
        "cleanup_s": None,  # filled in below
        # DESIGN.md's target is the peak: while the FFmpegJobs are created and handled, and after.
        "operator_rss_peak_mb": round(max(peak10, fleet.operator_rss_peak_mb), 1),
        "targets": {"operator_rss_peak_mb": target(max(peak10, fleet.operator_rss_peak_mb)
                                                   if fleet.jobs_seen == n else None, 300,
                                                   f"MB RSS at peak with {n} FFmpegJobs")},
    }
    # Written before the clean-up too: deleting thousands of objects (the garbage collector takes
    # each FFmpegJob's Job and identity) can take longer than the run on a busy machine.
    write_result("operator_memory", figures, started)
    figures["cleanup_s"] = round(delete_run(api, ns, rid, timeout=1200), 1)
    return write_result("operator_memory", figures, started)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench.operator_memory")
    p.add_argument("-n", type=int, default=5000)
    p.add_argument("--threads", type=int, default=16)
    a = p.parse_args(argv)
    run(a.n, a.threads)


if __name__ == "__main__":
    main()
