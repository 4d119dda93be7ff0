"""`ffmpeg-worker`: serve one FFmpegJob (named by FFMPEGJOB_NAME/FFMPEGJOB_NAMESPACE).

validate -> fetch inputs -> run the commands in order -> upload the declared outputs -> status.
Exit code 0 means every declared output was uploaded and the status written; on failure the
worker writes `status.error` and one line to the termination log, and exits non-zero:
1 a command failed or timed out, 2 the job is invalid or unsafe, 3 inputs or storage failed,
143 terminated (SIGTERM).
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import shutil
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any

from ffmpegjob_model.commands import render
from ffmpegjob_model.model import FFmpegJob, Progress, ResultFile, Usage
from ffmpegjob_model.probe import duration_seconds, media_summary
from ffmpegjob_model.safety import UnsafeCommand, validate_spec
from ffmpegjob_model.settings import S3Settings
from ffmpegjob_model.urls import URLRules

from .fetch import Fetcher, FetchError, local_name
from .kube import JobClient, load_client
from .run import StepFailed, StepProgress, expected_duration, run_ffmpeg
from .settings import WorkerSettings
from .storage import s3_client
from .upload import UploadFailed, upload_outputs

log = logging.getLogger("ffmpeg_worker")

EXIT_STEP, EXIT_INVALID, EXIT_IO, EXIT_TERMINATED = 1, 2, 3, 143


class JobFailed(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Terminated(Exception):
    pass


class ProgressReporter:
    """Patches `status.progress` at most once per `interval` seconds (many jobs must not flood the
    API server); the last value is always written by `flush`."""

    def __init__(self, jobs: JobClient, steps: int, interval: float) -> None:
        self.jobs, self.steps, self.interval = jobs, steps, interval
        self.last_sent = 0.0
        self.pending: Progress | None = None
        self.lock = threading.Lock()

    def update(self, step: int, fraction: float, speed: str | None = None, force: bool = False) -> None:
        percent = round(100.0 * ((step - 1) + max(0.0, min(fraction, 1.0))) / max(self.steps, 1), 1)
        with self.lock:
            self.pending = Progress(step=step, steps=self.steps, percent=percent, speed=speed)
            if not force and time.monotonic() - self.last_sent < self.interval:
                return
            self._send()

    def flush(self) -> None:
        with self.lock:
            if self.pending is not None:
                self._send()

    def _send(self) -> None:
        assert self.pending is not None
        # An explicit null: a merge patch would otherwise keep the previous step's speed.
        if self.jobs.try_patch_status({"progress": {"speed": None, **self.pending.to_k8s()}}):
            self.last_sent = time.monotonic()
        self.pending = None


class Worker:
    def __init__(self, settings: WorkerSettings, jobs: JobClient, s3_settings: S3Settings, rules: URLRules) -> None:
        self.settings, self.jobs, self.s3_settings, self.rules = settings, jobs, s3_settings, rules
        self.s3 = s3_client(s3_settings, pool=max(32, settings.upload_concurrency * 4))

    # ------------------------------------------------------------------------------ steps
    def run(self) -> int:
        started = time.monotonic()
        try:
            job = self.jobs.get()
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

    def _process(self, job: FFmpegJob, workdir: Path, started: float) -> None:
        spec = job.spec
        deadline = started + spec.timeout_seconds
        try:
            # DNS of URL inputs is checked when they are fetched, against the connected address.
            commands = validate_spec(spec, check_urls=False, url_rules=self.rules, s3=self.s3_settings)
        except UnsafeCommand as exc:
            raise JobFailed(f"invalid job: {exc}", EXIT_INVALID) from None
        steps = len(commands)
        reporter = ProgressReporter(self.jobs, steps, self.settings.progress_interval)
        self.jobs.try_patch_status({"progress": Progress(step=0, steps=steps, percent=0).to_k8s(), "error": None})

        shutil.rmtree(workdir, ignore_errors=True)  # a retried pod starts clean
        workdir.mkdir(parents=True)
        fetcher = Fetcher(
            self.s3, self.s3_settings, self.rules, self.settings.fetch_concurrency, self.settings.max_input_bytes
        )
        try:
            fetched = fetcher.fetch_all(spec, workdir)
        except FetchError as exc:
            raise JobFailed(str(exc), EXIT_IO) from None
        input_bytes = sum(f.size for f in fetched.values())
        paths = {i.name: local_name(i) for i in spec.inputs} | {o.name: o.name for o in spec.outputs}
        durations = self._durations(workdir, [paths[i.name] for i in spec.inputs])

        ffmpeg_seconds = 0.0
        global_args = shlex.split(self.settings.ffmpeg_global_args)
        for step, args in enumerate(commands, start=1):
            rendered = render(args, paths)
            for p in (rendered[i + 1] for i, a in enumerate(rendered[:-1]) if a == "-i"):
                if p not in durations:  # an earlier step's output
                    durations |= self._durations(workdir, [p])
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise JobFailed(f"job timed out after {spec.timeout_seconds}s before command {step}", EXIT_STEP)
            timeout = min(remaining, spec.step_timeout_seconds or remaining)
            reporter.update(step, 0.0, force=True)

            def on_progress(p: StepProgress, step: int = step) -> None:
                if p.fraction is not None:
                    reporter.update(step, p.fraction, p.speed)

            try:
                ffmpeg_seconds += run_ffmpeg(
                    rendered,
                    cwd=workdir,
                    step=step,
                    steps=steps,
                    timeout=timeout,
                    expected=expected_duration(rendered, durations),
                    on_progress=on_progress,
                    ffmpeg=self.settings.ffmpeg_bin,
                    global_args=global_args,
                )
            except StepFailed as exc:
                reporter.flush()
                raise JobFailed(str(exc), EXIT_STEP) from None
        reporter.flush()

        files = [workdir / o.name for o in spec.outputs]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise JobFailed(f"declared outputs were not written by any command: {', '.join(missing)}", EXIT_STEP)
        media = self._media(files)
        try:
            uploaded = upload_outputs(
                self.s3,
                self.s3_settings.bucket,
                spec.tenant,
                spec.output.dir_id,
                files,
                self.settings.upload_concurrency,
            )
        except UploadFailed as exc:
            raise JobFailed(str(exc), EXIT_IO) from None
        result = [
            ResultFile(
                file_name=u.name,
                size_bytes=u.size,
                storage_path=f"{spec.output.dir_id}/{u.name}",
                media=media.get(u.name),
            ).to_k8s()
            for u in uploaded
        ]
        usage = Usage.compute(ffmpeg_seconds, input_bytes, sum(u.size for u in uploaded))
        self.jobs.patch_status(
            {
                "progress": {"speed": None, **Progress(step=steps, steps=steps, percent=100).to_k8s()},
                "result": result,
                "usage": usage.to_k8s(),
                "error": None,
            }
        )
        log.info("done: %d outputs, usage %s", len(result), usage.to_k8s())

    # ---------------------------------------------------------------------------- helpers
    def _durations(self, workdir: Path, rel_paths: list[str]) -> dict[str, float | None]:
        if not rel_paths:
            return {}
        with ThreadPoolExecutor(max_workers=min(4, len(rel_paths))) as pool:
            found = pool.map(lambda p: duration_seconds(str(workdir / p), ffprobe=self.settings.ffprobe_bin), rel_paths)
            return dict(zip(rel_paths, found, strict=True))

    def _media(self, files: list[Path]) -> dict[str, dict[str, Any] | None]:
        def one(path: Path) -> dict[str, Any] | None:
            try:
                return media_summary(str(path), ffprobe=self.settings.ffprobe_bin) or None
            except Exception:
                return None  # not a media file (a playlist, a text report): no summary

        with ThreadPoolExecutor(max_workers=min(4, len(files))) as pool:
            return dict(zip([f.name for f in files], pool.map(one, files), strict=True))

    def _fail(self, message: str, code: int, write: bool = True) -> int:
        log.error("%s", message)
        if write:
            self.jobs.try_patch_status({"error": message})
        lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
        line = lines[0] if len(lines) < 2 else f"{lines[0]} ... {' | '.join(lines[-3:])}"
        line = line if len(line) <= 1000 else line[:300] + " ... " + line[-690:]
        with contextlib.suppress(OSError):
            Path(self.settings.termination_log_path).write_text(line + "\n")
        return code


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = WorkerSettings()  # FFMPEGJOB_NAME comes from the env
    except Exception as exc:
        print(f"ffmpeg-worker: bad environment: {exc}", file=sys.stderr)
        sys.exit(EXIT_INVALID)
    signal.signal(signal.SIGTERM, _on_sigterm)
    jobs = JobClient(load_client(), settings.ffmpegjob_namespace, settings.ffmpegjob_name)
    sys.exit(Worker(settings, jobs, S3Settings(), URLRules()).run())


if __name__ == "__main__":
    main()
