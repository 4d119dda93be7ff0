"""Placeholders, tokenizing and the structured task form."""

from __future__ import annotations

import pytest
from ffmpegjob_model.commands import (
    CommandSyntaxError,
    compile_structured,
    effective_commands,
    exact_placeholder,
    placeholders_in,
    render,
    tokenize,
)
from ffmpegjob_model.model import FFmpegJobSpec


def test_tokenize_keeps_quoted_filter_graphs_whole_and_drops_a_leading_ffmpeg() -> None:
    args = tokenize("ffmpeg -i {{in}} -vf \"drawtext=text='a b':x=1\" -metadata title='My Movie' {{out.mp4}}")
    assert args == ["-i", "{{in}}", "-vf", "drawtext=text='a b':x=1", "-metadata", "title=My Movie", "{{out.mp4}}"]


@pytest.mark.parametrize("bad", ["-i 'unterminated", "", "ffmpeg", "-i x\\"])
def test_tokenize_refuses_unparseable_or_empty_commands(bad: str) -> None:
    with pytest.raises(CommandSyntaxError):
        tokenize(bad)


def test_both_placeholder_forms_are_found_and_rendered() -> None:
    args = ["-i", "{{ in }}", "-vf", "subtitles=<<subs.srt>>", "<<out.mp4>>"]
    assert [placeholders_in(a) for a in args] == [[], ["in"], [], ["subs.srt"], ["out.mp4"]]
    paths = {"in": "inputs/in.mp4", "subs.srt": "inputs/subs.srt", "out.mp4": "out.mp4"}
    assert render(args, paths) == ["-i", "inputs/in.mp4", "-vf", "subtitles=inputs/subs.srt", "out.mp4"]
    assert exact_placeholder("{{in}}") == "in" and exact_placeholder("x{{in}}") is None


def test_render_of_an_unknown_name_is_an_error() -> None:
    with pytest.raises(KeyError):
        render(["{{nope}}"], {"in": "inputs/in"})


def _spec(**kw: object) -> FFmpegJobSpec:
    return FFmpegJobSpec.model_validate({"output": {"dirId": "d"}, **kw})


def test_structured_task_compiles_inputs_filter_complex_outputs_and_maps_in_order() -> None:
    spec = _spec(
        inputs=[
            {"name": "a", "source": "d/a.mp4", "options": ["-ss", "10", "-t", "30"]},
            {"name": "b", "source": "d/b.mp4"},
        ],
        outputs=[
            {"name": "out.mp4", "options": ["-crf 23", "-preset", "medium"], "maps": ["[v]", "0:a"]},
            {"name": "audio.m4a", "options": ["-vn"]},
        ],
        filterComplex="[0:v][1:v]hstack[v]",
    )
    assert compile_structured(spec) == [
        "-ss", "10", "-t", "30", "-i", "{{a}}", "-i", "{{b}}",
        "-filter_complex", "[0:v][1:v]hstack[v]",
        "-crf", "23", "-preset", "medium", "-map", "[v]", "-map", "0:a", "{{out.mp4}}",
        "-vn", "{{audio.m4a}}",
    ]  # fmt: skip
    assert effective_commands(spec) == [compile_structured(spec)]


def test_free_form_commands_are_returned_in_order() -> None:
    spec = _spec(
        inputs=[{"name": "in", "source": "d/in.mp4"}],
        outputs=[{"name": "o.mp4"}],
        commands=["-i {{in}} -t 5 tmp.mp4", "-i tmp.mp4 {{o.mp4}}"],
    )
    assert effective_commands(spec) == [["-i", "{{in}}", "-t", "5", "tmp.mp4"], ["-i", "tmp.mp4", "{{o.mp4}}"]]
