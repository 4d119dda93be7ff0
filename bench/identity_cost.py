"""What a worker pod's own identity and storage grants cost per job, next to what the Job itself
costs: the same operator code (ffmpeg_operator.grants / identity / jobs) against the stack's
API server and MinIO, one job at a time, so the figures compare under the same load.

Per job: the operator's `grant_identity` (presigning the grants for one output with
`--parts` part URLs, which initiates its multipart upload, overlapped with creating the
ServiceAccount, Role, RoleBinding and grants Secret), the suspended Job itself, and at the end
`release_identity` (read the grants, abort the upload, four deletes). Presigning alone is timed
too. The identity objects' ownerReference names an FFmpegJob that does not exist, so the garbage
collector may delete some first; the deletes here tolerate that."""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from typing import Any

from ffmpeg_operator import handlers, jobs
from ffmpeg_operator.context import Context, PoolCache
from ffmpeg_operator.grants import Signer, abort_unfinished, job_grants
from ffmpeg_operator.kube import Kube
from ffmpeg_operator.metrics import Metrics
from ffmpeg_operator.settings import OperatorSettings
from ffmpegjob_model.model import FFmpegJobSpec
from ffmpegjob_model.pools import NodePool
from ffmpegjob_model.settings import S3Settings

from .common import api_client, machine, stack_env, write_result


def _s3(env: dict[str, str]) -> S3Settings:
    return S3Settings.model_validate({**{k[3:].lower(): v for k, v in env.items() if k.startswith("S3_")},
                                      **{k: v for k, v in env.items() if k.startswith("AWS_")}})


def run(n: int = 100, parts: int = 16) -> dict[str, Any]:
    started = machine()
    env = stack_env()
    ns = env["FFMPEG_NAMESPACE"]
    kube = Kube(api_client(env))
    s3 = _s3(env)
    signer = Signer(s3)
    settings = OperatorSettings()
    spec = FFmpegJobSpec.model_validate({
        "tenant": "bench", "inputs": [{"name": "in.mp4", "source": "dir_bench/in.mp4"}],
        "outputs": [{"name": "out.mp4"}], "commands": ["-i {{in.mp4}} -c copy {{out.mp4}}"],
        "output": {"dirId": "dir_bench"}, "suspend": True})
    c = Context(settings=settings, kube=kube, metrics=Metrics(), pools=PoolCache(kube, ns, "unused", 60))
    c.__dict__.update(s3=s3, signer=signer)  # the cached properties, from the stack's settings
    times: dict[str, list[float]] = {"presign_alone_ms": [], "identity_create_ms": [], "job_create_ms": [],
                                     "release_ms": [], "job_delete_ms": []}
    secret_bytes = 0
    for _ in range(n):
        uid = str(uuid.uuid4())
        meta = {"name": f"bench-id-{uid[:8]}", "namespace": ns, "uid": uid}
        manifest = jobs.build_job({"metadata": meta}, spec, "cpu", NodePool(), settings, s3)
        name = manifest["metadata"]["name"]
        manifest["metadata"]["ownerReferences"] = []  # no FFmpegJob behind it: deleted below
        meta["uid"] = uid
        t0 = time.perf_counter()
        grants = job_grants(signer, spec, s3, 3600, parts)  # alone, to see its share
        abort_unfinished(signer, grants)
        t1 = time.perf_counter()
        handlers.grant_identity(c, {"metadata": meta}, spec, manifest)  # as the operator does it
        t2 = time.perf_counter()
        kube.batch.create_namespaced_job(ns, manifest)  # type: ignore[arg-type]  # a plain manifest
        t3 = time.perf_counter()
        handlers.release_identity(c, ns, name)
        t4 = time.perf_counter()
        kube.delete_job(ns, name)
        t5 = time.perf_counter()
        secret_bytes = len(grants.dump())
        for key, v in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            times[key].append(v * 1000)
    med = {k: round(statistics.median(v), 1) for k, v in times.items()}
    figures = {
        "jobs": n, "multipart_parts": parts, "grants_secret_bytes": secret_bytes,
        "median": med,
        "p90": {k: round(sorted(v)[int(0.9 * len(v))], 1) for k, v in times.items()},
        "identity_over_job_create": round(med["identity_create_ms"] / med["job_create_ms"], 2),
        "note": "sequential, one job at a time; API requests per job: +4 creates before the Job, "
                "+1 read and 4 deletes when it ends; S3: +1 CreateMultipartUpload per output, +1 abort",
    }
    return write_result("identity_cost", figures, started)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench.identity_cost")
    p.add_argument("-n", type=int, default=100)
    p.add_argument("--parts", type=int, default=16)
    a = p.parse_args(argv)
    run(a.n, a.parts)


if __name__ == "__main__":
    main()
