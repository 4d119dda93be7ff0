"""Directory and pattern outputs (issue 19.1): names, safety, listing and bounds, grants, results."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from ffmpeg_api.compile import check_vgf_names, structured_output
from ffmpeg_api.errors import ApiError
from ffmpeg_operator.grants import Signer, job_grants
from ffmpeg_worker.outputs import OutputsRefused, collect, limits_from_env
from ffmpegjob_model.commands import effective_commands
from ffmpegjob_model.model import FFmpegJobSpec
from ffmpegjob_model.outputs import (
    DEFAULT_MAX_OUTPUT_FILES,
    OutputKind,
    output_kind,
    pattern_regex,
    valid_output_name,
)
from ffmpegjob_model.safety import UnsafeCommand, validate_spec
from ffmpegjob_model.settings import S3Settings
from ffmpegjob_model.split import NotSplittable, analyze
from ffmpegjob_model.storage_layout import split_result_path
from ffmpegjob_model.urls import URLRules
from pydantic import ValidationError

S3 = S3Settings.model_validate({
    "endpoint_url": "http://minio.store:9000", "bucket": "media",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t"})

LADDER = (
    "-i {{in}} -filter_complex [0:v]split=3[a][b][c];[a]scale=-2:240[o0];[b]scale=-2:360[o1];[c]scale=-2:480[o2] "
    "-map [o0] -map [o1] -map [o2] -c:v libx264 -f hls -hls_time 2 -master_pl_name master.m3u8 "
    "-hls_segment_filename {{hls}}/v%v/seg_%03d.ts -var_stream_map 'v:0 v:1 v:2' {{hls}}/v%v/index.m3u8"
)


def spec(commands: list[str] | None = None, outputs: list[dict[str, Any]] | None = None, **kw: Any) -> FFmpegJobSpec:
    return FFmpegJobSpec.model_validate({
        "tenant": "acme", "inputs": [{"name": "in", "source": "dir_in/a.mp4"}],
        "outputs": outputs if outputs is not None else [{"name": "hls/"}],
        **({"commands": commands} if commands is not None else {}),
        "output": {"dirId": "dir_out"}, **kw})


def check(s: FFmpegJobSpec) -> list[list[str]]:
    return validate_spec(s, url_rules=URLRules(), s3=S3Settings(), check_urls=False)


# ------------------------------------------------------------------------------------ names
@pytest.mark.parametrize(("name", "kind"), [
    ("out.mp4", OutputKind.FILE), ("seg_%05d.ts", OutputKind.PATTERN), ("thumb_%d.jpg", OutputKind.PATTERN),
    ("stream_%v.m3u8", OutputKind.PATTERN), ("hls/", OutputKind.DIRECTORY), ("100%%.txt", OutputKind.FILE),
])
def test_output_kinds(name: str, kind: OutputKind) -> None:
    assert valid_output_name(name)
    assert output_kind(name) == kind


@pytest.mark.parametrize("name", ["../x/", "/abs/", "a/b/", "a/b.ts", ".hidden/", "x%s.ts", "x%n", "%", "hls//",
                                  "-x.ts", "v%v/"])
def test_bad_output_names_are_refused_by_the_model(name: str) -> None:
    assert not valid_output_name(name)
    with pytest.raises(ValidationError):
        spec(["-i {{in}} out.mp4"], outputs=[{"name": name}])


def test_pattern_regex_matches_what_ffmpeg_writes() -> None:
    rx = pattern_regex("seg_%05d.ts")
    assert rx.fullmatch("seg_00001.ts") and rx.fullmatch("seg_123456.ts")
    assert not rx.fullmatch("seg_.ts") and not rx.fullmatch("seg_00001.ts.tmp") and not rx.fullmatch("xseg_1.ts")
    assert pattern_regex("s_%v_%03d.ts").fullmatch("s_2_007.ts")
    assert pattern_regex("a%%_%d.txt").fullmatch("a%_3.txt")


# ----------------------------------------------------------------------------------- safety
def test_hls_ladder_into_a_directory_output_passes() -> None:
    (args,) = check(spec([LADDER]))
    assert "{{hls}}/v%v/index.m3u8" in args


def test_bare_folder_path_of_a_directory_output_passes() -> None:
    check(spec(["-i {{in}} -f hls -hls_segment_filename hls/seg_%03d.ts hls/index.m3u8"]))


@pytest.mark.parametrize(("command", "why"), [
    ("-i {{in}} -f hls {{hls}}/../escape.m3u8", "'..'"),
    ("-i {{in}} -f hls -hls_segment_filename hls/../../x_%d.ts {{hls}}/i.m3u8", "'..'"),
    ("-i {{in}} -f hls other/index.m3u8", "directory output's folder"),
    ("-i {{in}} -f hls /tmp/hls/index.m3u8", "absolute path"),
    ("-i {{in}} -f hls {{hls}}//index.m3u8", "directory output's folder"),
    ("-i {{in}} -f hls -hls_segment_filename {{in}}/seg_%d.ts {{hls}}/i.m3u8", "directory output's folder"),
])
def test_directory_output_may_only_write_under_its_own_folder(command: str, why: str) -> None:
    with pytest.raises(UnsafeCommand, match=why):
        check(spec([command]))


def test_a_folder_path_without_a_directory_output_is_refused() -> None:
    with pytest.raises(UnsafeCommand, match="plain file name"):
        check(spec(["-i {{in}} hls/out.mp4"], outputs=[{"name": "out.mp4"}]))


def test_pattern_output_is_its_own_placeholder() -> None:
    (args,) = check(spec(["-i {{in}} -vf fps=1 {{thumb_%03d.jpg}}"], outputs=[{"name": "thumb_%03d.jpg"}]))
    assert args[-1] == "{{thumb_%03d.jpg}}"


def test_output_names_that_share_a_placeholder_are_refused() -> None:
    with pytest.raises(UnsafeCommand, match="placeholder"):
        check(spec(["-i {{in}} {{hls}}/a.m3u8"], outputs=[{"name": "hls/"}, {"name": "hls"}]))


def test_structured_directory_output_writes_its_entry_inside_the_folder() -> None:
    s = spec(outputs=[{"name": "hls/", "entry": "index.m3u8", "options": ["-f", "hls", "-hls_segment_filename",
                                                                          "hls/seg_%03d.ts"]}])
    (args,) = check(s)
    assert args[-1] == "{{hls}}/index.m3u8" and effective_commands(s) == [args]


def test_structured_directory_output_needs_an_entry_and_entry_needs_a_directory() -> None:
    with pytest.raises(UnsafeCommand, match="needs the file"):
        check(spec(outputs=[{"name": "hls/"}]))
    with pytest.raises(UnsafeCommand, match="'entry'"):
        check(spec(outputs=[{"name": "a.mp4", "entry": "x.mp4"}]))


def test_split_refuses_directory_and_pattern_outputs_with_the_reason() -> None:
    for out in ("hls/", "seg_%03d.ts"):
        s = spec(["-i {{in}} -c:v libx264 -f segment {{seg_%03d.ts}}" if "%" in out else LADDER],
                 outputs=[{"name": out}], parallel={"chunks": 2})
        with pytest.raises(NotSplittable, match=f"{out!r} is a .* output"):
            analyze(s)


# ------------------------------------------------------------------------------ the surfaces
def test_ffmpeg_api_output_file_with_a_folder_is_a_directory_output() -> None:
    d = structured_output("hls/stream_%v.m3u8")
    assert d is not None and d.name == "hls/" and d.entry == "stream_%v.m3u8"
    p = structured_output("thumb_%03d.jpg")
    assert p is not None and p.name == "thumb_%03d.jpg" and p.entry is None
    for bad in ("../x.m3u8", "a/b/c.m3u8", "hls/", "/x.mp4", "hls/../x"):
        assert structured_output(bad) is None, bad


def test_vgf_output_files_accept_folders_and_patterns() -> None:
    check_vgf_names({"in": "https://example.com/a.mp4"}, ["hls/", "thumb_%03d.jpg", "out.mp4"])
    with pytest.raises(ApiError, match="folder ending in '/'"):
        check_vgf_names({}, ["../hls/"])
    with pytest.raises(ApiError, match="used twice"):
        check_vgf_names({"hls": "https://example.com/a.mp4"}, ["hls/"])


def test_result_paths_with_folders_resolve_and_stay_inside_the_directory() -> None:
    assert split_result_path("dir_out/hls/v0/seg_001.ts") == ("dir_out", "hls/v0/seg_001.ts")
    assert split_result_path("dir_out/out.mp4") == ("dir_out", "out.mp4")
    for bad in ("dir_out/hls/../x", "dir_out//x", "dir_out/", "../x/y", "dir_out/hls/./x"):
        assert split_result_path(bad) is None, bad


# --------------------------------------------------------------------------------- grants
def test_operator_grants_a_post_policy_for_the_output_directory_only_with_such_outputs() -> None:
    signer = Signer(S3)  # presigning is local computation (no multipart parts asked)
    g = job_grants(signer, spec([LADDER], outputs=[{"name": "hls/"}, {"name": "poster.jpg"}]), S3, 3600, parts=0)
    assert set(g.outputs) == {"poster.jpg"}  # the named file keeps its PUT (and DELETE)
    assert g.output_prefix is not None and g.output_prefix.prefix == "files/acme/dir_out/"
    plain = job_grants(signer, spec(["-i {{in}} {{out.mp4}}"], outputs=[{"name": "out.mp4"}]), S3, 3600, parts=0)
    assert plain.output_prefix is None


# ------------------------------------------------------------------------- listing, bounds
def _touch(p: Path, size: int = 10) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x" * size)


def test_collect_lists_a_directory_recursively_and_pattern_matches(tmp_path: Path) -> None:
    for rel in ("hls/master.m3u8", "hls/v0/index.m3u8", "hls/v0/seg_000.ts", "hls/v1/seg_000.ts",
                "thumb_001.jpg", "thumb_002.jpg", "thumb_x.jpg", "out.mp4", "in.mp4"):
        _touch(tmp_path / rel)
    got = collect(tmp_path, ["hls/", "thumb_%03d.jpg", "out.mp4"], 100, 10_000)
    assert [p.name for p in got] == ["hls/master.m3u8", "hls/v0/index.m3u8", "hls/v0/seg_000.ts",
                                     "hls/v1/seg_000.ts", "thumb_001.jpg", "thumb_002.jpg"]
    assert {p.output for p in got} == {"hls/", "thumb_%03d.jpg"} and all(p.size == 10 for p in got)


def test_collect_skips_symlinks(tmp_path: Path) -> None:
    _touch(tmp_path / "hls" / "a.ts")
    _touch(tmp_path / "secret.txt")
    os.symlink(tmp_path / "secret.txt", tmp_path / "hls" / "b.ts")
    os.symlink(tmp_path, tmp_path / "hls" / "loop")
    assert [p.name for p in collect(tmp_path, ["hls/"], 100, 10_000)] == ["hls/a.ts"]


def test_collect_refuses_an_output_that_produced_nothing(tmp_path: Path) -> None:
    (tmp_path / "hls").mkdir()
    with pytest.raises(OutputsRefused, match="no file under its folder"):
        collect(tmp_path, ["hls/"], 100, 10_000)
    with pytest.raises(OutputsRefused, match="no file matching"):
        collect(tmp_path, ["seg_%03d.ts"], 100, 10_000)


def test_collect_bounds_the_count_and_the_total_size(tmp_path: Path) -> None:
    for i in range(5):
        _touch(tmp_path / f"seg_{i:03d}.ts", 100)
    assert len(collect(tmp_path, ["seg_%03d.ts"], 5, 500)) == 5
    with pytest.raises(OutputsRefused, match=r"more than 4 files .* MAX_OUTPUT_FILES"):
        collect(tmp_path, ["seg_%03d.ts"], 4, 10_000)
    with pytest.raises(OutputsRefused, match=r"more than 499 bytes .* MAX_OUTPUT_BYTES"):
        collect(tmp_path, ["seg_%03d.ts"], 100, 499)


def test_limits_come_from_the_pool_env_else_the_defaults() -> None:
    assert limits_from_env({})[0] == DEFAULT_MAX_OUTPUT_FILES
    assert limits_from_env({"MAX_OUTPUT_FILES": "7", "MAX_OUTPUT_BYTES": "1000"}) == (7, 1000)


def test_vgf_sdk_style_paths_name_folders_and_patterns() -> None:
    from ffmpeg_api.compile import vgf_commands

    (cmd,) = vgf_commands(["-i inputs/in -hls_segment_filename outputs/hls/seg_%03d.ts outputs/hls/index.m3u8 "
                           "-vf fps=1 outputs/thumb_%03d.jpg outputs/other/x.ts"], ["in"], ["hls/", "thumb_%03d.jpg"])
    assert cmd == ("-i {{in}} -hls_segment_filename {{hls}}/seg_%03d.ts {{hls}}/index.m3u8 -vf fps=1 "
                   "{{thumb_%03d.jpg}} outputs/other/x.ts")  # an undeclared folder is left to the safety rules


def test_playback_tokens_are_signed_and_expire() -> None:
    from ffmpeg_api.routers.playback import sign, verify

    token = sign(b"k", {"t": "acme", "d": "dir_out", "p": "hls/", "e": 2000})
    assert verify(b"k", token, now=1000)["p"] == "hls/"
    with pytest.raises(ApiError) as expired:
        verify(b"k", token, now=3000)
    assert expired.value.status == 403
    for bad in (token[:-2] + "xx", "garbage", sign(b"other", {"t": "acme", "d": "dir_out", "p": "", "e": 2000})):
        with pytest.raises(ApiError) as refused:
            verify(b"k", bad, now=1000)
        assert refused.value.status == 404


def test_a_chain_with_a_directory_output_is_not_checkpointed() -> None:
    from ffmpeg_operator.grants import checkpoint_keys

    chain = ["-i {{in}} -f hls {{hls}}/index.m3u8", "-i {{hls}}/index.m3u8 -frames:v 1 {{poster.jpg}}"]
    assert checkpoint_keys(spec(chain, outputs=[{"name": "hls/"}, {"name": "poster.jpg"}]), "uid-1") == {}
    files = ["-i {{in}} {{a.mp4}}", "-i {{a.mp4}} -frames:v 1 {{poster.jpg}}"]
    assert checkpoint_keys(spec(files, outputs=[{"name": "a.mp4"}, {"name": "poster.jpg"}]), "uid-1")


def test_the_inputs_folder_is_no_directory_output() -> None:
    with pytest.raises(UnsafeCommand, match="holds the job's inputs"):
        check(spec(["-i {{in}} -f hls {{inputs}}/index.m3u8"], outputs=[{"name": "inputs/"}]))


def test_a_declared_file_that_a_pattern_matches_is_listed_once_as_the_file(tmp_path: Path) -> None:
    for n in ("thumb_001.jpg", "thumb_002.jpg"):
        _touch(tmp_path / n)
    got = collect(tmp_path, ["thumb_001.jpg", "thumb_%03d.jpg"], 100, 10_000)
    assert [p.name for p in got] == ["thumb_002.jpg"]


def test_a_malformed_limit_is_a_clear_error() -> None:
    with pytest.raises(OutputsRefused, match="MAX_OUTPUT_FILES='lots' is not a positive whole number"):
        limits_from_env({"MAX_OUTPUT_FILES": "lots"})
