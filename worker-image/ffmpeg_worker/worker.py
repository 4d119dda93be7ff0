"""The single-pod worker's flow (main.py starts it): validate -> fetch -> run steps -> publish.

- validate: the job's commands under the safety rules (`ffmpegjob_model.safety`);
- prepare: report the start, clean the work folder, restore a chain's checkpoints;
- fetch: download what FFmpeg cannot stream, check what it streams exists and fits;
- run steps: each command in order, progress reported, a failed stream downloaded instead;
- publish: probe and upload the declared outputs, write `status.result` and `usage`.

Exit code 0 means every declared output was uploaded and the status written; on failure the
worker writes `status.error` and one line to the termination log, and exits non-zero:
1 a command failed or timed out, 2 the job is invalid or unsafe, 3 inputs or storage failed,
4 the inputs to download do not fit the scratch space, 143 terminated (SIGTERM).

The flow reads the FFmpegJob, its grants and the settings as plain views (`ffmpegjob_model.plain`)
and writes the status as plain dicts checked equal to the models': no pydantic is loaded on the
way to FFmpeg or after it (bench/README.md, issue 15). The split workers (split.py) read the
whole object through the models.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ffmpegjob_model.commands import render
from ffmpegjob_model.exitcodes import EXIT_INVALID, EXIT_IO, EXIT_SCRATCH, EXIT_STEP, EXIT_TERMINATED
from ffmpegjob_model.outputs import OutputKind, local_path, output_kind, placeholder_name
from ffmpegjob_model.plain import (
    GrantsView,
    JobView,
    S3Location,
    SpecView,
    URLRulesView,
    progress_k8s,
    read_job,
    result_file_k8s,
    usage_k8s,
)
from ffmpegjob_model.safety import UnsafeCommand, validate_spec

from .checkpoint import CheckpointStore, GrantCheckpoints, Snapshot
from .early import EarlyReads
from .errors import JobFailed, Terminated
from .fetch import Fetcher, FetchError, ScratchBudget, ScratchFull, local_name
from .kube import JobClient
from .outputs import OutputsRefused, Produced, collect, limits_from_env, upload_produced
from .run import InputReadFailed, StepFailed, StepProgress, expected_duration, run_ffmpeg
from .settings import WorkerSettings
from .stream import streamable
from .upload import Uploaded, UploadFailed, upload_outputs

log = logging.getLogger("ffmpeg_worker")

__all__ = ["EXIT_INVALID", "EXIT_IO", "EXIT_STEP", "EXIT_TERMINATED", "JobFailed", "Terminated", "Worker"]


class ProgressReporter:
    """Patches `status.progress` at most once per `interval` seconds (many jobs must not flood the
    API server); the last value is always written by `flush`."""

    def __init__(self, jobs: JobClient, steps: int, interval: float, background: bool = False) -> None:
        self.jobs, self.steps, self.interval = jobs, steps, interval
        self.last_sent = 0.0
        self.pending: dict[str, Any] | None = None  # status.progress (plain.progress_k8s)
        self.lock = threading.Lock()
        # In the background, patches go out in order from one thread, off FFmpeg's critical path.
        self.sender = ThreadPoolExecutor(max_workers=1) if background else None
        self.last: Future[bool] | None = None
        self.resumed: int | None = None  # the step this attempt began at, after checkpoints

    def post(self, status: dict[str, Any]) -> None:
        """Patch (best effort), in the background when so configured; ordered with `update`s."""
        if self.sender is None:
            self.jobs.try_patch_status(status)
        else:
            self.last = self.sender.submit(self.jobs.try_patch_status, status)

    def update(self, step: int, fraction: float, speed: str | None = None, force: bool = False) -> None:
        percent = round(100.0 * ((step - 1) + max(0.0, min(fraction, 1.0))) / max(self.steps, 1), 1)
        with self.lock:
            self.pending = progress_k8s(step, self.steps, percent, speed)
            if not force and time.monotonic() - self.last_sent < self.interval:
                return
            self._send()

    def flush(self) -> None:
        with self.lock:
            if self.pending is not None:
                self._send()
        self.drain()

    def drain(self, drop_pending: bool = False) -> None:
        """Wait until every patch handed over went out (a later patch must not be overtaken)."""
        if drop_pending:
            with self.lock:
                self.pending = None
        last = self.last
        if last is not None:
            with contextlib.suppress(Exception):
                last.result(timeout=60)

    def _send(self) -> None:
        assert self.pending is not None
        # An explicit null: a merge patch would otherwise keep the previous step's speed.
        self.last_sent = time.monotonic()
        resumed = {"resumedFromStep": self.resumed} if self.resumed else {}  # else null since the start
        self.post({"progress": {"speed": None, **resumed, **self.pending}})
        self.pending = None


@dataclass
class Plan:
    """What validation decided: the commands to run and by when."""

    spec: SpecView
    commands: list[list[str]]
    deadline: float  # time.monotonic() by which the last command must end
    local: dict[str, str]  # input name -> its file in the work folder (`inputs/<name>`)

    @property
    def steps(self) -> int:
        return len(self.commands)


@dataclass
class Inputs:
    """What fetching made available: every input downloaded or streamed."""

    fetcher: Fetcher
    urls: dict[str, str]  # streamed input name -> the presigned URL FFmpeg reads
    paths: dict[str, str]  # placeholder name -> what FFmpeg opens (a file or a URL)
    size: int  # bytes of all inputs


class Worker:
    def __init__(
        self,
        settings: WorkerSettings,
        jobs: JobClient,
        s3_settings: S3Location,
        rules: URLRulesView,
        grants: GrantsView,
        early: EarlyReads | None = None,
    ) -> None:
        self.settings, self.jobs, self.s3_settings, self.rules = settings, jobs, s3_settings, rules
        # Storage is reached only through these presigned URLs (storage.py): no credentials.
        self.grants = grants
        self.early = early  # reads begun before the imports (early.py)
        # ffprobe runs beside FFmpeg and the uploads, not before them.
        self.pool = ThreadPoolExecutor(max_workers=4)
        self.reporter: ProgressReporter | None = None
        self.result_written = False  # status.result is set: a failure after it must clear it

    def run(self) -> int:
        started = time.monotonic()
        try:
            job = self.read_job()
        except Exception as exc:
            return self._fail(f"cannot read FFmpegJob {self.settings.ffmpegjob_name}: {exc}", EXIT_IO, write=False)
        workdir = Path(self.settings.workdir) / (job.name or "job")
        try:
            self._process(job, workdir, started)
            return 0
        except JobFailed as exc:
            return self._fail(str(exc), exc.code)
        except Terminated:
            return self._fail("terminated: the worker received SIGTERM; nothing was uploaded", EXIT_TERMINATED)
        except Exception as exc:  # storage or API server trouble: still leave a readable reason
            log.exception("worker error")
            return self._fail(f"worker error: {type(exc).__name__}: {exc}", EXIT_IO)
        finally:
            if not self.settings.keep_workdir:
                shutil.rmtree(workdir, ignore_errors=True)

    def read_job(self) -> JobView:
        return read_job(self.jobs.get_object() if self.early is None else self.early.job.result())

    def _process(self, job: JobView, workdir: Path, started: float) -> None:
        plan = self.validate(job, started)
        store, saved = self.prepare(job, plan, workdir)
        inputs = self.fetch(plan, workdir)
        ffmpeg_seconds = self.run_steps(plan, inputs, workdir, store, saved)
        self.publish(plan, workdir, ffmpeg_seconds, inputs.size)

    # ------------------------------------------------------------------------------ steps
    def validate(self, job: JobView, started: float) -> Plan:
        """The safety rules, last line of defence (the API and the operator checked them too)."""
        spec = job.spec
        try:
            # DNS of URL inputs is checked when they are fetched, against the connected address.
            commands = validate_spec(spec, check_urls=False, url_rules=self.rules, s3=self.s3_settings)
        except UnsafeCommand as exc:
            raise JobFailed(f"invalid job: {exc}", EXIT_INVALID) from None
        return Plan(spec, commands, started + spec.timeout_seconds, {i.name: local_name(i) for i in spec.inputs})

    def prepare(self, job: JobView, plan: Plan, workdir: Path) -> tuple[CheckpointStore | None, int]:
        """Report the start, clean the work folder, restore the steps an earlier attempt saved:
        (where checkpoints go, how many leading steps are restored)."""
        steps = plan.steps
        self.reporter = reporter = ProgressReporter(self.jobs, steps, self.settings.progress_interval, background=True)
        reporter.post({"progress": {"resumedFromStep": None, **progress_k8s(0, steps, 0)},
                       "error": None})
        shutil.rmtree(workdir, ignore_errors=True)  # a retried pod starts clean
        workdir.mkdir(parents=True)
        for o in job.spec.outputs:  # a directory output's folder exists before any command runs
            if output_kind(o.name) == OutputKind.DIRECTORY:
                (workdir / local_path(o.name)).mkdir(parents=True, exist_ok=True)
        store = self.checkpoints(job, steps)
        saved = self._restore(store, steps, workdir)
        if saved:
            reporter.resumed = saved + 1
        return store, saved

    def fetch(self, plan: Plan, workdir: Path) -> Inputs:
        """Download the inputs FFmpeg cannot stream; check the streamed ones exist and fit."""
        spec = plan.spec
        fetcher = Fetcher(
            self.grants, self.s3_settings, self.rules, self.settings.fetch_concurrency, self.settings.max_input_bytes,
            early_sizes=self.early.sizes if self.early else None,
        )
        try:
            keys = self._stream_keys(spec, plan.commands, fetcher, plan.local)
            self._check_scratch(spec, fetcher, set(keys), workdir)
            fetched = fetcher.fetch_all(spec, workdir, frozenset(keys))
        except ScratchFull as exc:
            raise JobFailed(str(exc), EXIT_SCRATCH) from None
        except FetchError as exc:
            raise JobFailed(str(exc), EXIT_IO) from None
        by_name = {i.name: i for i in spec.inputs}
        urls = {n: fetcher.grant(by_name[n]).get_url or "" for n in keys}
        paths = {n: urls.get(n, p) for n, p in plan.local.items()}
        paths |= {placeholder_name(o.name): local_path(o.name) for o in spec.outputs}
        return Inputs(fetcher, urls, paths, sum(f.size for f in fetched.values()))

    def _check_scratch(self, spec: SpecView, fetcher: Fetcher, streamed: set[str], workdir: Path) -> None:
        """The inputs to download must fit the pool's scratch space and the free space of the
        work folder, else the job fails before FFmpeg starts (a full emptyDir would get the pod
        evicted mid-download): the storage inputs by their probed sizes, here, before anything
        is fetched; an https input by its Content-Length, before its first byte is written
        (fetch.ScratchBudget). Streamed inputs take no space."""
        try:
            free: int | None = shutil.disk_usage(workdir).free
        except OSError:
            free = None
        fetcher.budget = budget = ScratchBudget(self.settings.scratch_limit, free)
        budget.reserve({i.name: fetcher.stat(spec.tenant, i) for i in spec.inputs
                        if i.name not in streamed and fetcher.storage_key(spec.tenant, i) is not None})

    def run_steps(self, plan: Plan, inputs: Inputs, workdir: Path, store: CheckpointStore | None,
                  saved: int) -> float:
        """Run the commands in order (those restored from checkpoints skipped); FFmpeg's seconds."""
        assert self.reporter is not None
        reporter, spec, steps, local, urls = self.reporter, plan.spec, plan.steps, plan.local, inputs.urls
        paths = inputs.paths
        probes: dict[str, Future[float | None]] = {}
        ffmpeg_seconds = 0.0
        global_args = shlex.split(self.settings.ffmpeg_global_args)
        outputs = [o.name for o in spec.outputs]
        for step, args in enumerate(plan.commands, start=1):
            if step <= saved:
                continue  # its files were restored from the checkpoint
            reporter.update(step, 0.0, force=True)
            before = Snapshot.take(workdir, outputs)
            for attempt in (1, 2):
                redact = {urls[n]: local[n] for n in urls if paths[n] == urls[n]}
                rendered = _with_stream_options(render(args, paths), redact)
                remaining = plan.deadline - time.monotonic()
                if remaining <= 0:
                    raise JobFailed(f"job timed out after {spec.timeout_seconds}s before command {step}", EXIT_STEP)
                timeout = min(remaining, spec.step_timeout_seconds or remaining)

                def probe_inputs(rendered: list[str] = rendered) -> None:
                    """Once FFmpeg runs: the length of each input (or earlier output), for percent."""
                    for p in (rendered[i + 1] for i, a in enumerate(rendered[:-1]) if a == "-i"):
                        if p not in probes:
                            probes[p] = self.pool.submit(self._duration, workdir, p)

                def on_progress(p: StepProgress, step: int = step) -> None:
                    if p.fraction is not None:
                        reporter.update(step, p.fraction, p.speed)

                def expected(rendered: list[str] = rendered) -> float | None:
                    known = {p: f.result() for p, f in probes.items() if f.done() and f.exception() is None}
                    return expected_duration(rendered, known)

                try:
                    ffmpeg_seconds += run_ffmpeg(
                        rendered,
                        cwd=workdir,
                        step=step,
                        steps=steps,
                        timeout=timeout,
                        expected=expected,
                        on_progress=on_progress,
                        on_start=probe_inputs,
                        ffmpeg=self.settings.ffmpeg_bin,
                        global_args=global_args,
                        redact=redact,
                    )
                    break
                except InputReadFailed as exc:
                    if attempt == 2:
                        reporter.flush()
                        raise JobFailed(str(exc), EXIT_STEP) from None
                    # Reading from storage failed (or may have been cut short): download instead.
                    log.warning("streamed input failed, downloading instead: %s", exc)
                    self._download(inputs.fetcher, spec, workdir, [n for n in urls if urls[n] in rendered])
                    paths |= {n: local[n] for n in urls if urls[n] in rendered}
                except StepFailed as exc:
                    reporter.flush()
                    raise JobFailed(str(exc), EXIT_STEP) from None
            if store is not None and step < steps:
                self._save(store, step, workdir, before.written_since(Snapshot.take(workdir, outputs)))
        return ffmpeg_seconds

    def publish(self, plan: Plan, workdir: Path, ffmpeg_seconds: float, input_bytes: int) -> None:
        """Upload the declared outputs and record the result. The outputs are probed (for their
        media summary) while they upload, and the result is written while the uploads finish: a
        failed upload then takes the result back (`_fail`), and the worker exits non-zero."""
        assert self.reporter is not None
        spec, steps = plan.spec, plan.steps
        files = [workdir / o.name for o in spec.outputs if output_kind(o.name) == OutputKind.FILE]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise JobFailed(f"declared outputs were not written by any command: {', '.join(missing)}", EXIT_STEP)
        try:  # directory and pattern outputs: every file they produced, within the bounds
            produced = collect(workdir, [o.name for o in spec.outputs], *limits_from_env()) if any(
                output_kind(o.name) != OutputKind.FILE for o in spec.outputs) else []
        except OutputsRefused as exc:
            raise JobFailed(str(exc), EXIT_STEP) from None
        uploads = self.pool.submit(self._upload, files, produced)
        media = self._media(files) if files else {}
        sizes = {f.name: f.stat().st_size for f in files}
        result = [
            result_file_k8s(f.name, sizes[f.name], f"{spec.output.dir_id}/{f.name}", media.get(f.name))
            for f in files
        ] + [
            result_file_k8s(p.name, p.size, f"{spec.output.dir_id}/{p.name}") for p in produced
        ]
        usage = usage_k8s(ffmpeg_seconds, input_bytes, sum(sizes.values()) + sum(p.size for p in produced))
        if uploads.done():
            self._uploaded(uploads)  # failed already: no result to write and take back
        self.reporter.drain(drop_pending=True)  # the result patch below carries the final progress
        self.result_written = True
        written = self.pool.submit(self.jobs.patch_status, {
            "progress": {"speed": None, "resumedFromStep": self.reporter.resumed,
                         **progress_k8s(steps, steps, 100)},
            "result": result,
            "usage": usage,
            "error": None,
        })
        try:
            self._uploaded(uploads)
        finally:
            wait([written])  # the result lands before any patch that takes it back
        written.result()
        log.info("done: %d outputs, usage %s", len(result), usage)

    def _upload(self, files: list[Path], produced: list[Produced]) -> list[Uploaded]:
        """Directory and pattern outputs first (they cannot be taken back), then the named files
        (all or nothing): a job whose segments failed never writes its playlist."""
        upload_produced(self.grants.output_prefix, produced, self.settings.upload_concurrency)
        return upload_outputs(self.grants.outputs, files, self.settings.upload_concurrency)

    @staticmethod
    def _uploaded(uploads: Future[list[Uploaded]]) -> list[Uploaded]:
        try:
            return uploads.result()
        except UploadFailed as exc:
            raise JobFailed(str(exc), EXIT_IO) from None

    # ------------------------------------------------------------------------ checkpoints
    def checkpoints(self, job: JobView, steps: int) -> CheckpointStore | None:
        """Where a chain's finished steps are saved (a single command needs none)."""
        if steps < 2 or not self.grants.scratch:
            return None
        if any(output_kind(o.name) != OutputKind.FILE for o in job.spec.outputs):
            return None  # a directory or pattern output is not checkpointed: a new attempt runs every step

        return GrantCheckpoints(self.grants.scratch)

    def _restore(self, store: CheckpointStore | None, steps: int, workdir: Path) -> int:
        """The number of leading steps restored from checkpoints (0: start from the first)."""
        if store is None:
            return 0
        try:
            saved = store.saved_steps(steps)
            if saved:
                names = store.restore(saved, workdir)
                log.info("resuming at step %d of %d: restored %s", saved + 1, steps, ", ".join(names) or "nothing")
            return saved
        except Exception as exc:  # a checkpoint is a shortcut: without it, start over
            log.warning("cannot restore checkpoints, starting from the first step: %s", exc)
            shutil.rmtree(workdir, ignore_errors=True)
            workdir.mkdir(parents=True)
            return 0

    def _save(self, store: CheckpointStore, step: int, workdir: Path, names: list[str]) -> None:
        try:
            store.save(step, [workdir / n for n in names])
            log.info("checkpoint of step %d saved: %s", step, ", ".join(names) or "no files")
        except Exception as exc:  # never fail the job for a missed shortcut
            log.warning("checkpoint of step %d not saved: %s", step, exc)

    # ---------------------------------------------------------------------------- helpers
    def _stream_keys(
        self, spec: Any, commands: list[list[str]], fetcher: Fetcher, local: dict[str, str]
    ) -> dict[str, str]:
        """Input name -> object key, for the inputs FFmpeg reads from storage itself."""
        if not self.settings.stream_inputs:
            return {}
        by_name = {i.name: i for i in spec.inputs}
        keys = {n: fetcher.storage_key(spec.tenant, by_name[n]) for n in streamable(commands, local)}
        return {n: k for n, k in keys.items() if k is not None}

    def _download(self, fetcher: Fetcher, spec: Any, workdir: Path, names: list[str]) -> None:
        by_name = {i.name: i for i in spec.inputs}
        try:
            for n in names:
                fetcher.fetch_one(spec.tenant, by_name[n], workdir / local_name(by_name[n]))
        except FetchError as exc:
            raise JobFailed(str(exc), EXIT_IO) from None

    def _duration(self, workdir: Path, target: str) -> float | None:
        """An input's duration for percent, or None (an image, unreadable): never fails the job.
        A streamed input is probed at its URL (our own bucket, so no URL rules to apply)."""
        from ffmpegjob_model.probe import ProbeFailed, duration

        path = target if "://" in target else str(workdir / target)
        try:
            return duration(path, check_urls=False, ffprobe=self.settings.ffprobe_bin)
        except (ProbeFailed, KeyError, ValueError, OSError):
            return None

    def _media(self, files: list[Path]) -> dict[str, dict[str, Any] | None]:
        from ffmpegjob_model.probe import media_summary

        def one(path: Path) -> dict[str, Any] | None:
            try:
                return media_summary(str(path), ffprobe=self.settings.ffprobe_bin) or None
            except Exception:
                return None  # not a media file (a playlist, a text report): no summary

        with ThreadPoolExecutor(max_workers=min(4, len(files))) as pool:
            return dict(zip([f.name for f in files], pool.map(one, files), strict=True))

    def _fail(self, message: str, code: int, write: bool = True) -> int:
        log.error("%s", message)
        if self.reporter is not None:  # no queued progress patch may come after the error
            self.reporter.drain(drop_pending=True)
        if write:
            taken_back = {"result": None, "usage": None} if self.result_written else {}
            self.jobs.try_patch_status({"error": message, **taken_back})
        lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
        line = lines[0] if len(lines) < 2 else f"{lines[0]} ... {' | '.join(lines[-3:])}"
        line = line if len(line) <= 1000 else line[:300] + " ... " + line[-690:]
        with contextlib.suppress(OSError):
            Path(self.settings.termination_log_path).write_text(line + "\n")
        return code


def _with_stream_options(args: list[str], urls: dict[str, str]) -> list[str]:
    """Before each `-i <streamed URL>`: only HTTP(S) may be opened for it, a dropped connection
    is resumed where it broke, and a stalled one fails instead of hanging."""
    out: list[str] = []
    for i, a in enumerate(args):
        nxt = args[i + 1] if i + 1 < len(args) else ""
        if a == "-i" and nxt in urls:
            allowed = "https,tls,tcp" if nxt.startswith("https:") else "http,tcp"
            out += ["-protocol_whitelist", allowed, "-reconnect", "1", "-reconnect_on_network_error", "1"]
            out += ["-reconnect_delay_max", "4", "-rw_timeout", "30000000"]
        out.append(a)
    return out
