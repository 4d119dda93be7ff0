"""`kubeffmpeg`: the command line of the service, on the Python client.

    kubeffmpeg run -i in.mp4 -- -i {{in}} -vf scale=1280:-2 {{out.mp4}}
    kubeffmpeg jobs ls | get ID | watch ID | cancel ID
    kubeffmpeg files ls [DIR] | rm DIR/FILE
    kubeffmpeg probe FILE|URL|DIR/FILE
    kubeffmpeg keys create --tenant T          (admin: writes the key store; needs a kubeconfig)

The API is `API_URL`/`API_KEY` (or `--api-url`/`--api-key`), else `.devstack/env` of the checkout
the command runs in. `--json` prints JSON for scripts (one document; `jobs watch` prints one
event per line). Exit codes: see `EXIT_*` below and `kubeffmpeg --help`."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from ffmpegjob_model.events import FinalEvent, PhaseEvent, ProgressEvent, QueueEvent
from ffmpegjob_model.model import Phase
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from . import parts
from .client import Client, outcome
from .config import load_config
from .errors import (
    ApiError,
    ConfigError,
    ConnectionFailed,
    JobCancelled,
    JobFailed,
    KubeFFmpegError,
    NotFound,
    ServerError,
    Unauthorized,
    WaitTimeout,
)
from .models import FFMPEG_API, VGF, Job, JobEvent

EXIT_OK = 0
EXIT_JOB_FAILED = 1  # the job failed or was cancelled
EXIT_USAGE = 2  # bad arguments or no configuration
EXIT_REFUSED = 3  # the API refused the request (400, 403, 409, 429 ...)
EXIT_AUTH = 4  # 401: the API key is missing or wrong
EXIT_NOT_FOUND = 5  # 404: no such job, file or directory (for this key)
EXIT_UNAVAILABLE = 6  # the API or storage cannot be reached, or answered 5xx; or a wait timed out
EXIT_INTERRUPTED = 130  # Ctrl-C

EPILOG = ("Exit codes: 0 ok, 1 job failed or cancelled, 2 usage or configuration, 3 request refused, "
          "4 bad API key, 5 not found, 6 API unreachable or 5xx, 130 interrupted.")

app = typer.Typer(help="Run FFmpeg jobs on kubeffmpeg.", epilog=EPILOG, no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
jobs_app = typer.Typer(help="List, show, follow and cancel jobs.", no_args_is_help=True)
files_app = typer.Typer(help="Stored files and directories.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys (admin: writes the key store in the cluster).", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(files_app, name="files")
app.add_typer(keys_app, name="keys")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


class State:
    api_url: str | None = None
    api_key: str | None = None
    json: bool = False


state = State()


@app.callback()
def main_options(
    api_url: Annotated[str | None, typer.Option("--api-url", envvar="API_URL", help="The API's base URL")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="API_KEY", help="Your API key",
                                                show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output for scripts")] = False,
) -> None:
    state.api_url, state.api_key, state.json = api_url, api_key, as_json


def client() -> Client:
    return Client(state.api_url, state.api_key)


def emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, default=str) + "\n")
    sys.stdout.flush()


def job_doc(job: Job) -> dict[str, Any]:
    return job.model_dump(mode="json", exclude={"raw"}) | {"raw": job.raw}


def fail(code: int, message: str, **extra: Any) -> typer.Exit:
    if state.json:
        emit_json({"ok": False, "error": message, **extra})
    else:
        err.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def errors() -> Iterator[None]:
    """Every exception of the client as a readable message and an exit code."""
    try:
        yield
    except JobCancelled as e:
        raise fail(EXIT_JOB_FAILED, f"job {e.job_id} was cancelled", job_id=e.job_id, status=e.status) from None
    except JobFailed as e:
        where = f" at step {e.step} of {e.steps}" if e.step else ""
        if state.json:
            emit_json({"ok": False, "job_id": e.job_id, "status": e.status, "step": e.step, "steps": e.steps,
                       "error": e.error})
            raise typer.Exit(EXIT_JOB_FAILED) from None
        err.print(f"[bold red]job {e.job_id} failed{where}[/]", markup=True)
        if e.error:
            err.print(e.error, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_JOB_FAILED) from None
    except Unauthorized as e:
        raise fail(EXIT_AUTH, f"{e.message} (check API_KEY)", status=e.status) from None
    except NotFound as e:
        raise fail(EXIT_NOT_FOUND, e.message, status=e.status) from None
    except ServerError as e:
        raise fail(EXIT_UNAVAILABLE, e.message, status=e.status) from None
    except ApiError as e:
        raise fail(EXIT_REFUSED, e.message, status=e.status) from None
    except (ConnectionFailed, WaitTimeout) as e:
        raise fail(EXIT_UNAVAILABLE, str(e)) from None
    except ConfigError as e:
        raise fail(EXIT_USAGE, str(e)) from None
    except KubeFFmpegError as e:
        raise fail(EXIT_UNAVAILABLE, str(e)) from None
    except OSError as e:
        raise fail(EXIT_USAGE, str(e)) from None


# --------------------------------------------------------------------------------- progress
class Display:
    """A Rich progress bar per step (per chunk, and the stitch, for split jobs) from the events."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(TextColumn("{task.description:<14}"), BarColumn(bar_width=40),
                                 TextColumn("{task.percentage:>5.1f}%"), TextColumn("{task.fields[info]}"),
                                 console=console, transient=False, auto_refresh=True, refresh_per_second=8)
        self.tasks: dict[str, TaskID] = {}
        self.console = console
        self.shown: str | None = None  # the last status word printed

    def complete(self) -> None:
        """Every bar at 100 %, drawn before the final status word is printed below them."""
        for t in self.tasks.values():
            self.progress.update(t, completed=100)
        self.progress.refresh()

    def show(self, job_id: str, status: str) -> None:
        if status != self.shown:
            self.progress.console.print(f"[dim]{job_id}[/] {status}", markup=True)
            self.shown = status

    def __enter__(self) -> Display:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def _task(self, key: str, description: str) -> TaskID:
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(description, total=100, info="")
        return self.tasks[key]

    def event(self, ev: JobEvent) -> None:
        d = ev.data
        if isinstance(d, PhaseEvent):
            if d.phase == Phase.SUCCEEDED:
                self.complete()
            self.show(d.job_id, d.status)
        elif isinstance(d, QueueEvent):
            self.progress.console.print(f"queued: position {d.position}"
                                        + (f", expected to start {d.estimated_start}" if d.estimated_start else ""))
        elif isinstance(d, ProgressEvent):
            self.on_progress(d)
        elif isinstance(d, FinalEvent):
            if ev.name == "result":
                self.complete()
            # A stream resumed after the last phase change still ends with the final word.
            self.show(d.job_id, d.status)

    def on_progress(self, d: ProgressEvent) -> None:
        info = " ".join(x for x in (d.speed or "", f"ETA {d.eta_seconds:.0f}s" if d.eta_seconds else "") if x)
        if d.chunks:
            for c in d.chunks:
                self.progress.update(self._task(f"chunk{c.index}", f"chunk {c.index + 1}/{len(d.chunks)}"),
                                     completed=100 if c.phase == "Succeeded" else c.percent, info=c.speed or "")
            if d.stage in ("Stitch", "Done"):
                self.progress.update(self._task("stitch", "stitch"), completed=d.stitch_percent or 0,
                                     info=(d.speed or "") if d.stage == "Stitch" else "")
            return
        if d.steps <= 0 or d.step <= 0:
            return
        for k in range(1, d.step):  # earlier steps are done
            self.progress.update(self._task(f"step{k}", f"step {k}/{d.steps}"), completed=100, info="")
        share = 100 / d.steps
        within = max(0.0, min(100.0, (d.percent - (d.step - 1) * share) / share * 100))
        self.progress.update(self._task(f"step{d.step}", f"step {d.step}/{d.steps}"), completed=within, info=info)


def follow(kf: Client, job_id: str, surface: Any = VGF, json_lines: bool = True) -> Job:
    """Follow a job's events to its end: a progress display, or with --json one JSON line per
    event (`json_lines`) or nothing."""
    if state.json:
        final = None
        for ev in kf.events(job_id, surface):
            if json_lines:
                emit_json({"event": ev.name, "id": ev.id, "data": ev.data.model_dump(mode="json", exclude_none=True)})
            if ev.final:
                final = ev
        assert final is not None
        return outcome(final, surface)
    with Display(err) as display:
        for ev in kf.events(job_id, surface):
            display.event(ev)
            if ev.final:
                return outcome(ev, surface)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------- run
PLACEHOLDER = re.compile(r"\{\{([A-Za-z0-9_.-]+)\}\}")
NAMED = re.compile(r"^([A-Za-z_][A-Za-z0-9_.-]*)=(.+)$")


def parse_inputs(specs: list[str]) -> dict[str, str]:
    """`-i PATH` (named `in`, `in2`, ...) or `-i NAME=PATH`; PATH may be a URL."""
    inputs: dict[str, str] = {}
    for spec in specs:
        m = NAMED.match(spec)
        if m and "://" not in m.group(1):
            name, src = m.group(1), m.group(2)
        else:
            name, src = ("in" if "in" not in inputs else f"in{len(inputs) + 1}"), spec
        if "://" not in src and not Path(src).is_file():
            raise typer.BadParameter(f"no such file: {src}", param_hint="-i")
        inputs[name] = src
    return inputs


def outputs_of(command: str, inputs: dict[str, str]) -> list[str]:
    seen: list[str] = []
    for name in PLACEHOLDER.findall(command):
        if name not in inputs and name not in seen:
            seen.append(name)
    return seen


def ask_cancel(kf: Client, job_id: str) -> None:
    err.print()
    try:
        answer = typer.prompt(f"Cancel job {job_id}? [y/N]", default="n", show_default=False, err=True)
    except (KeyboardInterrupt, EOFError, typer.Abort):
        answer = "n"
    if answer.strip().lower() in ("y", "yes"):
        with errors():
            kf.cancel(job_id)
        err.print(f"job {job_id} cancelled")
    else:
        err.print(f"job {job_id} keeps running; follow it with: kubeffmpeg jobs watch {job_id}")


@app.command(context_settings={"allow_interspersed_args": False}, epilog=EPILOG)
def run(
    ffmpeg_args: Annotated[list[str] | None, typer.Argument(help="FFmpeg arguments after `--`; files as {{name}}",
                                                            show_default=False)] = None,
    commands: Annotated[list[str] | None, typer.Option("-c", "--command", help="An FFmpeg command as one string, "
                                                       "run before the one after `--` (repeat for several steps)")]
    = None,
    inputs: Annotated[list[str] | None, typer.Option("-i", "--input", help="Input file or URL (NAME=PATH to name "
                                                     "it; else in, in2, ...)")] = None,
    machine: Annotated[str | None, typer.Option(help="Node pool: cpu, gpu, ...")] = None,
    chunks: Annotated[int | None, typer.Option(help="Split-and-stitch into this many chunks")] = None,
    timeout: Annotated[int | None, typer.Option("--timeout", help="Job time limit, seconds")] = None,
    dest: Annotated[Path, typer.Option("--dest", "-d", help="Where outputs are downloaded")] = Path("."),
    download: Annotated[bool, typer.Option(help="Download the outputs")] = True,
) -> None:
    """Upload local inputs, run FFmpeg, show its progress and download its outputs.

    kubeffmpeg run -i in.mp4 -- -i {{in}} -vf scale=1280:-2 {{out.mp4}}

    Outputs are the {{name.ext}} that are not inputs; a later command (-c ... -- ...) may read an
    earlier one's output.
    """
    named = parse_inputs(inputs or [])
    steps = [*(commands or []), *([shlex.join(ffmpeg_args)] if ffmpeg_args else [])]
    if not steps:
        raise typer.BadParameter("give the FFmpeg arguments after `--` (or -c \"...\")")
    outs = outputs_of(" ".join(steps), named)
    if not outs:
        raise typer.BadParameter("the command names no output ({{name.ext}} that is not an input)")
    with errors():
        kf = client()
        if not state.json:
            for name, src in named.items():
                if "://" not in src:
                    err.print(f"uploading {src} as {{{{{name}}}}}")
        job = kf.submit(steps, named, outs, machine=machine, timeout_seconds=timeout,
                        parallel={"chunks": chunks} if chunks else None)
        if not state.json:
            err.print(f"job {job.id} submitted")
        try:
            done = follow(kf, job.id, json_lines=False)
        except KeyboardInterrupt:
            ask_cancel(kf, job.id)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        files = kf.download(done, dest) if download else []
    if state.json:
        emit_json(job_doc(done) | {"downloaded": [str(p) for p in files]})
        return
    for p in files:
        size = p.stat().st_size
        out.print(f"{p} ({size:,} bytes)")
    if done.usage:
        err.print(f"[dim]time {done.usage.time_sec:g} s, {done.usage.gb_sec:g} GB-s[/]", markup=True)


# -------------------------------------------------------------------------------------- jobs
def job_table(jobs: list[Job]) -> Table:
    t = Table(box=None, pad_edge=False)
    t.add_column("ID", no_wrap=True, min_width=20)
    t.add_column("STATUS", no_wrap=True, min_width=9)
    t.add_column("PROGRESS", no_wrap=True, min_width=14)
    t.add_column("CREATED", no_wrap=True, min_width=20)
    t.add_column("ERROR", no_wrap=True, overflow="ellipsis", max_width=60)
    for j in jobs:
        prog = f"{j.progress.percent:.0f}% step {j.progress.step}/{j.progress.steps}" if j.progress else ""
        t.add_row(j.id, j.status, prog, str(j.raw.get("created_at", "")), (j.error or "").splitlines()[0][:60]
                  if j.error else "")
    return t


@jobs_app.command("ls")
def jobs_ls(status: Annotated[str | None, typer.Option(help="Only jobs in this status")] = None,
            limit: Annotated[int, typer.Option(help="At most this many")] = 50) -> None:
    """Your jobs, newest first."""
    with errors():
        found = client().list_jobs(limit=limit, status=status)
    if state.json:
        emit_json([job_doc(j) for j in found])
    else:
        out.print(job_table(found))


@jobs_app.command("get")
def jobs_get(job_id: str) -> None:
    """One job: status, progress, outputs, error."""
    with errors():
        j = client().get(job_id)
    if state.json:
        emit_json(job_doc(j))
        return
    out.print(job_table([j]))
    for r in j.result:
        out.print(f"  {r.file_name} ({r.size_bytes or 0:,} bytes) {r.download_url}", soft_wrap=True)
    if j.error:
        out.print(j.error, markup=False, soft_wrap=True)


@jobs_app.command("watch")
def jobs_watch(job_id: str) -> None:
    """Follow a job's live progress to its end (Ctrl-C stops watching; the job keeps running)."""
    with errors():
        kf = client()
        try:
            j = follow(kf, job_id)
        except KeyboardInterrupt:
            err.print(f"\nstopped watching; job {job_id} keeps running")
            raise typer.Exit(EXIT_INTERRUPTED) from None
    if not state.json:
        for r in j.result:
            out.print(f"{r.file_name} ({r.size_bytes or 0:,} bytes) {r.download_url}", soft_wrap=True)


@jobs_app.command("cancel")
def jobs_cancel(job_id: str) -> None:
    """Cancel a queued or running job."""
    with errors():
        j = client().cancel(job_id)
    if state.json:
        emit_json(job_doc(j))
    else:
        out.print(f"job {j.id} {j.status}")


# ------------------------------------------------------------------------------------- files
@files_app.command("ls")
def files_ls(dir_id: Annotated[str | None, typer.Argument(help="A directory; none: your directories")] = None) -> None:
    """Your directories, or the files of one."""
    with errors():
        kf = client()
        rows = kf.files(dir_id) if dir_id else kf.directories()
    if state.json:
        emit_json(rows)
        return
    if dir_id:
        t = Table("FILE", "SIZE", "ADDED", box=None, pad_edge=False)
        for f in rows:
            t.add_row(f["file_name"], f"{f.get('size_bytes', 0):,}", str(f.get("added_on", "")))
    else:
        t = Table("DIRECTORY", "TTL", "ADDED", box=None, pad_edge=False)
        for d in rows:
            t.add_row(d["id"], str(d.get("ttl", "")), str(d.get("added_on", "")))
    out.print(t)


@files_app.command("put")
def files_put(
    path: Annotated[Path, typer.Argument(help="A local file", exists=True, dir_okay=False)],
    resume: Annotated[str | None, typer.Option(help="Finish this multipart upload (its id, up_...)")] = None,
    workers: Annotated[int, typer.Option(help="Parts uploaded at a time", min=1, max=64)] = 4,
    parts_from: Annotated[int, typer.Option(help="Files of this many bytes or more go up in parts",
                                            min=1)] = parts.MULTIPART_THRESHOLD,
) -> None:
    """Store a local file; prints its DIR/FILE. Large files go up in parallel parts; when parts
    fail, the upload stays open and `--resume UPLOAD_ID` finishes it (docs/large-files.md)."""
    with errors():
        kf = client()
        up = (kf.resume_upload(resume, path, FFMPEG_API, workers=workers) if resume
              else kf.upload(path, FFMPEG_API, multipart_threshold=parts_from, workers=workers))
    if state.json:
        emit_json({"ok": True, "file_path": up.file_path})
    else:
        out.print(up.file_path)


@files_app.command("rm")
def files_rm(path: Annotated[str, typer.Argument(help="DIR/FILE")]) -> None:
    """Delete a stored file."""
    dir_id, _, name = path.partition("/")
    if not name:
        raise typer.BadParameter("give DIR/FILE", param_hint="PATH")
    with errors():
        client().delete_file(dir_id, name)
    if state.json:
        emit_json({"ok": True, "deleted": path})
    else:
        out.print(f"deleted {path}")


# ------------------------------------------------------------------------------------- probe
@app.command()
def probe(source: Annotated[str, typer.Argument(help="Local file (uploaded), URL, or stored DIR/FILE")]) -> None:
    """ffprobe a file: format and streams."""
    with errors():
        result = client().probe(Path(source) if Path(source).is_file() else source)
    if state.json:
        emit_json(result)
        return
    fmt = result.get("format") or {}
    out.print(f"{source}: {fmt.get('format_long_name') or fmt.get('format_name', '?')}, "
              f"{float(fmt.get('duration') or 0):.2f} s, {int(fmt.get('size') or 0):,} bytes")
    for s in result.get("streams") or []:
        kind = s.get("codec_type", "?")
        detail = f"{s.get('width')}x{s.get('height')}" if kind == "video" else f"{s.get('sample_rate', '')} Hz"
        out.print(f"  #{s.get('index')} {kind}: {s.get('codec_name')} {detail}")


# -------------------------------------------------------------------------------------- keys
@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="The tenant the key belongs to")] = "default",
    max_active_jobs: Annotated[int | None, typer.Option(help="Quota: jobs pending or running at once")] = None,
    requests_per_second: Annotated[float | None, typer.Option(help="Rate limit per key; 0 = unlimited")] = None,
    namespace: Annotated[str | None, typer.Option(help="The service's namespace")] = None,
) -> None:
    """Create an API key (admin). Writes the key store Secret through your kubeconfig, as
    `python -m ffmpeg_api.keys create` does; needs the API package installed."""
    try:
        env = load_config(state.api_url or "unused", state.api_key).env
    except ConfigError:
        env = {}
    argv = [sys.executable, "-m", "ffmpeg_api.keys", "create", "--tenant", tenant]
    for flag, value in (("--max-active-jobs", max_active_jobs), ("--requests-per-second", requests_per_second),
                        ("--namespace", namespace or env.get("FFMPEG_NAMESPACE"))):
        if value is not None:
            argv += [flag, str(value)]
    proc = subprocess.run(argv, capture_output=True, text=True, env={**env, **os.environ})
    if proc.returncode != 0:
        why = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
        if "No module named" in proc.stderr:
            why = "keys create needs the API package (pip install kubeffmpeg-api) and a kubeconfig"
        raise fail(EXIT_REFUSED if proc.returncode == 2 else EXIT_UNAVAILABLE, why)
    lines = proc.stdout.strip().splitlines()
    key = lines[-1] if lines else ""
    if state.json:
        emit_json({"ok": True, "tenant": tenant, "api_key": key})
    else:
        out.print(proc.stdout.rstrip(), markup=False)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("\ninterrupted")
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
