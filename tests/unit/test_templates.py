"""FFmpegJobTemplate resolution (ffmpegjob_model.templates): typed parameters, one value = one
argument, clear errors, and the resolved commands going through the same safety rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ffmpegjob_model import crd
from ffmpegjob_model.commands import tokenize
from ffmpegjob_model.model import FFmpegJobSpec
from ffmpegjob_model.safety import UnsafeCommand, validate_spec
from ffmpegjob_model.settings import S3Settings
from ffmpegjob_model.templates import (
    FFmpegJobTemplateSpec,
    TemplateError,
    apply_template,
    read_template,
    resolve_commands,
)
from ffmpegjob_model.urls import URLRules
from pydantic import ValidationError

PRESETS = Path(__file__).resolve().parents[2] / "charts" / "kubeffmpeg" / "presets"
NO_S3 = S3Settings(endpoint_url=None, public_endpoint_url=None)


def template(**extra: Any) -> FFmpegJobTemplateSpec:
    base: dict[str, Any] = {
        "inputs": [{"name": "in"}],
        "outputs": [{"name": "out.mp4"}],
        "parameters": [
            {"name": "crf", "type": "integer", "default": 23, "minimum": 0, "maximum": 51},
            {"name": "preset", "enum": ["fast", "medium"], "default": "medium"},
            {"name": "title", "type": "string", "pattern": "[A-Za-z0-9 {}\\n-]*"},
            {"name": "gain", "type": "number", "default": -1.5},
            {"name": "loop", "type": "boolean", "default": False},
            {"name": "label", "type": "string", "default": "x"},
        ],
        "commands": ["-i {{in}} -c:v libx264 -crf $(params.crf) -preset $(params.preset) "
                     "-metadata title=$(params.title) -af volume=$(params.gain)dB -stream_loop $(params.loop) "
                     "{{out.mp4}}"],
    }
    base.update(extra)
    return FFmpegJobTemplateSpec.model_validate(base)


def job(parameters: dict[str, Any] | None, name: str = "t", **extra: Any) -> FFmpegJobSpec:
    base: dict[str, Any] = {
        "inputs": [{"name": "in", "source": "dir_a/in.mp4"}],
        "output": {"dirId": "dir_a"},
        "template": {"name": name, "parameters": parameters},
    }
    base.update(extra)
    return FFmpegJobSpec.model_validate(base)


def check(spec: FFmpegJobSpec) -> list[list[str]]:
    return validate_spec(spec, url_rules=URLRules(), s3=NO_S3, check_urls=False)


def test_parameters_are_typed_defaulted_and_substituted_token_wise() -> None:
    resolved = apply_template(job({"title": "My film -i x", "crf": "20"}), template())
    assert resolved.outputs[0].name == "out.mp4"
    args = check(resolved)[0]
    # The value with spaces and an option-like word stays one argument.
    assert "title=My film -i x" in args
    assert args[args.index("-crf") + 1] == "20"
    assert args[args.index("-preset") + 1] == "medium"
    assert "volume=-1.5dB" in args
    assert args[args.index("-stream_loop") + 1] == "0"
    assert tokenize(resolved.commands[0]) == args  # what is recorded is exactly what runs


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"title": "x", "bogus": 1}, "unknown parameter(s) bogus"),
        ({}, "missing required parameter(s): title"),
        ({"title": "x", "crf": 52}, "above the maximum 51"),
        ({"title": "x", "crf": "high"}, "not an integer"),
        ({"title": "x", "crf": True}, "not a integer"),
        ({"title": "x", "preset": "slow"}, "not one of"),
        ({"title": "x", "gain": "loud"}, "not a number"),
        ({"title": "x", "loop": "maybe"}, "not a boolean"),
        ({"title": "{{in}}"}, "file placeholder"),
        ({"title": "a\nb"}, "control characters"),
    ],
)
def test_bad_parameters_are_refused_with_a_reason(params: dict[str, Any], words: str) -> None:
    with pytest.raises(TemplateError) as exc:
        apply_template(job(params), template())
    assert words in str(exc.value)
    assert "template 't'" in str(exc.value)


def test_a_spliced_string_must_be_a_plain_word() -> None:
    t = template(commands=["-i {{in}} -vf scale=-2:$(params.label) {{out.mp4}}"])
    assert "scale=-2:720" in apply_template(job({"title": "t", "label": "720"}), t).commands[0]
    with pytest.raises(TemplateError, match="spliced into the argument"):
        apply_template(job({"title": "t", "label": "720,drawtext=textfile=x"}), t)


def test_resolved_commands_still_meet_the_safety_rules() -> None:
    t = template(commands=["-i $(params.label) {{out.mp4}}"])
    resolved = apply_template(job({"title": "t", "label": "/etc/passwd"}), t)
    with pytest.raises(UnsafeCommand, match="absolute path"):
        check(resolved)


def test_job_inputs_must_match_the_template() -> None:
    with pytest.raises(TemplateError, match="missing input"):
        apply_template(job({"title": "x"}, inputs=[]), template())
    extra = [{"name": "in", "source": "d/a.mp4"}, {"name": "logo", "source": "d/l.png"}]
    with pytest.raises(TemplateError, match="unknown input"):
        apply_template(job({"title": "x"}, inputs=extra), template())
    with pytest.raises(TemplateError, match="not both"):
        apply_template(job({"title": "x"}, commands=["-i {{in}} out.mp4"]), template())


def test_an_unresolved_template_job_never_passes_validation() -> None:
    with pytest.raises(UnsafeCommand, match="not resolved"):
        check(job({"title": "x"}))


def test_a_broken_template_is_refused() -> None:
    with pytest.raises(ValidationError, match="undeclared parameter"):
        template(commands=["-i {{in}} -crf $(params.nope) {{out.mp4}}"])
    with pytest.raises(ValidationError, match="malformed parameter reference"):
        template(commands=["-i {{in}} -crf $(params.crf {{out.mp4}}"])
    with pytest.raises(ValidationError, match="above the maximum"):
        template(parameters=[{"name": "crf", "type": "integer", "default": 99, "maximum": 51}])


def test_a_job_without_outputs_needs_a_template() -> None:
    with pytest.raises(ValidationError, match="at least one output"):
        FFmpegJobSpec.model_validate({"inputs": [], "output": {"dirId": "d"}, "commands": ["-i x y"]})


@pytest.mark.parametrize("path", sorted(PRESETS.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_presets_resolve_with_defaults_and_pass_the_safety_rules(path: Path) -> None:
    obj = yaml.safe_load(path.read_text())
    assert obj["kind"] == "FFmpegJobTemplate" and obj["metadata"]["name"] == path.stem
    spec = read_template(obj)
    inputs = [{"name": f.name, "source": f"dir_a/{f.name}.bin"} for f in spec.inputs]
    resolved = apply_template(job(None, name=path.stem, inputs=inputs), spec)
    assert len(check(resolved)) == len(spec.commands)
    assert resolve_commands(spec, None) == resolved.commands


def test_checked_in_template_crd_matches_the_model() -> None:
    assert crd.TEMPLATE_CRD_FILE.read_text() == crd.render_template_crd(), "run: make crds"
    if crd.CHART_TEMPLATE_CRD_FILE.parent.exists():
        assert crd.CHART_TEMPLATE_CRD_FILE.read_text() == crd.render_template_crd(), "run: make crds"
    doc = yaml.safe_load(crd.TEMPLATE_CRD_FILE.read_text())
    assert doc["spec"]["names"]["kind"] == "FFmpegJobTemplate"
    assert doc["spec"]["scope"] == "Namespaced"


@pytest.mark.parametrize("value", ["a b", "it's", 'say "hi"', "back\\slash", "#hash", "semi;colon", "$(params.crf)"])
def test_awkward_values_stay_one_argument_and_commands_read_like_the_template(value: str) -> None:
    t = template(parameters=[{"name": "v", "type": "string"}],
                 commands=["-i {{in}} -metadata $(params.v) {{out.mp4}}"])
    (command,) = apply_template(job({"v": value}), t).commands
    assert command.startswith("-i {{in}} -metadata ") and command.endswith(" {{out.mp4}}")
    assert tokenize(command) == ["-i", "{{in}}", "-metadata", value, "{{out.mp4}}"]
