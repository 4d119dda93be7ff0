"""Both REST surfaces through FastAPI's TestClient on `create_app(services=...)`, over an
in-memory Kubernetes API and bucket (tests/unit/fakes.py): what a client of each surface sees
(status codes, error shapes, job views, paging) and the FFmpegJob each submission stores."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from fakes import NAMESPACE, FakeBucket, FakeKubernetes, Obj, api_services, stamp
from fastapi.testclient import TestClient
from ffmpeg_api.app import create_app
from ffmpegjob_model.payloads import SURFACE_LABEL
from ffmpegjob_model.storage_layout import DirectoryMeta, dir_meta_key, file_key
from ffmpegjob_model.webhooks import REDELIVER_ANNOTATION
from kubernetes.client.rest import ApiException

KEY, OTHER_KEY = "kff_acme_key", "kff_other_key"
ACME = {"Authorization": f"Bearer {KEY}"}
OTHER = {"Authorization": f"Bearer {OTHER_KEY}"}
TENANT_LABEL = "kubeffmpeg.io/tenant"
PUBLIC_HOOK = "https://93.184.215.14/hook"  # a public address literal: no DNS needed
VGF_JOB = {"input_files": {"in.mp4": "https://93.184.215.14/in.mp4"}, "output_files": ["out.mp4"],
           "ffmpeg_commands": ["-i inputs/in.mp4 -vf scale=640:-2 outputs/out.mp4"]}


@pytest.fixture
def k() -> FakeKubernetes:
    return FakeKubernetes()


@pytest.fixture
def bucket() -> FakeBucket:
    return FakeBucket()


def make_client(k: FakeKubernetes, bucket: FakeBucket, **settings: Any) -> TestClient:
    return TestClient(create_app(services=api_services(k, bucket, {"acme": KEY, "other": OTHER_KEY}, **settings)))


@pytest.fixture
def api(k: FakeKubernetes, bucket: FakeBucket) -> Iterator[TestClient]:
    with make_client(k, bucket) as c:
        yield c


def jobs(k: FakeKubernetes) -> list[Obj]:
    return k.select("FFmpegJob", NAMESPACE)


def stored_dir(bucket: FakeBucket, dir_id: str, *files: str) -> None:
    """A directory of tenant acme with files, as POST /directory and presigned uploads leave it."""
    meta = DirectoryMeta(id=dir_id, tenant="acme", ttl=3600)
    bucket.put(dir_meta_key("acme", dir_id), meta.model_dump_json().encode())
    for f in files:
        bucket.put(file_key("acme", dir_id, f), b"\0" * 1000, "video/mp4")


def finish(k: FakeKubernetes, name: str, phase: str, **status: Any) -> None:
    """What the operator and the worker write as a job runs."""
    k.set_status("FFmpegJob", name, {"phase": phase, "startTime": "2026-01-01T12:00:00Z", **status})


DONE = {"completionTime": "2026-01-01T12:00:10Z",
        "result": [{"fileName": "out.mp4", "sizeBytes": 2048, "storagePath": "d1/out.mp4"}],
        "usage": {"timeSec": 10.0, "inputSizeGb": 0.001, "outputSizeGb": 0.002, "gbSec": 0.03,
                  "inputBytes": 1000000, "outputBytes": 2048}}


# ------------------------------------------------------------------------------------- auth
def test_health_needs_no_key(api: TestClient) -> None:
    assert api.get("/healthz").json() == {"ok": True}


def test_ffmpeg_api_surface_auth(api: TestClient) -> None:
    r = api.get("/directory")
    assert (r.status_code, r.json()) == (400, {"ok": False, "error": "Missing Authorization header"})
    r = api.get("/directory", headers={"Authorization": "Basic kff_wrong"})
    assert (r.status_code, r.json()["error"]) == (401, "Invalid API key")
    assert r.headers["WWW-Authenticate"].startswith("Basic")
    # The dashboard's `Basic <key>` and a Bearer token both work.
    assert api.get("/directory", headers={"Authorization": f"Basic {KEY}"}).status_code == 200
    assert api.get("/directory", headers=ACME).json() == {"ok": True, "directories": []}


def test_vgf_surface_auth(api: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer kff_wrong"}):
        r = api.get("/api/jobs", headers=headers)
        assert r.status_code == 401
        assert r.json() | {"error": None} == {"ok": False, "error": None, "errorCode": "badApiKey",
                                              "message": "Invalid API key"}
    assert api.get("/api/jobs", headers=ACME).status_code == 200


# ----------------------------------------------------------------------- "Very Good FFmpeg"
def test_vgf_submission_stores_the_compiled_ffmpegjob(api: TestClient, k: FakeKubernetes,
                                                      bucket: FakeBucket) -> None:
    r = api.post("/api/ffmpeg", headers=ACME, json={**VGF_JOB, "webhook_url": PUBLIC_HOOK, "machine": "nvidia"})
    assert r.status_code == 200, r.text
    view = r.json()["data"]
    [obj] = jobs(k)
    assert view["id"] == obj["metadata"]["name"] and view["status"] == "queued"
    assert view["ffmpeg_commands"] == VGF_JOB["ffmpeg_commands"]  # as the client wrote them
    assert (view["machine"], view["timeout_seconds"], view["webhook_url"]) == ("gpu", 300, PUBLIC_HOOK)
    assert obj["metadata"]["labels"] == {TENANT_LABEL: "acme", SURFACE_LABEL: "vgf"}
    spec = obj["spec"]
    out_dir = spec["output"]["dirId"]
    assert spec == {
        "tenant": "acme",
        "inputs": [{"name": "in.mp4", "source": "https://93.184.215.14/in.mp4"}],
        "outputs": [{"name": "out.mp4"}],
        "commands": ["-i {{in.mp4}} -vf scale=640:-2 {{out.mp4}}"],
        "machine": "gpu",
        "output": {"dirId": out_dir},
        "webhook": {"url": PUBLIC_HOOK, "secretRef": {"name": "kubeffmpeg-webhook-secrets", "key": "acme"}},
        "timeoutSeconds": 300,
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": 7 * 24 * 3600,
        "suspend": False,
        "cancel": False,
    }
    assert dir_meta_key("acme", out_dir) in bucket.objects  # the outputs' directory exists


def test_vgf_input_from_a_tmp_file_is_read_from_storage(api: TestClient, k: FakeKubernetes,
                                                        bucket: FakeBucket) -> None:
    tmp = api.post("/api/tmp-file", headers=ACME, json={"file_name": "clip.mp4"}).json()["data"]
    assert tmp["expires_in_seconds"] == 3600 and tmp["upload_url"].startswith("https://s3.test/media/")
    [key] = [k_ for k_ in bucket.objects if k_.startswith("dirs/acme/")]
    dir_id = key.removeprefix("dirs/acme/").removesuffix(".json")
    bucket.put(file_key("acme", dir_id, "clip.mp4"), b"\0" * 10)  # the client's upload
    r = api.post("/api/ffmpeg", headers=ACME, json={**VGF_JOB, "input_files": {"in.mp4": tmp["download_url"]}})
    assert r.status_code == 200, r.text
    assert jobs(k)[0]["spec"]["inputs"] == [{"name": "in.mp4", "source": f"{dir_id}/clip.mp4"}]
    # Another tenant's presigned URL is not found, and creates nothing.
    r = api.post("/api/ffmpeg", headers=OTHER, json={**VGF_JOB, "input_files": {"in.mp4": tmp["download_url"]}})
    assert (r.status_code, r.json()["errorCode"]) == (404, "notFound")
    assert len(jobs(k)) == 1


@pytest.mark.parametrize(("body", "status", "code", "message"), [
    ({"output_files": ["o.mp4"]}, 400, "validationError",
         "Invalid task format: body: Value error, ffmpeg_commands and output_files need at least one entry each"),
    ({**VGF_JOB, "ffmpeg_commands": ["-i /etc/passwd outputs/out.mp4"]}, 400, "badRequest", "Invalid command:"),
    ({**VGF_JOB, "ffmpeg_commands": ["-i inputs/nope.mp4 outputs/out.mp4"]}, 400, "badRequest",
     "ffmpeg_commands[0]: inputs/nope.mp4 names no entry of input_files (declared: in.mp4)"),
    ({**VGF_JOB, "output_files": ["in.mp4"]}, 400, "badRequest", "output_files: 'in.mp4' is used twice"),
    ({**VGF_JOB, "machine": "tpu"}, 400, "badRequest", "Unknown machine 'tpu'; available: cpu, gpu, nvidia"),
    ({**VGF_JOB, "webhook_url": "https://127.0.0.1/hook"}, 400, "badRequest", "webhook_url refused:"),
    ({**VGF_JOB, "input_files": {"in.mp4": "in.mp4"}}, 400, "badRequest", "input_files.in.mp4: 'in.mp4' is not a URL"),
    ({**VGF_JOB, "timeout_seconds": 0}, 400, "validationError", "Invalid task format: timeout_seconds:"),
    ({**VGF_JOB, "surprise": 1}, 400, "validationError", "Invalid task format: surprise:"),
])
def test_vgf_refusals(api: TestClient, k: FakeKubernetes, body: Obj, status: int, code: str, message: str) -> None:
    r = api.post("/api/ffmpeg", headers=ACME, json=body)
    assert r.status_code == status, r.text
    assert r.json()["errorCode"] == code and r.json()["message"].startswith(message), r.json()
    assert jobs(k) == []


def test_vgf_job_view_follows_the_job(api: TestClient, k: FakeKubernetes) -> None:
    job_id = api.post("/api/ffmpeg", headers=ACME, json=VGF_JOB).json()["data"]["id"]

    def view() -> Obj:
        r = api.get(f"/api/jobs/{job_id}", headers=ACME)
        assert r.status_code == 200
        assert api.get(f"/api/ffmpeg/{job_id}", headers=ACME).json() == r.json()  # the alias
        return dict(r.json()["data"])

    assert view()["status"] == "queued"
    finish(k, job_id, "Running", progress={"step": 1, "steps": 1, "percent": 40.0})
    running = view()
    assert (running["status"], running["started_at"], running["progress"]["percent"]) == ("running",
                                                                                        "2026-01-01T12:00:00Z", 40.0)
    finish(k, job_id, "Succeeded", **DONE)
    done = view()
    assert (done["status"], done["finished_at"], done["total_output_bytes"]) == ("succeeded", "2026-01-01T12:00:10Z",
                                                                                 2048)
    assert done["output_files"]["out.mp4"].startswith("https://s3.test/media/files/acme/d1/out.mp4?")
    assert done["usage"] == {"time_sec": 10.0, "input_size_gb": 0.001, "output_size_gb": 0.002, "gb_sec": 0.03}
    # Someone else's job does not exist for them.
    r = api.get(f"/api/jobs/{job_id}", headers=OTHER)
    assert (r.status_code, r.json()["errorCode"]) == (404, "notFound")


def test_vgf_failed_job_says_why(api: TestClient, k: FakeKubernetes) -> None:
    job_id = api.post("/api/ffmpeg", headers=ACME, json=VGF_JOB).json()["data"]["id"]
    finish(k, job_id, "Failed", reason="CommandFailed", error="step 1 exited 1: Invalid data found",
           completionTime="2026-01-01T12:00:03Z")
    data = api.get(f"/api/jobs/{job_id}", headers=ACME).json()["data"]
    assert (data["status"], data["error_message"], data["output_files"]) == (
        "failed", "step 1 exited 1: Invalid data found", {})


def test_vgf_list_pages_newest_first(api: TestClient, k: FakeKubernetes) -> None:
    for i in range(5):
        k.add_ffmpegjob(f"job-{i}", {"tenant": "acme", "commands": ["-i {{a}} {{b}}"]},
                        labels={TENANT_LABEL: "acme", SURFACE_LABEL: "vgf"})
        k.objects[("FFmpegJob", NAMESPACE, f"job-{i}")]["metadata"]["creationTimestamp"] = f"2026-01-01T12:00:0{i}Z"
    k.add_ffmpegjob("job-x", {"tenant": "other"}, labels={TENANT_LABEL: "other"})
    finish(k, "job-1", "Succeeded")
    page = api.get("/api/jobs?limit=2", headers=ACME).json()
    assert [j["id"] for j in page["data"]] == ["job-4", "job-3"]
    assert page["pagingParams"] == {"limit": 2, "offset": 0, "total": 5, "hasMore": True}
    last = api.get("/api/jobs?limit=2&offset=4", headers=ACME).json()
    assert [j["id"] for j in last["data"]] == ["job-0"] and last["pagingParams"]["hasMore"] is False
    done = api.get("/api/jobs?status=succeeded", headers=ACME).json()
    assert [j["id"] for j in done["data"]] == ["job-1"]
    assert api.get("/api/ffmpeg?status=completed", headers=ACME).json()["data"] == done["data"]  # the old word
    r = api.get("/api/jobs?status=done", headers=ACME)
    assert (r.status_code, r.json()["message"]) == (400, "status must be one of queued, running, succeeded, "
                                                         "failed, cancelled")
    assert api.get("/api/jobs?limit=0", headers=ACME).json()["errorCode"] == "validationError"


def test_vgf_cancel(api: TestClient, k: FakeKubernetes) -> None:
    job_id = api.post("/api/ffmpeg", headers=ACME, json=VGF_JOB).json()["data"]["id"]
    finish(k, job_id, "Running")
    r = api.post(f"/api/jobs/{job_id}/cancel", headers=ACME)
    assert r.status_code == 200
    assert (r.json()["data"]["status"], r.json()["data"]["error_message"]) == ("cancelled", "Job was cancelled")
    assert jobs(k)[0]["spec"]["cancel"] is True  # the operator stops it
    finish(k, job_id, "Cancelled")
    r = api.post(f"/api/jobs/{job_id}/cancel", headers=ACME)
    assert (r.status_code, r.json()["message"]) == (409, "Cannot cancel job in 'cancelled' status. Only queued or "
                                                         "running jobs can be cancelled.")
    assert api.delete(f"/api/ffmpeg/{job_id}", headers=OTHER).status_code == 404


# ------------------------------------------------------------------------------ "FFmpeg API"
TASK = {"task": {"inputs": [{"file_path": "d1/in.mp4", "options": ["-ss", "1"]}],
                 "outputs": [{"file": "out.mp4", "options": ["-c:v", "libx264"]}]}}


def test_ffmpeg_api_submission_stores_the_compiled_ffmpegjob(api: TestClient, k: FakeKubernetes,
                                                             bucket: FakeBucket) -> None:
    stored_dir(bucket, "d1", "in.mp4", "subs.srt")
    task = {"task": {**TASK["task"], "inputs": [*TASK["task"]["inputs"], {"file_path": "d1/subs.srt"}],
                     "filter_complex": "[0:v]subtitles=@{subs.srt}[v]"}, "webhook_url": PUBLIC_HOOK}
    r = api.post("/ffmpeg/process/async", headers=ACME, json=task)
    assert r.status_code == 202, r.text
    [obj] = jobs(k)
    assert r.json() == {"ok": True, "job_id": obj["metadata"]["name"]}
    assert obj["metadata"]["labels"] == {TENANT_LABEL: "acme", SURFACE_LABEL: "ffmpeg-api"}
    spec = obj["spec"]
    assert spec["inputs"] == [{"name": "in0", "source": "d1/in.mp4", "options": ["-ss", "1"]},
                              {"name": "in1", "source": "d1/subs.srt"}]
    assert spec["outputs"] == [{"name": "out.mp4", "options": ["-c:v", "libx264"]}]
    assert spec["filterComplex"] == "[0:v]subtitles={{in1}}[v]"
    assert (spec["machine"], spec["output"], spec["timeoutSeconds"]) == ("cpu", {"dirId": "d1"}, 3600)
    assert spec["webhook"] == {"url": PUBLIC_HOOK, "secretRef": {"name": "kubeffmpeg-webhook-secrets", "key": "acme"}}


@pytest.mark.parametrize(("task", "status", "message"), [
    ({"task": {"inputs": [], "outputs": [{"file": "o.mp4"}]}}, 400, "Invalid task format: task.inputs:"),
    ({"task": {"inputs": [{"file_path": "d1/in.mp4"}, {"file_path": "d2/x.mp4"}], "outputs": [{"file": "o.mp4"}]}},
     400, "Invalid task format: all input files must be in the same directory (got d1, d2)"),
    ({"task": {"inputs": [{"file_path": "d1/in.mp4"}], "outputs": [{"file": "in.mp4"}]}},
     400, "Invalid task format: output file 'in.mp4' conflicts with an input file in directory d1"),
    ({"task": {"inputs": [{"file_path": "file:///etc/passwd"}], "outputs": [{"file": "o.mp4"}]}},
     400, "Invalid task format: inputs[0].file_path 'file:///etc/passwd': only HTTPS URLs are accepted"),
    ({"task": {"inputs": [{"file_path": "d9/in.mp4"}], "outputs": [{"file": "o.mp4"}]}}, 404,
     "Directory not found: d9"),
    ({"task": {"inputs": [{"file_path": "d1/nope.mp4"}], "outputs": [{"file": "o.mp4"}]}}, 404,
     "File not found: d1/nope.mp4"),
    ({**TASK, "webhook_url": "https://169.254.169.254/x"}, 400, "webhook_url refused:"),
    ({"task": {**TASK["task"], "outputs": [{"file": "o.mp4", "options": ["-i", "/etc/passwd"]}]}}, 400,
     "Invalid command:"),
])
def test_ffmpeg_api_refusals(api: TestClient, k: FakeKubernetes, bucket: FakeBucket, task: Obj, status: int,
                             message: str) -> None:
    stored_dir(bucket, "d1", "in.mp4")
    r = api.post("/ffmpeg/process/async", headers=ACME, json=task)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"ok", "error"} and r.json()["error"].startswith(message), r.json()
    assert jobs(k) == []


def test_ffmpeg_api_job_view_in_its_own_words(api: TestClient, k: FakeKubernetes, bucket: FakeBucket) -> None:
    stored_dir(bucket, "d1", "in.mp4")
    job_id = api.post("/ffmpeg/process/async", headers=ACME, json=TASK).json()["job_id"]
    assert api.get(f"/job/{job_id}", headers=ACME).json() == {"ok": True, "job_id": job_id, "status": "pending",
                                                               "priority": "normal"}  # extension (docs/queueing.md)
    finish(k, job_id, "Running")
    assert api.get(f"/job/{job_id}", headers=ACME).json()["status"] == "processing"
    finish(k, job_id, "Succeeded", **DONE)
    done = api.get(f"/job/{job_id}", headers=ACME).json()
    assert (done["ok"], done["status"], done["usage"]["gb_sec"]) == (True, "completed", 0.03)
    [res] = done["result"]
    assert (res["file_name"], res["size_bytes"]) == ("out.mp4", 2048)
    assert res["download_url"].startswith("https://s3.test/media/files/acme/d1/out.mp4?")
    finish(k, job_id, "Failed", error="step 1 exited 1: Invalid data found")
    failed = api.get(f"/job/{job_id}", headers=ACME).json()
    assert failed == {"ok": False, "job_id": job_id, "status": "failed",
                      "error": "FFmpeg processing error: step 1 exited 1: Invalid data found"}
    r = api.get(f"/job/{job_id}", headers=OTHER)
    assert (r.status_code, r.json()) == (404, {"ok": False, "error": "Job not found"})


def test_ffmpeg_api_cancel_only_pending(api: TestClient, k: FakeKubernetes, bucket: FakeBucket) -> None:
    stored_dir(bucket, "d1", "in.mp4")
    first, second = (api.post("/ffmpeg/process/async", headers=ACME, json=TASK).json()["job_id"] for _ in range(2))
    r = api.delete(f"/job/{first}", headers=ACME)
    assert r.json() == {"ok": True, "message": "Job cancelled successfully"}
    assert k.get("FFmpegJob", NAMESPACE, first)["spec"]["cancel"] is True
    finish(k, second, "Running")
    r = api.delete(f"/job/{second}", headers=ACME)
    assert (r.status_code, r.json()["error"]) == (409, "Cannot cancel job in 'processing' status. Only pending jobs "
                                                       "can be cancelled.")
    assert k.get("FFmpegJob", NAMESPACE, second)["spec"]["cancel"] is False


def test_synchronous_process_answers_with_the_result_or_503(k: FakeKubernetes, bucket: FakeBucket) -> None:
    stored_dir(bucket, "d1", "in.mp4")
    with make_client(k, bucket, sync_wait_seconds=2) as api:
        r = api.post("/ffmpeg/process", headers=ACME, json=TASK)  # nothing runs it
        assert r.status_code == 503
        assert r.json()["error"].endswith("is still pending after 2s; poll GET /job/" + jobs(k)[0]["metadata"]["name"]
                                          + " for its result")
        k.on_create.append(lambda obj: finish(k, obj["metadata"]["name"], "Succeeded", **DONE))
        r = api.post("/ffmpeg/process", headers=ACME, json=TASK)
        assert r.status_code == 200, r.text
        assert r.json()["result"][0]["file_name"] == "out.mp4" and r.json()["usage"]["time_sec"] == 10.0
        k.on_create[:] = [lambda obj: finish(k, obj["metadata"]["name"], "Failed", error="exit 1: bad input")]
        r = api.post("/ffmpeg/process", headers=ACME, json=TASK)
        assert r.status_code == 500
        assert r.json()["error"] == "FFmpeg processing failed: exit 1: bad input"


def test_quota_of_active_jobs(k: FakeKubernetes, bucket: FakeBucket) -> None:
    with make_client(k, bucket, quota_max_active_jobs=1) as api:
        assert api.post("/api/ffmpeg", headers=ACME, json=VGF_JOB).status_code == 200
        r = api.post("/api/ffmpeg", headers=ACME, json=VGF_JOB)
        assert (r.status_code, r.json()["errorCode"]) == (403, "forbidden")
        assert "Quota exceeded: 1 jobs pending or processing (limit 1)" in r.json()["message"]
        finish(k, jobs(k)[0]["metadata"]["name"], "Succeeded")
        assert api.post("/api/ffmpeg", headers=ACME, json=VGF_JOB).status_code == 200


# -------------------------------------------------------------------------------- rate limit
def test_rate_limit_is_per_key_with_retry_after(k: FakeKubernetes, bucket: FakeBucket) -> None:
    with make_client(k, bucket, rate_limit_requests_per_second=0.5, rate_limit_burst=2) as api:
        assert [api.get("/api/jobs", headers=ACME).status_code for _ in range(2)] == [200, 200]
        r = api.get("/api/jobs", headers=ACME)
        assert r.status_code == 429 and r.json()["errorCode"] == "tooManyRequests"
        assert int(r.headers["Retry-After"]) in (1, 2)
        r = api.get("/directory", headers=ACME)  # the same key on the other surface
        assert r.status_code == 429 and r.json()["error"].startswith("Too many requests: the limit is 0.5 requests")
        assert api.get("/api/jobs", headers=OTHER).status_code == 200  # another key has its own bucket


# ---------------------------------------------------------------------------------- webhooks
def test_webhook_deliveries_and_redelivery_on_both_surfaces(api: TestClient, k: FakeKubernetes) -> None:
    job_id = api.post("/api/ffmpeg", headers=ACME, json={**VGF_JOB, "webhook_url": PUBLIC_HOOK}).json()["data"]["id"]
    r = api.post(f"/api/jobs/{job_id}/webhooks/redeliver", headers=ACME)
    assert (r.status_code, r.json()["message"]) == (409, "The job is still pending: its webhook is sent when it "
                                                         "finishes")
    attempt = {"time": stamp(), "deliveryId": "whd_1", "attempt": 1, "statusCode": 200}
    finish(k, job_id, "Succeeded", **DONE, webhook={"deliveryId": "whd_1", "attemptCount": 1, "delivered": True,
                                                   "deliveredAt": attempt["time"], "attempts": [attempt]})
    seen = api.get(f"/job/{job_id}/webhooks", headers=ACME).json()["webhook"]
    assert (seen["state"], seen["webhook_url"], seen["attempt_count"]) == ("delivered", PUBLIC_HOOK, 1)
    assert seen["attempts"][0]["status_code"] == 200
    assert api.get(f"/api/jobs/{job_id}/webhooks", headers=ACME).json()["data"] == seen
    r = api.post(f"/api/jobs/{job_id}/webhooks/redeliver", headers=ACME)
    assert r.status_code == 202
    new_id = r.json()["data"]["delivery_id"]
    assert new_id != "whd_1" and r.json()["data"]["job_id"] == job_id
    assert k.get("FFmpegJob", NAMESPACE, job_id)["metadata"]["annotations"][REDELIVER_ANNOTATION] == new_id
    assert api.get(f"/job/{job_id}/webhooks", headers=ACME).json()["webhook"]["state"] == "pending"
    r = api.post(f"/job/{job_id}/webhooks/redeliver", headers=ACME)
    assert r.status_code == 202 and r.json()["message"] == "Redelivery scheduled"
    assert api.get(f"/job/{job_id}/webhooks", headers=OTHER).status_code == 404
    # A job without a webhook has nothing to redeliver.
    plain = api.post("/api/ffmpeg", headers=ACME, json=VGF_JOB).json()["data"]["id"]
    finish(k, plain, "Succeeded", **DONE)
    assert api.get(f"/job/{plain}/webhooks", headers=ACME).json()["webhook"]["state"] == "none"
    r = api.post(f"/job/{plain}/webhooks/redeliver", headers=ACME)
    assert (r.status_code, r.json()["error"]) == (409, "The job has no webhook_url: there is nothing to redeliver")


def test_rotating_the_signing_secret(api: TestClient, k: FakeKubernetes) -> None:
    first = api.post("/webhook-secret/rotate", headers=ACME).json()
    second = api.post("/webhook-secret/rotate", headers=ACME).json()
    assert first["tenant"] == "acme" and first["secret"] != second["secret"]
    stored = k.get("Secret", NAMESPACE, "kubeffmpeg-webhook-secrets")["data"]
    assert base64.b64decode(stored["acme"]).decode() == second["secret"]


# --------------------------------------------------------------------------- files, dirs
def test_files_and_directories(api: TestClient, bucket: FakeBucket) -> None:
    d = api.post("/directory", headers=ACME, json={"ttl": 600}).json()["directory"]
    assert d["ttl"] == 600
    reg = api.post("/file", headers=ACME, json={"file_name": "a.mp4", "dir_id": d["id"]}).json()
    assert reg["file"]["file_path"] == f"{d['id']}/a.mp4" and reg["upload"]["expiresInSeconds"] == 300
    assert reg["upload"]["url"].startswith(f"https://s3.test/media/files/acme/{d['id']}/a.mp4?")
    assert api.get(f"/file/{d['id']}/a.mp4", headers=ACME).status_code == 404  # not uploaded yet
    bucket.put(file_key("acme", d["id"], "a.mp4"), b"\0" * 4096)
    info = api.get(f"/file/{d['id']}/a.mp4", headers=ACME).json()["file_info"]
    assert info == {"file_path": f"{d['id']}/a.mp4", "file_type": "video/mp4", "file_size": 4096}
    listed = api.get(f"/directory/{d['id']}", headers=ACME).json()["files"]
    assert [(f["file_name"], f["size_bytes"]) for f in listed] == [("a.mp4", 4096)]
    assert api.get(f"/directory/{d['id']}", headers=OTHER).status_code == 404  # another tenant's
    assert api.delete(f"/file/{d['id']}/a.mp4", headers=ACME).json()["deleted"]["file_path"] == f"{d['id']}/a.mp4"
    assert file_key("acme", d["id"], "a.mp4") not in bucket.objects
    r = api.post("/file", headers=ACME, json={"file_name": "a/b.mp4"})
    assert (r.status_code, r.json()["error"]) == (400, "Invalid file_name 'a/b.mp4': 1-255 characters, no slashes")


def test_the_job_store_down_is_a_503(api: TestClient, k: FakeKubernetes, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*_: Any, **__: Any) -> None:
        raise ApiException(status=500, reason="etcdserver: request timed out")

    monkeypatch.setattr(k.custom, "list_namespaced_custom_object", down)
    r = api.get("/api/jobs", headers=ACME)
    assert (r.status_code, r.json()["message"]) == (503, "Service unavailable: the job store did not answer; "
                                                         "retry shortly")


def test_vgf_wait_answers_with_the_finished_job(api: TestClient, k: FakeKubernetes) -> None:
    k.on_create.append(lambda obj: finish(k, obj["metadata"]["name"], "Succeeded", **DONE))
    r = api.post("/api/ffmpeg?wait=true", headers=ACME, json=VGF_JOB)
    assert r.status_code == 200 and r.json()["data"]["status"] == "succeeded"
    assert list(r.json()["data"]["output_files"]) == ["out.mp4"]
    assert api.post("/api/ffmpeg", headers=ACME, json=VGF_JOB).json()["data"]["status"] == "queued"  # no wait


def test_usage_totals_over_the_tenants_jobs(api: TestClient, k: FakeKubernetes) -> None:
    first, _ = (api.post("/api/ffmpeg", headers=ACME, json=VGF_JOB).json()["data"]["id"] for _ in range(2))
    api.post("/api/ffmpeg", headers=OTHER, json=VGF_JOB)
    finish(k, first, "Succeeded", **DONE)
    usage = api.get("/usage", headers=ACME).json()
    assert usage["tenant"] == "acme"
    assert usage["usage"]["jobs"] == 2 and usage["usage"]["jobs_by_status"] == {"completed": 1, "pending": 1}
    assert usage["usage"]["gb_sec"] == 0.03
