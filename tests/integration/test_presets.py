"""Presets (FFmpegJobTemplates, docs/presets.md) on the real local stack: the chart's shipped
templates as the stack installs them, FFmpegJobs that name them (kubectl and both REST surfaces),
real FFmpeg in the worker, and the outputs checked with ffprobe/ffmpeg the way a user would."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from devstack.stack import StackInfo
from ffmpeg_api.keys import create_key
from ffmpegjob_model.model import GROUP, PLURAL, VERSION
from ffmpegjob_model.storage_layout import file_key
from ffmpegjob_model.templates import TEMPLATE_CONDITION, TEMPLATE_PLURAL
from helpers import api_process, unique, wait_phase
from kubernetes import client

pytestmark = pytest.mark.stack

DIR = "dir_presets"
PRESETS = Path(__file__).resolve().parents[2] / "charts" / "kubeffmpeg" / "presets"


@pytest.fixture(scope="module")
def clip(stack: StackInfo, s3: Any) -> str:
    """A 4 s 640x360 clip with a quiet (-48 LUFS) mono tone in tenant `default`: `DIR/clip.mp4`."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "clip.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=24:duration=4",
                        "-f", "lavfi", "-i", "sine=frequency=440:duration=4,volume=0.05",
                        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
                        "-shortest", str(out)], check=True)
        s3.upload_file(str(out), stack.env["S3_BUCKET"], file_key("default", DIR, "clip.mp4"))
    return f"{DIR}/clip.mp4"


def run_template(custom: client.CustomObjectsApi, ns: str, template: str, source: str,
                 parameters: dict[str, Any] | None = None, out_dir: str = DIR) -> dict[str, Any]:
    name = unique(template[:20])
    body = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "FFmpegJob", "metadata": {"name": name},
        "spec": {"inputs": [{"name": "in", "source": source}], "output": {"dirId": out_dir},
                 "timeoutSeconds": 600, "template": {"name": template, "parameters": parameters or {}}},
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    return wait_phase(custom, ns, name, timeout=600)


def download(stack: StackInfo, s3: Any, out_dir: str, names: list[str], into: Path) -> None:
    for n in names:
        s3.download_file(stack.env["S3_BUCKET"], file_key("default", out_dir, n), str(into / n))


def probe(path: Path) -> dict[str, Any]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout))


def loudness(path: Path) -> float:
    out = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-af", "ebur128", "-f", "null", "-"],
                         capture_output=True, text=True, check=True).stderr
    return float(re.findall(r"I:\s+(-?[0-9.]+) LUFS", out)[-1])


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def succeeded(done: dict[str, Any], template: str) -> dict[str, Any]:
    """The checks every template job shares: Succeeded, the resolved commands in its spec and a
    TemplateResolved condition naming the template."""
    st = done["status"]
    assert st["phase"] == "Succeeded", st
    assert done["spec"]["commands"] and "$(params." not in " ".join(done["spec"]["commands"])
    cond = next(c for c in st["conditions"] if c["type"] == TEMPLATE_CONDITION)
    assert cond["status"] == "True" and template in cond["message"]
    return dict(st)


# ----------------------------------------------------------------------------- kubectl-applied
def test_the_stack_has_the_shipped_presets(stack: StackInfo, custom: Any) -> None:
    items = custom.list_namespaced_custom_object(GROUP, VERSION, stack.namespace, TEMPLATE_PLURAL)["items"]
    assert {i["metadata"]["name"] for i in items} >= {p.stem for p in PRESETS.glob("*.yaml")}


@pytest.mark.parametrize("preset,height", [("h264-720p", 720), ("h264-1080p", 1080)])
def test_h264_presets(stack: StackInfo, custom: Any, s3: Any, clip: str, workdir: Path, preset: str,
                      height: int) -> None:
    out_dir = unique("d-h264").replace("-", "_")
    done = run_template(custom, stack.namespace, preset, clip, {"preset": "ultrafast", "crf": 30}, out_dir)
    st = succeeded(done, preset)
    assert [r["fileName"] for r in st["result"]] == ["out.mp4"]
    cmd = done["spec"]["commands"][0]
    assert "-crf 30" in cmd and "-preset ultrafast" in cmd and f"scale=-2:{height}" in cmd
    download(stack, s3, out_dir, ["out.mp4"], workdir)
    streams = {s["codec_type"]: s for s in probe(workdir / "out.mp4")["streams"]}
    assert streams["video"]["codec_name"] == "h264" and streams["video"]["height"] == height
    assert streams["video"]["width"] == height * 16 // 9 and streams["audio"]["codec_name"] == "aac"


def test_hls_ladder_preset(stack: StackInfo, custom: Any, s3: Any, clip: str, workdir: Path) -> None:
    out_dir = unique("d-hls").replace("-", "_")
    done = run_template(custom, stack.namespace, "hls-ladder", clip,
                        {"preset": "ultrafast", "segment_seconds": 2, "gop": 24}, out_dir)
    st = succeeded(done, "hls-ladder")
    files = sorted(r["fileName"] for r in st["result"])
    assert files == sorted(["master.m3u8", "v0.m3u8", "v1.m3u8", "v2.m3u8", "v0.ts", "v1.ts", "v2.ts"])
    download(stack, s3, out_dir, files, workdir)
    master = (workdir / "master.m3u8").read_text()
    assert master.count("#EXT-X-STREAM-INF") == 3
    assert [re.search(r"RESOLUTION=(\d+x\d+)", ln).group(1)  # type: ignore[union-attr]
            for ln in master.splitlines() if ln.startswith("#EXT-X-STREAM-INF")] == ["1920x1080", "1280x720", "854x480"]
    # The ladder plays from its master playlist: every rung's video and audio, about 4 s long.
    info = probe(workdir / "master.m3u8")
    heights = sorted(s["height"] for s in info["streams"] if s["codec_type"] == "video")
    assert heights == [480, 720, 1080]
    assert abs(float(info["format"]["duration"]) - 4.0) < 0.5
    assert "#EXT-X-BYTERANGE" in (workdir / "v1.m3u8").read_text()


def test_thumbnail_sprite_preset(stack: StackInfo, custom: Any, s3: Any, clip: str, workdir: Path) -> None:
    out_dir = unique("d-sprite").replace("-", "_")
    done = run_template(custom, stack.namespace, "thumbnail-sprite", clip,
                        {"interval": 1, "width": 160, "columns": 4, "rows": 1}, out_dir)
    succeeded(done, "thumbnail-sprite")
    download(stack, s3, out_dir, ["sprite.jpg"], workdir)
    (video,) = probe(workdir / "sprite.jpg")["streams"]
    assert (video["codec_name"], video["width"], video["height"]) == ("mjpeg", 640, 90)


def test_loudnorm_preset_reaches_ebu_r128(stack: StackInfo, custom: Any, s3: Any, clip: str, workdir: Path) -> None:
    out_dir = unique("d-loud").replace("-", "_")
    done = run_template(custom, stack.namespace, "loudnorm-ebu-r128", clip, None, out_dir)
    succeeded(done, "loudnorm-ebu-r128")
    download(stack, s3, out_dir, ["out.mp4"], workdir)
    s3.download_file(stack.env["S3_BUCKET"], file_key("default", DIR, "clip.mp4"), str(workdir / "clip.mp4"))
    assert loudness(workdir / "clip.mp4") < -40  # the quiet source
    assert abs(loudness(workdir / "out.mp4") - (-23.0)) <= 1.0
    streams = {s["codec_type"]: s for s in probe(workdir / "out.mp4")["streams"]}
    assert streams["video"]["codec_name"] == "h264"  # copied


@pytest.mark.parametrize(
    ("template", "parameters", "words"),
    [
        ("h264-720p", {"crf": 99}, "above the maximum 51"),
        ("h264-720p", {"bogus": 1}, "unknown parameter(s) bogus"),
        ("h264-720p", {"preset": "warp"}, "not one of"),
        ("no-such-template", {}, "not found"),
    ],
)
def test_bad_template_jobs_fail_validation(stack: StackInfo, custom: Any, clip: str, template: str,
                                           parameters: dict[str, Any], words: str) -> None:
    done = run_template(custom, stack.namespace, template, clip, parameters)
    st = done["status"]
    assert (st["phase"], st["reason"]) == ("Failed", "ValidationFailed"), st
    assert words in st["message"]
    assert not done["spec"].get("commands")  # nothing was recorded as if it could run


def test_resolved_commands_are_fixed_once_recorded(stack: StackInfo, custom: Any, clip: str) -> None:
    done = run_template(custom, stack.namespace, "thumbnail-sprite", clip, {"interval": 2, "columns": 2, "rows": 1})
    assert done["status"]["phase"] == "Succeeded"
    with pytest.raises(client.ApiException) as refused:
        custom.patch_namespaced_custom_object(GROUP, VERSION, stack.namespace, PLURAL, done["metadata"]["name"],
                                              {"spec": {"commands": ["-i {{in}} -vf fps=1 sprite.jpg"]}})
    assert refused.value.status == 422 and "immutable" in refused.value.body


def own_template(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FFmpegJobTemplate", "metadata": {"name": name}, "spec": spec}


def test_your_own_template_from_the_docs(stack: StackInfo, custom: Any, s3: Any, clip: str, workdir: Path) -> None:
    """docs/presets.md "Writing your own": the gif-preview example, applied and used as written."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "presets.md").read_text()
    block = re.search(r"```yaml\n(apiVersion: kubeffmpeg.io/v1alpha1\nkind: FFmpegJobTemplate\n.*?)```", doc, re.S)
    assert block is not None
    template = yaml.safe_load(block.group(1))
    name = unique("gif-preview")
    custom.create_namespaced_custom_object(GROUP, VERSION, stack.namespace, TEMPLATE_PLURAL,
                                           own_template(name, template["spec"]))
    out_dir = unique("d-gif").replace("-", "_")
    done = run_template(custom, stack.namespace, name, clip, {"seconds": 1, "width": 160}, out_dir)
    succeeded(done, name)
    download(stack, s3, out_dir, ["preview.gif"], workdir)
    (video,) = probe(workdir / "preview.gif")["streams"]
    assert (video["codec_name"], video["width"], video["height"]) == ("gif", 160, 90)


def test_the_crd_and_the_resolver_refuse_broken_templates(stack: StackInfo, custom: Any, clip: str) -> None:
    with pytest.raises(client.ApiException) as refused:  # the schema, in the API server
        custom.create_namespaced_custom_object(GROUP, VERSION, stack.namespace, TEMPLATE_PLURAL, own_template(
            unique("bad-type"), {"outputs": [{"name": "o.mp4"}], "commands": ["-i {{in}} {{o.mp4}}"],
                                 "parameters": [{"name": "x", "type": "float"}]}))
    assert refused.value.status == 422 and "type" in refused.value.body
    name = unique("undeclared")  # what the schema cannot see: the job says why
    custom.create_namespaced_custom_object(GROUP, VERSION, stack.namespace, TEMPLATE_PLURAL, own_template(
        name, {"inputs": [{"name": "in"}], "outputs": [{"name": "o.mp4"}],
               "commands": ["-i {{in}} -crf $(params.crf) {{o.mp4}}"]}))
    st = run_template(custom, stack.namespace, name, clip)["status"]
    assert (st["phase"], st["reason"]) == ("Failed", "ValidationFailed")
    assert "undeclared parameter(s) crf" in st["message"], st["message"]


# ------------------------------------------------------------------------------------------ REST
@pytest.fixture(scope="module")
def api(stack_env: dict[str, str], kube_api: client.ApiClient, stack: StackInfo) -> Iterator[httpx.Client]:
    """An API process of this tree (helpers.api_process) and a fresh tenant's key."""
    key = create_key(client.CoreV1Api(kube_api), stack.namespace, "kubeffmpeg-api-keys", unique("presets"))
    with api_process(stack_env, 180.0) as url, httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=240) as c:
        yield c


def put(url: str, path: Path) -> None:
    assert httpx.put(url, content=path.read_bytes(), timeout=60).status_code == 200


def test_rest_lists_the_templates(api: httpx.Client) -> None:
    r = api.get("/api/templates")
    assert r.status_code == 200, r.text
    by_name = {t["name"]: t for t in r.json()["data"]}
    assert set(by_name) >= {p.stem for p in PRESETS.glob("*.yaml")}
    crf = next(p for p in by_name["h264-720p"]["parameters"] if p["name"] == "crf")
    assert crf == {"name": "crf", "type": "integer", "default": 23, "minimum": 0, "maximum": 51,
                   "description": crf["description"]}
    assert by_name["hls-ladder"]["inputs"][0]["name"] == "in"
    one = api.get("/api/templates/thumbnail-sprite")
    assert one.status_code == 200 and one.json()["data"]["outputs"] == [{"name": "sprite.jpg"}]
    assert api.get("/api/templates/nope").status_code == 404
    assert httpx.get(f"{api.base_url}/api/templates", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_vgf_request_names_a_template(api: httpx.Client, kube_api: client.ApiClient, stack: StackInfo,
                                      s3: Any, clip: str, workdir: Path) -> None:
    s3.download_file(stack.env["S3_BUCKET"], file_key("default", DIR, "clip.mp4"), str(workdir / "clip.mp4"))
    urls = api.post("/api/tmp-file", json={"file_name": "clip.mp4"}).json()["data"]
    put(urls["upload_url"], workdir / "clip.mp4")
    req = {"input_files": {"in": urls["download_url"]},
           "template": {"name": "h264-720p", "parameters": {"preset": "ultrafast", "crf": 32}}}
    r = api.post("/api/ffmpeg?wait=true", json=req)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["status"] == "succeeded" and list(data["output_files"]) == ["out.mp4"], data
    out = httpx.get(data["output_files"]["out.mp4"], timeout=60)
    (workdir / "out.mp4").write_bytes(out.content)
    video = next(s for s in probe(workdir / "out.mp4")["streams"] if s["codec_type"] == "video")
    assert video["height"] == 720
    ffj: Any = client.CustomObjectsApi(kube_api).get_namespaced_custom_object(
        GROUP, VERSION, stack.namespace, PLURAL, data["id"])
    assert ffj["spec"]["template"] == req["template"]  # what it was made from ...
    assert "-crf 32" in ffj["spec"]["commands"][0]  # ... and what ran


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ({"name": "h264-720p", "parameters": {"crf": 52}}, "parameter 'crf': 52 is above the maximum 51"),
        ({"name": "h264-720p", "parameters": {"crff": 20}}, "unknown parameter(s) crff"),
        ({"name": "h264-720p", "parameters": {"audio_bitrate": "128k -i x"}}, "does not match"),
        ({"name": "no-such", "parameters": {}}, "template 'no-such' not found"),
    ],
)
def test_vgf_template_refusals_are_400(api: httpx.Client, template: dict[str, Any], words: str) -> None:
    req = {"input_files": {"in": "https://cdn.example/in.mp4"}, "template": template}
    r = api.post("/api/ffmpeg", json=req)
    assert r.status_code == 400, r.text
    assert words in r.json()["message"], r.json()


def test_vgf_template_needs_the_template_inputs(api: httpx.Client) -> None:
    r = api.post("/api/ffmpeg", json={"input_files": {"video": "https://cdn.example/in.mp4"},
                                      "template": {"name": "h264-720p"}})
    assert r.status_code == 400 and "missing input(s) in" in r.json()["message"], r.text
    r = api.post("/api/ffmpeg", json={"input_files": {"in": "https://cdn.example/in.mp4"}, "output_files": ["x.mp4"],
                                      "template": {"name": "h264-720p"}})
    assert r.status_code == 400 and "leave ffmpeg_commands and output_files out" in r.json()["message"], r.text


def test_ffmpeg_api_task_names_a_template(api: httpx.Client, stack: StackInfo, s3: Any, workdir: Path) -> None:
    s3.download_file(stack.env["S3_BUCKET"], file_key("default", DIR, "clip.mp4"), str(workdir / "clip.mp4"))
    reg = api.post("/file", json={"file_name": "clip.mp4"}).json()
    put(reg["upload"]["url"], workdir / "clip.mp4")
    path = f"{reg['file']['dir_id']}/clip.mp4"
    task = {"inputs": [{"file_path": path}],
            "template": {"name": "thumbnail-sprite", "parameters": {"interval": 1, "columns": 2, "rows": 2}}}
    r = api.post("/ffmpeg/process", json={"task": task})
    assert r.status_code == 200, r.text
    (res,) = r.json()["result"]
    assert res["file_name"] == "sprite.jpg"
    (workdir / "sprite.jpg").write_bytes(httpx.get(res["download_url"], timeout=60).content)
    (video,) = probe(workdir / "sprite.jpg")["streams"]
    assert (video["width"], video["height"]) == (320, 180)
    bad = api.post("/ffmpeg/process", json={"task": {**task, "template": {"name": "thumbnail-sprite",
                                                                          "parameters": {"rows": 0}}}})
    assert bad.status_code == 400 and "below the minimum 1" in bad.json()["error"], bad.text
    two = api.post("/ffmpeg/process", json={"task": {**task, "inputs": [{"file_path": path}] * 2}})
    assert two.status_code == 400 and "takes 1 input(s)" in two.json()["error"], two.text
