"""The worker's plain views (`ffmpegjob_model.plain`) against the pydantic models they mirror:
the same fields and defaults, the same readings of the same objects, the same status dicts, the
same settings from the same environment; and the worker's way to FFmpeg loads no pydantic."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from ffmpegjob_model import plain
from ffmpegjob_model.grants import Grants, MultipartGrant, ObjectGrant, PrefixGrant
from ffmpegjob_model.lenient import read_ffmpegjob
from ffmpegjob_model.model import (
    FFmpegJobSpec,
    InputFile,
    OutputFile,
    OutputLocation,
    Progress,
    ResultFile,
    TemplateRef,
    Usage,
)
from ffmpegjob_model.safety import UnsafeCommand, validate_spec
from ffmpegjob_model.settings import S3Settings
from ffmpegjob_model.urls import URLRules
from pydantic import BaseModel, ValidationError

PAIRS: list[tuple[type, type[BaseModel]]] = [
    (plain.SpecView, FFmpegJobSpec),
    (plain.InputView, InputFile),
    (plain.OutputView, OutputFile),
    (plain.TemplateRefView, TemplateRef),
    (plain.OutputLocationView, OutputLocation),
    (plain.GrantsView, Grants),
    (plain.ObjectGrantView, ObjectGrant),
    (plain.MultipartGrantView, MultipartGrant),
    (plain.PrefixGrantView, PrefixGrant),
    (plain.S3Location, S3Settings),
    (plain.URLRulesView, URLRules),
]


@pytest.mark.parametrize(("view", "model"), PAIRS, ids=[v.__name__ for v, _ in PAIRS])
def test_same_fields_and_defaults(view: type, model: type[BaseModel]) -> None:
    fields = {f.name: f for f in dataclasses.fields(view)}
    assert set(fields) == set(model.model_fields), "a field added to the model needs its plain view (plain.py)"
    for name, info in model.model_fields.items():
        f = fields[name]
        if info.is_required():
            assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING, name
        else:
            default = info.get_default(call_default_factory=True)
            mine = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            assert mine == default, name


def _job(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "kubeffmpeg.io/v1alpha1", "kind": "FFmpegJob",
            "metadata": {"name": "j1", "namespace": "ns", "uid": "u"}, "spec": spec,
            "status": {"phase": "Running"}}


SPECS: list[dict[str, Any]] = [
    {"inputs": [{"name": "in.mp4", "source": "d1/a.mp4"}], "outputs": [{"name": "out.mp4"}],
     "commands": ["-i {{in.mp4}} -c:v libx264 {{out.mp4}}"], "output": {"dirId": "out1"}},
    {"tenant": "acme", "inputs": [{"name": "a", "source": "https://cdn.example/a.mov", "options": ["-ss", "3"]}],
     "outputs": [{"name": "o.mkv", "options": ["-c copy"], "maps": ["0:v", "0:a?"]}], "filterComplex": "[0:v]null",
     "output": {"dirId": "x_y-z"}, "timeoutSeconds": 60, "stepTimeoutSeconds": 30, "backoffLimit": 2,
     "ttlSecondsAfterFinished": 0, "suspend": True, "cancel": False, "machine": "gpu", "priority": "high",
     "webhook": {"url": "https://hooks.example/x", "secretRef": {"name": "s", "key": "k"}}, "parallel": {"chunks": 2},
     "someFutureField": {"x": 1}},
    {"outputs": [{"name": "hls/"}, {"name": "thumb_%03d.jpg"}], "output": {"dirId": "d"},
     "inputs": [{"name": "in", "source": "d/a.mp4"}],
     "commands": ["-i {{in}} -f hls {{hls}}/index.m3u8", "-i {{in}} -vf fps=1 {{thumb_%03d.jpg}}"]},
    {"outputs": [{"name": "hls/", "entry": "index.m3u8", "options": ["-f hls"]}], "output": {"dirId": "d"},
     "inputs": [{"name": "in", "source": "d/a.mp4"}]},
    {"outputs": [{"name": "out.mp4"}], "output": {"dirId": "d"}, "commands": ["-f lavfi -i testsrc -t 1 {{out.mp4}}"],
     "template": {"name": "h264-720p", "parameters": {"crf": 23}}},
    {"outputs": [{"name": "tone.wav"}, {"name": "half.wav"}], "output": {"dirId": "d"},
     "commands": ["-f lavfi -i sine=d=1 {{tone.wav}}", "-i {{tone.wav}} -t 0.5 {{half.wav}}"]},
]


def _flat(v: Any) -> Any:
    """A view or a model as comparable plain data (webhook/parallel stay wire dicts in a view)."""
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _flat(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, BaseModel):
        return {k: _flat(getattr(v, k)) for k in type(v).model_fields}
    if isinstance(v, list):
        return [_flat(x) for x in v]
    if isinstance(v, dict):
        return {k: _flat(x) for k, x in v.items()}
    return v


@pytest.mark.parametrize("spec", SPECS)
def test_reads_a_job_as_the_model_does(spec: dict[str, Any]) -> None:
    obj = _job(spec)
    view, model = plain.read_job(obj), read_ffmpegjob(obj)
    assert (view.name, view.namespace, view.metadata) == (model.name, model.namespace, model.metadata)
    mine, theirs = _flat(view.spec), _flat(model.spec)
    for nested in ("webhook", "parallel"):  # kept as written (the worker reads neither): their content
        m = model.spec.model_dump(by_alias=True, exclude_none=True)
        assert mine.pop(nested) == m.get(nested), nested
        theirs.pop(nested)
    assert mine == theirs
    assert view.raw == obj
    rules, s3 = URLRules(allow_hosts="", allow_http=False), S3Settings(endpoint_url="http://minio:9000")
    assert validate_spec(view.spec, check_urls=False, url_rules=rules, s3=s3) == \
        validate_spec(model.spec, check_urls=False, url_rules=rules, s3=s3)


BAD: list[tuple[str, dict[str, Any]]] = [
    ("no outputs", {"outputs": [], "output": {"dirId": "d"}}),
    ("no output dir", {"outputs": [{"name": "o.mp4"}]}),
    ("dir id", {"outputs": [{"name": "o.mp4"}], "output": {"dirId": "../up"}}),
    ("output name", {"outputs": [{"name": "../o.mp4"}], "output": {"dirId": "d"}}),
    ("input name", {"inputs": [{"name": "a/b", "source": "d/x.mp4"}], "outputs": [{"name": "o"}],
                    "output": {"dirId": "d"}}),
    ("empty source", {"inputs": [{"name": "a", "source": ""}], "outputs": [{"name": "o"}], "output": {"dirId": "d"}}),
    ("tenant", {"tenant": "a/b", "outputs": [{"name": "o"}], "output": {"dirId": "d"}}),
    ("commands type", {"commands": "-i x", "outputs": [{"name": "o"}], "output": {"dirId": "d"}}),
    ("timeout zero", {"timeoutSeconds": 0, "outputs": [{"name": "o"}], "output": {"dirId": "d"}}),
    ("machine", {"machine": "GPU_1", "outputs": [{"name": "o"}], "output": {"dirId": "d"}}),
    ("inputs type", {"inputs": {"a": 1}, "outputs": [{"name": "o"}], "output": {"dirId": "d"}}),
]


@pytest.mark.parametrize(("why", "spec"), BAD, ids=[w for w, _ in BAD])
def test_refuses_what_the_model_refuses(why: str, spec: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        read_ffmpegjob(_job(spec))
    with pytest.raises(plain.Invalid):
        plain.read_job(_job(spec))


def test_refuses_what_the_api_servers_schema_refuses() -> None:
    """Stricter than pydantic's lax mode, which turns "60" and true into 60 and 1: the CRD's
    schema (generated from the model) has the API server refuse both before any worker reads them."""
    for value in ("60", True, 1.5):
        with pytest.raises(plain.Invalid):
            plain.read_job(_job({"timeoutSeconds": value, "outputs": [{"name": "o"}], "output": {"dirId": "d"}}))


def test_the_safety_rules_refuse_the_same_on_a_view() -> None:
    spec = {"inputs": [{"name": "in", "source": "d/a.mp4"}], "outputs": [{"name": "o.mp4"}],
            "commands": ["-i {{in}} -i /etc/passwd {{o.mp4}}"], "output": {"dirId": "d"}}
    rules, s3 = URLRules(), S3Settings()
    errors = []
    for s in (plain.read_job(_job(spec)).spec, read_ffmpegjob(_job(spec)).spec):
        with pytest.raises(UnsafeCommand) as exc:
            validate_spec(s, check_urls=False, url_rules=rules, s3=s3)
        errors.append(str(exc.value))
    assert errors[0] == errors[1]


def test_status_dicts_equal_the_models() -> None:
    for args in [(0, 3, 0), (2, 3, 41.7, "1.5x"), (3, 3, 100, None, 2)]:
        step, steps, percent, *rest = args
        speed = rest[0] if rest else None
        resumed = rest[1] if len(rest) > 1 else None
        assert plain.progress_k8s(step, steps, percent, speed, resumed) == Progress(
            step=step, steps=steps, percent=percent, speed=speed, resumed_from_step=resumed).to_k8s()
    for media in (None, {"duration": 1.5, "video_codec": "h264"}):
        assert plain.result_file_k8s("o.mp4", 123, "d/o.mp4", media) == ResultFile(
            file_name="o.mp4", size_bytes=123, storage_path="d/o.mp4", media=media).to_k8s()
    for t, i, o in [(0.0, 0, 0), (2.34567, 101_500_000, 3_456_789), (61, 7, 1)]:
        assert plain.usage_k8s(t, i, o) == Usage.compute(t, i, o).to_k8s()


def _grants() -> Grants:
    return Grants(
        expires_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        inputs={"in.mp4": ObjectGrant(key="files/t/d/a.mp4", get_url="http://s3/a?sig=1")},
        outputs={"o.mp4": ObjectGrant(key="files/t/o/o.mp4", put_url="http://s3/o?sig=2", delete_url="http://s3/o?d=1",
                                      content_type="video/mp4",
                                      multipart=MultipartGrant(upload_id="u", part_urls=["http://s3/p1", "http://s3/p2"],
                                                               complete_url="http://s3/c", abort_url="http://s3/a"))},
        output_prefix=PrefixGrant(prefix="files/t/o/", url="http://s3/b", fields={"policy": "p"}, max_bytes=10),
        scratch={"seg-00000.ts": ObjectGrant(key="scratch/t/u/seg-00000.ts", get_url="http://s3/s")},
    )


def test_reads_the_grants_file_as_the_model_does(tmp_path: Any) -> None:
    g = _grants()
    path = tmp_path / plain.GRANTS_FILE
    path.write_text(g.dump())
    view = plain.load_grants(path)
    assert _flat(view) == _flat(Grants.load(path))
    assert plain.read_grants(json.loads(Grants(expires_at=g.expires_at).dump())) == plain.GrantsView(
        expires_at=g.expires_at)
    for bad in ({"version": 2, "expires_at": "2030-01-01T00:00:00Z"}, {"inputs": {}},
                {"expires_at": "soon"}, {"expires_at": "2030-01-01T00:00:00Z", "inputs": {"a": {"get_url": "x"}}}):
        with pytest.raises(ValidationError):
            Grants.model_validate(bad)
        with pytest.raises(plain.Invalid):
            plain.read_grants(bad)


ENVS: list[dict[str, str]] = [
    {},
    {"S3_ENDPOINT_URL": "http://minio:9000", "s3_bucket": "media", "S3_REGION": "eu",
     "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "URL_ALLOW_HOSTS": "minio, 10.0.0.0/8",
     "URL_ALLOW_HTTP": "yes"},
    {"S3_PUBLIC_ENDPOINT_URL": "https://s3.example", "url_allow_http": "0"},
    {"URL_ALLOW_HTTP": "TRUE"},
]


@pytest.mark.parametrize("env", ENVS)
def test_settings_from_the_same_environment(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("S3_ENDPOINT_URL", "S3_PUBLIC_ENDPOINT_URL", "S3_BUCKET", "S3_REGION", "AWS_ACCESS_KEY_ID",
              "AWS_SECRET_ACCESS_KEY", "URL_ALLOW_HOSTS", "URL_ALLOW_HTTP"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert dataclasses.asdict(plain.S3Location.from_env()) == S3Settings().model_dump()
    assert plain.S3Location.from_env().public_endpoint == S3Settings().public_endpoint
    rules, view = URLRules(), plain.URLRulesView.from_env()
    assert (view.allow_hosts, view.allow_http) == (rules.allow_hosts, rules.allow_http)
    assert view.allowed_entries() == rules.allowed_entries()


def test_a_bad_boolean_is_refused_by_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("URL_ALLOW_HTTP", "maybe")
    with pytest.raises(ValidationError):
        URLRules()
    with pytest.raises(plain.Invalid):
        plain.URLRulesView.from_env()


def test_the_worker_loads_no_pydantic_on_its_way_to_ffmpeg() -> None:
    """Everything the single-pod worker imports before and after FFmpeg, in a fresh process."""
    code = ("import sys, ffmpeg_worker.main, ffmpeg_worker.early, ffmpeg_worker.kube, ffmpeg_worker.worker, "
            "ffmpeg_worker.storage, ffmpeg_worker.fetch, ffmpeg_worker.upload, ffmpeg_worker.checkpoint, "
            "ffmpegjob_model.plain, ffmpegjob_model.safety, ffmpegjob_model.probe; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'pydantic_core', 'httpx', "
            "'yaml', 'kubernetes', 'boto3', 'botocore')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
