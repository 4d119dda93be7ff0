"""GPU capabilities of node pools, and the CPU fallback: one rule for the api, operator and worker.

A pool declares what its GPUs can do (`nvenc`, `nvdec`, `cudaFilters`, `maxEncodeSessions` on
`pools.NodePool`). `gpu_needs` finds what a job's commands ask of the hardware (NVENC encoders,
NVDEC/CUVID decoding, CUDA/NPP filters); `missing_capabilities` checks that against the pool.
A job that asks for something its pool lacks is refused, unless it (or its pool) says
`fallback: cpu`: then `cpu_fallback_spec` rewrites its commands to CPU equivalents
(`h264_nvenc` -> `libx264` with mapped presets and rate control, `scale_cuda` -> `scale`, no
`-hwaccel cuda`, ...) and the job runs on the fallback pool. The rewrite is pure: the operator
decides and records it (condition `FellBack`, `status.fallback`), the worker applies the same
function to the spec it reads (env `FFMPEG_FALLBACK=cpu`), so the two never disagree.

NVIDIA's engines per GPU family: docs/gpu.md (from NVIDIA's Video Encode and Decode GPU Support
Matrix).
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from .filtergraph import filter_name, filter_parts

if TYPE_CHECKING:  # model.py imports this module (Fallback): commands.py, which needs model, is imported late
    from .model import FFmpegJobSpec
    from .plain import SpecView
    from .pools import NodePool

SpecT = TypeVar("SpecT", "FFmpegJobSpec", "SpecView")

# What `spec.fallback` (and a pool's default `fallback`) may say: `cpu` rewrites a job its pool
# cannot run for the CPU, `none` refuses it (overrides a pool default of `cpu`).
Fallback = Literal["cpu", "none"]
FALLBACK_CPU = "cpu"
# Set on the worker pods of a job that fell back: the worker rewrites the spec it reads.
FALLBACK_ENV = "FFMPEG_FALLBACK"
# The condition the operator sets on an FFmpegJob that fell back.
FELL_BACK_CONDITION = "FellBack"
# The extended resource a pod requests per concurrent NVENC session (docs/gpu.md).
NVENC_SESSION_RESOURCE = "kubeffmpeg.io/nvenc-session"

# Codec names as pools declare them.
NVENC_CODECS = ("h264", "hevc", "av1")
NVDEC_CODECS = ("h264", "hevc", "av1", "vp9", "vp8", "mpeg1", "mpeg2", "mpeg4", "vc1", "mjpeg")
# The CUDA/NPP filters FFmpeg has; a pool lists the ones its image's FFmpeg was built with.
CUDA_FILTERS = ("scale_cuda", "scale_npp", "hwupload_cuda", "yadif_cuda", "bwdif_cuda", "overlay_cuda",
                "thumbnail_cuda", "chromakey_cuda", "bilateral_cuda", "colorspace_cuda", "transpose_npp",
                "sharpen_npp")

# Encoder -> the codec the pool must have NVENC for.
NVENC_ENCODERS = {"h264_nvenc": "h264", "nvenc": "h264", "nvenc_h264": "h264", "hevc_nvenc": "hevc",
                  "nvenc_hevc": "hevc", "av1_nvenc": "av1"}
# NVENC encoder -> its CPU equivalent in Debian's FFmpeg (libsvtav1: Debian 12's FFmpeg 5.1 has
# it, and it is much faster than libaom-av1).
CPU_ENCODERS = {"h264": "libx264", "hevc": "libx265", "av1": "libsvtav1"}
_CUVID = re.compile(r"^([a-z0-9]+)_cuvid$")
_CUVID_CODEC = {"mpeg1video": "mpeg1", "mpeg2video": "mpeg2"}
HWACCELS = frozenset({"cuda", "nvdec", "cuvid"})
_CODEC_OPTIONS = frozenset({"c", "codec", "vcodec"})
_FILTER_OPTIONS = frozenset({"vf", "filter", "filter_complex", "lavfi"})


class FallbackImpossible(ValueError):
    """A GPU filter or option that has no CPU equivalent the rewrite knows."""


@dataclass(frozen=True, order=True)
class Need:
    """One thing a job asks of the GPU: `kind` is `nvenc`, `nvdec` or `cudaFilter`; `name` the
    codec (`h264`, ...; `any` for `-hwaccel cuda`, whose input codec is only known at run time)
    or the filter; `via` what in the command asks for it."""

    kind: str
    name: str
    via: str

    def describe(self) -> str:
        what = {"nvenc": "NVENC encoding of", "nvdec": "NVDEC decoding of", "cudaFilter": "the CUDA filter"}[self.kind]
        name = "some codec" if self.name == "any" else self.name
        return f"{what} {name} ({self.via})"


# ------------------------------------------------------------------------------------ parsing
def _option(arg: str) -> tuple[str, str]:
    """`-c:v:0` -> (`c`, `:v:0`)."""
    name, sep, spec = arg.lstrip("-").partition(":")
    return name, sep + spec


def _takes_value(name: str) -> bool:
    from .safety import FLAGS  # the safety rules' list of value-less options

    return name not in FLAGS


@dataclass
class _Group:
    """One input (`[options] -i X`) or output (`[options] file`) of an argument list; `end` is
    the file (for an input, `["-i", X]`), empty for trailing options."""

    options: list[list[str]]  # each [option] or [option, value]
    end: list[str]
    is_input: bool


def _groups(args: list[str]) -> list[_Group]:
    groups: list[_Group] = []
    opts: list[list[str]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-") or len(arg) == 1:
            groups.append(_Group(opts, [arg], False))
            opts, i = [], i + 1
            continue
        name, _ = _option(arg)
        if name == "i" and i + 1 < len(args):
            groups.append(_Group(opts, [arg, args[i + 1]], True))
            opts, i = [], i + 2
            continue
        if _takes_value(name) and i + 1 < len(args):
            opts.append([arg, args[i + 1]])
            i += 2
        else:
            opts.append([arg])
            i += 1
    if opts:
        groups.append(_Group(opts, [], False))
    return groups


def _flatten(groups: list[_Group]) -> list[str]:
    out: list[str] = []
    for g in groups:
        for o in g.options:
            out += o
        out += g.end
    return out


# ---------------------------------------------------------------------------------- detection
def needs_of_args(args: list[str], step: int = 1) -> list[Need]:
    """What one command's argument list asks of the GPU."""
    needs: list[Need] = []
    where = f"command {step}"
    for g in _groups(args):
        for opt in g.options:
            name, _ = _option(opt[0])
            value = opt[1] if len(opt) > 1 else ""
            if name in _CODEC_OPTIONS:
                codec = value.strip().lower()
                if codec in NVENC_ENCODERS:
                    needs.append(Need("nvenc", NVENC_ENCODERS[codec], f"{codec} in {where}"))
                m = _CUVID.match(codec)
                if m:
                    base = _CUVID_CODEC.get(m.group(1), m.group(1))
                    needs.append(Need("nvdec", base, f"{codec} in {where}"))
            elif name == "hwaccel" and value.strip().lower() in HWACCELS:
                needs.append(Need("nvdec", "any", f"-hwaccel {value.strip()} in {where}"))
            elif name in _FILTER_OPTIONS:
                needs += needs_of_graph(value, where)
    return needs


def needs_of_graph(graph: str, where: str) -> list[Need]:
    needs = []
    for _, name, _, _ in filter_parts(graph):
        f = filter_name(name)
        if f.endswith(("_cuda", "_npp")):
            needs.append(Need("cudaFilter", f, f"{f} in {where}"))
    return needs


def gpu_needs(spec: FFmpegJobSpec) -> list[Need]:
    """Everything a job's commands ask of the GPU, in command order (duplicates removed)."""
    from .commands import effective_commands

    seen: dict[tuple[str, str], Need] = {}
    for step, args in enumerate(effective_commands(spec), start=1):
        for n in needs_of_args(args, step):
            seen.setdefault((n.kind, n.name), n)
    return list(seen.values())


def _has(pool: NodePool, need: Need) -> bool:
    if need.kind == "nvenc":
        return need.name in pool.nvenc
    if need.kind == "nvdec":
        if isinstance(pool.nvdec, bool):
            return pool.nvdec
        return bool(pool.nvdec) if need.name == "any" else need.name in pool.nvdec
    return need.name in pool.cuda_filters


def missing_capabilities(spec: FFmpegJobSpec, pool: NodePool) -> list[Need]:
    """What the job asks for that the pool does not declare."""
    return [n for n in gpu_needs(spec) if not _has(pool, n)]


def offered(pool: NodePool) -> str:
    if isinstance(pool.nvdec, bool):
        nvdec = "all codecs" if pool.nvdec else "none"
    else:
        nvdec = ", ".join(pool.nvdec) or "none"
    return (f"nvenc: {', '.join(pool.nvenc) or 'none'}; nvdec: {nvdec}; "
            f"cudaFilters: {', '.join(pool.cuda_filters) or 'none'}")


def refusal(missing: Iterable[Need], pool_name: str, pool: NodePool) -> str:
    """The one message both REST surfaces answer (400) and the operator writes (ValidationFailed)."""
    asked = "; ".join(n.describe() for n in missing)
    return (f"machine {pool_name!r} lacks the GPU capability this job needs: {asked}. Pool {pool_name!r} "
            f"offers {offered(pool)}. Use another machine, or set fallback: cpu to run the job on the CPU "
            f"with equivalent software encoders and filters")


def effective_fallback(spec: FFmpegJobSpec, pool: NodePool) -> bool:
    """Whether a job its pool cannot run is rewritten for the CPU (the job's word wins)."""
    choice = spec.fallback or pool.fallback
    return choice == FALLBACK_CPU


def encode_sessions(spec: FFmpegJobSpec) -> int:
    """The most NVENC encodes one of the job's commands runs at once (one per NVENC output)."""
    from .commands import effective_commands

    best = 0
    for args in effective_commands(spec):
        n = 0
        for g in _groups(args):
            if not g.is_input and any(_option(o[0])[0] in _CODEC_OPTIONS and len(o) > 1
                                      and o[1].strip().lower() in NVENC_ENCODERS for o in g.options):
                n += 1
        best = max(best, n)
    return best


# ------------------------------------------------------------------------------------ rewrite
# NVENC presets p1 (fastest) .. p7 (best) and the legacy names, as x264/x265 presets and as
# SVT-AV1 preset numbers (0 best .. 13 fastest).
X264_PRESETS = {"p1": "ultrafast", "p2": "superfast", "p3": "veryfast", "p4": "faster", "p5": "fast",
                "p6": "medium", "p7": "slow", "default": "medium", "slow": "slow", "medium": "medium",
                "fast": "fast", "hp": "veryfast", "hq": "medium", "bd": "slow", "ll": "veryfast",
                "llhq": "faster", "llhp": "ultrafast", "lossless": "medium", "losslesshp": "ultrafast"}
SVTAV1_PRESETS = {"p1": "12", "p2": "11", "p3": "10", "p4": "8", "p5": "7", "p6": "6", "p7": "4",
                  "default": "8", "slow": "5", "medium": "8", "fast": "10"}
# NVENC options the CPU encoders lack (dropped with their values).
_NVENC_ONLY = frozenset({
    "rc", "rc-lookahead", "spatial-aq", "spatial_aq", "temporal-aq", "temporal_aq", "aq-strength", "b_ref_mode",
    "multipass", "zerolatency", "no-scenecut", "gpu", "surfaces", "delay", "bluray-compat", "nonref_p",
    "strict_gop", "weighted_pred", "cbr", "2pass", "tier", "highbitdepth", "tf_level", "lookahead_level",
    "unidir_b", "split_encode_mode", "extra_sei", "udu_sei", "intra-refresh", "single-slice-intra-refresh",
    "constrained-encoding", "ldkfs", "init_qpP", "init_qpB", "init_qpI", "qp_cb_offset", "qp_cr_offset",
    "dpb_size", "a53cc", "s12m_tc", "aud", "rgb_mode", "coder", "b_adapt", "cq", "tune", "level", "profile",
    "qmin", "qmax",
})
# Options only meaningful with CUDA decoding or devices (dropped wherever they are).
_GPU_ONLY = frozenset({"hwaccel", "hwaccel_output_format", "hwaccel_device", "init_hw_device", "filter_hw_device",
                       "extra_hw_frames"})
_X264_PROFILES = {"baseline": "baseline", "main": "main", "high": "high", "high444p": "high444"}
_LEVEL = re.compile(r"\d(\.\d)?")
_X265_PROFILES = {"main": "main", "main10": "main10"}


def _map_filter(lead: str, name: str, fargs: str, tail: str) -> str:
    f = filter_name(name)
    if f in ("hwupload_cuda", "hwupload", "hwdownload"):
        # Gone; a filter that carries link labels becomes `null` so the graph stays connected.
        labelled = lead.strip() or re.search(r"\[", tail)
        return f"{lead}null{tail}" if labelled else ""
    if f in ("scale_cuda", "scale_npp"):
        keep, fmt = [], None
        pieces = re.split(r"(?<!\\):", fargs[1:]) if fargs else []
        for idx, piece in enumerate(pieces):
            key, eq, value = piece.partition("=")
            if not eq:
                if idx < 2:
                    keep.append(piece)
                continue
            if key in ("w", "h", "width", "height", "force_original_aspect_ratio", "force_divisible_by", "eval"):
                keep.append(piece)
            elif key == "format":
                fmt = value
        out = "scale" + ("=" + ":".join(keep) if keep else "")
        if fmt:
            out += f",format={fmt}"
        return f"{lead}{out}{tail}"
    simple = {"yadif_cuda": "yadif", "bwdif_cuda": "bwdif", "overlay_cuda": "overlay",
              "thumbnail_cuda": "thumbnail", "chromakey_cuda": "chromakey", "transpose_npp": "transpose"}
    if f in simple:
        return f"{lead}{simple[f]}{fargs}{tail}"
    if f.endswith(("_cuda", "_npp")):
        raise FallbackImpossible(f"the filter {f} has no CPU equivalent the fallback knows")
    return f"{lead}{name}{fargs}{tail}"


def rewrite_graph(graph: str) -> str:
    """A filter graph with its CUDA/NPP filters as their CPU equivalents and the hardware
    upload/download filters gone."""
    out = "".join(_map_filter(*p) for p in filter_parts(graph))
    out = re.sub(r"^\s*,+|,+\s*$", "", out.strip())
    return out or "null"


def _rewrite_output(options: list[list[str]]) -> list[list[str]]:
    """One output's options, its NVENC encoder as the CPU one and the NVENC options mapped."""
    target: str | None = None
    for o in options:
        if _option(o[0])[0] in _CODEC_OPTIONS and len(o) > 1 and o[1].strip().lower() in NVENC_ENCODERS:
            target = CPU_ENCODERS[NVENC_ENCODERS[o[1].strip().lower()]]
    has_pix_fmt = any(_option(o[0])[0] == "pix_fmt" for o in options)
    rc = next((o[1].strip().lower() for o in options if _option(o[0])[0] == "rc" and len(o) > 1), "")
    has_crf = any(_option(o[0])[0] == "crf" for o in options)
    out: list[list[str]] = []
    for o in options:
        name, spec = _option(o[0])
        value = o[1] if len(o) > 1 else None
        if name in _GPU_ONLY:
            continue
        if name in _FILTER_OPTIONS and value is not None:
            out.append([o[0], rewrite_graph(value)])
            continue
        if name in ("pix_fmt",) and value is not None and value.strip().lower() == "cuda":
            continue
        if target is None:
            out.append(o)
            continue
        if name in _CODEC_OPTIONS and value is not None and value.strip().lower() in NVENC_ENCODERS:
            out.append([o[0], target])
        elif name == "preset" and value is not None:
            table = SVTAV1_PRESETS if target == "libsvtav1" else X264_PRESETS
            mapped = table.get(value.strip().lower())
            if mapped is not None:
                out.append([o[0], mapped])
        elif name == "cq" and value is not None and not has_crf:
            # NVENC's constant quality (0-51) as a CRF: the same scale for x264/x265, 0-63 for SVT-AV1.
            try:
                q = float(value)
            except ValueError:
                continue
            if q <= 0:
                continue  # cq 0: NVENC's "automatic"
            crf = round(q * 63 / 51) if target == "libsvtav1" else round(q)
            out.append(["-crf" + spec, str(crf)])
        elif name == "qp" and value is not None and rc not in ("", "constqp") and not has_crf:
            out.append(["-crf" + spec, value])  # qp without constqp: treat as a quality target
        elif name == "profile" and value is not None:
            table = {"libx264": _X264_PROFILES, "libx265": _X265_PROFILES}.get(target, {})
            mapped = table.get(value.strip().lower())
            if mapped is not None:
                out.append([o[0], mapped])
            if mapped == "main10" and not has_pix_fmt:
                out.append(["-pix_fmt", "yuv420p10le"])  # NVENC converts 8-bit input itself; x265 does not
        elif name == "level" and value is not None and target == "libx264" and _LEVEL.fullmatch(value.strip()):
            out.append(o)
        elif name == "tune" and value is not None and value.strip().lower() in ("ll", "ull") \
                and target != "libsvtav1":
            out.append([o[0], "zerolatency"])
        elif name in _NVENC_ONLY:
            continue
        else:
            out.append(o)
    return out


def rewrite_args(args: list[str]) -> list[str]:
    """One command's argument list for the CPU: NVENC encoders as libx264/libx265/libsvtav1 with
    their presets and rate control mapped, CUDA filters as CPU filters, no CUDA decoding."""
    groups = _groups(args)
    for g in groups:
        if g.is_input:
            kept = []
            for o in g.options:
                name, _ = _option(o[0])
                if name in _GPU_ONLY:
                    continue
                if name in _CODEC_OPTIONS and len(o) > 1 and _CUVID.match(o[1].strip().lower()):
                    continue  # FFmpeg's own decoder for the codec
                if name in _FILTER_OPTIONS and len(o) > 1:
                    o = [o[0], rewrite_graph(o[1])]
                kept.append(o)
            g.options = kept
        else:
            g.options = _rewrite_output(g.options)
    return _flatten(groups)


def rewrite_command(command: str) -> str:
    """A free-form command string for the CPU (quoted back with POSIX rules)."""
    from .commands import tokenize

    return shlex.join(rewrite_args(tokenize(command)))


def _rewrite_options(options: list[str] | None, is_input: bool) -> list[str] | None:
    if options is None:
        return None
    from .commands import _option_tokens

    toks = _option_tokens(options)
    if is_input:
        return rewrite_args([*toks, "-i", "x"])[:-2]
    return rewrite_args([*toks, "x"])[:-1]


def _changed(obj: Any, **changes: Any) -> Any:
    """A copy with `changes`, of a model or of its plain view (the worker reads views, plain.py)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **changes)
    return obj.model_copy(update=changes)


def cpu_fallback_spec(spec: SpecT) -> SpecT:
    """The spec (the model, or the worker's plain view) as it runs on the CPU. Free-form commands
    are rewritten one by one; the structured form's options and `filterComplex` likewise.
    Raises FallbackImpossible."""
    if spec.commands:
        return cast(SpecT, _changed(spec, commands=[rewrite_command(c) for c in spec.commands]))
    inputs = [_changed(i, options=_rewrite_options(i.options, True)) for i in spec.inputs]
    outputs = [_changed(o, options=_rewrite_options(o.options, False)) for o in spec.outputs]
    graph = rewrite_graph(spec.filter_complex) if spec.filter_complex else spec.filter_complex
    return cast(SpecT, _changed(spec, inputs=inputs, outputs=outputs, filter_complex=graph))


class GpuRefused(ValueError):
    """The job asks for GPU capabilities its pool lacks and may not (or cannot) fall back."""


@dataclass(frozen=True)
class Placement:
    """Where and how a job runs: its pool (the fallback pool when it fell back), the spec as the
    worker will run it, and what the asked-for pool lacked (empty: no fallback)."""

    machine: str
    pool: NodePool
    spec: FFmpegJobSpec
    missing: tuple[Need, ...] = ()
    from_machine: str | None = None

    @property
    def fell_back(self) -> bool:
        return bool(self.missing)

    def worker_pool(self) -> NodePool:
        """The pool as the job's pods get it: `FFMPEG_FALLBACK=cpu` in their environment when the
        job fell back; one `kubeffmpeg.io/nvenc-session` per concurrent NVENC encode when the
        pool counts sessions (`maxEncodeSessions`)."""
        update: dict[str, object] = {}
        if self.fell_back:
            update["env"] = {**self.pool.env, FALLBACK_ENV: FALLBACK_CPU}
        sessions = encode_sessions(self.spec) if self.pool.max_encode_sessions else 0
        if sessions:
            resources = {k: dict(v) if isinstance(v, dict) else v for k, v in self.pool.resources.items()}
            limits = dict(resources.get("limits") or {})
            limits[NVENC_SESSION_RESOURCE] = str(sessions)
            resources["limits"] = limits
            if isinstance(resources.get("requests"), dict):  # extended resources: requests == limits
                resources["requests"][NVENC_SESSION_RESOURCE] = str(sessions)
            update["resources"] = resources
        return self.pool.model_copy(update=update) if update else self.pool


def place(spec: FFmpegJobSpec, machine: str, pools: dict[str, NodePool]) -> Placement:
    """Check the job's GPU needs against its pool `machine` (a known pool): run there, fall back
    to the CPU (`fallback: cpu`), or GpuRefused with the message both REST surfaces answer and the
    operator writes."""
    pool = pools[machine]
    missing = missing_capabilities(spec, pool)
    if not missing:
        if pool.max_encode_sessions and encode_sessions(spec) > pool.max_encode_sessions:
            raise GpuRefused(f"one command of this job runs {encode_sessions(spec)} NVENC encodes at once; machine "
                             f"{machine!r} allows {pool.max_encode_sessions} per node (maxEncodeSessions)")
        return Placement(machine, pool, spec)
    if not effective_fallback(spec, pool):
        raise GpuRefused(refusal(missing, machine, pool))
    target = pool.fallback_pool
    if target not in pools or target == machine:
        raise GpuRefused(refusal(missing, machine, pool)
                         + f" (fallback pool {target!r} is not a configured pool other than {machine!r})")
    try:
        cpu = cpu_fallback_spec(spec)
    except FallbackImpossible as e:
        raise GpuRefused(f"{refusal(missing, machine, pool)}; fallback: cpu is not possible: {e}") from None
    still = missing_capabilities(cpu, pools[target])
    if still:  # cannot happen for the filters and codecs the rewrite knows; kept as a guard
        raise GpuRefused(refusal(still, target, pools[target]))
    return Placement(target, pools[target], cpu, tuple(missing), from_machine=machine)


def fallback_commands(spec: FFmpegJobSpec) -> list[str]:
    """The commands of a (rewritten) spec as text, for status.fallback and the REST payloads."""
    from .commands import effective_commands

    return list(spec.commands) if spec.commands else [shlex.join(a) for a in effective_commands(spec)]
