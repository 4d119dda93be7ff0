"""The client's own logic without a server (httpx.MockTransport): errors as typed exceptions
with the API's message, retries on 429/503 honouring Retry-After, the polling fallback of
`wait`, configuration from `.devstack/env`, and the CLI's parsing of inputs and outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from kubeffmpeg import BadRequest, Client, JobFailed, NotFound, RateLimited, ServiceUnavailable
from kubeffmpeg import client as client_mod
from kubeffmpeg.cli import outputs_of, parse_inputs
from kubeffmpeg.config import devstack_env, load_config


def vgf_job(status: str, **extra: Any) -> dict[str, Any]:
    return {"id": "job-1", "status": status, "error_message": "", "output_files": {}, "result": [], **extra}


def make(handler: Any, **kw: Any) -> Client:
    return Client("http://api.test", "k", transport=httpx.MockTransport(handler), **kw)


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr("tenacity.nap.time.sleep", slept.append)
    monkeypatch.setattr(client_mod.time, "sleep", slept.append)
    return slept


def test_errors_carry_the_apis_message_and_status() -> None:
    body = {"ok": False, "error": "Invalid command: no", "errorCode": "badRequest", "message": "Invalid command: no"}
    kf = make(lambda r: httpx.Response(400, json=body))
    with pytest.raises(BadRequest) as e:
        kf.get("job-1")
    assert (e.value.status, e.value.message, e.value.error_code) == (400, "Invalid command: no", "badRequest")
    with pytest.raises(NotFound):
        make(lambda r: httpx.Response(404, json={"ok": False, "error": "Job not found"})).get("x", "ffmpeg-api")


def test_429_and_503_are_retried_after_retry_after(no_sleep: list[float]) -> None:
    answers = [httpx.Response(429, json={"ok": False, "error": "slow down"}, headers={"Retry-After": "3"}),
               httpx.Response(503, json={"ok": False, "error": "busy"}),
               httpx.Response(200, json={"data": vgf_job("queued")})]
    calls: list[str] = []

    def handler(r: httpx.Request) -> httpx.Response:
        calls.append(r.url.path)
        return answers.pop(0)

    job = make(handler).get("job-1")
    assert job.status == "queued" and len(calls) == 3
    assert no_sleep[0] == 3.0 and no_sleep[1] == 1.0  # Retry-After, then back-off
    with pytest.raises(RateLimited) as e:
        make(lambda r: httpx.Response(429, json={"ok": False, "error": "slow"}, headers={"Retry-After": "2"}),
             retries=2).get("job-1")
    assert e.value.retry_after == 2.0
    with pytest.raises(ServiceUnavailable):
        make(lambda r: httpx.Response(503, json={"ok": False, "error": "busy"}), retries=1).get("job-1")


def test_wait_polls_where_there_is_no_event_stream_and_raises_the_failure() -> None:
    states = iter([vgf_job("queued"), vgf_job("running", progress={"step": 2, "steps": 2, "percent": 60}),
                   vgf_job("failed", error_message="command 2 of 2 failed: boom",
                           progress={"step": 2, "steps": 2, "percent": 60})])

    def handler(r: httpx.Request) -> httpx.Response:
        if r.url.path.endswith("/events"):
            return httpx.Response(404, json={"ok": False, "error": "Not Found"})
        return httpx.Response(200, json={"data": next(states)})

    with pytest.raises(JobFailed) as e:
        make(handler).wait("job-1", poll_seconds=0)
    assert (e.value.step, e.value.steps, e.value.error) == (2, 2, "command 2 of 2 failed: boom")


def test_wait_follows_the_event_stream() -> None:
    body = ('id: 0.0.0\nevent: phase\ndata: {"job_id":"job-1","phase":"Pending","status":"queued"}\n\n'
            ': ping\n\n'
            'id: 3.0.0\nevent: result\ndata: {"job_id":"job-1","status":"succeeded","job":'
            '{"id":"job-1","status":"succeeded","output_files":{"o.mp4":"http://s3/o.mp4"},"result":[]}}\n\n')
    seen: list[str] = []
    kf = make(lambda r: httpx.Response(200, text=body, headers={"content-type": "text/event-stream"}))
    job = kf.wait("job-1", on_event=lambda e: seen.append(e.name))
    assert seen == ["phase", "result"] and job.succeeded
    assert [(r.file_name, r.download_url) for r in job.result] == [("o.mp4", "http://s3/o.mp4")]


def test_configuration_from_the_environment_or_a_checkouts_devstack_env(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".devstack").mkdir()
    env = "# x\nexport API_URL=http://127.0.0.1:18080\nexport API_KEY='kff_a b'\n"
    (tmp_path / ".devstack" / "env").write_text(env)
    (tmp_path / "sub").mkdir()
    monkeypatch.delenv("API_URL", raising=False)
    monkeypatch.delenv("API_KEY", raising=False)
    assert devstack_env(tmp_path / "sub")["API_KEY"] == "kff_a b"
    cfg = load_config(start=tmp_path / "sub")
    assert (cfg.api_url, cfg.api_key) == ("http://127.0.0.1:18080", "kff_a b")
    monkeypatch.setenv("API_URL", "https://ffmpeg.example/")
    assert load_config(start=tmp_path).api_url == "https://ffmpeg.example"


def test_cli_inputs_and_outputs(tmp_path: Path) -> None:
    a, b = tmp_path / "a.mp4", tmp_path / "b.wav"
    a.write_bytes(b"x")
    b.write_bytes(b"x")
    assert parse_inputs([str(a), f"voice={b}", "https://h/x.mp4?a=b"]) == {
        "in": str(a), "voice": str(b), "in3": "https://h/x.mp4?a=b"}
    with pytest.raises(typer.BadParameter):
        parse_inputs([str(tmp_path / "missing.mp4")])
    assert outputs_of("-i {{in}} -i {{voice}} {{out.mp4}} {{out.mp4}} {{thumb.jpg}}", {"in": "", "voice": ""}) == [
        "out.mp4", "thumb.jpg"]


def test_a_stream_that_keeps_closing_without_events_is_given_up(no_sleep: list[float]) -> None:
    from kubeffmpeg import ConnectionFailed

    calls: list[str | None] = []

    def handler(r: httpx.Request) -> httpx.Response:
        calls.append(r.headers.get("last-event-id"))
        if len(calls) == 1:  # one event, then the server's time limit closes the stream
            return httpx.Response(200, text='id: 1.1.300\nevent: progress\ndata: {"job_id":"j","step":1,"steps":1,'
                                             '"percent":30}\n\n')
        return httpx.Response(200, text=": ping\n\n")

    kf = make(handler)
    got = []
    with pytest.raises(ConnectionFailed):
        for ev in kf.events("job-1", reconnects=3):
            got.append(ev.id)
    assert got == ["1.1.300"] and calls[1:] == ["1.1.300"] * 4  # resumed from the last id each time
