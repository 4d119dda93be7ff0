"""Webhooks a user can trust, on the real local stack: a real HTTP receiver in the test gets
signed deliveries from the operator (the stack's retry schedule starts at 2 s), checks them with
the README's own snippet, and both REST surfaces list and redeliver them. Also the API's
admission control: the per-key rate limit and the ffprobe cap."""

from __future__ import annotations

import http.server
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from devstack.paths import REPO_ROOT
from devstack.stack import Stack, StackInfo, _bin
from ffmpeg_api.keys import create_key
from ffmpegjob_model.model import GROUP, PLURAL, VERSION
from ffmpegjob_model.storage_layout import file_key
from ffmpegjob_model.webhooks import ATTEMPT_HEADER, ID_HEADER, TIMESTAMP_HEADER
from helpers import Receiver, wait_for
from kubernetes import client

pytestmark = pytest.mark.stack
README_SNIPPET = re.compile(r"<!-- webhook-verify -->\s*```python\n(.*?)```", re.S)


# ------------------------------------------------------------------------------------- helpers
def readme_verify() -> Callable[..., bool]:
    """The README's snippet, exactly as written."""
    match = README_SNIPPET.search((REPO_ROOT / "README.md").read_text())
    assert match, "README.md has no <!-- webhook-verify --> python block"
    ns: dict[str, Any] = {}
    exec(match.group(1), ns)
    fn: Callable[..., bool] = ns["verify"]
    return fn


class Tenant:
    def __init__(self, api_url: str, name: str, key: str, signing_secret: str | None) -> None:
        self.api_url, self.name, self.key, self.signing_secret = api_url, name, key, signing_secret

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, f"{self.api_url}{path}", headers={"Authorization": f"Bearer {self.key}"},
                             timeout=60, **kw)

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        r = self.call(method, path, **kw)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()


def new_tenant(stack: StackInfo, stack_env: dict[str, str], *extra: str) -> Tenant:
    """A tenant made as an admin makes one: its key and signing secret, each printed once."""
    name = f"wh-{uuid.uuid4().hex[:8]}"
    out = subprocess.run([sys.executable, "-m", "ffmpeg_api.keys", "create", "--tenant", name, *extra],
                         env=stack_env, capture_output=True, text=True, check=True).stdout.strip().splitlines()
    secret = next((out[i + 1] for i, line in enumerate(out) if line.startswith("# webhook signing secret")), None)
    assert stack.api_url
    return Tenant(stack.api_url, name, out[-1], secret)


@pytest.fixture(scope="module")
def clip() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "in.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=1",
                        "-pix_fmt", "yuv420p", str(out)], check=True)
        yield out


def submit(t: Tenant, clip: Path, webhook_url: str | None) -> str:
    """An "FFmpeg API" async job with a webhook; returns its id."""
    reg = t.ok("POST", "/file", json={"file_name": "in.mp4"})
    assert httpx.put(reg["upload"]["url"], content=clip.read_bytes(), timeout=30).status_code == 200
    task = {"inputs": [{"file_path": reg["file"]["file_path"]}],
            "outputs": [{"file": "out.mp4", "options": ["-c", "copy"]}]}
    body: dict[str, Any] = {"task": task}
    if webhook_url:
        body["webhook_url"] = webhook_url
    job_id: str = t.ok("POST", "/ffmpeg/process/async", json=body)["job_id"]
    return job_id


def submit_vgf(t: Tenant, clip: Path, webhook_url: str) -> str:
    tmp = t.ok("POST", "/api/tmp-file")["data"]
    assert httpx.put(tmp["upload_url"], content=clip.read_bytes(), timeout=30).status_code == 200
    job = t.ok("POST", "/api/ffmpeg", json={"input_files": {"in": tmp["download_url"]}, "output_files": ["o.mp4"],
                                            "ffmpeg_commands": ["-i {{in}} -c copy {{o.mp4}}"],
                                            "webhook_url": webhook_url})
    job_id: str = job["data"]["id"]
    return job_id


def at(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# ----------------------------------------------------------------------------------- deliveries
def test_every_delivery_is_signed_and_the_readme_snippet_verifies_it(
        stack: StackInfo, stack_env: dict[str, str], kube_api: client.ApiClient, clip: Path,
        receiver_factory: Callable[..., Receiver]) -> None:
    t = new_tenant(stack, stack_env)
    assert t.signing_secret and t.signing_secret.startswith("whsec_"), "the first key shows the signing secret"
    rx = receiver_factory()
    job_id = submit(t, clip, rx.url)
    (_, headers, body), = rx.wait(1)
    verify = readme_verify()
    assert verify(t.signing_secret, headers, body)
    assert not verify(t.signing_secret, headers, body + b" ")
    assert not verify("whsec_someone-else", headers, body)
    assert headers[ATTEMPT_HEADER] == "1" and headers[ID_HEADER].startswith("whd_")
    assert abs(int(headers[TIMESTAMP_HEADER]) - time.time()) < 60
    assert json.loads(body)["job_id"] == job_id and json.loads(body)["status"] == "completed"
    # The job points at the tenant's secret; the listing shows the one attempt.
    obj = client.CustomObjectsApi(kube_api).get_namespaced_custom_object(GROUP, VERSION, stack.namespace, PLURAL,
                                                                         job_id)
    assert obj["spec"]["webhook"]["secretRef"] == {"name": "kubeffmpeg-webhook-secrets", "key": t.name}
    hook = wait_for(lambda: (w := t.ok("GET", f"/job/{job_id}/webhooks")["webhook"])["state"] == "delivered" and w,
                    30, "delivered state")
    assert hook["delivery_id"] == headers[ID_HEADER] and hook["attempt_count"] == 1
    assert [(a["attempt"], a["status_code"]) for a in hook["attempts"]] == [(1, 200)]


def test_kubectl_job_without_secret_ref_is_signed_with_the_tenants_secret(
        stack: StackInfo, kube_api: client.ApiClient, s3: Any, clip: Path,
        receiver_factory: Callable[..., Receiver]) -> None:
    rx = receiver_factory()
    s3.upload_file(str(clip), stack.env["S3_BUCKET"], file_key("default", "dir_whtest", "in.mp4"))
    name = f"wh-kubectl-{uuid.uuid4().hex[:6]}"
    client.CustomObjectsApi(kube_api).create_namespaced_custom_object(GROUP, VERSION, stack.namespace, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "FFmpegJob", "metadata": {"name": name},
        "spec": {"inputs": [{"name": "in.mp4", "source": "dir_whtest/in.mp4"}], "outputs": [{"name": "o.mp4"}],
                 "commands": ["-i {{in.mp4}} -c copy {{o.mp4}}"], "output": {"dirId": "dir_whtest"},
                 "webhook": {"url": rx.url}}})
    (_, headers, body), = rx.wait(1)
    assert readme_verify()(stack.env["WEBHOOK_SECRET"], headers, body)  # tenant default's, from .devstack/env


def test_5xx_is_retried_with_the_same_id_and_a_400_is_final(
        stack: StackInfo, stack_env: dict[str, str], clip: Path, receiver_factory: Callable[..., Receiver]) -> None:
    t = new_tenant(stack, stack_env)
    flaky, refusing = receiver_factory([503, 500]), receiver_factory([400])
    flaky_job, refused_job = submit(t, clip, flaky.url), submit(t, clip, refusing.url)
    calls = flaky.wait(3)
    assert len({h[ID_HEADER] for _, h, _ in calls}) == 1
    assert [h[ATTEMPT_HEADER] for _, h, _ in calls] == ["1", "2", "3"]
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(calls)]
    assert gaps[0] >= 1.5 and gaps[1] >= 3.5, f"the stack's schedule waits 2 s then 4 s, got {gaps}"
    assert all(readme_verify()(t.signing_secret, h, b) for _, h, b in calls)
    hook = wait_for(lambda: (w := t.ok("GET", f"/job/{flaky_job}/webhooks")["webhook"])["state"] == "delivered"
                    and w, 30, "delivered")
    assert [(a["attempt"], a["status_code"]) for a in hook["attempts"]] == [(1, 503), (2, 500), (3, 200)]
    refusing.wait(1)
    hook = wait_for(lambda: (w := t.ok("GET", f"/job/{refused_job}/webhooks")["webhook"])["state"] == "failed"
                    and w, 30, "failed")
    time.sleep(5)  # a retry would have come by now (2 s)
    assert len(refusing.calls) == 1 and hook["attempt_count"] == 1 and hook["next_attempt_at"] is None


def test_redelivery_over_rest_is_a_new_delivery_and_other_tenants_get_404(
        stack: StackInfo, stack_env: dict[str, str], clip: Path, receiver_factory: Callable[..., Receiver]) -> None:
    t, other = new_tenant(stack, stack_env), new_tenant(stack, stack_env)
    rx = receiver_factory()
    job_id = submit_vgf(t, clip, rx.url)
    first = rx.wait(1)[0][1][ID_HEADER]
    listing = wait_for(lambda: (d := t.ok("GET", f"/api/jobs/{job_id}/webhooks")["data"])["state"] == "delivered"
                       and d, 30, "delivered")
    assert listing["delivery_id"] == first and listing["webhook_url"] == rx.url
    # Very Good FFmpeg surface
    r = t.call("POST", f"/api/jobs/{job_id}/webhooks/redeliver")
    assert r.status_code == 202, r.text
    second = r.json()["data"]["delivery_id"]
    _, headers, body = rx.wait(2)[1]
    assert (headers[ID_HEADER], headers[ATTEMPT_HEADER]) == (second, "1") and second != first
    assert readme_verify()(t.signing_secret, headers, body)
    # "FFmpeg API" surface, same job
    r = t.call("POST", f"/job/{job_id}/webhooks/redeliver")
    assert r.status_code == 202 and r.json()["ok"] is True
    third = r.json()["delivery_id"]
    assert rx.wait(3)[2][1][ID_HEADER] == third
    hook = wait_for(lambda: (w := t.ok("GET", f"/job/{job_id}/webhooks")["webhook"])["delivery_id"] == third
                    and w["state"] == "delivered" and w, 30, "third delivery recorded")
    assert [a["delivery_id"] for a in hook["attempts"]] == [first, second, third]
    # Tenant checks, and what cannot be redelivered
    for method, path in (("GET", f"/job/{job_id}/webhooks"), ("POST", f"/job/{job_id}/webhooks/redeliver"),
                         ("GET", f"/api/ffmpeg/{job_id}/webhooks"),
                         ("POST", f"/api/ffmpeg/{job_id}/webhooks/redeliver")):
        r = other.call(method, path)
        assert r.status_code == 404 and r.json()["ok"] is False, (method, path, r.text)
    no_hook = submit(t, clip, None)
    r = t.call("POST", f"/job/{no_hook}/webhooks/redeliver")
    assert r.status_code == 409 and "webhook" in r.json()["error"]
    assert t.ok("GET", f"/job/{no_hook}/webhooks")["webhook"]["state"] == "none"


def test_rotated_secret_signs_the_next_delivery(stack: StackInfo, kube_api: client.ApiClient, clip: Path,
                                               receiver_factory: Callable[..., Receiver]) -> None:
    """A tenant whose key was made without a signing secret (as keys made before there were any)
    still gets signed deliveries; rotating gives it a secret that verifies the next ones."""
    name = f"wh-{uuid.uuid4().hex[:8]}"
    assert stack.api_url
    t = Tenant(stack.api_url, name, create_key(client.CoreV1Api(kube_api), stack.namespace,
                                               "kubeffmpeg-api-keys", name), None)
    rx = receiver_factory()
    submit(t, clip, rx.url)
    (_, headers, body), = rx.wait(1)
    assert headers["X-Webhook-Signature"].startswith("sha256=")
    rotated = t.ok("POST", "/webhook-secret/rotate")
    assert rotated["tenant"] == t.name and rotated["secret"].startswith("whsec_")
    verify = readme_verify()
    assert not verify(rotated["secret"], headers, body)
    submit(t, clip, rx.url)
    _, headers, body = rx.wait(2)[1]
    assert verify(rotated["secret"], headers, body)


def test_retry_schedule_survives_an_operator_kill(
        stack: StackInfo, stack_env: dict[str, str], clip: Path, receiver_factory: Callable[..., Receiver]) -> None:
    """Attempts 1-5 fail (at about 0, 2, 6, 14, 30 s); the operator is killed after the 5th and
    started again; the 6th comes at the time the 5th scheduled, numbered 6, with the same id."""
    t = new_tenant(stack, stack_env)
    rx = receiver_factory([503] * 5)
    job_id = submit(t, clip, rx.url)
    rx.wait(5, timeout=240)
    hook = wait_for(lambda: (w := t.ok("GET", f"/job/{job_id}/webhooks")["webhook"])["attempt_count"] == 5
                    and w["next_attempt_at"] and w, 30, "5 attempts recorded")
    due = at(hook["next_attempt_at"])
    s = Stack()
    pid = s.procs.pid("operator")
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    s.procs.stop("operator")
    s.procs.start("operator", [_bin("ffmpeg-operator")], env=stack.env)
    restarted = time.time()
    assert restarted < due - 5, "the restart must come well before the scheduled attempt"
    calls = rx.wait(6, timeout=due - time.time() + 60)
    arrived, headers, body = calls[5]
    assert headers[ATTEMPT_HEADER] == "6" and headers[ID_HEADER] == hook["delivery_id"]
    assert due - 1 <= arrived <= due + 15, f"attempt 6 at {arrived - due:+.1f} s from its scheduled time"
    assert readme_verify()(t.signing_secret, headers, body)
    done = wait_for(lambda: (w := t.ok("GET", f"/job/{job_id}/webhooks")["webhook"])["state"] == "delivered"
                    and w, 30, "delivered after the restart")
    assert [a["attempt"] for a in done["attempts"]] == [1, 2, 3, 4, 5, 6]


# ------------------------------------------------------------------------------------ admission
def test_rate_limit_answers_429_with_retry_after_after_the_burst(
        stack: StackInfo, kube_api: client.ApiClient) -> None:
    name = f"rl-{uuid.uuid4().hex[:8]}"
    # One token per 10 s after a burst of 3: slow enough that a loaded machine cannot refill it.
    key = create_key(client.CoreV1Api(kube_api), stack.namespace, "kubeffmpeg-api-keys", name,
                     requests_per_second=0.1, burst=3)
    assert stack.api_url
    h = {"Authorization": f"Basic {key}"}
    # A key made a moment ago may take the API's key cache a moment to see (401s take no token).
    first = wait_for(lambda: (r := httpx.get(f"{stack.api_url}/directory", headers=h, timeout=30)).status_code
                     != 401 and r, 15, "the new key to be known")
    codes = [first, *(httpx.get(f"{stack.api_url}/directory", headers=h, timeout=30) for _ in range(3))]
    assert [r.status_code for r in codes[:3]] == [200, 200, 200]
    refused = codes[3]
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 10
    assert refused.json()["ok"] is False and "0.1 requests per second" in refused.json()["error"]
    time.sleep(int(refused.headers["Retry-After"]))
    assert httpx.get(f"{stack.api_url}/directory", headers=h, timeout=30).status_code == 200


def test_ffprobe_runs_are_capped_and_the_overflow_gets_503(stack: StackInfo, kube_api: client.ApiClient) -> None:
    """4 probes run, 16 wait; of 28 at once the rest are refused at once (the stack's defaults)."""
    name = f"fp-{uuid.uuid4().hex[:8]}"
    key = create_key(client.CoreV1Api(kube_api), stack.namespace, "kubeffmpeg-api-keys", name,
                     requests_per_second=0)

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(3)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    assert stack.api_url
    url = f"{stack.api_url}/ffprobe/analyze"
    body = {"file_path": f"http://127.0.0.1:{server.server_port}/slow.mp4"}
    try:
        with ThreadPoolExecutor(28) as pool:
            answers = list(pool.map(lambda _: httpx.post(url, json=body, headers={"Authorization": f"Basic {key}"},
                                                         timeout=120), range(28)))
    finally:
        server.shutdown()
    busy = [r for r in answers if r.status_code == 503]
    assert busy, [r.status_code for r in answers]
    assert len(busy) <= 28 - 20, "at most limit + queue are admitted, so at most 8 are refused"
    assert all(int(r.headers["Retry-After"]) >= 1 and r.json()["ok"] is False and "ffprobe" in r.json()["error"]
               for r in busy)
    assert all(r.status_code != 503 for r in answers if r not in busy)


def test_redelivery_does_not_wait_for_a_pending_retry(
        stack: StackInfo, stack_env: dict[str, str], clip: Path, receiver_factory: Callable[..., Receiver]) -> None:
    t = new_tenant(stack, stack_env)
    rx = receiver_factory([503] * 4)
    job_id = submit(t, clip, rx.url)
    rx.wait(4, timeout=120)
    hook = wait_for(lambda: (w := t.ok("GET", f"/job/{job_id}/webhooks")["webhook"])["attempt_count"] == 4
                    and w["state"] == "retrying" and w, 30, "4 attempts, retrying")
    due = at(hook["next_attempt_at"])
    asked = time.time()
    new_id = t.ok("POST", f"/job/{job_id}/webhooks/redeliver")["delivery_id"]
    arrived, headers, _ = rx.wait(5, timeout=30)[4]
    assert (headers[ID_HEADER], headers[ATTEMPT_HEADER]) == (new_id, "1")
    assert arrived - asked < 5 and arrived < due, "the redelivery went at once, not at the old schedule's time"
