"""A burst of FFmpegJobs (1,000 by default, created suspended): time until every one has its Job,
the operator's CPU seconds and peak RSS during the burst, then clean-up."""

from __future__ import annotations

import argparse
from typing import Any

from .common import api_client, delete_run, machine, operator_pid, run_id, stack_env, target, wait_idle, write_result
from .fleet import create_fleet


def run(n: int = 1000, threads: int = 16) -> dict[str, Any]:
    started = machine()
    env = stack_env()
    ns = env["FFMPEG_NAMESPACE"]
    api = api_client(env, pool=threads * 2)
    rid = run_id()
    try:
        fleet = create_fleet(api, ns, rid, n, threads)
        # What the operator costs at rest with n suspended FFmpegJobs (its housekeeping loop).
        _, rest_share = wait_idle(operator_pid(), window=10, timeout=10)
    except BaseException:
        delete_run(api, ns, rid)
        raise
    after = None if fleet.all_jobs_s is None else max(0.0, fleet.all_jobs_s - fleet.created_s)
    figures = {
        "ffmpegjobs": n,
        "suspended": True,
        "note": "created with spec.suspend=true: the Jobs are created suspended and no pod runs",
        "client_threads": threads,
        "create_s": round(fleet.created_s, 2),
        "all_jobs_s": None if fleet.all_jobs_s is None else round(fleet.all_jobs_s, 2),
        # DESIGN.md's target: every Job within 5 s of the last FFmpegJob's creation.
        "after_last_create_s": None if after is None else round(after, 2),
        "jobs_seen": fleet.jobs_seen,
        "create_errors": fleet.create_errors,
        "api_requests_per_ffmpegjob": fleet.requests_per_job,
        "api_requests_per_ffmpegjob_total": round(sum(fleet.requests_per_job.values()), 2),
        "errors": fleet.errors,
        "operator_cpu_s": round(fleet.operator_cpu_s, 1),
        "operator_rss_start_mb": round(fleet.operator_rss_start_mb, 1),
        "operator_rss_peak_mb": round(fleet.operator_rss_peak_mb, 1),
        "operator_restarts_during_run": fleet.operator_restarts,
        "operator_cpu_share_after_burst": round(rest_share, 2),
        "cleanup_s": None,  # filled in below
        "targets": {"after_last_create_s": target(after, 5, f"seconds from the last creation until all {n} have Jobs")}
        if n == 1000 else {},
    }
    # Written before the clean-up too: deleting thousands of objects (the garbage collector takes
    # each FFmpegJob's Job and identity) can take longer than the run on a busy machine.
    write_result("operator_burst", figures, started)
    figures["cleanup_s"] = round(delete_run(api, ns, rid), 1)
    return write_result("operator_burst", figures, started)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench.operator_burst")
    p.add_argument("-n", type=int, default=1000)
    p.add_argument("--threads", type=int, default=16)
    a = p.parse_args(argv)
    run(a.n, a.threads)


if __name__ == "__main__":
    main()
