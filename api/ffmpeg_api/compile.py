"""Both REST surfaces compiled to the one FFmpegJob spec (pure functions, no I/O).

`vgf_spec` ("Very Good FFmpeg", routers/vgf.py) and `ffmpeg_api_spec` ("FFmpeg API",
routers/ffmpeg_api.py) are the only places a spec is built from a request; what both fill the same
way (tenant, pool, webhook, TTL, `parallel`) comes in one `Submission`.

"FFmpeg API" task rules (seed 001): inputs are `dir_id/file_name` or HTTPS URLs, all stored
inputs in one directory, outputs in `output_dir_id`, else the inputs' directory, else a new
temporary one; an output may not take an input's name in the same directory.
"Very Good FFmpeg" (seed 000): named URL inputs, free-form commands with `{{name}}`/`<<name>>`."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from ffmpegjob_model.gpu import Fallback
from ffmpegjob_model.model import (
    NAME_PATTERN,
    FFmpegJobSpec,
    InputFile,
    OutputFile,
    OutputLocation,
    Parallel,
    Webhook,
)
from ffmpegjob_model.outputs import valid_output_name
from ffmpegjob_model.queueing import Priority
from ffmpegjob_model.storage_layout import split_storage_path, valid_dir_id, valid_file_name

from .errors import ApiError
from .schemas import ParallelRequest, Task, VgfJobRequest

_NAME = re.compile(NAME_PATTERN)
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def task_error(message: str) -> ApiError:
    return ApiError(400, f"Invalid task format: {message}")


@dataclass
class PlannedInput:
    index: int
    options: list[str] | None
    dir_id: str | None = None  # stored input: where it is
    file_name: str | None = None
    url: str | None = None  # URL input: imported to `import_dir`/`file_name` before the job runs

    @property
    def storage_path(self) -> str:
        return f"{self.dir_id}/{self.file_name}"


@dataclass
class TaskPlan:
    inputs: list[PlannedInput]
    input_dir: str | None  # the one directory of the stored inputs
    output_dir: str | None  # None: create a temporary directory
    output_names: list[str] = field(default_factory=list)

    def import_dir(self) -> str | None:
        """Where URL inputs go: beside the stored inputs, so that all inputs share one directory."""
        return self.input_dir or self.output_dir


def name_from_url(url: str, index: int) -> str:
    """A storage file name for an imported URL: the URL's last path segment, made safe."""
    base = posixpath.basename(unquote(urlsplit(url).path))
    base = _UNSAFE_CHARS.sub("_", base).lstrip(".-") or f"input{index}"
    return base[:200]


def plan_task(task: Task) -> TaskPlan:
    inputs: list[PlannedInput] = []
    dirs: list[str] = []
    for i, inp in enumerate(task.inputs):
        path = inp.file_path.strip()
        if "://" in path:
            if not path.lower().startswith(("https://", "http://")):
                raise task_error(f"inputs[{i}].file_path {path!r}: only HTTPS URLs are accepted")
            inputs.append(PlannedInput(i, inp.options, url=path))
            continue
        parts = split_storage_path(path)
        if parts is None:
            raise task_error(
                f"inputs[{i}].file_path {path!r} must be 'dir_id/filename' (dir_id: 1-64 of A-Z a-z 0-9 _ -) "
                "or an HTTPS URL"
            )
        inputs.append(PlannedInput(i, inp.options, dir_id=parts[0], file_name=parts[1]))
        if parts[0] not in dirs:
            dirs.append(parts[0])
    if len(dirs) > 1:
        raise task_error(f"all input files must be in the same directory (got {', '.join(dirs)})")
    input_dir = dirs[0] if dirs else None
    if task.output_dir_id is not None and not valid_dir_id(task.output_dir_id):
        raise task_error(f"output_dir_id {task.output_dir_id!r} must be 1-64 characters of A-Z a-z 0-9 _ -")
    output_dir = task.output_dir_id or input_dir
    names: list[str] = []
    for j, out in enumerate(task.outputs):
        if structured_output(out.file) is None:
            raise task_error(
                f"outputs[{j}].file {out.file!r} must be a file name of letters, digits, '_', '.', '-' "
                "(at most 255 characters), a pattern with a counter (seg_%05d.ts), or a file inside a folder "
                "whose every file is an output (hls/index.m3u8)"
            )
        if out.file in names:
            raise task_error(f"output file {out.file!r} is listed twice")
        names.append(out.file)
    plan = TaskPlan(inputs, input_dir, output_dir, names)
    # URL inputs get names now (before any import) so that collisions are refused up front.
    taken = {p.file_name for p in inputs if p.file_name} | set(names)
    for p in inputs:
        if p.url is not None:
            name = name_from_url(p.url, p.index)
            stem, ext = posixpath.splitext(name)
            k = 1
            while name in taken:
                name, k = f"{stem}_{k}{ext}", k + 1
            p.file_name = name
            taken.add(name)
    if output_dir is not None and output_dir == input_dir:
        stored = {p.file_name for p in inputs if p.url is None}
        for n in names:
            if n in stored:
                raise task_error(f"output file {n!r} conflicts with an input file in directory {output_dir}")
    return plan


_ENTRY = re.compile(r"[A-Za-z0-9_%][A-Za-z0-9_.%-]{0,254}")


def structured_output(file: str) -> OutputFile | None:
    """An "FFmpeg API" `outputs[].file` as the declared output (options and maps left out):
    `out.mp4`, a pattern `thumb_%03d.jpg`, or `hls/index.m3u8` - the directory output `hls/`
    whose FFmpeg output file is `index.m3u8` (ffmpegjob_model.outputs); None when invalid."""
    folder, sep, entry = file.partition("/")
    if sep:
        ok = valid_output_name(folder + "/") and bool(_ENTRY.fullmatch(entry))
        return OutputFile(name=folder + "/", entry=entry) if ok else None
    return OutputFile(name=file) if valid_output_name(file) and valid_file_name(file) else None


def input_placeholder(index: int) -> str:
    return f"in{index}"


def check_vgf_names(input_files: dict[str, str], output_files: list[str]) -> None:
    for name in input_files:
        if not _NAME.fullmatch(name):
            raise ApiError(400, f"input_files: name {name!r} must be letters, digits, '_', '.', '-'")
    seen: set[str] = set()
    for name in output_files:
        if not valid_output_name(name):
            raise ApiError(400, f"output_files: {name!r} must be a file name of letters, digits, '_', '.', '-', "
                                "a pattern with a counter (seg_%05d.ts) or a folder ending in '/' (hls/)")
        if name in seen or name.rstrip("/") in input_files:
            raise ApiError(400, f"output_files: {name!r} is used twice (input and output names must differ)")
        seen.add(name)


def parallel_spec(req: ParallelRequest | None) -> Parallel | None:
    """The `parallel` extension of both surfaces -> `spec.parallel`."""
    if req is None:
        return None
    return Parallel(chunks=req.chunks, chunk_seconds=req.chunk_seconds, mode=req.mode)


# "Very Good FFmpeg" commands may name files as the service's workers lay them out:
# `inputs/<input_files key>` and `outputs/<output_files entry>`. Each becomes the placeholder of that
# name; a path that is part of a longer one (`/inputs/x`, `a/inputs/x`, `inputs/x/y`) is left alone,
# so the argument-safety rules still refuse it.
_VGF_PATH = re.compile(r"(?<![A-Za-z0-9_./{<-])(inputs|outputs)/([A-Za-z0-9_%][A-Za-z0-9_.%-]*)(?![A-Za-z0-9_./-])")
# `outputs/<folder>/...` where `<folder>/` is a directory output: the folder's placeholder.
_VGF_FOLDER = re.compile(r"(?<![A-Za-z0-9_./{<-])outputs/([A-Za-z0-9_][A-Za-z0-9_.-]*)/(?=[A-Za-z0-9_%])")


def vgf_commands(commands: list[str], input_keys: list[str], output_names: list[str]) -> list[str]:
    """`inputs/<key>` and `outputs/<name>` in commands as `{{key}}` / `{{name}}`."""
    known = {"inputs": set(input_keys), "outputs": set(output_names)}
    field_of = {"inputs": "input_files", "outputs": "output_files"}

    def translated(step: int, command: str) -> str:
        def sub(m: re.Match[str]) -> str:
            kind, name = m.group(1), m.group(2)
            if name not in known[kind]:
                listed = ", ".join(sorted(known[kind])) or "none"
                raise ApiError(400, f"ffmpeg_commands[{step}]: {kind}/{name} names no entry of "
                                    f"{field_of[kind]} (declared: {listed})")
            return "{{" + name + "}}"

        def folder(m: re.Match[str]) -> str:
            return "{{" + m.group(1) + "}}/" if m.group(1) + "/" in known["outputs"] else m.group(0)

        return _VGF_PATH.sub(sub, _VGF_FOLDER.sub(folder, command))

    return [translated(i, c) for i, c in enumerate(commands)]


# "FFmpeg API" options may refer to an input file by name: `subtitles=@{subs.srt}`.
_FILE_REF = re.compile(r"@\{([^{}]*)\}")


def resolve_file_refs(text: str, placeholders: dict[str, str], where: str) -> str:
    """`@{file.ext}` as the placeholder of the task's input of that file name."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1).strip()
        if name not in placeholders:
            listed = ", ".join(sorted(placeholders)) or "none"
            raise task_error(f"{where}: @{{{name}}} names no input file (inputs: {listed})")
        return "{{" + placeholders[name] + "}}"

    return _FILE_REF.sub(sub, text)


# ------------------------------------------------------------------------------ the one spec
@dataclass(frozen=True)
class Submission:
    """What both surfaces fill in the same way: whose job, which pool (already checked), the
    signed webhook, how long the finished FFmpegJob is kept."""

    tenant: str
    machine: str
    webhook: Webhook | None
    ttl_seconds_after_finished: int | None
    priority: Priority | None = None  # Kueue's WorkloadPriorityClass (docs/queueing.md)
    fallback: Fallback | None = None  # run on the CPU what the pool's GPUs cannot (docs/gpu.md)


def _spec(sub: Submission, *, inputs: list[InputFile], outputs: list[OutputFile], output_dir: str,
          timeout_seconds: int, parallel: ParallelRequest | None, commands: list[str] | None = None,
          filter_complex: str | None = None) -> FFmpegJobSpec:
    return FFmpegJobSpec(
        tenant=sub.tenant,
        inputs=inputs,
        outputs=outputs,
        commands=commands,
        filter_complex=filter_complex,
        machine=sub.machine,
        output=OutputLocation(dir_id=output_dir),
        webhook=sub.webhook,
        timeout_seconds=timeout_seconds,
        ttl_seconds_after_finished=sub.ttl_seconds_after_finished,
        parallel=parallel_spec(parallel),
        priority=sub.priority,
        fallback=sub.fallback,
    )


def vgf_spec(req: VgfJobRequest, sub: Submission, sources: dict[str, str], output_dir: str,
             timeout_seconds: int) -> FFmpegJobSpec:
    """A "Very Good FFmpeg" request as an FFmpegJob spec. `sources`: input key -> the source to
    record (a storage path when the URL pointed into our bucket, else the URL)."""
    check_vgf_names(req.input_files, req.output_files)
    commands = vgf_commands(req.ffmpeg_commands, list(req.input_files), req.output_files)
    return _spec(sub, inputs=[InputFile(name=n, source=sources[n]) for n in req.input_files],
                 outputs=[OutputFile(name=n) for n in req.output_files], commands=commands,
                 output_dir=output_dir, timeout_seconds=timeout_seconds, parallel=req.parallel)


def ffmpeg_api_spec(task: Task, plan: TaskPlan, sub: Submission, output_dir: str,
                    timeout_seconds: int) -> FFmpegJobSpec:
    """An "FFmpeg API" task (planned by `plan_task`, URL inputs given their `dir_id`) as an
    FFmpegJob spec: input `k` is the placeholder `in<k>`; `@{file}` references are resolved."""
    refs = {p.file_name or "": input_placeholder(p.index) for p in plan.inputs}
    refs.update({p.storage_path: input_placeholder(p.index) for p in plan.inputs if p.url is None})

    def resolved(opts: list[str] | None, where: str) -> list[str] | None:
        return None if opts is None else [resolve_file_refs(o, refs, where) for o in opts]

    return _spec(
        sub,
        inputs=[InputFile(name=input_placeholder(p.index), source=p.storage_path,
                          options=resolved(p.options, f"inputs[{p.index}].options")) for p in plan.inputs],
        outputs=[OutputFile(name=d.name, entry=d.entry, options=resolved(o.options, f"outputs[{j}].options"),
                            maps=o.maps)
                 for j, o in enumerate(task.outputs) if (d := structured_output(o.file)) is not None],
        filter_complex=resolve_file_refs(task.filter_complex, refs, "filter_complex") if task.filter_complex else None,
        output_dir=output_dir, timeout_seconds=timeout_seconds, parallel=task.parallel,
    )
