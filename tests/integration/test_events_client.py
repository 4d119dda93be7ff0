"""Live job events (SSE) and the Python client against the local stack: a stream opened before
the job runs sees every phase in order and the result; a reconnect with Last-Event-ID misses
nothing and repeats nothing; tenant checks; the bound on open streams per key; streams cost no
watch of the API server; the client's sync and async calls on both surfaces."""
# ruff: noqa: F811 (pytest fixtures imported from the REST suite are parameters here)

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from devstack.stack import StackInfo
from ffmpegjob_model.events import FinalEvent, PhaseEvent, ProgressEvent
from ffmpegjob_model.model import API_VERSION, GROUP, KIND, PLURAL, VERSION
from kubeffmpeg import AsyncClient, Client, JobEvent, JobFailed, NotFound, RateLimited
from kubeffmpeg.sse import Parser, parse
from kubernetes import client as k8s
from test_api_stack import api_url, keys, tenant_name, video  # noqa: F401

pytestmark = pytest.mark.stack
TWO_STEPS = ["-f lavfi -i testsrc=size=320x240:rate=25 -t 3 -c:v libx264 -preset ultrafast {{a.mp4}}",
             "-re -i {{a.mp4}} -vf hflip -c:v libx264 -preset ultrafast {{b.mp4}}"]


@pytest.fixture(scope="module")
def tenant() -> str:
    return tenant_name("sse")


@pytest.fixture(scope="module")
def key(keys: Callable[..., str], tenant: str) -> str:
    return keys(tenant, requests_per_second=0)


@pytest.fixture(scope="module")
def kf(api_url: str, key: str) -> Client:
    return Client(api_url, key)


def custom(kube_api: k8s.ApiClient) -> k8s.CustomObjectsApi:
    return k8s.CustomObjectsApi(kube_api)


def suspended_job(kube_api: k8s.ApiClient, stack: StackInfo, tenant: str, commands: list[str],
                  outputs: list[str]) -> str:
    """An FFmpegJob that waits (spec.suspend) until `resume`: a client can connect before it runs."""
    name = f"sse-{tenant_name('j')}"
    body = {"apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": name, "labels": {f"{GROUP}/tenant": tenant}},
            "spec": {"tenant": tenant, "inputs": [], "outputs": [{"name": o} for o in outputs],
                     "commands": commands, "machine": "cpu", "suspend": True,
                     "output": {"dirId": "dir_" + name.replace("-", "")[:40]}}}
    custom(kube_api).create_namespaced_custom_object(GROUP, VERSION, stack.namespace, PLURAL, body)
    return name


def resume(kube_api: k8s.ApiClient, stack: StackInfo, name: str) -> None:
    custom(kube_api).patch_namespaced_custom_object(GROUP, VERSION, stack.namespace, PLURAL, name,
                                                    {"spec": {"suspend": False}})


def collect(kf: Client, job_id: str, surface: Any = "vgf", last: str | None = None,
            stop: Callable[[JobEvent], bool] | None = None, into: list[JobEvent] | None = None) -> list[JobEvent]:
    got: list[JobEvent] = [] if into is None else into
    for ev in kf.events(job_id, surface, last_event_id=last):
        got.append(ev)
        if stop is not None and stop(ev):
            break
    return got


def phases(events: list[JobEvent]) -> list[str]:
    return [str(e.data.phase) for e in events if isinstance(e.data, PhaseEvent)]


def test_a_client_connected_before_the_job_runs_sees_every_phase_in_order_and_the_result(
        kf: Client, kube_api: k8s.ApiClient, stack: StackInfo, tenant: str) -> None:
    name = suspended_job(kube_api, stack, tenant, TWO_STEPS, ["a.mp4", "b.mp4"])
    got: list[JobEvent] = []
    reader = threading.Thread(target=collect, args=(kf, name, "ffmpeg-api"), kwargs={"into": got}, daemon=True)
    reader.start()
    deadline = time.monotonic() + 30
    while not got and time.monotonic() < deadline:
        time.sleep(0.1)
    assert phases(got) == ["Pending"]  # connected, the job still waits
    resume(kube_api, stack, name)
    reader.join(240)
    assert not reader.is_alive()
    assert phases(got) == ["Pending", "Running", "Succeeded"]
    assert [e.name for e in got][-1] == "result"
    steps = [e.data.step for e in got if isinstance(e.data, ProgressEvent)]
    assert steps == sorted(steps) and {1, 2} <= set(steps)
    percents = [e.data.percent for e in got if isinstance(e.data, ProgressEvent) and e.data.step == 2]
    assert len(percents) >= 2 and percents == sorted(percents)  # the -re step is seen moving
    final = got[-1].data
    assert isinstance(final, FinalEvent) and final.job is not None
    assert sorted(r["file_name"] for r in final.job["result"]) == ["a.mp4", "b.mp4"]
    ids = [e.id for e in got]
    assert all(i for i in ids) and len(set(ids)) == len(ids)


def test_a_reconnect_with_last_event_id_misses_nothing(kf: Client, api_url: str, key: str) -> None:
    job = kf.submit(TWO_STEPS, {}, ["a.mp4", "b.mp4"])
    first = collect(kf, job.id, stop=lambda e: isinstance(e.data, ProgressEvent) and e.data.step == 2)
    assert phases(first) == ["Pending", "Running"]
    # the connection is gone; the job goes on and finishes meanwhile
    kf.wait(job.id)
    with httpx.stream("GET", f"{api_url}/api/jobs/{job.id}/events", timeout=30,
                      headers={"Authorization": f"Bearer {key}", "Last-Event-ID": str(first[-1].id)}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raws = list(parse(r.iter_lines(), Parser()))
    rest = [(raw.event, raw.id) for raw in raws]
    assert rest == [("phase", "2.0.0"), ("result", "3.0.0")]
    # resuming mid-run too: only what came after
    second = collect(kf, job.id, last=str(first[1].id))  # after Running
    assert phases(second) == ["Succeeded"] and second[-1].name == "result"


def test_events_of_another_tenants_job_are_a_404_and_streams_per_key_are_bounded(
        kf: Client, api_url: str, keys: Callable[..., str], kube_api: k8s.ApiClient, stack: StackInfo,
        tenant: str) -> None:
    name = suspended_job(kube_api, stack, tenant, TWO_STEPS[:1], ["a.mp4"])
    other = Client(api_url, keys(tenant_name("other"), requests_per_second=0))
    with pytest.raises(NotFound):
        next(iter(other.events(name, reconnects=0)))
    limit = 20  # EVENTS_MAX_STREAMS_PER_KEY's default
    headers = {"Authorization": f"Bearer {kf.http.headers['Authorization'].split()[1]}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=30) as h:
        streams = [h.stream("GET", f"/job/{name}/events") for _ in range(limit)]
        opened = [streams[0].__enter__()]
        lines0 = opened[0].iter_lines()  # kept: a dropped iterator closes its connection
        next(lines0)  # the API's one shared watch runs from its first stream on
        watches_before = apiserver_watches(kube_api)
        opened += [s.__enter__() for s in streams[1:]]
        try:
            assert all(r.status_code == 200 for r in opened)
            with h.stream("GET", f"/job/{name}/events") as extra:
                assert extra.status_code == 429, extra.status_code
                assert "event streams" in json.loads(extra.read())["error"] and extra.headers["retry-after"]
            with pytest.raises(RateLimited):
                next(iter(kf.events(name, reconnects=0)))
            assert apiserver_watches(kube_api) == watches_before  # one shared watch, whatever the streams
        finally:
            for s in streams:
                s.__exit__(None, None, None)
    deadline = time.monotonic() + 10  # the server sees the disconnects
    while time.monotonic() < deadline:
        with httpx.Client(base_url=api_url, headers=headers, timeout=30) as h, h.stream(
                "GET", f"/job/{name}/events") as r:
            if r.status_code == 200:
                break
        time.sleep(0.5)
    else:
        raise AssertionError("streams were not released")
    custom(kube_api).delete_namespaced_custom_object(GROUP, VERSION, stack.namespace, PLURAL, name)


def apiserver_watches(kube_api: k8s.ApiClient) -> float:
    """Open WATCH requests on ffmpegjobs, from the API server's own metrics."""
    r = kube_api.call_api("GET", kube_api.configuration.host + "/metrics")
    r.read()
    total = 0.0
    for line in (r.data or b"").decode().splitlines():
        if line.startswith("apiserver_longrunning_requests{") and 'resource="ffmpegjobs"' in line \
                and 'verb="WATCH"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_the_client_runs_a_job_end_to_end_and_raises_the_apis_errors(kf: Client, video: Path,
                                                                      tmp_path: Path) -> None:
    seen: list[JobEvent] = []
    job = kf.run(["-i {{in}} -vf scale=160:-2 {{small.mp4}}"], {"in": video}, ["small.mp4"], dest=tmp_path,
                 on_event=seen.append)
    assert job.succeeded and (tmp_path / "small.mp4").stat().st_size > 0
    assert phases(seen) == ["Pending", "Running", "Succeeded"]
    probed = kf.probe(tmp_path / "small.mp4")
    assert probed["streams"][0]["width"] == 160
    assert any(j.id == job.id for j in kf.list_jobs())
    with pytest.raises(JobFailed) as failed:
        kf.run(["-i {{in}} -vf nosuchfilter {{x.mp4}}"], {"in": video}, ["x.mp4"], dest=None)
    assert failed.value.step == 1 and "nosuchfilter" in (failed.value.error or "")
    from kubeffmpeg import BadRequest

    with pytest.raises(BadRequest) as bad:
        kf.submit(["-i /etc/passwd {{x.mp4}}"], {}, ["x.mp4"])
    assert bad.value.status == 400 and bad.value.message


def test_the_async_client_on_the_ffmpeg_api_surface(api_url: str, key: str, video: Path, tmp_path: Path) -> None:
    async def go() -> None:
        async with AsyncClient(api_url, key) as kf:
            up = await kf.upload(video, "ffmpeg-api")
            assert up.file_path and re.fullmatch(r"[\w-]+/video\.mp4", up.file_path)
            job = await kf.submit_task({"inputs": [{"file_path": up.file_path}],
                                        "outputs": [{"file": "o.mp4", "options": ["-vf", "scale=96:-2"]}]})
            events: list[JobEvent] = []
            done = await kf.wait(job.id, "ffmpeg-api", on_event=events.append, timeout=240)
            assert done.status == "completed" and events[-1].name == "result"
            files = await kf.download(done, tmp_path)
            assert [p.name for p in files] == ["o.mp4"] and files[0].stat().st_size > 0

    asyncio.run(go())


def test_retries_honour_retry_after(api_url: str, keys: Callable[..., str]) -> None:
    """A key limited to 1 request per second (burst 1): back-to-back calls are answered 429 with
    Retry-After, and the client waits and succeeds instead of failing."""
    kf = Client(api_url, keys(tenant_name("slow"), requests_per_second=1, burst=1))
    t0 = time.monotonic()
    for _ in range(3):
        kf.list_jobs()
    assert time.monotonic() - t0 >= 1.0  # it waited for the bucket at least once
    impatient = Client(api_url, kf.http.headers["Authorization"].split()[1], retries=0)
    with pytest.raises(RateLimited) as e:
        for _ in range(3):
            impatient.list_jobs()
    assert e.value.retry_after and e.value.retry_after >= 1
