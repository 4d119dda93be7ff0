"""Drop-in compatibility as pure functions: the "Very Good FFmpeg" job object and status words,
its `inputs/<key>`/`outputs/<name>` file references, the "FFmpeg API" `@{file}` references,
webhook bodies per surface, and which URL problems are refusals and which become failed jobs."""

from __future__ import annotations

from typing import Any

import pytest
from ffmpeg_api.compile import resolve_file_refs, vgf_commands
from ffmpeg_api.errors import ApiError, vgf_error_code
from ffmpegjob_model import payloads
from ffmpegjob_model.model import FFmpegJobSpec, InputFile, OutputFile, OutputLocation
from ffmpegjob_model.safety import UnsafeCommand, validate_spec
from ffmpegjob_model.settings import S3Settings
from ffmpegjob_model.urls import URLRules, URLUnresolvable

RULES = {"url_rules": URLRules(), "s3": S3Settings(endpoint_url=None, public_endpoint_url=None)}

# ------------------------------------------------------------------- inputs/<key>, outputs/<name>
README_COMMANDS = [
    ("-i inputs/input.mp4 -vf scale=1280:720 outputs/output.mp4", "-i {{input.mp4}} -vf scale=1280:720 {{output.mp4}}"),
    ("-i inputs/input.mp4 -c:v libx264 outputs/output.mp4", "-i {{input.mp4}} -c:v libx264 {{output.mp4}}"),
    ("-i inputs/input.mp4 -vn outputs/output.wav", "-i {{input.mp4}} -vn {{output.wav}}"),
]


@pytest.mark.parametrize(("command", "expected"), README_COMMANDS)
def test_sdk_readme_paths_become_placeholders(command: str, expected: str) -> None:
    out = "output.wav" if "wav" in command else "output.mp4"
    assert vgf_commands([command], ["input.mp4"], [out]) == [expected]


def test_keys_without_extension_and_placeholders_keep_working() -> None:
    cmds = ["-i {{input}} -t 5 {{output.mp4}}", "-i <<input>> -vf subtitles=inputs/subs outputs/output.mp4"]
    assert vgf_commands(cmds, ["input", "subs"], ["output.mp4"]) == [
        "-i {{input}} -t 5 {{output.mp4}}", "-i <<input>> -vf subtitles={{subs}} {{output.mp4}}"]


def test_an_undeclared_path_is_a_clear_400() -> None:
    with pytest.raises(ApiError) as e:
        vgf_commands(["-i inputs/other.mp4 outputs/o.mp4"], ["input.mp4"], ["o.mp4"])
    assert e.value.status == 400 and "inputs/other.mp4" in e.value.message and "input.mp4" in e.value.message


@pytest.mark.parametrize("arg", ["/inputs/input.mp4", "../inputs/input.mp4", "x/inputs/input.mp4",
                                 "inputs/input.mp4/../../etc/passwd", "myinputs/input.mp4"])
def test_longer_paths_are_left_for_the_safety_rules_to_refuse(arg: str) -> None:
    [cmd] = vgf_commands([f"-i {arg} outputs/o.mp4"], ["input.mp4"], ["o.mp4"])
    assert arg in cmd
    spec = FFmpegJobSpec(inputs=[InputFile(name="input.mp4", source="dir_a/input.mp4")],
                         outputs=[OutputFile(name="o.mp4")], commands=[cmd], output=OutputLocation(dir_id="d"))
    with pytest.raises(UnsafeCommand):
        validate_spec(spec, check_urls=False, **RULES)


# ------------------------------------------------------------------------------- @{file.ext}
def test_file_references_resolve_to_the_inputs_placeholder() -> None:
    refs = {"video.mp4": "in0", "subs.srt": "in1"}
    assert resolve_file_refs("subtitles=@{subs.srt}", refs, "outputs[0].options") == "subtitles={{in1}}"
    assert resolve_file_refs("[0:v]scale=2:2[v];movie=@{ video.mp4 }", refs, "x") == "[0:v]scale=2:2[v];movie={{in0}}"
    with pytest.raises(ApiError) as e:
        resolve_file_refs("subtitles=@{other.srt}", refs, "outputs[0].options")
    assert e.value.status == 400 and e.value.message.startswith("Invalid task format") and "subs.srt" in e.value.message


# ----------------------------------------------------------------------------- the job object
VGF_KEYS = {"id", "status", "queued_at", "created_at", "updated_at", "started_at", "finished_at", "error_message",
            "ffmpeg_commands", "input_files", "output_files", "webhook_url", "timeout_seconds",
            "total_input_bytes", "total_output_bytes"}


def ffj(status: dict[str, Any] | None = None, surface: str = payloads.SURFACE_VGF) -> dict[str, Any]:
    return {
        "metadata": {"name": "job-1", "creationTimestamp": "2026-01-01T00:00:00Z",
                     "labels": {payloads.SURFACE_LABEL: surface},
                     "annotations": {payloads.VGF_REQUEST_ANNOTATION:
                                     '{"input_files":{"input.mp4":"https://x/y.mp4"},'
                                     '"ffmpeg_commands":["-i inputs/input.mp4 outputs/o.mp4"]}'}},
        "spec": {"tenant": "t", "inputs": [{"name": "input.mp4", "source": "dir_a/y.mp4"}],
                 "outputs": [{"name": "o.mp4"}], "commands": ["-i {{input.mp4}} {{o.mp4}}"], "machine": "cpu",
                 "output": {"dirId": "dir_o"}, "timeoutSeconds": 300,
                 "webhook": {"url": "https://example.com/hook"}},
        "status": status or {},
    }


def presign(path: str, expires: int) -> str:
    return f"https://s3.example/{path}?expires={expires}"


SUCCEEDED = {
    "phase": "Succeeded", "startTime": "2026-01-01T00:00:02Z", "completionTime": "2026-01-01T00:00:05Z",
    "result": [{"fileName": "o.mp4", "sizeBytes": 1234, "storagePath": "dir_o/o.mp4"}],
    "usage": {"timeSec": 2.5, "inputSizeGb": 0.000567, "outputSizeGb": 0.000001, "gbSec": 0.00142,
              "inputBytes": 567000, "outputBytes": 1234},
}


def test_a_queued_job_has_every_key_with_nulls_kept() -> None:
    job = payloads.vgf_job(ffj(), presign)
    assert set(job) >= VGF_KEYS
    assert job["status"] == "queued" and job["error_message"] == "" and job["output_files"] == {}
    assert job["queued_at"] == job["created_at"] == job["updated_at"] == "2026-01-01T00:00:00Z"
    assert job["started_at"] is None and job["finished_at"] is None and job["total_input_bytes"] is None
    assert job["input_files"] == {"input.mp4": "https://x/y.mp4"}  # as the client sent them
    assert job["ffmpeg_commands"] == ["-i inputs/input.mp4 outputs/o.mp4"]
    assert job["webhook_url"] == "https://example.com/hook" and job["timeout_seconds"] == 300


def test_a_succeeded_job_has_download_urls_valid_seven_days_and_byte_totals() -> None:
    job = payloads.vgf_job(ffj(SUCCEEDED), presign)
    assert job["status"] == "succeeded" and job["error_message"] == ""
    assert job["output_files"] == {"o.mp4": f"https://s3.example/dir_o/o.mp4?expires={7 * 24 * 3600}"}
    assert job["total_input_bytes"] == 567000 and job["total_output_bytes"] == 1234
    assert job["started_at"] == "2026-01-01T00:00:02Z" and job["finished_at"] == job["updated_at"]
    assert job["usage"]["gb_sec"] == 0.00142 and job["result"][0]["size_bytes"] == 1234


@pytest.mark.parametrize(("phase", "word"), [("Pending", "queued"), ("Running", "running"), ("Succeeded", "succeeded"),
                                             ("Failed", "failed"), ("Cancelled", "cancelled")])
def test_status_words(phase: str, word: str) -> None:
    assert payloads.vgf_job(ffj({"phase": phase}), presign)["status"] == word


def test_a_failed_job_has_an_error_message_and_no_outputs() -> None:
    job = payloads.vgf_job(ffj({"phase": "Failed", "error": "input 'input.mp4': cannot resolve host",
                                "result": SUCCEEDED["result"]}), presign)
    assert job["error_message"] == "input 'input.mp4': cannot resolve host" and job["output_files"] == {}
    timed_out = {"phase": "Failed", "error": "terminated: SIGTERM",
                 "message": "timed out after 10s: terminated: SIGTERM"}
    assert payloads.vgf_job(ffj(timed_out), presign)["error_message"] == "timed out after 10s: terminated: SIGTERM"


def test_a_job_written_with_kubectl_shows_its_spec() -> None:
    obj = ffj()
    del obj["metadata"]["annotations"]
    job = payloads.vgf_job(obj, presign)
    assert job["ffmpeg_commands"] == ["-i {{input.mp4}} {{o.mp4}}"]
    assert job["input_files"] == {"input.mp4": "dir_a/y.mp4"}


# ---------------------------------------------------------------------------------- webhooks
def test_vgf_jobs_send_the_job_object_other_jobs_the_seed_body() -> None:
    vgf = payloads.webhook_body(ffj(SUCCEEDED), "job-1", presign, 3600)
    assert vgf == payloads.vgf_job(ffj(SUCCEEDED), presign)
    api = payloads.webhook_body(ffj(SUCCEEDED, payloads.SURFACE_FFMPEG_API), "job-1", presign, 3600)
    assert api == {"job_id": "job-1", "status": "completed",
                   "result": [{"file_name": "o.mp4", "size_bytes": 1234,
                               "download_url": "https://s3.example/dir_o/o.mp4?expires=3600"}],
                   "usage": {"time_sec": 2.5, "input_size_gb": 0.000567, "output_size_gb": 0.000001,
                             "gb_sec": 0.00142}}


def test_ffmpeg_api_webhook_usage_is_never_null_and_errors_carry_the_documented_prefix() -> None:
    no_usage = {k: v for k, v in SUCCEEDED.items() if k != "usage"}
    body = payloads.webhook_body(ffj(no_usage, payloads.SURFACE_FFMPEG_API), "j", presign, 60)
    assert body["usage"] == {"time_sec": 3.0, "input_size_gb": 0.0, "output_size_gb": 0.000001, "gb_sec": 4e-06}
    fail = payloads.webhook_body(ffj({"phase": "Failed", "error": "Invalid input format"},
                                     payloads.SURFACE_FFMPEG_API), "j", presign, 60)
    assert fail == {"job_id": "j", "status": "failed", "error": "FFmpeg processing error: Invalid input format"}


# ------------------------------------------------------------------------------ URL problems
def spec_with(url: str) -> FFmpegJobSpec:
    return FFmpegJobSpec(inputs=[InputFile(name="in", source=url)], outputs=[OutputFile(name="o.mp4")],
                         commands=["-i {{in}} {{o.mp4}}"], output=OutputLocation(dir_id="d"))


def unresolvable(host: str, port: int) -> list[str]:
    raise URLUnresolvable(f"cannot resolve host {host!r}")


def test_an_unresolvable_host_is_accepted_only_when_asked() -> None:
    spec = spec_with("https://does-not-exist.invalid/x.mp4")
    validate_spec(spec, resolve=unresolvable, unresolvable_ok=True, **RULES)
    with pytest.raises(UnsafeCommand, match="cannot resolve"):
        validate_spec(spec, resolve=unresolvable, **RULES)


@pytest.mark.parametrize("url", ["http://example.com/x.mp4", "https://127.0.0.1/x.mp4", "https://10.1.2.3/x",
                                 "https://169.254.169.254/latest", "https://[::1]/x", "https://metadata.google.internal/x"])
def test_security_refusals_stay_refusals(url: str) -> None:
    with pytest.raises(UnsafeCommand):
        validate_spec(spec_with(url), resolve=unresolvable, unresolvable_ok=True, **RULES)


def test_private_names_are_refused_even_when_unresolvable_names_are_accepted() -> None:
    with pytest.raises(UnsafeCommand, match="private"):
        validate_spec(spec_with("https://intranet.example/x.mp4"), resolve=lambda h, p: ["10.0.0.7"], **RULES,
                      unresolvable_ok=True)


def test_vgf_error_codes() -> None:
    assert [vgf_error_code(s) for s in (400, 401, 403, 404, 429, 500, 503)] == [
        "badRequest", "badApiKey", "forbidden", "notFound", "tooManyRequests", "unknownError", "unknownError"]
    assert vgf_error_code(400, validation=True) == "validationError"
