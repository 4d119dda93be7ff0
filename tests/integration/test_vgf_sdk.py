"""The "Very Good FFmpeg" service's official Python SDK (`very-good-ffmpeg`, pinned in pyproject),
unmodified, against this API on the local stack: every SDK method (sync and async), every example
of its README (1.2.1, as published on PyPI), and every behaviour its public integration suite
checks (success with wait and with polling, an unreachable input, cancel, list paging, the
temporary-file round trip, `timeout_seconds`, the webhook URL reflected).

The only change to the README's code is where it points: `VGF(key, base_url=f"{API}/api")`
instead of the hosted service, and inputs uploaded with the SDK instead of example.com URLs
(this stack has no Internet)."""
# ruff: noqa: F811 (pytest fixtures imported from the REST suite are parameters here)

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

# The stack's API process and helpers of the REST suite (fixtures are found by name).
from helpers import Receiver
from test_api_stack import api_url, keys, probe_file, tenant_name, video  # noqa: F401
from very_good_ffmpeg import VGF, Job, JobList, PagingParams, TmpFile, VGFAuthError, VGFError, VGFNotFoundError

pytestmark = pytest.mark.stack
UNREACHABLE = "https://does-not-exist.invalid/nope.mp4"  # does not resolve: not a forbidden address
JOB_KEYS = ("id", "status", "queued_at", "started_at", "finished_at", "created_at", "updated_at", "error_message",
            "ffmpeg_commands", "input_files", "output_files", "webhook_url", "timeout_seconds", "total_input_bytes",
            "total_output_bytes")


@pytest.fixture(scope="module")
def key(keys: Callable[..., str]) -> str:
    return keys(tenant_name("sdk"))


@pytest.fixture(scope="module")
def base_url(api_url: str) -> str:
    return f"{api_url}/api"


@pytest.fixture(scope="module")
def client(key: str, base_url: str) -> VGF:
    return VGF(key, base_url=base_url)


@pytest.fixture(scope="module")
def sample(client: VGF, video: Path) -> str:
    """The test clip, uploaded with the SDK: its download URL is a job input."""
    return client.files.upload(video.read_bytes(), "video/mp4")


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as r:
        data: bytes = r.read()
    return data


def assert_job_shape(job: Job) -> None:
    assert job.id and job.queued_at and job.created_at and job.updated_at
    assert isinstance(job.error_message, str) and isinstance(job.output_files, dict)


def assert_output_is_video(job: Job, name: str = "output.mp4", width: int | None = None) -> None:
    assert job.status == "succeeded", job.error_message
    assert set(job.output_files) >= {name}
    info = probe_file(download(job.output_files[name]))
    if width is not None:
        assert info["streams"][0]["width"] == width
    assert job.total_output_bytes and job.total_input_bytes and job.finished_at and job.started_at


# ------------------------------------------------------------------ its integration suite's cases
def test_success_wait(client: VGF, sample: str) -> None:
    job = client.run(input_files={"input": sample}, output_files=["output.mp4"],
                     ffmpeg_commands=["-i {{input}} -t 5 {{output.mp4}}"], wait=True)
    assert_job_shape(job)
    assert_output_is_video(job)
    assert job.error_message == "" and job.timeout_seconds == 300  # the service's default


async def test_success_wait_async(client: VGF, sample: str) -> None:
    job = await client.arun(input_files={"input": sample}, output_files=["output.mp4"],
                            ffmpeg_commands=["-i {{input}} -t 5 {{output.mp4}}"], wait=True)
    assert_output_is_video(job)


def test_success_poll(client: VGF, sample: str) -> None:
    job = client.run(input_files={"input": sample}, output_files=["output.mp4"],
                     ffmpeg_commands=["-i {{input}} -t 5 {{output.mp4}}"])
    assert job.status in ("queued", "running", "succeeded") and job.output_files == {}
    assert job.wait(poll_interval=0.5, timeout=120) is job
    assert_output_is_video(job)


async def test_success_poll_async(client: VGF, sample: str) -> None:
    job = await client.arun(input_files={"input": sample}, output_files=["output.mp4"],
                            ffmpeg_commands=["-i {{input}} -t 5 {{output.mp4}}"])
    assert job.status in ("queued", "running", "succeeded")
    await job.async_wait(poll_interval=0.5, timeout=120)
    assert_output_is_video(job)


def test_failure_of_an_unreachable_input(client: VGF) -> None:
    """Accepted (no 400): the job fails when the input is fetched, and says why."""
    job = client.run(input_files={"input": UNREACHABLE}, output_files=["output.mp4"],
                     ffmpeg_commands=["-i {{input}} {{output.mp4}}"], wait=True)
    assert job.status == "failed" and "does-not-exist.invalid" in job.error_message
    assert job.output_files == {} and job.finished_at
    polled = client.run(input_files={"input": UNREACHABLE}, output_files=["output.mp4"],
                        ffmpeg_commands=["-i {{input}} {{output.mp4}}"])
    polled.wait(poll_interval=0.5, timeout=120)
    assert polled.status == "failed" and polled.error_message


async def test_failure_of_an_unreachable_input_async(client: VGF) -> None:
    job = await client.arun(input_files={"input": UNREACHABLE}, output_files=["output.mp4"],
                            ffmpeg_commands=["-i {{input}} {{output.mp4}}"])
    await job.async_wait(poll_interval=0.5, timeout=120)
    assert job.status == "failed" and job.error_message


# Reads at the clip's own rate (-re): runs 10 minutes however fast the machine is.
LONG = ["-re -stream_loop -1 -i {{input}} -t 600 -c:v libx264 -preset ultrafast {{output.mp4}}"]


def test_cancel(client: VGF, sample: str) -> None:
    job = client.run(input_files={"input": sample}, output_files=["output.mp4"], ffmpeg_commands=LONG)
    cancelled = client.jobs.cancel(job.id)
    assert cancelled.id == job.id and cancelled.status == "cancelled"
    job.wait(poll_interval=0.5, timeout=30)
    assert job.status == "cancelled" and job.error_message and job.output_files == {}
    # Job.cancel() on a running job
    other = client.run(input_files={"input": sample}, output_files=["output.mp4"], ffmpeg_commands=LONG)
    assert other.cancel().status == "cancelled"
    assert other.wait(poll_interval=0.5, timeout=30).status == "cancelled"
    with pytest.raises(VGFError) as e:  # a finished job cannot be cancelled
        client.jobs.cancel(job.id)
    assert e.value.status_code == 409 and str(e.value).startswith("Cannot cancel job in 'cancelled' status")


async def test_cancel_async(client: VGF, sample: str) -> None:
    job = await client.arun(input_files={"input": sample}, output_files=["output.mp4"], ffmpeg_commands=LONG)
    assert (await client.jobs.acancel(job.id)).status == "cancelled"
    await job.async_wait(poll_interval=0.5, timeout=30)
    assert job.status == "cancelled"
    other = await client.arun(input_files={"input": sample}, output_files=["output.mp4"], ffmpeg_commands=LONG)
    assert (await other.acancel()).status == "cancelled"
    await other.async_wait(poll_interval=0.5, timeout=30)
    assert other.status == "cancelled"


@pytest.fixture(scope="module")
def three_jobs(keys: Callable[..., str], base_url: str, video: Path) -> tuple[VGF, list[str]]:
    c = VGF(keys(tenant_name("page")), base_url=base_url)
    url = c.files.upload(video.read_bytes(), "video/mp4")
    jobs = [c.run(input_files={"input": url}, output_files=["o.mp4"], ffmpeg_commands=["-i {{input}} -t 1 {{o.mp4}}"])
            for _ in range(3)]
    for j in jobs:
        j.wait(poll_interval=0.5, timeout=120)
    return c, [j.id for j in jobs]


def test_list_paging(three_jobs: tuple[VGF, list[str]]) -> None:
    c, ids = three_jobs
    page1, page2 = c.jobs.list(limit=2, offset=0), c.jobs.list(limit=2, offset=2)
    assert isinstance(page1, JobList) and isinstance(page1.paging_params, PagingParams)
    assert len(page1.data) == 2 and len(page2.data) == 1
    assert not {j.id for j in page1.data} & {j.id for j in page2.data}
    assert {j.id for j in page1.data + page2.data} == set(ids)
    assert page1.paging_params == PagingParams(limit=2, offset=0, total=3, has_more=True)
    assert page2.paging_params == PagingParams(limit=2, offset=2, total=3, has_more=False)
    assert [j.id for j in c.jobs.list().data] == [j.id for j in page1.data + page2.data]  # newest first
    assert all(j.status == "succeeded" and j.output_files for j in page1.data)


async def test_list_paging_async(three_jobs: tuple[VGF, list[str]]) -> None:
    c, ids = three_jobs
    page = await c.jobs.alist(limit=1, offset=1)
    assert len(page.data) == 1 and page.data[0].id in ids and page.paging_params.has_more is True
    assert {j.id for j in (await c.jobs.alist()).data} == set(ids)


def test_tmp_file_upload_download_and_run(client: VGF, video: Path) -> None:
    original = video.read_bytes()
    download_url = client.files.upload(original, "video/mp4")
    assert download(download_url) == original
    job = client.run(input_files={"input": download_url}, output_files=["output.mp4"],
                     ffmpeg_commands=["-i {{input}} -t 2 {{output.mp4}}"], wait=True)
    assert job.status == "succeeded"
    assert job.input_files == {"input": download_url}  # as sent


async def test_tmp_file_async(client: VGF, video: Path) -> None:
    url = await client.files.aupload(video.read_bytes(), "video/mp4")
    assert download(url) == video.read_bytes()
    tmp = await client.files.aprepare()
    assert isinstance(tmp, TmpFile) and tmp.upload_url != tmp.download_url
    job = await client.arun(input_files={"input": url}, output_files=["output.mp4"],
                            ffmpeg_commands=["-i {{input}} -t 2 {{output.mp4}}"], wait=True)
    assert job.status == "succeeded"


def test_timeout_seconds_enforced(client: VGF, sample: str) -> None:
    job = client.run(input_files={"input": sample}, output_files=["output.mp4"],
                     ffmpeg_commands=LONG,
                     timeout_seconds=10, wait=True)
    assert job.timeout_seconds == 10
    assert job.status == "failed" and "timed out" in job.error_message and job.output_files == {}


async def test_timeout_seconds_async(client: VGF, sample: str) -> None:
    job = await client.arun(input_files={"input": sample}, output_files=["output.mp4"],
                            ffmpeg_commands=["-i {{input}} -t 1 {{output.mp4}}"], timeout_seconds=6 * 3600)
    assert job.timeout_seconds == 6 * 3600
    with pytest.raises(VGFError) as e:
        await client.arun(input_files={"input": sample}, output_files=["output.mp4"],
                          ffmpeg_commands=["-i {{input}} {{output.mp4}}"], timeout_seconds=6 * 3600 + 1)
    assert e.value.status_code == 400 and "timeout_seconds" in str(e.value)


def test_webhook_url_reflected(client: VGF, sample: str) -> None:
    hook = "https://example.com/webhook"
    job = client.run(input_files={"input": sample}, output_files=["output.mp4"],
                     ffmpeg_commands=["-i {{input}} -t 5 {{output.mp4}}"], webhook_url=hook, wait=True)
    assert job.webhook_url == hook and job.status == "succeeded"


def test_webhook_delivers_the_job_object(client: VGF, sample: str, receiver: Receiver) -> None:
    job = client.run(input_files={"input": sample}, output_files=["output.mp4"],
                     ffmpeg_commands=["-i {{input}} -t 1 {{output.mp4}}"], webhook_url=f"{receiver.base}/hook",
                     wait=True)
    body = receiver.wait_post()
    assert tuple(k for k in JOB_KEYS if k in body) == JOB_KEYS
    delivered = Job._from_dict(body)  # what the SDK's own model makes of it
    assert delivered.id == job.id and delivered.status == "succeeded" and delivered.webhook_url == job.webhook_url
    assert set(delivered.output_files) == {"output.mp4"} and download(delivered.output_files["output.mp4"])


async def test_webhook_url_async(client: VGF, sample: str) -> None:
    job = await client.arun(input_files={"input": sample}, output_files=["output.mp4"],
                            ffmpeg_commands=["-i {{input}} -t 1 {{output.mp4}}"],
                            webhook_url="https://example.com/webhook", wait=True)
    assert job.webhook_url == "https://example.com/webhook"


# ------------------------------------------------------------------------ the other SDK methods
def test_get_and_its_errors(client: VGF, sample: str, key: str, base_url: str) -> None:
    job = client.run(input_files={"input": sample}, output_files=["output.mp4"],
                     ffmpeg_commands=["-i {{input}} -t 1 {{output.mp4}}"], wait=True)
    got = client.jobs.get(job.id)
    same = ("id", "status", "queued_at", "started_at", "finished_at", "created_at", "error_message", "ffmpeg_commands",
            "input_files", "webhook_url", "timeout_seconds", "total_input_bytes", "total_output_bytes")
    assert [getattr(got, k) for k in same] == [getattr(job, k) for k in same]
    assert set(got.output_files) == set(job.output_files) == {"output.mp4"}  # freshly signed links
    with pytest.raises(VGFNotFoundError):
        client.jobs.get("job-0000000000000000")
    with pytest.raises(VGFAuthError):
        VGF("not-a-key", base_url=base_url).jobs.list()
    with pytest.raises(VGFError) as e:  # the SDK shows the body's `message`
        client.run(input_files={"input": sample}, output_files=["o.mp4"], ffmpeg_commands=["-i {{input}} {{o.mp4}}"],
                   machine="tpu")
    assert e.value.status_code == 400 and str(e.value).startswith("Unknown machine 'tpu'")
    with pytest.raises(VGFError) as e:  # a security refusal stays a 400 at submission
        client.run(input_files={"input": "https://169.254.169.254/latest/meta-data"}, output_files=["o.mp4"],
                   ffmpeg_commands=["-i {{input}} {{o.mp4}}"])
    assert e.value.status_code == 400 and "metadata" in str(e.value)
    with pytest.raises(VGFError) as e:
        client.run(input_files={"input": "https://10.1.2.3/x.mp4"}, output_files=["o.mp4"],
                   ffmpeg_commands=["-i {{input}} {{o.mp4}}"], webhook_url="https://does-not-exist.invalid/hook")
    assert e.value.status_code == 400 and "private address" in str(e.value)


async def test_aget(client: VGF, sample: str) -> None:
    job = await client.arun(input_files={"input": sample}, output_files=["output.mp4"],
                            ffmpeg_commands=["-i {{input}} -t 1 {{output.mp4}}"])
    got = await client.jobs.aget(job.id)
    assert got.id == job.id and got.ffmpeg_commands == job.ffmpeg_commands
    await got.async_wait(poll_interval=0.5, timeout=120)
    assert got.status == "succeeded"
    with pytest.raises(VGFNotFoundError):
        await client.jobs.aget("job-0000000000000000")


# ------------------------------------------------------------------------ its README, example by example
@pytest.fixture
def readme_env(key: str, base_url: str, video: Path, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("VGFFMPEG_API_KEY", key)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "input.mp4").write_bytes(video.read_bytes())
    yield tmp_path


def test_readme_usage(readme_env: Path, base_url: str, sample: str) -> None:
    client = VGF(os.environ["VGFFMPEG_API_KEY"], base_url=base_url)
    job = client.run(
        input_files={"input.mp4": sample},
        output_files=["output.mp4"],
        ffmpeg_commands=["-i inputs/input.mp4 -vf scale=1280:720 outputs/output.mp4"],
        wait=True,
    )
    assert job.status == "succeeded"
    assert_output_is_video(job, width=1280)
    assert job.ffmpeg_commands == ["-i inputs/input.mp4 -vf scale=1280:720 outputs/output.mp4"]


def test_readme_async_usage(readme_env: Path, base_url: str, sample: str) -> None:
    async def main() -> Job:
        client = VGF(os.environ["VGFFMPEG_API_KEY"], base_url=base_url)
        job = await client.arun(
            input_files={"input.mp4": sample},
            output_files=["output.mp4"],
            ffmpeg_commands=["-i inputs/input.mp4 -vf scale=1280:720 outputs/output.mp4"],
            wait=True,
        )
        return job

    assert asyncio.run(main()).status == "succeeded"


def test_readme_reference(readme_env: Path, client: VGF, sample: str) -> None:
    # Create a job (machine="nvidia": the gpu pool)
    job = client.run(
        input_files={"input.mp4": sample},
        output_files=["output.mp4"],
        ffmpeg_commands=["-i inputs/input.mp4 -c:v libx264 outputs/output.mp4"],
        webhook_url="https://example.com/webhook",  # optional
        machine="nvidia",  # optional: "cpu" | "nvidia"
        wait=True,
    )
    assert job.status == "succeeded"
    # Get a job
    job = client.jobs.get(job.id)
    assert job.status in ("queued", "running", "succeeded", "failed", "cancelled") and job.status == "succeeded"
    # List jobs
    result = client.jobs.list(limit=20, offset=0)
    assert job.id in [j.id for j in result.data] and result.paging_params.limit == 20
    # Cancel a job
    running = client.run(input_files={"input.mp4": sample}, output_files=["output.mp4"],
                         ffmpeg_commands=["-stream_loop -1 -i inputs/input.mp4 -t 600 outputs/output.mp4"])
    assert client.jobs.cancel(running.id).status == "cancelled"
    # Poll until done
    job = client.run(input_files={"input.mp4": sample}, output_files=["output.mp4"],
                     ffmpeg_commands=["-i inputs/input.mp4 -t 1 outputs/output.mp4"])
    job.wait(timeout=120)
    assert job.status == "succeeded"


def test_readme_upload_prepare_and_file_references(readme_env: Path, client: VGF) -> None:
    # Upload a file (bytes), then use it
    with open("input.mp4", "rb") as f:
        download_url = client.files.upload(f.read(), "video/mp4")
    job = client.run(
        input_files={"input.mp4": download_url},
        output_files=["output.mp4"],
        ffmpeg_commands=["-i inputs/input.mp4 -vf scale=1280:720 outputs/output.mp4"],
    )
    # Pass a file path directly
    download_url = client.files.upload("input.mp4")
    assert download(download_url) == (readme_env / "input.mp4").read_bytes()
    # Prepare upload: PUT the file yourself
    tmp = client.files.prepare()
    req = urllib.request.Request(tmp.upload_url, data=(readme_env / "input.mp4").read_bytes(), method="PUT")
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 200
    # Referencing files in commands
    wav = client.run(
        input_files={"input.mp4": tmp.download_url},
        output_files=["output.wav"],
        ffmpeg_commands=["-i inputs/input.mp4 -vn outputs/output.wav"],
        wait=True,
    )
    assert wav.status == "succeeded", wav.error_message
    info = probe_file(download(wav.output_files["output.wav"]))
    assert [s["codec_type"] for s in info["streams"]] == ["audio"]
    assert job.wait(poll_interval=0.5, timeout=120).status == "succeeded"


def test_readme_example_program(readme_env: Path, base_url: str) -> None:
    """examples/example/main.py of the SDK's repository, written out, pointed here."""
    program = readme_env / "main.py"
    program.write_text(
        "import asyncio\nimport os\n\nfrom very_good_ffmpeg import VGF\n\n"
        f"client = VGF(os.environ['VGFFMPEG_API_KEY'], base_url={base_url!r})\n\n"
        "def sync_example() -> None:\n    result = client.jobs.list()\n    print('Jobs (sync):', result.data)\n\n"
        "async def async_example() -> None:\n    result = await client.jobs.alist()\n"
        "    print('Jobs (async):', result.data)\n\nsync_example()\nasyncio.run(async_example())\n")
    out = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, timeout=60,
                         env={**os.environ})
    assert out.returncode == 0, out.stderr
    assert "Jobs (sync):" in out.stdout and "Jobs (async):" in out.stdout


def test_raw_answers_keep_null_keys(key: str, base_url: str, sample: str) -> None:
    """The wire format: every documented key present, nulls kept (strict clients index them)."""
    r = httpx.post(f"{base_url}/ffmpeg", headers={"Authorization": f"Bearer {key}"}, timeout=60,
                   content=json.dumps({"input_files": {"input": sample}, "output_files": ["o.mp4"],
                                       "ffmpeg_commands": ["-i {{input}} -t 1 {{o.mp4}}"]}))
    data: dict[str, Any] = r.json()["data"]
    assert r.status_code == 200 and tuple(k for k in JOB_KEYS if k in data) == JOB_KEYS
    assert data["webhook_url"] is None and data["output_files"] == {} and data["error_message"] == ""


def test_our_readme_sdk_example(key: str, api_url: str, video: Path, tmp_path: Path) -> None:
    """This repository's README shows the SDK first for this surface; the block runs as written."""
    import re

    from devstack.paths import REPO_ROOT

    blocks = re.findall(r"<!-- readme-test-python -->\s*```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(),
                        re.S)
    assert len(blocks) == 1
    (tmp_path / "video.mp4").write_bytes(video.read_bytes())
    (tmp_path / "example.py").write_text(blocks[0])
    out = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "API_KEY": key, "API_URL": api_url})
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("succeeded ") and int(lines[0].split()[1]) > 0
    assert probe_file(download(lines[1]))["streams"][0]["width"] == 320
