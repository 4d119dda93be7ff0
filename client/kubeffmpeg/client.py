"""The Python client of kubeffmpeg, sync (`Client`) and async (`AsyncClient`), on httpx.

```python
from kubeffmpeg import Client

with Client() as kf:                       # API_URL / API_KEY, or .devstack/env of a checkout
    job = kf.submit(["-i {{in}} -vf scale=1280:-2 {{out.mp4}}"], inputs={"in": "clip.mp4"},
                    outputs=["out.mp4"])   # local files are uploaded first
    job = kf.wait(job.id, on_event=print)  # live events (SSE), polling where there are none
    kf.download(job, ".")
```

Requests refused with 429 or 503 are retried with back-off, honouring `Retry-After`; every other
error is raised as a typed exception (`kubeffmpeg.errors`) carrying the API's message."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from ffmpegjob_model.events import FinalEvent
from ffmpegjob_model.model import Phase
from pydantic import ValidationError
from tenacity import AsyncRetrying, Retrying, retry_if_exception, stop_after_attempt, stop_after_delay
from tenacity.wait import wait_base

from . import parts, sse
from .config import load_config
from .errors import (
    ApiError,
    ConnectionFailed,
    JobCancelled,
    JobFailed,
    KubeFFmpegError,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    WaitTimeout,
    api_error,
)
from .models import FFMPEG_API, MODELS, VGF, Job, JobEvent, Surface, Upload

RETRY_STATUSES = (429, 503)
EventCallback = Callable[[JobEvent], None]


# ----------------------------------------------------------------------------- shared logic
def error_from(resp: httpx.Response) -> ApiError:
    body: Any = None
    message = resp.reason_phrase or f"HTTP {resp.status_code}"
    code = None
    try:
        body = resp.json()
        if isinstance(body, dict):
            message = str(body.get("error") or body.get("message") or message)
            code = body.get("errorCode")
    except ValueError:
        if resp.text.strip():
            message = resp.text.strip()[:500]
    retry_after = None
    if "retry-after" in resp.headers:
        try:
            retry_after = float(resp.headers["retry-after"])
        except ValueError:
            retry_after = None
    return api_error(resp.status_code, message, code, body, retry_after)


def check(resp: httpx.Response) -> httpx.Response:
    if resp.status_code >= 400:
        raise error_from(resp)
    return resp


def retryable(exc: BaseException) -> bool:
    return isinstance(exc, RateLimited | ServiceUnavailable | ConnectionFailed)


class wait_retry_after(wait_base):
    """Retry-After when the API sent one, else exponential back-off (0.5 s, 1 s, ... 8 s)."""

    def __call__(self, retry_state: Any) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, ApiError) and exc.retry_after is not None:
            return min(exc.retry_after, 60.0)
        return float(min(0.5 * 2 ** (retry_state.attempt_number - 1), 8.0))


def job_path(surface: Surface, job_id: str) -> str:
    return f"/api/jobs/{job_id}" if surface == VGF else f"/job/{job_id}"


def event_of(raw: sse.RawEvent) -> JobEvent | None:
    model = MODELS.get(raw.event)
    if model is None:
        return None
    try:
        data = model.model_validate_json(raw.data)
    except ValidationError:
        return None
    return JobEvent(raw.event, raw.id, data)  # type: ignore[arg-type]


def outcome(event: JobEvent, surface: Surface) -> Job:
    """The job of a final event, or JobFailed/JobCancelled."""
    data = event.data
    assert isinstance(data, FinalEvent)
    job = Job.parse(surface, data.job) if data.job else None
    if event.name == "result" and job is not None:
        return job
    cls = JobCancelled if data.status == "cancelled" else JobFailed
    raise cls(data.job_id, data.status, data.error, data.step, data.steps, job)


def job_outcome(job: Job) -> Job:
    if job.phase == Phase.SUCCEEDED:
        return job
    cls = JobCancelled if job.phase == Phase.CANCELLED else JobFailed
    step = job.progress.step if job.progress else None
    steps = job.progress.steps if job.progress else None
    raise cls(job.id, job.status, job.error, step, steps, job)


def vgf_body(commands: Sequence[str], inputs: Mapping[str, str], outputs: Sequence[str],
             **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"ffmpeg_commands": list(commands), "input_files": dict(inputs),
                            "output_files": list(outputs)}
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def is_local(source: str | Path) -> bool:
    return isinstance(source, Path) or "://" not in str(source)


def _headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "User-Agent": "kubeffmpeg-client/0.1"}


def _target(dest: str | Path, name: str) -> Path:
    path = Path(dest)
    return path / name if path.is_dir() else path


# ------------------------------------------------------------------------------------ sync
class Client:
    def __init__(self, api_url: str | None = None, api_key: str | None = None, *, timeout: float = 60.0,
                 retries: int = 5, retry_seconds: float = 120.0, transport: httpx.BaseTransport | None = None) -> None:
        cfg = load_config(api_url, api_key)
        self.api_url, self.retries, self.retry_seconds = cfg.api_url, retries, retry_seconds
        self.http = httpx.Client(base_url=cfg.api_url, headers=_headers(cfg.api_key), timeout=timeout,
                                 transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # ---------------------------------------------------------------------------- requests
    def request(self, method: str, path: str, **kw: Any) -> Any:
        """One API call with retries on 429/503 (and connection errors of reads); the JSON."""
        def once() -> Any:
            try:
                resp = self.http.request(method, path, **kw)
            except httpx.TransportError as e:
                if method != "GET" and not isinstance(e, httpx.ConnectError):
                    raise KubeFFmpegError(f"{method} {path}: {e}") from None
                raise ConnectionFailed(f"cannot reach {self.api_url}: {e}") from None
            return check(resp).json()

        for attempt in Retrying(retry=retry_if_exception(retryable), wait=wait_retry_after(), reraise=True,
                                stop=stop_after_attempt(self.retries + 1) | stop_after_delay(self.retry_seconds)):
            with attempt:
                return once()
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------------------- files
    def upload(self, path: str | Path, surface: Surface = VGF, name: str | None = None, *,
               multipart_threshold: int = parts.MULTIPART_THRESHOLD, part_size: int | None = None,
               workers: int = 4) -> Upload:
        """Store a local file for a job: on the VGF surface a temporary file (its `url` is the
        job's input), on the "FFmpeg API" surface a registered file (`file_path`). A file of
        `multipart_threshold` bytes or more goes up in parts, `workers` at a time
        (docs/large-files.md); when parts still fail, `parts.UploadIncomplete` names the upload
        `resume_upload` finishes."""
        p = Path(path)
        name = name or p.name
        if p.stat().st_size >= multipart_threshold:
            return self._upload_in_parts(p, surface, name, part_size, workers)
        if surface == VGF:
            urls = self.request("POST", "/api/tmp-file", json={"file_name": name})["data"]
            put, out = urls["upload_url"], Upload(url=urls["download_url"])
        else:
            reg = self.request("POST", "/file", json={"file_name": name})
            put, out = reg["upload"]["url"], Upload(url="", file_path=reg["file"]["file_path"])
        with p.open("rb") as f:
            try:
                r = httpx.put(put, content=f, timeout=None)
            except httpx.TransportError as e:
                raise ConnectionFailed(f"upload of {p} failed: {e}") from None
        if r.status_code >= 300:
            raise KubeFFmpegError(f"upload of {p} failed: HTTP {r.status_code} {r.text[:200]}")
        return out

    def _upload_in_parts(self, p: Path, surface: Surface, name: str, part_size: int | None, workers: int) -> Upload:
        body = {"file_name": name, "file_size": p.stat().st_size,
                **({"part_size": part_size} if part_size else {})}
        up = parts.unwrap(self.request("POST", parts.base(surface), json=body), surface)
        up = up if surface == VGF else up["upload"]
        first = {x["part_number"]: x["url"] for x in up["parts"]}
        parts.upload_parts(self.request, p, surface, up["upload_id"], up["part_size"],
                           list(range(1, up["part_count"] + 1)), first, workers)
        return self._complete(surface, up["upload_id"])

    def resume_upload(self, upload_id: str, path: str | Path, surface: Surface = VGF, workers: int = 4) -> Upload:
        """Finish a multipart upload: the parts storage lacks, then complete."""
        state = parts.unwrap(self.request("GET", f"{parts.base(surface)}/{upload_id}"), surface)
        state = state if surface == VGF else state["upload"]
        parts.upload_parts(self.request, Path(path), surface, upload_id, state["part_size"],
                           state["missing_parts"], {}, workers)
        return self._complete(surface, upload_id)

    def _complete(self, surface: Surface, upload_id: str) -> Upload:
        done = parts.unwrap(self.request("POST", f"{parts.base(surface)}/{upload_id}/complete"), surface)
        if surface == VGF:
            return Upload(url=done["download_url"])
        return Upload(url="", file_path=done["file"]["file_path"])

    def download(self, job_or_url: Job | str, dest: str | Path = ".", name: str | None = None) -> list[Path]:
        """Every result file of a job (or one URL) into the folder (or file) `dest`."""
        items = ([(r.file_name, r.download_url) for r in job_or_url.result] if isinstance(job_or_url, Job)
                 else [(name or Path(httpx.URL(job_or_url).path).name or "output", job_or_url)])
        out = []
        for fname, url in items:
            target = _target(dest, fname)
            try:
                with httpx.stream("GET", url, timeout=None) as r:
                    if r.status_code >= 300:
                        raise KubeFFmpegError(f"download of {fname} failed: HTTP {r.status_code}")
                    with target.open("wb") as f:
                        for chunk in r.iter_bytes(1 << 20):
                            f.write(chunk)
            except httpx.TransportError as e:
                raise ConnectionFailed(f"download of {fname} failed: {e}") from None
            out.append(target)
        return out

    def directories(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/directory")["directories"])

    def files(self, dir_id: str) -> list[dict[str, Any]]:
        return list(self.request("GET", f"/directory/{dir_id}")["files"])

    def delete_file(self, dir_id: str, file_name: str) -> None:
        self.request("DELETE", f"/file/{dir_id}/{file_name}")

    def probe(self, source: str | Path) -> dict[str, Any]:
        """ffprobe of a stored file (`dir_id/file`), a URL, or a local file (uploaded first)."""
        text = str(source)
        if isinstance(source, Path) or ("://" not in text and Path(text).is_file()):
            text = self.upload(source, FFMPEG_API).file_path or ""
        return dict(self.request("POST", "/ffprobe/analyze", json={"file_path": text})["result"])

    # -------------------------------------------------------------------------------- jobs
    def submit(self, commands: Sequence[str], inputs: Mapping[str, str | Path] | None = None,
               outputs: Sequence[str] = (), *, machine: str | None = None, parallel: dict[str, Any] | None = None,
               webhook_url: str | None = None, timeout_seconds: int | None = None) -> Job:
        """A job on the VGF surface (`POST /api/ffmpeg`); local input files are uploaded first."""
        urls = {k: (self.upload(v).url if is_local(v) else str(v)) for k, v in (inputs or {}).items()}
        body = vgf_body(commands, urls, outputs, machine=machine, parallel=parallel, webhook_url=webhook_url,
                        timeout_seconds=timeout_seconds)
        return Job.from_vgf(self.request("POST", "/api/ffmpeg", json=body)["data"])

    def submit_task(self, task: Mapping[str, Any], webhook_url: str | None = None) -> Job:
        """A task on the "FFmpeg API" surface (`POST /ffmpeg/process/async`), as its docs write it."""
        body: dict[str, Any] = {"task": dict(task)}
        if webhook_url:
            body["webhook_url"] = webhook_url
        job_id = self.request("POST", "/ffmpeg/process/async", json=body)["job_id"]
        return Job(id=job_id, surface=FFMPEG_API, status="pending", phase=Phase.PENDING)

    def get(self, job_id: str, surface: Surface = VGF) -> Job:
        data = self.request("GET", job_path(surface, job_id))
        return Job.parse(surface, data["data"] if surface == VGF else data)

    def list_jobs(self, limit: int = 50, offset: int = 0, status: str | None = None) -> list[Job]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        return [Job.from_vgf(d) for d in self.request("GET", "/api/jobs", params=params)["data"]]

    def cancel(self, job_id: str, surface: Surface = VGF) -> Job:
        if surface == VGF:
            return Job.from_vgf(self.request("POST", f"/api/jobs/{job_id}/cancel")["data"])
        self.request("DELETE", f"/job/{job_id}")
        return self.get(job_id, surface)

    # ------------------------------------------------------------------------------ events
    def events(self, job_id: str, surface: Surface = VGF, last_event_id: str | None = None,
               reconnects: int = 20) -> Iterator[JobEvent]:
        """The job's live events until the final one (`result` or `error`). A dropped stream is
        resumed with Last-Event-ID; a server without event streams raises NotFound after the job
        was found (use `wait`, which polls then)."""
        last, failures = last_event_id, 0
        while True:
            headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last} if last else {})}
            try:
                with self.http.stream("GET", job_path(surface, job_id) + "/events", headers=headers,
                                      timeout=httpx.Timeout(10.0, read=90.0)) as resp:
                    if resp.status_code >= 400:
                        resp.read()
                        raise error_from(resp)
                    parser, got_any = sse.Parser(last_id=last), False
                    for raw in sse.parse(resp.iter_lines(), parser):
                        last = parser.last_id
                        failures, got_any = 0, True
                        ev = event_of(raw)
                        if ev is None:
                            continue
                        yield ev
                        if ev.final:
                            return
            except (httpx.TransportError, RateLimited, ServiceUnavailable) as e:
                failures += 1
                if failures > reconnects:
                    if isinstance(e, ApiError):
                        raise
                    raise ConnectionFailed(f"event stream of {job_id} lost: {e}") from None
                delay = e.retry_after if isinstance(e, ApiError) and e.retry_after else min(0.5 * 2 ** failures, 8)
                time.sleep(delay)
                continue
            # The server closed the stream without a final event (its time limit): resume, after
            # a pause if it sent nothing at all.
            if not got_any:
                failures += 1
                if failures > reconnects:
                    raise ConnectionFailed(f"event stream of {job_id} keeps closing without events")
                time.sleep(min(0.5 * 2 ** failures, 8))

    def wait(self, job_id: str, surface: Surface = VGF, timeout: float | None = None,
             on_event: EventCallback | None = None, poll_seconds: float = 2.0, raise_on_failure: bool = True) -> Job:
        """The finished job. Follows its events (SSE); polls where the API has no event stream or
        the key's streams are used up. Raises JobFailed/JobCancelled unless `raise_on_failure` is
        false, WaitTimeout after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            for ev in self._events_until(job_id, surface, deadline):
                if on_event:
                    on_event(ev)
                if ev.final:
                    data = ev.data
                    if not raise_on_failure and isinstance(data, FinalEvent) and data.job:
                        return Job.parse(surface, data.job)
                    if not raise_on_failure:
                        return self.get(job_id, surface)
                    return outcome(ev, surface)
        except (NotFound, RateLimited):
            self.get(job_id, surface)  # NotFound here: the job itself is not there
        while True:  # polling
            job = self.get(job_id, surface)
            if job.done:
                return job_outcome(job) if raise_on_failure else job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {job_id} still {job.status} after {timeout:g} s")
            time.sleep(poll_seconds)

    def _events_until(self, job_id: str, surface: Surface, deadline: float | None) -> Iterator[JobEvent]:
        for ev in self.events(job_id, surface):
            yield ev
            if ev.final:
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {job_id} did not finish in time")

    def run(self, commands: Sequence[str], inputs: Mapping[str, str | Path] | None = None,
            outputs: Sequence[str] = (), dest: str | Path | None = ".", on_event: EventCallback | None = None,
            **submit: Any) -> Job:
        """submit, wait, and download the outputs into `dest` (None: no download)."""
        job = self.submit(commands, inputs, outputs, **submit)
        job = self.wait(job.id, on_event=on_event)
        if dest is not None:
            self.download(job, dest)
        return job


# ----------------------------------------------------------------------------------- async
class AsyncClient:
    """The same calls as `Client`, awaitable."""

    def __init__(self, api_url: str | None = None, api_key: str | None = None, *, timeout: float = 60.0,
                 retries: int = 5, retry_seconds: float = 120.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        cfg = load_config(api_url, api_key)
        self.api_url, self.retries, self.retry_seconds = cfg.api_url, retries, retry_seconds
        self.http = httpx.AsyncClient(base_url=cfg.api_url, headers=_headers(cfg.api_key), timeout=timeout,
                                      transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def request(self, method: str, path: str, **kw: Any) -> Any:
        async def once() -> Any:
            try:
                resp = await self.http.request(method, path, **kw)
            except httpx.TransportError as e:
                if method != "GET" and not isinstance(e, httpx.ConnectError):
                    raise KubeFFmpegError(f"{method} {path}: {e}") from None
                raise ConnectionFailed(f"cannot reach {self.api_url}: {e}") from None
            return check(resp).json()

        async for attempt in AsyncRetrying(retry=retry_if_exception(retryable), wait=wait_retry_after(),
                                           reraise=True, stop=stop_after_attempt(self.retries + 1)
                                           | stop_after_delay(self.retry_seconds)):
            with attempt:
                return await once()
        raise AssertionError("unreachable")

    async def upload(self, path: str | Path, surface: Surface = VGF, name: str | None = None, *,
                     multipart_threshold: int = parts.MULTIPART_THRESHOLD, part_size: int | None = None,
                     workers: int = 4) -> Upload:
        p = Path(path)
        name = name or p.name
        if p.stat().st_size >= multipart_threshold:
            return await self._upload_in_parts(p, surface, name, part_size, workers)
        if surface == VGF:
            urls = (await self.request("POST", "/api/tmp-file", json={"file_name": name}))["data"]
            put, out = urls["upload_url"], Upload(url=urls["download_url"])
        else:
            reg = await self.request("POST", "/file", json={"file_name": name})
            put, out = reg["upload"]["url"], Upload(url="", file_path=reg["file"]["file_path"])
        async with httpx.AsyncClient(timeout=None) as plain:
            try:
                r = await plain.put(put, content=p.read_bytes())
            except httpx.TransportError as e:
                raise ConnectionFailed(f"upload of {p} failed: {e}") from None
        if r.status_code >= 300:
            raise KubeFFmpegError(f"upload of {p} failed: HTTP {r.status_code} {r.text[:200]}")
        return out

    async def _upload_in_parts(self, p: Path, surface: Surface, name: str, part_size: int | None,
                               workers: int) -> Upload:
        body = {"file_name": name, "file_size": p.stat().st_size,
                **({"part_size": part_size} if part_size else {})}
        up = parts.unwrap(await self.request("POST", parts.base(surface), json=body), surface)
        up = up if surface == VGF else up["upload"]
        first = {x["part_number"]: x["url"] for x in up["parts"]}
        await self._put_parts(p, surface, up["upload_id"], up["part_size"], list(range(1, up["part_count"] + 1)),
                              first, workers)
        return await self._complete(surface, up["upload_id"])

    async def resume_upload(self, upload_id: str, path: str | Path, surface: Surface = VGF,
                            workers: int = 4) -> Upload:
        state = parts.unwrap(await self.request("GET", f"{parts.base(surface)}/{upload_id}"), surface)
        state = state if surface == VGF else state["upload"]
        await self._put_parts(Path(path), surface, upload_id, state["part_size"], state["missing_parts"], {}, workers)
        return await self._complete(surface, upload_id)

    async def _put_parts(self, p: Path, surface: Surface, upload_id: str, part_size: int, numbers: list[int],
                         first: dict[int, str], workers: int) -> None:
        """In batches of at most 1,000 parts: their URLs, then the PUTs on threads."""
        for i in range(0, len(numbers), parts.MAX_URL_BATCH):
            batch = numbers[i:i + parts.MAX_URL_BATCH]
            urls = {n: first[n] for n in batch if n in first}
            want = [n for n in batch if n not in urls]
            if want:
                got = parts.unwrap(await self.request("POST", f"{parts.base(surface)}/{upload_id}/urls",
                                                      json={"part_numbers": want}), surface)
                urls |= {x["part_number"]: x["url"] for x in got["parts"]}
            try:
                await asyncio.to_thread(parts.put_parts, p, part_size, urls, workers)
            except KubeFFmpegError as e:
                raise parts.UploadIncomplete(f"upload {upload_id} of {p} is incomplete ({e}); resume_upload"
                                             f"({upload_id!r}, ...) finishes it", upload_id) from None

    async def _complete(self, surface: Surface, upload_id: str) -> Upload:
        done = parts.unwrap(await self.request("POST", f"{parts.base(surface)}/{upload_id}/complete"), surface)
        if surface == VGF:
            return Upload(url=done["download_url"])
        return Upload(url="", file_path=done["file"]["file_path"])

    async def download(self, job_or_url: Job | str, dest: str | Path = ".", name: str | None = None) -> list[Path]:
        items = ([(r.file_name, r.download_url) for r in job_or_url.result] if isinstance(job_or_url, Job)
                 else [(name or Path(httpx.URL(job_or_url).path).name or "output", job_or_url)])
        out = []
        async with httpx.AsyncClient(timeout=None) as plain:
            for fname, url in items:
                target = _target(dest, fname)
                async with plain.stream("GET", url) as r:
                    if r.status_code >= 300:
                        raise KubeFFmpegError(f"download of {fname} failed: HTTP {r.status_code}")
                    with target.open("wb") as f:
                        async for chunk in r.aiter_bytes(1 << 20):
                            f.write(chunk)
                out.append(target)
        return out

    async def probe(self, source: str | Path) -> dict[str, Any]:
        text = str(source)
        if isinstance(source, Path) or ("://" not in text and Path(text).is_file()):
            text = (await self.upload(source, FFMPEG_API)).file_path or ""
        return dict((await self.request("POST", "/ffprobe/analyze", json={"file_path": text}))["result"])

    async def submit(self, commands: Sequence[str], inputs: Mapping[str, str | Path] | None = None,
                     outputs: Sequence[str] = (), *, machine: str | None = None,
                     parallel: dict[str, Any] | None = None, webhook_url: str | None = None,
                     timeout_seconds: int | None = None) -> Job:
        urls = {k: ((await self.upload(v)).url if is_local(v) else str(v)) for k, v in (inputs or {}).items()}
        body = vgf_body(commands, urls, outputs, machine=machine, parallel=parallel, webhook_url=webhook_url,
                        timeout_seconds=timeout_seconds)
        return Job.from_vgf((await self.request("POST", "/api/ffmpeg", json=body))["data"])

    async def submit_task(self, task: Mapping[str, Any], webhook_url: str | None = None) -> Job:
        body: dict[str, Any] = {"task": dict(task)}
        if webhook_url:
            body["webhook_url"] = webhook_url
        job_id = (await self.request("POST", "/ffmpeg/process/async", json=body))["job_id"]
        return Job(id=job_id, surface=FFMPEG_API, status="pending", phase=Phase.PENDING)

    async def get(self, job_id: str, surface: Surface = VGF) -> Job:
        data = await self.request("GET", job_path(surface, job_id))
        return Job.parse(surface, data["data"] if surface == VGF else data)

    async def list_jobs(self, limit: int = 50, offset: int = 0, status: str | None = None) -> list[Job]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status:
            params["status"] = status
        return [Job.from_vgf(d) for d in (await self.request("GET", "/api/jobs", params=params))["data"]]

    async def cancel(self, job_id: str, surface: Surface = VGF) -> Job:
        if surface == VGF:
            return Job.from_vgf((await self.request("POST", f"/api/jobs/{job_id}/cancel"))["data"])
        await self.request("DELETE", f"/job/{job_id}")
        return await self.get(job_id, surface)

    async def events(self, job_id: str, surface: Surface = VGF, last_event_id: str | None = None,
                     reconnects: int = 20) -> AsyncIterator[JobEvent]:
        last, failures = last_event_id, 0
        while True:
            headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last} if last else {})}
            try:
                async with self.http.stream("GET", job_path(surface, job_id) + "/events", headers=headers,
                                            timeout=httpx.Timeout(10.0, read=90.0)) as resp:
                    if resp.status_code >= 400:
                        await resp.aread()
                        raise error_from(resp)
                    parser, got_any = sse.Parser(last_id=last), False
                    async for raw in sse.aparse(resp.aiter_lines(), parser):
                        last = parser.last_id
                        failures, got_any = 0, True
                        ev = event_of(raw)
                        if ev is None:
                            continue
                        yield ev
                        if ev.final:
                            return
            except (httpx.TransportError, RateLimited, ServiceUnavailable) as e:
                failures += 1
                if failures > reconnects:
                    if isinstance(e, ApiError):
                        raise
                    raise ConnectionFailed(f"event stream of {job_id} lost: {e}") from None
                delay = e.retry_after if isinstance(e, ApiError) and e.retry_after else min(0.5 * 2 ** failures, 8)
                await asyncio.sleep(delay)
                continue
            if not got_any:
                failures += 1
                if failures > reconnects:
                    raise ConnectionFailed(f"event stream of {job_id} keeps closing without events")
                await asyncio.sleep(min(0.5 * 2 ** failures, 8))

    async def wait(self, job_id: str, surface: Surface = VGF, timeout: float | None = None,
                   on_event: EventCallback | None = None, poll_seconds: float = 2.0,
                   raise_on_failure: bool = True) -> Job:
        async def follow() -> Job | None:
            try:
                async for ev in self.events(job_id, surface):
                    if on_event:
                        on_event(ev)
                    if ev.final:
                        data = ev.data
                        if not raise_on_failure:
                            return Job.parse(surface, data.job) if isinstance(data, FinalEvent) and data.job \
                                else await self.get(job_id, surface)
                        return outcome(ev, surface)
            except (NotFound, RateLimited):
                await self.get(job_id, surface)
            while True:
                job = await self.get(job_id, surface)
                if job.done:
                    return job_outcome(job) if raise_on_failure else job
                await asyncio.sleep(poll_seconds)

        try:
            job = await asyncio.wait_for(follow(), timeout)
        except TimeoutError:
            raise WaitTimeout(f"job {job_id} did not finish in {timeout:g} s") from None
        assert job is not None
        return job

    async def run(self, commands: Sequence[str], inputs: Mapping[str, str | Path] | None = None,
                  outputs: Sequence[str] = (), dest: str | Path | None = ".", on_event: EventCallback | None = None,
                  **submit: Any) -> Job:
        job = await self.submit(commands, inputs, outputs, **submit)
        job = await self.wait(job.id, on_event=on_event)
        if dest is not None:
            await self.download(job, dest)
        return job


__all__ = ["AsyncClient", "Client"]
