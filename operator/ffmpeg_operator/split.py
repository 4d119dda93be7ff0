"""Split-and-stitch (spec.parallel): the operator's side of the graph.

    probe (here, once) -> Indexed Job `ffj-<uid>` (one pod per chunk, retried per index)
                       -> Job `ffj-<uid>-stitch` (join segments, encode audio once, upload)
                       -> Succeeded; scratch segments deleted (also on failure, cancel, delete)

The probe runs in the operator, through a presigned URL of the input (or the input's own HTTPS
URL under the URL rules): the chunk count must be known before the Indexed Job exists (its
`completions`), the operator already signs URLs for the bucket, and a probe pod would add a pod
start (scheduling, image) before any encoding begins. ffprobe reads packet headers only, no decode.

What CEL cannot check is decided by `ffmpegjob_model.split` (the same rules the API applies).
Status: `split` (the plan), `chunkRanges` (the cut), `chunks` (per chunk, from pods and the
workers' `chunkReports`), `progress` aggregated (chunks 95%, stitch 5%), `attempts` over all pods.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from ffmpegjob_model.model import GROUP, PLURAL, TERMINAL, VERSION, FFmpegJobSpec, Phase
from ffmpegjob_model.pools import NodePool
from ffmpegjob_model.queueing import QUEUE_NAME_LABEL
from ffmpegjob_model.split import (
    NotSplittable,
    analyze,
    chunk_count,
    parse_probe,
    plan_chunks,
    probe_args,
)
from ffmpegjob_model.storage_layout import (
    scratch_prefix,
    segment_key,
    segment_name,
)
from ffmpegjob_model.times import format_time, parse_time
from ffmpegjob_model.urls import BadInputSource, InputNotFound, URLRefused, URLRules, check_url, input_storage_key
from kubernetes.client.rest import ApiException

from . import identity, jobs, storage
from .context import Context
from .grants import Write, abort_unfinished, job_grants, presign_grants
from .kube import CONFLICT_RETRIES, Written, write_status
from .status import _pod_blocker, set_condition, terminal_patch

log = logging.getLogger("ffmpeg_operator.split")
FFJ = (GROUP, VERSION, PLURAL)

ENV_MODE = "FFMPEG_WORKER_MODE"
ENV_PLAN = "FFMPEG_SPLIT_PLAN"
LABEL_ROLE = f"{GROUP}/split-role"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
FAILURE_COUNT = "batch.kubernetes.io/job-index-failure-count"
IGNORED_FAILURE_COUNT = "batch.kubernetes.io/job-index-ignored-failure-count"
CONDITION = "Split"
PROBE_TIMEOUT = 600
CHUNK_SHARE = 95.0  # of progress; the stitch is the rest
MIN_RETRIES_PER_CHUNK = 2

Record = Callable[[Context, dict[str, Any], str | None, dict[str, Any]], None]


class ProbeFailed(Exception):
    pass


def stitch_job_name(uid: str) -> str:
    return f"{jobs.job_name(uid)}-stitch"


def now() -> datetime:
    return datetime.now(UTC)


# ----------------------------------------------------------------------------------------- probe
def probe_source(c: Context, spec: FFmpegJobSpec, rules: URLRules) -> list[str]:
    """ffprobe's input and protocol options for the job's one input: a presigned GET of our own
    bucket (signed for the internal endpoint), or the user's HTTPS URL after the URL rules."""
    inp = spec.inputs[0]
    try:
        key = input_storage_key(inp.name, inp.source, spec.tenant, c.s3)
    except (InputNotFound, BadInputSource) as e:
        raise ProbeFailed(str(e)) from None
    if key is None:
        check_url(inp.source, rules)
        allowed = "https,tls,tcp" + (",http" if rules.allow_http else "")
        return ["-protocol_whitelist", allowed, inp.source]
    url = c.signer.get(key, PROBE_TIMEOUT + 60)  # the SigV4 signer of the pods' grants
    return ["-protocol_whitelist", "http,https,tls,tcp", url]


def run_probe(source: list[str], ffprobe: str = "ffprobe") -> dict[str, Any]:
    *opts, target = source
    cmd = [ffprobe, *opts, *probe_args(target)]
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=PROBE_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ProbeFailed(f"ffprobe: {e}") from None
    if out.returncode != 0:
        tail = out.stderr.decode("utf-8", "replace").strip()[-600:]
        raise ProbeFailed(f"ffprobe could not read the input: {tail.replace(target, '<input>')}")
    return cast(dict[str, Any], json.loads(out.stdout or b"{}"))


# ------------------------------------------------------------------------------------ the start
@dataclass
class Started:
    """What `start` decided: handled (split Job created, or the job failed), or run single-pod
    with `conditions` carrying the reason."""

    handled: bool
    conditions: list[dict[str, Any]] | None = None


def start(c: Context, body: dict[str, Any], spec: FFmpegJobSpec, pool_name: str, pool: NodePool,
          patch: kopf.Patch, rules: URLRules, fail: Callable[[str, str], None]) -> Started:
    """Called by ensure_job for a job with `spec.parallel`: decide, probe, plan, create the
    Indexed Job. Idempotent: a job that has its plan only makes sure its Jobs exist."""
    meta, st = body["metadata"], dict(body.get("status") or {})
    par = spec.parallel
    assert par is not None
    auto = par.mode == "auto"
    gen = meta.get("generation")
    split_st = st.get("split")
    if split_st:  # resumed: the plan stands
        ensure_chunk_job(c, body, spec, pool_name, pool, st.get("chunkRanges") or [], split_st)
        return Started(True)
    cond = next((x for x in st.get("conditions") or [] if x.get("type") == CONDITION), None)
    if cond is not None and cond.get("status") == "False":
        return Started(False, st.get("conditions"))  # decided earlier: single pod

    def single(reason: str, message: str) -> Started:
        conds = set_condition(st.get("conditions"), CONDITION, "False", reason, message, now(), gen)
        return Started(False, conds)

    try:
        command = analyze(spec)
    except NotSplittable as e:
        if auto:
            return single("NotSplittable", f"runs on one pod: {e}")
        fail("NotSplittable", f"spec.parallel: this job cannot be split: {e}")
        return Started(True)
    t0 = time.monotonic()
    try:
        probe = parse_probe(run_probe(probe_source(c, spec, rules)))
    except (ProbeFailed, URLRefused, NotSplittable) as e:
        if auto:
            return single("ProbeFailed" if not isinstance(e, NotSplittable) else "NotSplittable",
                          f"runs on one pod: {e}")
        if isinstance(e, NotSplittable):
            fail("NotSplittable", f"spec.parallel: this job cannot be split: {e}")
        else:
            fail("ProbeFailed", f"spec.parallel: {e}")
        return Started(True)
    probe_seconds = time.monotonic() - t0
    duration = probe.duration
    if auto and duration <= pool.split_threshold_seconds:
        return single("ShortInput", f"runs on one pod: the input is {duration:.1f}s, not longer than pool "
                      f"{pool_name}'s splitThresholdSeconds ({pool.split_threshold_seconds:g}s)")
    n = chunk_count(duration, chunks=par.chunks, chunk_seconds=par.chunk_seconds,
                    auto_max=pool.max_parallel_chunks, min_chunk_seconds=pool.min_chunk_seconds)
    ranges = plan_chunks(probe, n) if n >= 2 else []
    if len(ranges) < 2:
        return single("TooFewKeyframes", f"runs on one pod: {len(probe.keyframes)} keyframe(s) in "
                      f"{duration:.1f}s of input leave nothing to cut at")
    plan = {
        "chunks": len(ranges),
        "parallelism": min(len(ranges), pool.max_parallel_chunks),
        "duration": round(duration, 6),
        "frames": len(probe.times),
        "stage": "Chunks",
        "scratchPrefix": scratch_prefix(spec.tenant, meta["uid"]),
        "probeSeconds": round(probe_seconds, 3),
    }
    range_dicts = [r.to_k8s() for r in ranges]
    grant_split_identity(c, body, spec, pool_name, pool, str(plan["scratchPrefix"]), len(ranges), command.segment_ext)
    name = ensure_chunk_job(c, body, spec, pool_name, pool, range_dicts, plan)
    msg = (f"{len(ranges)} chunks of about {duration / len(ranges):.1f}s, {plan['parallelism']} at a time "
           f"(Job {name}); the stitch joins them and encodes the audio once")
    if len(ranges) != n:
        msg += f" ({n} asked: the input's keyframes allow {len(ranges)})"
    conds = set_condition(st.get("conditions"), CONDITION, "True", "Planned", msg, now(), gen)
    conds = set_condition(conds, "Submitted", "True", "JobCreated", f"Job {name} on pool {pool_name}", now(), gen)
    desired: dict[str, Any] = {
        "jobName": name, "split": plan, "chunkRanges": range_dicts, "conditions": conds,
        "observedGeneration": gen,
        "chunks": [{"index": r.index, "start": r.start, **({"end": r.end} if r.end is not None else {}),
                    "phase": "Pending", "percent": 0, "attempts": 0} for r in ranges],
        "progress": {"step": 1, "steps": 1, "percent": 0},
    }
    if not st.get("phase"):
        desired.update(phase=Phase.PENDING.value, reason="JobCreated", message=f"Job {name}: {msg}")
    patch.status.update(desired)
    log.info("%s/%s split: %s; args %s", meta["namespace"], meta["name"], msg, command.video_options)
    return Started(True)


def split_grants_expiry(c: Context, spec: FFmpegJobSpec, pool: NodePool) -> int:
    """The grants last the whole graph: chunks and stitch share the job's deadline (the stitch
    gets what is left of it), plus the time each Job's pods may take to start."""
    deadline = min(spec.timeout_seconds, pool.max_timeout_seconds)
    queued = c.settings.grant_queue_seconds if spec.suspend else 0
    return deadline + 2 * c.settings.pod_start_timeout_seconds + 300 + queued


def grant_split_identity(c: Context, body: dict[str, Any], spec: FFmpegJobSpec, pool_name: str, pool: NodePool,
                         prefix: str, chunks: int, segment_ext: str) -> None:
    """The job's identity (identity.py) and one grants Secret for the whole graph, before the
    chunk Job: the chunk pods and the stitch pod run as the same ServiceAccount and mount the same
    Secret (`jobs.build_job` names both after the chunk Job). Besides a single-pod job's grants
    (GET of the input, PUT/multipart of the declared output, for the stitch) it holds, under
    `scratch`, a GET and a PUT of every segment `seg-NNNNN.ext` of the job's scratch prefix: chunk
    i writes its own, the stitch reads them all. Released (uploads aborted, Secret and identity
    deleted) by the operator when the graph ends, like any job's."""
    meta = body["metadata"]
    name = jobs.job_name(meta["uid"])
    expires = split_grants_expiry(c, spec, pool)
    grants = job_grants(c.signer, spec, c.s3, expires, c.settings.grant_multipart_parts)
    names = [segment_name(i, segment_ext) for i in range(chunks)]
    grants.scratch = presign_grants(
        c.signer, {n: segment_key(prefix, i, segment_ext) for i, n in enumerate(names)},
        {n: Write(key=segment_key(prefix, i, segment_ext), content_type="application/octet-stream", delete=False)
         for i, n in enumerate(names)}, expires)
    labels = jobs.child_labels(meta, spec, pool_name)
    owner = jobs.owner_reference(meta)
    objects: dict[str, Any] = identity.manifests(name, meta["name"], meta["namespace"], labels, owner, grants)
    if not identity.ensure(c.kube, objects, c.io):
        abort_unfinished(c.signer, grants)  # the Secret from an earlier run stays the pods'


def _worker_env(container: dict[str, Any], mode: str, ranges: list[dict[str, Any]], plan: dict[str, Any]) -> None:
    env = [e for e in container.get("env") or [] if e["name"] not in (ENV_MODE, ENV_PLAN)]
    payload = {"ranges": ranges, "scratchPrefix": plan["scratchPrefix"], "chunks": plan["chunks"]}
    env += [{"name": ENV_MODE, "value": mode}, {"name": ENV_PLAN, "value": json.dumps(payload, separators=(",", ":"))}]
    container["env"] = env


def _role(manifest: dict[str, Any], role: str) -> None:
    manifest["metadata"]["labels"][LABEL_ROLE] = role
    manifest["spec"]["template"]["metadata"]["labels"] = {
        **manifest["spec"]["template"]["metadata"]["labels"], LABEL_ROLE: role}


def chunk_job(body: dict[str, Any], spec: FFmpegJobSpec, pool_name: str, pool: NodePool, settings: Any,
              ranges: list[dict[str, Any]], plan: dict[str, Any], s3: Any = None) -> dict[str, Any]:
    """The Indexed Job: one completion per chunk, `parallelism` from the pool, each index retried
    alone (`backoffLimitPerIndex`); a disruption (preemption, eviction, drain) is not a failure."""
    m = jobs.build_job(body, spec, pool_name, pool, settings, s3)
    _role(m, "chunk")
    js = m["spec"]
    js.pop("backoffLimit", None)
    js.update(
        completionMode="Indexed",
        completions=int(plan["chunks"]),
        parallelism=int(plan["parallelism"]),
        backoffLimitPerIndex=max(spec.backoff_limit, MIN_RETRIES_PER_CHUNK),
        maxFailedIndexes=0,
        podFailurePolicy={"rules": [
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            # exit 1: FFmpeg failed on the chunk (a bad option fails every retry the same way);
            # exit 2: the job itself is invalid. Killed (137/143) or storage trouble (3): retried.
            {"action": "FailIndex",
             "onExitCodes": {"containerName": jobs.CONTAINER, "operator": "In", "values": [1, 2]}},
        ]},
    )
    _worker_env(js["template"]["spec"]["containers"][0], "chunk", ranges, plan)
    return m


def stitch_job(body: dict[str, Any], spec: FFmpegJobSpec, pool_name: str, pool: NodePool, settings: Any,
               ranges: list[dict[str, Any]], plan: dict[str, Any], s3: Any = None) -> dict[str, Any]:
    """The stitch Job: its pod runs as the chunk Job's identity and mounts the same grants."""
    m = jobs.build_job(body, spec, pool_name, pool, settings, s3)
    _role(m, "stitch")
    m["metadata"]["name"] = stitch_job_name(body["metadata"]["uid"])
    js = m["spec"]
    # Not the user's suspend (that held the chunks); queued on Kueue like the chunk Job, if it is.
    js["suspend"] = QUEUE_NAME_LABEL in m["metadata"]["labels"]
    js["backoffLimit"] = max(spec.backoff_limit, 1)
    created = parse_time((body.get("metadata") or {}).get("creationTimestamp"))
    if created is not None:  # the whole job's deadline, not a fresh one for the stitch
        left = int(js["activeDeadlineSeconds"] - (now() - created).total_seconds())
        js["activeDeadlineSeconds"] = max(60, left)
    js["podFailurePolicy"] = {"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": jobs.CONTAINER, "operator": "In", "values": [2]}},
    ]}
    _worker_env(js["template"]["spec"]["containers"][0], "stitch", ranges, plan)
    return m


def _create(c: Context, namespace: str, uid: str, manifest: dict[str, Any]) -> None:
    name = manifest["metadata"]["name"]
    c.queues.ensure(c, manifest)
    try:
        c.kube.batch.create_namespaced_job(namespace, cast(Any, manifest))
        log.info("created Job %s", name)
    except ApiException as e:
        if e.status != 409:
            raise
        existing = c.kube.read_job(namespace, name)
        if existing is not None and not jobs.owned_by(existing, uid):
            raise kopf.PermanentError(f"a Job named {name} exists and is not this FFmpegJob's") from e


def ensure_chunk_job(c: Context, body: dict[str, Any], spec: FFmpegJobSpec, pool_name: str, pool: NodePool,
                     ranges: list[dict[str, Any]], plan: dict[str, Any]) -> str:
    meta = body["metadata"]
    m = chunk_job(body, spec, pool_name, pool, c.settings, ranges, plan, c.s3)
    if plan.get("stage", "Chunks") == "Chunks":
        _create(c, meta["namespace"], meta["uid"], m)
    return str(m["metadata"]["name"])


# ------------------------------------------------------------------------------ observe (pure)
@dataclass
class SplitOutcome:
    patch: dict[str, Any] = field(default_factory=dict)
    create_stitch: bool = False
    stop: bool = False  # delete both Jobs (their pods go with them)
    cleanup: bool = False  # delete the scratch segments


def _index(pod: dict[str, Any]) -> int | None:
    ann = (pod.get("metadata") or {}).get("annotations") or {}
    v = ann.get(INDEX_ANNOTATION)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def _index_failures(pod: dict[str, Any]) -> int:
    """Earlier attempts of this pod's index: failures plus failures a podFailurePolicy ignored."""
    ann = (pod.get("metadata") or {}).get("annotations") or {}
    total = 0
    for key in (FAILURE_COUNT, IGNORED_FAILURE_COUNT):
        with contextlib.suppress(ValueError):
            total += int(ann.get(key) or 0)
    return total


def _role_of(pod: dict[str, Any]) -> str | None:
    return ((pod.get("metadata") or {}).get("labels") or {}).get(LABEL_ROLE)


def _phase(pod: dict[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def _end(pod: dict[str, Any]) -> datetime | None:
    ends = [parse_time(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
            for cs in (pod.get("status") or {}).get("containerStatuses") or []]
    return max((e for e in ends if e is not None), default=None)


def _failure(status: dict[str, Any], pods: list[dict[str, Any]], fallback: str) -> str:
    if status.get("error"):
        return str(status["error"])
    for pod in sorted(pods, key=lambda p: _end(p) or datetime.min.replace(tzinfo=UTC), reverse=True):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or {}
            if term and term.get("exitCode", 0) != 0:
                detail = (term.get("message") or "").strip() or term.get("reason") or "Error"
                return f"pod {pod['metadata']['name']} exited with code {term.get('exitCode')}: {detail}"
    return fallback


def _job_condition(job: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for cond in ((job or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return cast(dict[str, Any], cond)
    return None


def chunk_states(status: dict[str, Any], pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`status.chunks`: per index, from the chunk pods and the workers' reports."""
    ranges = status.get("chunkRanges") or []
    reports = status.get("chunkReports") or {}
    by_index: dict[int, list[dict[str, Any]]] = {}
    for p in pods:
        i = _index(p)
        if _role_of(p) == "chunk" and i is not None:
            by_index.setdefault(i, []).append(p)
    out = []
    for r in ranges:
        i = int(r["index"])
        mine = by_index.get(i, [])
        phases = [_phase(p) for p in mine]
        rep = reports.get(str(i)) or {}
        if "Succeeded" in phases:
            phase, percent = "Succeeded", 100.0
        elif "Running" in phases:
            phase, percent = "Running", float(rep.get("percent") or 0)
        elif phases and all(ph == "Failed" for ph in phases):
            phase, percent = "Failed", float(rep.get("percent") or 0)
        else:
            phase, percent = "Pending", 0.0
        prev: dict[str, Any] = next((x for x in status.get("chunks") or [] if x.get("index") == i), {})
        # Deleted pods vanish; the Job controller counts an index's earlier failures on its pods.
        counted = max((_index_failures(p) + 1 for p in mine), default=0)
        entry: dict[str, Any] = {"index": i, "start": r["start"], "phase": phase, "percent": round(percent, 1),
                                 "attempts": max(len(mine), counted, int(prev.get("attempts") or 0))}
        if r.get("end") is not None:
            entry["end"] = r["end"]
        if rep.get("timeSec") is not None and phase == "Succeeded":
            entry["timeSec"] = rep["timeSec"]
        if rep.get("frames") is not None and phase == "Succeeded":
            entry["frames"] = rep["frames"]
        out.append(entry)
    return out


def aggregate_progress(status: dict[str, Any], chunks: list[dict[str, Any]], stage: str) -> dict[str, Any]:
    n = max(len(chunks), 1)
    done = sum(float(ch.get("percent") or 0) for ch in chunks) / n
    stitch = float(((status.get("chunkReports") or {}).get("stitch") or {}).get("percent") or 0)
    if stage == "Chunks":
        stitch = 0.0
    percent = round(min(100.0, done * CHUNK_SHARE / 100 + stitch * (100 - CHUNK_SHARE) / 100), 1)
    prev = float((status.get("progress") or {}).get("percent") or 0)
    return {"step": 1, "steps": 1, "percent": max(percent, prev)}  # a retried chunk does not take it back


def observe_split(status: dict[str, Any], chunk_job_obj: dict[str, Any] | None,
                  stitch_job_obj: dict[str, Any] | None, pods: list[dict[str, Any]], t: datetime,
                  generation: int | None, pod_start_timeout: float = 600) -> SplitOutcome:
    """What a split job's status should say, and what must be done, given its Jobs and pods."""
    out = SplitOutcome()
    if status.get("phase") in TERMINAL:
        return out
    plan = dict(status.get("split") or {})
    stage = plan.get("stage", "Chunks")
    chunks = chunk_states(status, pods)
    conds = status.get("conditions")
    desired: dict[str, Any] = {"chunks": chunks, "observedGeneration": generation}
    cjst = (chunk_job_obj or {}).get("status") or {}
    start = parse_time(cjst.get("startTime")) or parse_time(status.get("startTime"))
    if start is not None:
        desired["startTime"] = format_time(start)
    if pods:
        desired["attempts"] = len(pods)

    def ending(phase: Phase, reason: str, message: str, end: datetime | None) -> SplitOutcome:
        final = conds
        if phase is Phase.SUCCEEDED:
            final = set_condition(conds, CONDITION, "True", "Stitched", message, t, generation)
        base = {**status, **desired, "conditions": final}
        p = terminal_patch(base, phase, reason, message, t, generation, end)
        plan_done = {**plan, "stage": "Done"}
        extra: dict[str, Any] = {"split": plan_done}
        if phase is Phase.SUCCEEDED:
            extra["progress"] = {"step": 1, "steps": 1, "percent": 100}
        out.patch = {**_diff(status, desired), **extra, **p}
        out.stop = phase is not Phase.SUCCEEDED
        out.cleanup = True
        return out

    # chunks
    chunk_pods = [p for p in pods if _role_of(p) == "chunk"]
    failed_cond = _job_condition(chunk_job_obj, "Failed")
    if failed_cond is not None and stage == "Chunks":
        reason = failed_cond.get("reason") or "ChunkFailed"
        msg = _failure(status, chunk_pods, failed_cond.get("message") or "a chunk failed")
        failed = [ch["index"] for ch in chunks if ch["phase"] == "Failed"]
        prefix = f"chunk {failed[0]} of {len(chunks)} failed: " if failed else ""
        return ending(Phase.FAILED, reason, prefix + msg, parse_time(failed_cond.get("lastTransitionTime")) or t)
    all_done = bool(chunks) and all(ch["phase"] == "Succeeded" for ch in chunks)
    if stage == "Chunks" and (all_done or _job_condition(chunk_job_obj, "Complete")):
        plan["stage"] = stage = "Stitch"
        desired["split"] = plan
        out.create_stitch = True
        conds = set_condition(conds, CONDITION, "True", "Stitching",
                              f"all {len(chunks)} chunks encoded; joining them", t, generation)
    # stitch
    if stage == "Stitch" and stitch_job_obj is None and not out.create_stitch:
        out.create_stitch = True  # its Job is gone (deleted by hand, or not created before a restart)
    if stage == "Stitch":
        stitch_pods = [p for p in pods if _role_of(p) == "stitch"]
        done = [p for p in stitch_pods if _phase(p) == "Succeeded"]
        if done and status.get("result") is not None:
            return ending(Phase.SUCCEEDED, "Completed", f"{len(chunks)} chunks encoded and stitched", _end(done[0]))
        sfail = _job_condition(stitch_job_obj, "Failed")
        limit = int(((stitch_job_obj or {}).get("spec") or {}).get("backoffLimit") or 0)
        failed_pods = [p for p in stitch_pods if _phase(p) == "Failed"]
        if sfail is not None or (stitch_job_obj is not None and len(failed_pods) > limit):
            msg = _failure(status, failed_pods, (sfail or {}).get("message") or "the stitch failed")
            return ending(Phase.FAILED, (sfail or {}).get("reason") or "StitchFailed", f"stitch failed: {msg}",
                          _end(failed_pods[-1]) if failed_pods else t)
    for pod in pods:
        blocker = _pod_blocker(pod) if _phase(pod) == "Pending" else None
        if blocker is None:
            continue
        ctype, reason, msg = blocker
        conds = set_condition(conds, ctype, "False", reason, msg, t, generation)
        created = parse_time((pod.get("metadata") or {}).get("creationTimestamp")) or t
        if (t - created).total_seconds() >= pod_start_timeout:
            return ending(Phase.FAILED, reason, f"pod {pod['metadata']['name']} did not start within "
                          f"{int(pod_start_timeout)}s: {msg}", t)
    running = [p for p in pods if _phase(p) == "Running"]
    if running:
        conds = set_condition(conds, "Running", "True", "PodRunning",
                              f"{len(running)} pod(s) running, stage {stage}", t, generation)
        desired.update(phase=Phase.RUNNING.value, reason="Running",
                       message=f"{sum(ch['phase'] == 'Succeeded' for ch in chunks)}/{len(chunks)} chunks done"
                       + (", stitching" if stage == "Stitch" else ""))
    elif status.get("phase") != Phase.RUNNING.value:
        desired.update(phase=Phase.PENDING.value, reason="Pending", message="waiting for the chunk pods")
    desired["conditions"] = conds
    desired["progress"] = aggregate_progress(status, chunks, stage)
    out.patch = _diff(status, desired)
    return out


def _diff(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in desired.items() if current.get(k) != v}


# ----------------------------------------------------------------------------- sync (API calls)
def is_split(ffj: dict[str, Any]) -> bool:
    return bool((ffj.get("status") or {}).get("split"))


def sync(c: Context, ffj: dict[str, Any], record: Record) -> None:
    """Recompute a split job's status from its two Jobs and their pods; act on it. Conditional
    writes (resourceVersion), retried on conflict, like the single-pod sync."""
    for attempt in range(CONFLICT_RETRIES):
        if attempt:
            fresh = c.kube.get_ffmpegjob(ffj["metadata"]["namespace"], ffj["metadata"]["name"])
            if fresh is None:
                return
            ffj = fresh
        meta, st = ffj["metadata"], dict(ffj.get("status") or {})
        if st.get("phase") in TERMINAL or meta.get("deletionTimestamp"):
            return
        ns, uid = meta["namespace"], meta["uid"]
        cj = c.kube.read_job(ns, st.get("jobName") or jobs.job_name(uid))
        sj = c.kube.read_job(ns, stitch_job_name(uid))
        cj = cj if cj is not None and jobs.owned_by(cj, uid) else None
        sj = sj if sj is not None and jobs.owned_by(sj, uid) else None
        pods = c.kube.list_pods(ns, f"{jobs.LABEL_UID}={uid}")
        out = observe_split(st, cj, sj, pods, now(), meta.get("generation"),
                            c.settings.pod_start_timeout_seconds)
        if out.create_stitch and sj is None:
            try:
                spec = FFmpegJobSpec.model_validate(ffj["spec"])
                pool_name = ((cj or {}).get("metadata") or {}).get("labels", {}).get(jobs.LABEL_POOL) or spec.machine
                pool = c.pools.get()[pool_name]
                manifest = stitch_job(ffj, spec, pool_name, pool, c.settings, st.get("chunkRanges") or [],
                                      st["split"], c.s3)
                _create(c, ns, uid, manifest)
            except Exception as e:  # the next event retries
                log.warning("%s/%s: cannot create the stitch Job yet: %s", ns, meta["name"], e)
                return
        if out.create_stitch:
            out.patch["split"] = {**st["split"], "stage": "Stitch", "stitchJobName": stitch_job_name(uid)}
        if not out.patch:
            return
        if out.stop:
            stop_jobs(c, ns, uid, st)
        written = write_status(c.kube, ns, meta["name"], out.patch, meta.get("resourceVersion"))
        if written is Written.CONFLICT:
            continue
        if written is Written.GONE:
            return
        record(c, ffj, st.get("phase"), out.patch)
        if out.cleanup:
            delete_scratch(c, st)
        return


def refresh_progress(c: Context, ffj: dict[str, Any]) -> None:
    """A worker's report changed: recompute `chunks` and `progress` from status alone (no reads)."""
    meta, st = ffj["metadata"], dict(ffj.get("status") or {})
    if st.get("phase") in TERMINAL or not st.get("split"):
        return
    stage = st["split"].get("stage", "Chunks")
    reports = st.get("chunkReports") or {}
    chunks = []
    for ch in st.get("chunks") or []:
        ch = dict(ch)
        rep = reports.get(str(ch["index"])) or {}
        if ch.get("phase") == "Running" and rep.get("percent") is not None:
            ch["percent"] = round(float(rep["percent"]), 1)
        chunks.append(ch)
    patch = _diff(st, {"chunks": chunks, "progress": aggregate_progress(st, chunks, stage)})
    if not patch:
        return
    try:
        c.kube.patch_status(meta["namespace"], meta["name"], patch, meta.get("resourceVersion"))
    except ApiException as e:
        if e.status not in (404, 409):  # 409: a newer write; its own event recomputes
            raise


def stop_jobs(c: Context, namespace: str, uid: str, status: dict[str, Any]) -> None:
    """Every pod of the graph goes: both Jobs, background propagation."""
    c.kube.delete_job(namespace, status.get("jobName") or jobs.job_name(uid))
    c.kube.delete_job(namespace, stitch_job_name(uid))


def delete_scratch(c: Context, status: dict[str, Any]) -> int:
    """Delete the segments (every object under the job's scratch prefix); returns the count."""
    prefix = (status.get("split") or {}).get("scratchPrefix")
    if not prefix:
        return 0
    try:
        return storage.delete_prefix(c.storage, c.s3.bucket, prefix)
    except Exception as e:  # the store is down: the sweeper's orphan pass finds them later
        log.warning("could not delete scratch %s: %s", prefix, e)
        return 0


def cancel(c: Context, body: dict[str, Any]) -> None:
    """spec.cancel on a split job: both Jobs and the segments go (the chunk Job is deleted by the
    single-pod cancel path too; deleting it twice is harmless)."""
    meta, st = body["metadata"], dict(body.get("status") or {})
    if not st.get("split"):
        return
    stop_jobs(c, meta["namespace"], meta["uid"], st)
    delete_scratch(c, st)
    # A chunk pod stopped mid-upload may still finish putting its segment: once the job's pods
    # are gone, delete again (the housekeeping sweep would only find it 10 minutes later).
    c.background.submit(delete_scratch_after_pods, c, meta["namespace"], meta["uid"], st)


def delete_scratch_after_pods(c: Context, namespace: str, uid: str, status: dict[str, Any],
                              timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    with contextlib.suppress(Exception):  # the API server is away: the housekeeping sweep remains
        while time.monotonic() < deadline and next(c.kube.iter_pods(namespace, f"{jobs.LABEL_UID}={uid}"), None):
            time.sleep(2)
    delete_scratch(c, status)


# Scratch of jobs that no longer run (deleted while the operator was down, a segment uploaded
# by a chunk pod as it was killed) is swept by the housekeeping round (storage.sweep_scratch),
# which covers split segments and checkpoints alike.


# ---------------------------------------------------------------------------------- kopf handlers
def _reports_changed(status: kopf.Status, **_: Any) -> bool:
    return bool(status.get("split")) and status.get("phase") not in TERMINAL and bool(status.get("chunkReports"))


@kopf.on.event(*FFJ, when=_reports_changed)
def on_report(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    refresh_progress(memo["ctx"], dict(body))


@kopf.on.delete(*FFJ, optional=True)
def on_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A split job deleted while it ran: its Jobs go by ownerReference, the segments here."""
    st = dict(body.get("status") or {})
    if st.get("split") and (st.get("split") or {}).get("stage") != "Done":
        delete_scratch(memo["ctx"], st)
