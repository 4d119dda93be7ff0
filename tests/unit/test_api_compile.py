"""The "FFmpeg API" seed's task rules and the one spec both surfaces compile to, as pure functions."""

from __future__ import annotations

from typing import Any

import pytest
from ffmpeg_api.compile import Submission, check_vgf_names, ffmpeg_api_spec, name_from_url, plan_task, vgf_spec
from ffmpeg_api.errors import ApiError
from ffmpeg_api.schemas import Task, VgfJobRequest


def task(**kw: Any) -> Task:
    base: dict[str, Any] = {"inputs": [{"file_path": "dir_a/in.mp4"}], "outputs": [{"file": "out.mp4"}]}
    return Task.model_validate({**base, **kw})


def test_output_dir_defaults_to_the_inputs_directory() -> None:
    plan = plan_task(task())
    assert (plan.input_dir, plan.output_dir) == ("dir_a", "dir_a")


def test_output_dir_id_wins() -> None:
    assert plan_task(task(output_dir_id="dir_b")).output_dir == "dir_b"


def test_url_only_inputs_need_a_temporary_directory_and_get_safe_names() -> None:
    plan = plan_task(task(inputs=[{"file_path": "https://example.com/a/My%20Clip.mov?x=1"},
                                  {"file_path": "https://example.com/b/out.mp4"}]))
    assert plan.output_dir is None and plan.input_dir is None
    names = [p.file_name for p in plan.inputs]
    assert names[0] == "My_Clip.mov"
    assert names[1] != "out.mp4"  # renamed: it would collide with the output


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"inputs": [{"file_path": "dir_a/x.mp4"}, {"file_path": "dir_b/y.mp4"}]}, "same directory"),
        ({"outputs": [{"file": "in.mp4"}]}, "conflicts with an input"),
        ({"inputs": [{"file_path": "no-slash"}]}, "must be 'dir_id/filename'"),
        ({"inputs": [{"file_path": "bad dir/x.mp4"}]}, "must be 'dir_id/filename'"),
        ({"inputs": [{"file_path": "ftp://example.com/x"}]}, "only HTTPS"),
        ({"outputs": [{"file": "../x.mp4"}]}, "must be a file name"),
        ({"outputs": [{"file": "a.mp4"}, {"file": "a.mp4"}]}, "listed twice"),
        ({"output_dir_id": "x" * 65}, "output_dir_id"),
    ],
)
def test_seed_rules_refuse_with_invalid_task_format(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ApiError) as e:
        plan_task(task(**kw))
    assert e.value.status == 400
    assert e.value.message.startswith("Invalid task format: ") and message in e.value.message


def test_same_name_in_another_output_directory_is_allowed() -> None:
    assert plan_task(task(outputs=[{"file": "in.mp4"}], output_dir_id="dir_z")).output_dir == "dir_z"


def test_name_from_url_falls_back_when_the_path_is_empty() -> None:
    assert name_from_url("https://example.com/", 3) == "input3"


def test_vgf_names() -> None:
    check_vgf_names({"input": "https://x"}, ["output.mp4"])
    for inputs, outputs in (({"in put": "u"}, ["o.mp4"]), ({}, ["a/b.mp4"]), ({"a": "u"}, ["a"])):
        with pytest.raises(ApiError):
            check_vgf_names(inputs, outputs)


# ------------------------------------------------------------------- both surfaces, one spec
SUB = Submission(tenant="acme", machine="gpu", webhook=None, ttl_seconds_after_finished=60)


def test_both_surfaces_fill_the_shared_fields_alike() -> None:
    t = task(inputs=[{"file_path": "dir_a/in.mp4", "options": ["-ss", "1"]}],
             outputs=[{"file": "out.mp4", "options": ["-vf", "subtitles=@{in.mp4}"]}],
             parallel={"chunks": 2})
    api = ffmpeg_api_spec(t, plan_task(t), SUB, "dir_a", 120)
    vgf = vgf_spec(VgfJobRequest(input_files={"in": "https://example.com/in.mp4"}, output_files=["out.mp4"],
                                 ffmpeg_commands=["-i inputs/in -c copy outputs/out.mp4"], parallel={"chunks": 2}),
                   SUB, {"in": "https://example.com/in.mp4"}, "dir_b", 300)
    for spec in (api, vgf):
        assert (spec.tenant, spec.machine, spec.ttl_seconds_after_finished) == ("acme", "gpu", 60)
        assert spec.parallel is not None and spec.parallel.chunks == 2
    assert (api.output.dir_id, api.timeout_seconds) == ("dir_a", 120)
    assert (vgf.output.dir_id, vgf.timeout_seconds) == ("dir_b", 300)
    # "FFmpeg API": input k is {{in<k>}}, `@{file}` resolved; VGF: paths become placeholders.
    assert [(i.name, i.source, i.options) for i in api.inputs] == [("in0", "dir_a/in.mp4", ["-ss", "1"])]
    assert api.outputs[0].options == ["-vf", "subtitles={{in0}}"] and api.commands is None
    assert vgf.commands == ["-i {{in}} -c copy {{out.mp4}}"] and vgf.inputs[0].source == "https://example.com/in.mp4"
