"""GPU capabilities of pools and the CPU fallback (ffmpegjob_model.gpu): what a job asks of the
GPU, the refusal naming what the pool lacks, and the rewrite for the CPU, whose commands pass
the safety rules and run on this machine's (Debian's) real FFmpeg."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ffmpegjob_model.commands import effective_commands, render
from ffmpegjob_model.gpu import (
    cpu_fallback_spec,
    effective_fallback,
    encode_sessions,
    gpu_needs,
    missing_capabilities,
    refusal,
    rewrite_args,
    rewrite_graph,
)
from ffmpegjob_model.model import FFmpegJobSpec
from ffmpegjob_model.pools import NodePool, parse_pools
from ffmpegjob_model.safety import validate_spec
from ffmpegjob_model.settings import S3Settings
from ffmpegjob_model.urls import URLRules
from pydantic import ValidationError

H100 = NodePool(nvdec=True, cuda_filters=["scale_cuda", "scale_npp", "hwupload_cuda"])
L4 = NodePool(nvenc=["h264", "hevc", "av1"], nvdec=True, cuda_filters=["scale_cuda", "hwupload_cuda"])
CPU = NodePool()


def spec(*commands: str, **extra: Any) -> FFmpegJobSpec:
    return FFmpegJobSpec.model_validate({
        "inputs": [{"name": "in", "source": "d/in.mp4"}], "outputs": [{"name": "out.mp4"}, {"name": "b.mp4"}],
        "output": {"dirId": "d"}, "commands": list(commands) or None, **extra})


def kinds(s: FFmpegJobSpec, pool: NodePool | None = None) -> list[tuple[str, str]]:
    needs = gpu_needs(s) if pool is None else missing_capabilities(s, pool)
    return [(n.kind, n.name) for n in needs]


# ------------------------------------------------------------------------------- detection
def test_cpu_commands_need_nothing() -> None:
    assert kinds(spec("-i {{in}} -c:v libx264 -preset fast -vf scale=640:-2 {{out.mp4}}")) == []


@pytest.mark.parametrize(("command", "need"), [
    ("-i {{in}} -c:v h264_nvenc {{out.mp4}}", ("nvenc", "h264")),
    ("-i {{in}} -vcodec hevc_nvenc {{out.mp4}}", ("nvenc", "hevc")),
    ("-i {{in}} -codec:v:0 av1_nvenc {{out.mp4}}", ("nvenc", "av1")),
    ("-i {{in}} -c:v nvenc_h264 {{out.mp4}}", ("nvenc", "h264")),
    ("-hwaccel cuda -i {{in}} -c:v libx264 {{out.mp4}}", ("nvdec", "any")),
    ("-hwaccel nvdec -i {{in}} -c:v libx264 {{out.mp4}}", ("nvdec", "any")),
    ("-c:v hevc_cuvid -i {{in}} -c:v libx264 {{out.mp4}}", ("nvdec", "hevc")),
    ("-c:v mpeg2_cuvid -i {{in}} -c:v libx264 {{out.mp4}}", ("nvdec", "mpeg2")),
    ("-i {{in}} -vf scale_cuda=640:360 {{out.mp4}}", ("cudaFilter", "scale_cuda")),
    ("-i {{in}} -filter:v 'hwupload_cuda,scale_npp=640:360' {{out.mp4}}", ("cudaFilter", "hwupload_cuda")),
    ("-i {{in}} -filter_complex '[0:v]yadif_cuda[v]' -map '[v]' {{out.mp4}}", ("cudaFilter", "yadif_cuda")),
])
def test_needs_are_found(command: str, need: tuple[str, str]) -> None:
    assert need in kinds(spec(command))


def test_structured_form_is_checked_too() -> None:
    s = FFmpegJobSpec.model_validate({
        "inputs": [{"name": "in0", "source": "d/in.mp4", "options": ["-hwaccel", "cuda"]}],
        "outputs": [{"name": "out.mp4", "options": ["-c:v", "h264_nvenc", "-preset p5"]}],
        "filterComplex": "[0:v]scale_cuda=640:360[v]", "output": {"dirId": "d"}})
    assert kinds(s) == [("nvdec", "any"), ("cudaFilter", "scale_cuda"), ("nvenc", "h264")]


def test_h100_has_no_nvenc_and_the_refusal_names_it() -> None:
    s = spec("-hwaccel cuda -i {{in}} -vf scale_cuda=1280:720 -c:v h264_nvenc {{out.mp4}}")
    missing = missing_capabilities(s, H100)
    assert kinds(s, H100) == [("nvenc", "h264")]
    msg = refusal(missing, "gpu", H100)
    assert "machine 'gpu'" in msg and "NVENC encoding of h264 (h264_nvenc in command 1)" in msg
    assert "nvenc: none" in msg and "fallback: cpu" in msg
    assert missing_capabilities(s, L4) == []


def test_nvdec_codec_lists_and_the_cpu_pool() -> None:
    pool = NodePool(nvdec=["h264"])
    assert kinds(spec("-c:v hevc_cuvid -i {{in}} {{out.mp4}}"), pool) == [("nvdec", "hevc")]
    assert kinds(spec("-c:v h264_cuvid -i {{in}} {{out.mp4}}"), pool) == []
    assert kinds(spec("-hwaccel cuda -i {{in}} {{out.mp4}}"), pool) == []
    # A pool that declares nothing (the CPU pool) refuses every GPU need.
    both = [("nvdec", "any"), ("nvenc", "av1")]
    assert kinds(spec("-hwaccel cuda -i {{in}} -c:v av1_nvenc {{out.mp4}}"), CPU) == both


def test_pool_capabilities_are_validated() -> None:
    pools = parse_pools("gpu: {nvenc: [h264, hevc], nvdec: true, cudaFilters: [scale_cuda], maxEncodeSessions: 3,"
                        " fallback: cpu}\ncpu: {}")
    assert pools["gpu"].nvenc == ["h264", "hevc"] and pools["gpu"].max_encode_sessions == 3
    assert pools["gpu"].fallback == "cpu" and pools["gpu"].fallback_pool == "cpu"
    with pytest.raises(ValidationError, match="unknown codec"):
        NodePool.model_validate({"nvenc": ["vp9"]})
    with pytest.raises(ValidationError, match="unknown filter"):
        NodePool.model_validate({"cudaFilters": ["scale_vaapi"]})


def test_fallback_job_word_wins_over_pool_default() -> None:
    pool = NodePool(fallback="cpu")
    assert effective_fallback(spec("-i {{in}} {{out.mp4}}"), pool)
    assert not effective_fallback(spec("-i {{in}} {{out.mp4}}", fallback="none"), pool)
    assert effective_fallback(spec("-i {{in}} {{out.mp4}}", fallback="cpu"), CPU)
    assert not effective_fallback(spec("-i {{in}} {{out.mp4}}"), CPU)


def test_encode_sessions_count_nvenc_outputs_of_one_command() -> None:
    assert encode_sessions(spec("-i {{in}} -c:v libx264 {{out.mp4}}")) == 0
    assert encode_sessions(spec("-i {{in}} -c:v h264_nvenc {{out.mp4}} -c:v hevc_nvenc {{b.mp4}}",
                                "-i {{in}} -c:v h264_nvenc {{out.mp4}}")) == 2


# --------------------------------------------------------------------------------- rewrite
@pytest.mark.parametrize(("before", "after"), [
    ("-i x -c:v h264_nvenc -preset p1 -cq 28 y", "-i x -c:v libx264 -preset ultrafast -crf 28 y"),
    ("-i x -c:v h264_nvenc -preset p4 y", "-i x -c:v libx264 -preset faster y"),
    ("-i x -c:v h264_nvenc -preset p7 -tune hq -rc vbr -cq 19 -b:v 0 y",
     "-i x -c:v libx264 -preset slow -crf 19 -b:v 0 y"),
    ("-i x -c:v h264_nvenc -rc constqp -qp 20 y", "-i x -c:v libx264 -qp 20 y"),
    ("-i x -c:v h264_nvenc -rc cbr -b:v 2M -spatial-aq 1 -rc-lookahead 20 y", "-i x -c:v libx264 -b:v 2M y"),
    ("-i x -c:v h264_nvenc -tune ull -profile:v high -level 4.1 y",
     "-i x -c:v libx264 -tune zerolatency -profile:v high -level 4.1 y"),
    ("-i x -c:v hevc_nvenc -preset p6 -cq 25 y", "-i x -c:v libx265 -preset medium -crf 25 y"),
    ("-i x -c:v av1_nvenc -preset p4 -cq 51 y", "-i x -c:v libsvtav1 -preset 8 -crf 63 y"),
    ("-hwaccel cuda -hwaccel_output_format cuda -c:v h264_cuvid -i x -c:v libx264 y", "-i x -c:v libx264 y"),
    ("-i x -c:v h264_nvenc a -c:v libx264 -preset veryslow b",
     "-i x -c:v libx264 a -c:v libx264 -preset veryslow b"),
])
def test_rewrite_args(before: str, after: str) -> None:
    assert rewrite_args(before.split()) == after.split()


@pytest.mark.parametrize(("before", "after"), [
    ("scale_cuda=1280:720", "scale=1280:720"),
    ("scale_cuda=w=1280:h=-2:interp_algo=lanczos:format=yuv420p", "scale=w=1280:h=-2,format=yuv420p"),
    ("hwupload_cuda,scale_npp=640:360,hwdownload,format=nv12", "scale=640:360,format=nv12"),
    ("[0:v]hwupload_cuda[u];[u]scale_cuda=320:240[v]", "[0:v]null[u];[u]scale=320:240[v]"),
    ("yadif_cuda=1,scale_cuda=640:360", "yadif=1,scale=640:360"),
    ("hwupload_cuda", "null"),
    ("scale=640:360,drawtext=text='a\\,b'", "scale=640:360,drawtext=text='a\\,b'"),
])
def test_rewrite_graph(before: str, after: str) -> None:
    assert rewrite_graph(before) == after


def test_unknown_cuda_filter_cannot_fall_back() -> None:
    from ffmpegjob_model.gpu import FallbackImpossible

    with pytest.raises(FallbackImpossible, match="bilateral_cuda"):
        rewrite_graph("bilateral_cuda=sigmaS=1")


def test_rewritten_spec_needs_no_gpu_and_passes_the_safety_rules() -> None:
    s = spec("-hwaccel cuda -hwaccel_output_format cuda -i {{in}} -vf 'scale_cuda=320:240:format=yuv420p' "
             "-c:v h264_nvenc -preset p5 -cq 23 -c:a aac {{out.mp4}}",
             "-i {{out.mp4}} -vf 'hwupload_cuda,scale_npp=160:-2,hwdownload,format=nv12' -c:v hevc_nvenc "
             "-preset p7 -profile:v main10 {{b.mp4}}")
    cpu = cpu_fallback_spec(s)
    assert gpu_needs(cpu) == []
    validate_spec(cpu, url_rules=URLRules(), s3=S3Settings(endpoint_url=None, public_endpoint_url=None))
    assert s.commands is not None and cpu.commands is not None and cpu.commands != s.commands


def _probe(path: Path) -> dict[str, Any]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
                         check=True, capture_output=True, text=True).stdout
    return {s["codec_type"]: s for s in json.loads(out)["streams"]}


def test_rewritten_commands_run_on_real_ffmpeg(tmp_path: Path) -> None:
    """The proof the fallback works: GPU commands rewritten, run by Debian's CPU FFmpeg."""
    src = tmp_path / "in.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=1:size=640x360:rate=25",
                    "-f", "lavfi", "-i", "sine=duration=1", "-c:v", "libx264", "-preset", "ultrafast",
                    "-c:a", "aac", "-shortest", str(src)], check=True)
    s = FFmpegJobSpec.model_validate({
        "inputs": [{"name": "in", "source": "d/in.mp4"}],
        "outputs": [{"name": "h264.mp4"}, {"name": "hevc.mp4"}, {"name": "av1.mp4"}, {"name": "ladder.mp4"}],
        "output": {"dirId": "d"},
        "commands": [
            "-hwaccel cuda -hwaccel_output_format cuda -c:v h264_cuvid -i {{in}} "
            "-vf scale_cuda=320:180:format=yuv420p -c:v h264_nvenc -preset p4 -rc vbr -cq 26 -b:v 0 "
            "-spatial-aq 1 -c:a copy {{h264.mp4}}",
            "-i {{in}} -vf 'hwupload_cuda,scale_npp=w=256:h=-2:interp_algo=super,hwdownload,format=nv12' "
            "-c:v hevc_nvenc -preset p1 -tune ll -profile:v main10 -cq 30 -an {{hevc.mp4}}",
            "-hwaccel cuda -i {{in}} -c:v av1_nvenc -preset p7 -cq 40 -an {{av1.mp4}}",
            "-hwaccel cuda -hwaccel_output_format cuda -i {{in}} -filter_complex "
            "'[0:v]yadif_cuda,scale_cuda=160:90[v]' -map '[v]' -c:v h264_nvenc -rc constqp -qp 30 {{ladder.mp4}}",
        ]})
    cpu = cpu_fallback_spec(s)
    validate_spec(cpu, url_rules=URLRules(), s3=S3Settings(endpoint_url=None, public_endpoint_url=None))
    paths = {"in": str(src), **{o.name: str(tmp_path / o.name) for o in s.outputs}}
    for args in effective_commands(cpu):
        run = subprocess.run(["ffmpeg", "-v", "error", "-y", *render(args, paths)], capture_output=True, text=True)
        assert run.returncode == 0, (args, run.stderr)
    h264, hevc, av1, ladder = (_probe(tmp_path / n) for n in ("h264.mp4", "hevc.mp4", "av1.mp4", "ladder.mp4"))
    assert (h264["video"]["codec_name"], h264["video"]["width"], h264["video"]["height"]) == ("h264", 320, 180)
    assert h264["audio"]["codec_name"] == "aac"
    assert (hevc["video"]["codec_name"], hevc["video"]["width"]) == ("hevc", 256)
    assert hevc["video"]["pix_fmt"] == "yuv420p10le"
    assert av1["video"]["codec_name"] == "av1"
    assert (ladder["video"]["codec_name"], ladder["video"]["width"]) == ("h264", 160)


# ------------------------------------------------------------------------------- placement
POOLS = {"gpu": H100, "cpu": CPU, "l4": L4.model_copy(update={"max_encode_sessions": 2})}


def test_place_refuses_falls_back_or_keeps() -> None:
    from ffmpegjob_model.gpu import FALLBACK_ENV, NVENC_SESSION_RESOURCE, GpuRefused, place

    plain = spec("-i {{in}} -c:v libx264 {{out.mp4}}")
    assert place(plain, "gpu", POOLS).machine == "gpu" and not place(plain, "gpu", POOLS).fell_back
    nvenc = spec("-i {{in}} -c:v h264_nvenc -preset p1 {{out.mp4}}")
    with pytest.raises(GpuRefused, match=r"machine .gpu. lacks .*NVENC encoding of h264"):
        place(nvenc, "gpu", POOLS)
    p = place(nvenc.model_copy(update={"fallback": "cpu"}), "gpu", POOLS)
    assert (p.machine, p.from_machine, [n.name for n in p.missing]) == ("cpu", "gpu", ["h264"])
    assert p.spec.commands == ["-i '{{in}}' -c:v libx264 -preset ultrafast '{{out.mp4}}'"]
    assert p.worker_pool().env[FALLBACK_ENV] == "cpu"
    # The pool's default, and the job's `none` over it.
    pools = {**POOLS, "gpu": H100.model_copy(update={"fallback": "cpu"})}
    assert place(nvenc, "gpu", pools).fell_back
    with pytest.raises(GpuRefused):
        place(nvenc.model_copy(update={"fallback": "none"}), "gpu", pools)
    # Session counting: the pods ask for one session per concurrent NVENC encode.
    on_l4 = place(nvenc, "l4", POOLS)
    assert on_l4.worker_pool().resources["limits"][NVENC_SESSION_RESOURCE] == "1"
    three = spec("-i {{in}} -c:v h264_nvenc {{out.mp4}} -c:v h264_nvenc {{b.mp4}} -c:v hevc_nvenc b2.mp4")
    with pytest.raises(GpuRefused, match="allows 2 per node"):
        place(three, "l4", POOLS)
