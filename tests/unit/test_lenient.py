"""Read leniently, validate strictly: unknown fields from the API server are dropped (and logged
once), REST-style parsing still refuses them, and known fields keep every rule."""

from __future__ import annotations

import logging

import pytest
from ffmpegjob_model.lenient import read_ffmpegjob, read_spec
from ffmpegjob_model.model import FFmpegJobSpec
from pydantic import ValidationError

SPEC = {"inputs": [{"name": "in.mp4", "source": "d/in.mp4", "cacheHint": "warm"}], "outputs": [{"name": "o.mp4"}],
        "commands": ["-i {{in.mp4}} {{o.mp4}}"], "output": {"dirId": "d", "region": "eu"}, "deadlineClass": 5}


def test_unknown_fields_are_dropped_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValidationError):
        FFmpegJobSpec.model_validate(SPEC)  # strict, as REST input is
    with caplog.at_level(logging.WARNING, "ffmpegjob_model.lenient"):
        spec = read_spec(SPEC)
        read_spec(SPEC)
    assert spec.output.dir_id == "d" and spec.inputs[0].source == "d/in.mp4"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert all(f in lines[0] for f in ("spec.deadlineClass", "spec.output.region", "spec.inputs.cacheHint"))


def test_known_fields_are_still_validated() -> None:
    with pytest.raises(ValidationError):
        read_spec({**SPEC, "machine": "Not A Pool!"})


def test_a_whole_object_with_new_status_fields_reads() -> None:
    obj = {"apiVersion": "kubeffmpeg.io/v1alpha1", "kind": "FFmpegJob", "metadata": {"name": "x", "uid": "u"},
           "spec": SPEC, "status": {"phase": "Running", "webhook": {"delivered": False, "deliveryId": "d1"},
                                    "queuePosition": 3}}
    job = read_ffmpegjob(obj)
    assert job.status.phase == "Running" and job.metadata["uid"] == "u"
