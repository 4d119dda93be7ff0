"""The worker's split-and-stitch modes (`FFMPEG_WORKER_MODE=chunk|stitch`, set by the operator).

chunk:  encode one keyframe-aligned range of the input, video only, to a segment in the job's
        scratch prefix; report under `status.chunkReports.<index>` (index: JOB_COMPLETION_INDEX).
stitch: fetch the segments, join them (concat demuxer, `-c:v copy`), take audio and the rest from
        the original input with the user's options, upload the declared output; write `result`,
        `usage` (every chunk's FFmpeg time plus the stitch's) and `chunkReports.stitch`.

The commands come from `ffmpegjob_model.split`; the plan (ranges, scratch prefix) from the
operator, in `FFMPEG_SPLIT_PLAN`. Failures, SIGTERM and the work folder are handled by `Worker.run`.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ffmpegjob_model.commands import render
from ffmpegjob_model.lenient import read_ffmpegjob
from ffmpegjob_model.model import ChunkRange, FFmpegJob, ResultFile, Usage
from ffmpegjob_model.plain import GrantsView as Grants  # the grants as the worker reads them
from ffmpegjob_model.plain import JobView
from ffmpegjob_model.plain import ObjectGrantView as ObjectGrant
from ffmpegjob_model.safety import UnsafeCommand, validate_spec
from ffmpegjob_model.split import SEGMENT_LIST, NotSplittable, SplitCommand, analyze, segment_list
from ffmpegjob_model.storage_layout import segment_name

from . import storage
from .errors import JobFailed
from .fetch import Fetcher, FetchError, local_name
from .run import InputReadFailed, StepFailed, StepProgress, run_ffmpeg
from .upload import UploadFailed, upload_outputs
from .worker import EXIT_INVALID, EXIT_IO, EXIT_STEP, Worker, _with_stream_options

log = logging.getLogger("ffmpeg_worker.split")
# The variables settings.WorkerSettings reads them from (`mode`, `split_plan`, `completion_index`).
ENV_MODE = "FFMPEG_WORKER_MODE"
ENV_PLAN = "FFMPEG_SPLIT_PLAN"
ENV_INDEX = "JOB_COMPLETION_INDEX"
REPORT_INTERVAL = 2.0  # seconds between a pod's progress patches (N pods patch one object)


class SegmentStore:
    """Where segments go between the chunk pods and the stitch pod: the job's scratch grants
    (`Grants.scratch`, keyed by segment name), presigned by the operator for this pod only: a
    chunk pod may write its own segment, the stitch pod read them all. No credentials."""

    def __init__(self, grants: Grants, concurrency: int = 8) -> None:
        self.grants, self.concurrency = grants, concurrency

    def _grant(self, name: str, need: str) -> ObjectGrant:
        g = self.grants.scratch.get(name)
        if g is None or getattr(g, need) is None:
            raise storage.StorageError(f"this pod holds no grant to {need.split('_')[0]} segment {name}")
        return g

    def put(self, path: Path) -> None:
        storage.upload(self._grant(path.name, "put_url"), path, self.concurrency)

    def get(self, name: str, dest: Path) -> None:
        storage.download(self._grant(name, "get_url"), dest)


class Reporter:
    """`status.chunkReports.<key>`: a map entry per pod, so concurrent pods never collide."""

    def __init__(self, worker: Worker, key: str) -> None:
        self.worker, self.key = worker, key
        self.last = 0.0
        self.lock = threading.Lock()

    def send(self, report: dict[str, Any], force: bool = False) -> None:
        with self.lock:
            if not force and time.monotonic() - self.last < REPORT_INTERVAL:
                return
            self.last = time.monotonic()
        self.worker.jobs.try_patch_status({"chunkReports": {self.key: report}})


class SplitWorker(Worker):
    mode = "chunk"

    def plan(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.settings.split_plan or ""))
        except (TypeError, ValueError) as e:
            raise JobFailed(f"split worker without a plan ({ENV_PLAN}): {e}", EXIT_INVALID) from None

    def command(self, job: FFmpegJob) -> SplitCommand:
        try:
            validate_spec(job.spec, check_urls=False, url_rules=self.rules, s3=self.s3_settings)
            return analyze(job.spec)
        except (UnsafeCommand, NotSplittable) as exc:
            raise JobFailed(f"invalid job: {exc}", EXIT_INVALID) from None

    def input_path(self, job: JobView, workdir: Path, fetcher: Fetcher) -> tuple[str, dict[str, str], int]:
        """(what FFmpeg opens, URL -> shown name, input size): a presigned GET of our bucket when
        the input is there (seeking reads only the chunk's range), else a download."""
        inp = job.spec.inputs[0]
        try:
            key = fetcher.storage_key(job.spec.tenant, inp) if self.settings.stream_inputs else None
            if key is not None:
                size = fetcher.stat(job.spec.tenant, inp)
                url = fetcher.grant(inp).get_url or ""
                return url, {url: local_name(inp)}, size
            fetched = fetcher.fetch_one(job.spec.tenant, inp, workdir / local_name(inp))
        except FetchError as exc:
            raise JobFailed(str(exc), EXIT_IO) from None
        return local_name(inp), {}, fetched.size

    def run_step(self, job: JobView, cmd: SplitCommand, workdir: Path, fetcher: Fetcher, args: list[str],
                 output: str | None, expected: float | None, report: Reporter) -> tuple[float, int]:
        """Render and run one command (streamed input, downloaded on a read failure)."""
        path, redact, size = self.input_path(job, workdir, fetcher)
        global_args = shlex.split(self.settings.ffmpeg_global_args)
        deadline = job.spec.timeout_seconds

        def on_progress(p: StepProgress) -> None:
            if p.fraction is not None:
                report.send({"percent": round(100 * p.fraction, 1), "speed": p.speed})

        for attempt in (1, 2):
            paths = {cmd.input_name: path} | ({cmd.output_name: output} if output else {})
            rendered = _with_stream_options(render(args, paths), redact)
            try:
                seconds = run_ffmpeg(rendered, cwd=workdir, step=1, steps=1, timeout=deadline, expected=expected,
                                     on_progress=on_progress, ffmpeg=self.settings.ffmpeg_bin,
                                     global_args=global_args, redact=redact)
                return seconds, size
            except InputReadFailed as exc:
                if attempt == 2 or not redact:
                    raise JobFailed(str(exc), EXIT_STEP) from None
                log.warning("streamed input failed, downloading instead: %s", exc)
                inp = job.spec.inputs[0]
                try:
                    fetcher.fetch_one(job.spec.tenant, inp, workdir / local_name(inp))
                except FetchError as e:
                    raise JobFailed(str(e), EXIT_IO) from None
                path, redact = local_name(inp), {}
            except StepFailed as exc:
                raise JobFailed(str(exc), EXIT_STEP) from None
        raise AssertionError("unreachable")

    def fetcher(self) -> Fetcher:
        return Fetcher(self.grants, self.s3_settings, self.rules, self.settings.fetch_concurrency,
                       self.settings.max_input_bytes, early_sizes=self.early.sizes if self.early else None)

    def video_start(self, path: Path) -> float:
        """A segment's video start time (the first segment's is where the joined video starts)."""
        try:
            out = subprocess.run(
                [self.settings.ffprobe_bin, "-v", "error", "-select_streams", "v:0", "-show_entries",
                 "stream=start_time", "-of", "csv=p=0", str(path)],
                capture_output=True, text=True, timeout=60, check=True)
            return max(0.0, float(out.stdout.strip().splitlines()[0]))
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            return 0.0

    def count_frames(self, path: Path) -> int | None:
        try:
            out = subprocess.run(
                [self.settings.ffprobe_bin, "-v", "error", "-select_streams", "v:0", "-count_packets",
                 "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", str(path)],
                capture_output=True, text=True, timeout=120, check=True)
            return int(out.stdout.strip().splitlines()[0])
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            return None


class ChunkWorker(SplitWorker):
    def _process(self, view: JobView, workdir: Path, started: float) -> None:
        job = read_ffmpegjob(view.raw)  # the split plan's models: status.split
        plan = self.plan()
        try:
            index = int(self.settings.completion_index or "")
            chunk = ChunkRange.model_validate(plan["ranges"][index])
        except (KeyError, ValueError, IndexError) as e:
            raise JobFailed(f"chunk worker without a valid {ENV_INDEX}: {e}", EXIT_INVALID) from None
        cmd = self.command(job)
        report = Reporter(self, str(index))
        pod = self.settings.pod
        report.send({"percent": 0, "speed": None, "pod": pod, "timeSec": None}, force=True)
        shutil.rmtree(workdir, ignore_errors=True)
        (workdir / "inputs").mkdir(parents=True)
        seg = segment_name(index, cmd.segment_ext)
        expected = (chunk.end - chunk.start) if chunk.end is not None else None
        if expected is None:
            total = job.status.split.duration if job.status.split else None
            expected = (total - chunk.start) if total else None
        seconds, _ = self.run_step(view, cmd, workdir, self.fetcher(), cmd.chunk_args(chunk, seg), None, expected,
                                   report)
        path = workdir / seg
        if not path.is_file():
            raise JobFailed(f"chunk {index}: FFmpeg wrote no segment", EXIT_STEP)
        frames = self.count_frames(path)
        if frames is not None and frames != chunk.frames:
            log.warning("chunk %d: %d frames encoded, %d in the input range", index, frames, chunk.frames)
        try:
            SegmentStore(self.grants, self.settings.upload_concurrency).put(path)
        except Exception as exc:
            raise JobFailed(f"chunk {index}: cannot upload the segment: {exc}", EXIT_IO) from None
        report.send({"percent": 100, "speed": None, "timeSec": round(seconds, 3), "frames": frames,
                     "sizeBytes": path.stat().st_size, "pod": pod}, force=True)
        log.info("chunk %d done: %s frames in %.1fs", index, frames, seconds)


class StitchWorker(SplitWorker):
    def _process(self, view: JobView, workdir: Path, started: float) -> None:
        job = read_ffmpegjob(view.raw)  # the split plan's models: status.split
        plan = self.plan()
        cmd = self.command(job)
        spec = job.spec
        report = Reporter(self, "stitch")
        report.send({"percent": 0, "pod": self.settings.pod}, force=True)
        shutil.rmtree(workdir, ignore_errors=True)
        (workdir / "inputs").mkdir(parents=True)
        names = [segment_name(i, cmd.segment_ext) for i in range(int(plan["chunks"]))]
        store = SegmentStore(self.grants)
        try:
            with ThreadPoolExecutor(max_workers=max(1, min(8, len(names)))) as pool:
                list(pool.map(lambda n: store.get(n, workdir / n), names))
        except Exception as exc:
            raise JobFailed(f"stitch: cannot fetch the segments: {exc}", EXIT_IO) from None
        (workdir / SEGMENT_LIST).write_text(segment_list(names))
        out_name = spec.outputs[0].name
        expected = job.status.split.duration if job.status.split else None
        offset = self.video_start(workdir / names[0])
        seconds, input_bytes = self.run_step(view, cmd, workdir, self.fetcher(),
                                             cmd.stitch_args(video_offset=offset), out_name, expected, report)
        out = workdir / out_name
        if not out.is_file():
            raise JobFailed(f"stitch: FFmpeg did not write {out_name}", EXIT_STEP)
        media_future = self.pool.submit(self._media, [out])
        try:
            (uploaded,) = upload_outputs(self.grants.outputs, [out], self.settings.upload_concurrency)
        except UploadFailed as exc:
            raise JobFailed(str(exc), EXIT_IO) from None
        media = media_future.result()
        try:
            reports = self.jobs.get().status.chunk_reports or {}
        except Exception:
            reports = {}
        chunk_seconds = sum(r.time_sec or 0 for k, r in reports.items() if k != "stitch")
        usage = Usage.compute(chunk_seconds + seconds, input_bytes, uploaded.size)
        result = ResultFile(file_name=uploaded.name, size_bytes=uploaded.size,
                            storage_path=f"{spec.output.dir_id}/{uploaded.name}", media=media.get(uploaded.name))
        self.jobs.patch_status({
            "result": [result.to_k8s()], "usage": usage.to_k8s(), "error": None,
            "chunkReports": {"stitch": {"percent": 100, "timeSec": round(seconds, 3), "sizeBytes": uploaded.size}},
        })
        log.info("stitched %d segments in %.1fs; usage %s", len(names), seconds, usage.to_k8s())


def worker_class(mode: str | None) -> type[Worker]:
    """The Worker for `FFMPEG_WORKER_MODE` (unset: the single-pod worker)."""
    return {"chunk": ChunkWorker, "stitch": StitchWorker}.get(mode or "", Worker)
