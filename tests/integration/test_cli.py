"""The `kubeffmpeg` command line as a person uses it: in a pseudo-terminal (pexpect), against the
local stack. The progress bar moves through the steps; Ctrl-C during `jobs watch` leaves the job
running; Ctrl-C during `run` asks whether to cancel; a failing FFmpeg command prints the step and
the tail of its stderr and exits non-zero; `--json` output parses; REST errors read well and
have their exit codes."""
# ruff: noqa: F811 (pytest fixtures imported from the REST suite are parameters here)

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pexpect
import pytest
from kubeffmpeg import Client
from kubeffmpeg.cli import EXIT_AUTH, EXIT_INTERRUPTED, EXIT_JOB_FAILED, EXIT_NOT_FOUND, EXIT_REFUSED
from test_api_stack import api_url, keys, tenant_name, video  # noqa: F401

pytestmark = pytest.mark.stack
CLI = str(Path(sys.executable).parent / "kubeffmpeg")
# Reads the clip at its own rate (-re): long enough to interrupt, however fast the machine is.
LONG = "-re -f lavfi -i testsrc=size=160x120:rate=25 -t 120 -c:v libx264 -preset ultrafast {{long.mp4}}"


@pytest.fixture(scope="module")
def key(keys: Callable[..., str]) -> str:
    return keys(tenant_name("cli"), requests_per_second=0)


@pytest.fixture(scope="module")
def env(api_url: str, key: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "KUBECONFIG"))}
    return {**base, "API_URL": api_url, "API_KEY": key, "COLUMNS": "100", "TERM": "xterm-256color"}


@pytest.fixture(scope="module")
def kf(api_url: str, key: str) -> Client:
    return Client(api_url, key)


def spawn(args: list[str], env: dict[str, str], cwd: Path) -> pexpect.spawn:
    return pexpect.spawn(CLI, args, env=env, cwd=str(cwd), encoding="utf-8", timeout=120,
                         dimensions=(40, 100))


def finish(child: pexpect.spawn) -> int:
    child.expect(pexpect.EOF, timeout=120)
    child.close()
    return int(child.exitstatus if child.exitstatus is not None else 128 + (child.signalstatus or 0))


def wait_status(kf: Client, job_id: str, statuses: tuple[str, ...], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = kf.get(job_id).status
        if status in statuses:
            return status
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} is {status}, not {statuses}")


def test_run_uploads_shows_a_progress_bar_per_step_and_downloads_the_outputs(
        env: dict[str, str], video: Path, tmp_path: Path) -> None:
    child = spawn(["run", "-i", str(video), "-c", "-re -i {{in}} -vf scale=160:-2 {{small.mp4}}", "--",
                   "-re", "-i", "{{small.mp4}}", "-vf", "hflip", "{{flipped.mp4}}"], env, tmp_path)
    child.expect(r"uploading \S*video\.mp4")
    child.expect(r"job (job-[0-9a-f]+) submitted")
    child.expect("running")
    child.expect(r"step 1/2 [^\r\n]*%")
    child.expect(r"step 1/2 [^\r\n]* 100\.0%")  # step 1 done, then step 2's bar moves (1 to 99.9 %)
    child.expect(r"step 2/2 [^\r\n]* [1-9]\d?\.\d%")
    child.expect(r"step 2/2 [^\r\n]* 100\.0%")
    child.expect("succeeded")
    child.expect(r"flipped\.mp4 \([\d,]+ bytes\)")
    assert finish(child) == 0
    for name in ("small.mp4", "flipped.mp4"):
        assert (tmp_path / name).stat().st_size > 0


def test_a_split_job_shows_a_bar_per_chunk_and_the_stitch(env: dict[str, str], tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=8", "-g", "25",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(clip)], check=True)
    child = spawn(["run", "-i", str(clip), "--chunks", "2", "--", "-i", "{{in}}", "-c:v", "libx264", "{{split.mp4}}"],
                  env, tmp_path)
    child.expect(r"chunk 1/2 [^\r\n]*%")
    child.expect(r"chunk 2/2 [^\r\n]*%")
    child.expect(r"stitch [^\r\n]*%")
    child.expect(r"split\.mp4 \([\d,]+ bytes\)")
    assert finish(child) == 0


def test_ctrl_c_during_watch_leaves_the_job_running(env: dict[str, str], kf: Client, tmp_path: Path) -> None:
    job = kf.submit([LONG], {}, ["long.mp4"])
    try:
        child = spawn(["jobs", "watch", job.id], env, tmp_path)
        child.expect(r"step 1/1 [^\r\n]*%")  # the bar is up: the job runs
        child.sendintr()
        child.expect("keeps running")
        assert finish(child) == EXIT_INTERRUPTED
        time.sleep(2)
        assert kf.get(job.id).status == "running"
    finally:
        kf.cancel(job.id)


def test_ctrl_c_during_run_asks_whether_to_cancel(env: dict[str, str], kf: Client, tmp_path: Path) -> None:
    child = spawn(["run", "--", *LONG.split()], env, tmp_path)
    child.expect(r"job (job-[0-9a-f]+) submitted")
    job_id = child.match.group(1)
    child.expect(r"step 1/1 [^\r\n]*%")
    child.sendintr()
    child.expect(rf"Cancel job {job_id}\? \[y/N\]")
    child.sendline("y")
    child.expect(f"job {job_id} cancelled")
    assert finish(child) == EXIT_INTERRUPTED
    assert wait_status(kf, job_id, ("cancelled",)) == "cancelled"
    # answering no leaves it running
    child = spawn(["run", "--", *LONG.split()], env, tmp_path)
    child.expect(r"job (job-[0-9a-f]+) submitted")
    job_id = child.match.group(1)
    child.expect(r"step 1/1 [^\r\n]*%")
    child.sendintr()
    child.expect(r"\[y/N\]")
    child.sendline("")
    child.expect(f"kubeffmpeg jobs watch {job_id}")
    assert finish(child) == EXIT_INTERRUPTED
    assert kf.get(job_id).status == "running"
    kf.cancel(job_id)


def test_a_failing_ffmpeg_command_prints_the_step_and_stderr_tail(env: dict[str, str], tmp_path: Path) -> None:
    child = spawn(["run", "-c", "-f lavfi -i testsrc=size=160x120:rate=25 -t 1 {{a.mp4}}", "--",
                   "-i", "{{a.mp4}}", "-vf", "nosuchfilter", "{{b.mp4}}"], env, tmp_path)
    child.expect(r"job job-[0-9a-f]+ failed at step 2 of 2")
    child.expect("No such filter: 'nosuchfilter'")
    assert finish(child) == EXIT_JOB_FAILED
    assert not (tmp_path / "b.mp4").exists()


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=240)


def test_json_output_parses(env: dict[str, str], video: Path, tmp_path: Path) -> None:
    r = run_cli(["--json", "run", "-i", f"clip={video}", "--", "-i", "{{clip}}", "-t", "1", "{{one.mp4}}"], env,
                tmp_path)
    assert r.returncode == 0, r.stderr
    job = json.loads(r.stdout)
    assert job["status"] == "succeeded" and job["downloaded"] == ["one.mp4"]
    got = json.loads(run_cli(["--json", "jobs", "get", job["id"]], env, tmp_path).stdout)
    assert got["id"] == job["id"] and got["result"][0]["file_name"] == "one.mp4"
    listed = json.loads(run_cli(["--json", "jobs", "ls"], env, tmp_path).stdout)
    assert job["id"] in [j["id"] for j in listed]
    lines = run_cli(["--json", "jobs", "watch", job["id"]], env, tmp_path).stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["event"] for e in events][-1] == "result"
    assert [e["data"]["phase"] for e in events if e["event"] == "phase"] == ["Pending", "Running", "Succeeded"]
    probed = json.loads(run_cli(["--json", "probe", str(tmp_path / "one.mp4")], env, tmp_path).stdout)
    assert probed["streams"][0]["codec_type"] == "video"
    dirs = json.loads(run_cli(["--json", "files", "ls"], env, tmp_path).stdout)
    assert dirs and all("id" in d for d in dirs)


def test_rest_errors_are_readable_and_have_exit_codes(env: dict[str, str], tmp_path: Path) -> None:
    r = run_cli(["jobs", "get", "job-0000000000000000"], env, tmp_path)
    assert r.returncode == EXIT_NOT_FOUND and "Job not found" in r.stderr
    r = run_cli(["jobs", "ls"], {**env, "API_KEY": "wrong"}, tmp_path)
    assert r.returncode == EXIT_AUTH and "Invalid API key" in r.stderr
    r = run_cli(["run", "--", "-i", "/etc/passwd", "{{x.mp4}}"], env, tmp_path)
    assert r.returncode == EXIT_REFUSED and "Invalid command" in r.stderr
    r = run_cli(["--json", "jobs", "get", "job-0000000000000000"], env, tmp_path)
    assert r.returncode == EXIT_NOT_FOUND and json.loads(r.stdout) == {"ok": False, "error": "Job not found",
                                                                       "status": 404}
    r = run_cli(["jobs", "ls"], {k: v for k, v in env.items() if k != "API_URL"}, tmp_path)
    assert r.returncode == 2 and "API_URL" in r.stderr


def test_the_readme_cli_block_and_python_example_run_as_written(env: dict[str, str], tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    from devstack.paths import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    block = re.search(r"<!-- readme-test-cli -->\s*```bash\n(.*?)```", readme, re.S)
    assert block is not None
    path = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    out = subprocess.run(["bash", "-c", "set -euo pipefail\n" + block.group(1)], cwd=tmp_path,
                         env={**env, "PATH": path}, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    size = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
                           "-of", "csv=p=0", str(tmp_path / "out.mp4")], capture_output=True, text=True, check=True)
    assert size.stdout.strip() == "1280,720"
    events = [json.loads(line) for line in out.stdout.splitlines() if line.startswith('{"event"')]
    assert events and events[-1]["event"] == "result"
    # the Python example beside it
    example = re.search(r"The same from Python:\s*```python\n(.*?)```", readme, re.S)
    assert example is not None
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("API_URL", env["API_URL"])
    monkeypatch.setenv("API_KEY", env["API_KEY"])
    (tmp_path / "out.mp4").unlink()
    exec(compile(example.group(1), "README.md", "exec"), {})
    assert (tmp_path / "out.mp4").stat().st_size > 0


def test_keys_create_makes_a_key_that_works(env: dict[str, str], stack_env: dict[str, str], tmp_path: Path) -> None:
    """Admin: through the key store with the kubeconfig; the new key is accepted at once."""
    admin = {**env, "KUBECONFIG": stack_env["KUBECONFIG"], "FFMPEG_NAMESPACE": stack_env["FFMPEG_NAMESPACE"]}
    r = run_cli(["--json", "keys", "create", "--tenant", tenant_name("clikey")], admin, tmp_path)
    assert r.returncode == 0, r.stderr
    new_key = json.loads(r.stdout)["api_key"]
    assert new_key.startswith("kff_")
    listed = run_cli(["--json", "jobs", "ls"], {**env, "API_KEY": new_key}, tmp_path)
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    r = run_cli(["keys", "create", "--tenant", "Not_A_Label"], admin, tmp_path)
    assert r.returncode != 0 and "tenant" in r.stderr
