"""A warm worker pod (`FFMPEG_WORKER_MODE=warm`): wait for a claim, run each job in a fresh
process, wipe, report, repeat; exit after a failure or `WARM_MAX_JOBS` jobs (the operator then
replaces the pod). The contract is in `ffmpegjob_model.warm` and docs/warm-pools.md.

What crosses from one job to the next is this supervisor process only, and it never runs a
job's code or holds a job's credentials longer than the job:
- its own token (`WARM_TOKEN`: may only get/watch the pod's claim Secret, by name) is read from
  the environment once and removed from it; the process is made non-dumpable, so a later job's
  processes (same uid) can read neither its memory nor its /proc environment;
- each job runs in a forked child (the worker's own `main`, as in a Job's pod: same flow, same
  status, result and exit codes) in a new session, with an environment built for that job: its
  FFmpegJob, a kubeconfig holding the job's own token, its grants file, its work folder;
- after the child exits, its whole process group is killed and the scratch volume emptied
  (the claim's token and grants were files there), then the exit code is written to
  `status.warm` of the job (with the job's token, which its Role allows).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import http.client
import json
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote

from ffmpegjob_model import warm as contract
from ffmpegjob_model.times import format_time

from .kube import ApiConfig, ApiError, JobClient, KubeApi

log = logging.getLogger("ffmpeg_worker.warm")
PR_SET_DUMPABLE = 4
WATCH_SECONDS = 240
# What the job's child must not inherit from the pod's environment.
DROP_ENV = frozenset({contract.ENV_TOKEN, "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KUBECONFIG"})
REPORT_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)
EXIT_FAILED = 3  # the worker's EXIT_IO, for a child that could not even start


def report_exit(jobs: JobClient, status: dict[str, Any]) -> bool:
    """The operator ends a warm job from this report: retried through an API hiccup, since
    without it the job waits for its deadline. A gone FFmpegJob (404) needs no report."""
    for delay in (*REPORT_RETRY_DELAYS, None):
        try:
            jobs.patch_status(status)
            return True
        except ApiError as exc:
            if exc.status == 404:
                return False
            log.warning("exit report failed: %s", exc)
        except (OSError, http.client.HTTPException) as exc:
            log.warning("exit report failed: %s", exc)
        if delay is None:
            return False
        time.sleep(delay)
    return False


class Supervisor:
    def __init__(self, environ: dict[str, str]) -> None:
        self.pod = environ[contract.ENV_POD]
        self.namespace = environ.get(contract.ENV_NAMESPACE, "default")
        self.max_jobs = int(environ.get(contract.ENV_MAX_JOBS) or 1)
        self.scratch = Path(environ.get("FFMPEG_WORKDIR") or "/scratch")
        server = environ[contract.ENV_API_SERVER]
        host, _, port = server.removeprefix("https://").rstrip("/").rpartition(":")
        self.api_host, self.api_port = host.strip("[]"), int(port or 443)
        self.ca_file = environ.get(contract.ENV_CA_FILE) or f"{contract.CA_MOUNT}/{contract.CA_KEY}"
        self.base_env = {k: v for k, v in environ.items() if k not in DROP_ENV and not k.startswith("WARM_")}
        self.api = KubeApi(ApiConfig(host=self.api_host, port=self.api_port, ca_file=self.ca_file,
                                     token=environ[contract.ENV_TOKEN]))
        self.child: int | None = None
        self.last_claim: str | None = None

    # ------------------------------------------------------------------ waiting for a claim
    def wait_claim(self) -> dict[str, Any]:
        """The claim Secret, new since the last one (watched by name: all the pod may do)."""
        name = contract.claim_secret_name(self.pod)
        path = (f"/api/v1/namespaces/{quote(self.namespace)}/secrets?watch=true&allowWatchBookmarks=false"
                f"&fieldSelector={quote('metadata.name=' + name)}&timeoutSeconds={WATCH_SECONDS}")
        while True:
            conn = http.client.HTTPSConnection(self.api_host, self.api_port, timeout=WATCH_SECONDS + 30,
                                               context=self.api.config.ssl_context())
            try:
                token = self.api.config.bearer()
                conn.request("GET", path, headers={"Authorization": f"Bearer {token}",
                                                   "Accept": "application/json"})
                resp = conn.getresponse()
                if resp.status >= 400:
                    raise ApiError(resp.status, resp.read()[:300].decode("utf-8", "replace"))
                while True:
                    line = resp.readline()
                    if not line:
                        break
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    uid = (obj.get("metadata") or {}).get("uid")
                    if event.get("type") in ("ADDED", "MODIFIED") and uid and uid != self.last_claim \
                            and obj.get("data"):
                        self.last_claim = uid
                        return dict(obj)
            except (OSError, ValueError, http.client.HTTPException) as exc:
                log.warning("claim watch broke (%s); watching again", exc)
                time.sleep(0.5)
            except ApiError as exc:
                log.warning("claim watch refused: %s", exc)
                time.sleep(2)
            finally:
                conn.close()

    # ------------------------------------------------------------------------- one job
    def run_claim(self, secret: dict[str, Any]) -> int:
        data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
        job = json.loads(data[contract.CLAIM_JOB])
        token = data[contract.CLAIM_TOKEN].decode()
        claim_dir = self.scratch / ".claim"
        claim_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        grants = claim_dir / "grants.json"
        grants.write_bytes(data[contract.CLAIM_GRANTS])
        kubeconfig = claim_dir / "kubeconfig.json"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "job",
            "clusters": [{"name": "c", "cluster": {"server": f"https://{self.api_host}:{self.api_port}",
                                                   "certificate-authority": self.ca_file}}],
            "users": [{"name": "job", "user": {"token": token}}],
            "contexts": [{"name": "job", "context": {"cluster": "c", "user": "job"}}],
        }))
        work = self.scratch / "work"
        work.mkdir(parents=True, exist_ok=True)
        env = {**self.base_env, "FFMPEGJOB_NAME": job["name"], "FFMPEGJOB_NAMESPACE": job["namespace"],
               "GRANTS_FILE": str(grants), "KUBECONFIG": str(kubeconfig), "FFMPEG_WORKDIR": str(work),
               "HOME": str(work), "TMPDIR": str(work), "HOSTNAME": self.pod}
        env.pop(contract.ENV_MODE, None)
        del data, secret
        started = time.time()
        code = self.fork_worker(env)
        finished = time.time()
        self.wipe()
        jobs = JobClient(KubeApi(ApiConfig(host=self.api_host, port=self.api_port, ca_file=self.ca_file,
                                           token=token)), job["namespace"], job["name"])
        report_exit(jobs, {"warm": {
            "pod": self.pod, "startedAt": format_time(_utc(started)), "finishedAt": format_time(_utc(finished)),
            "exitCode": code}})
        jobs.api.close()
        return code

    def fork_worker(self, env: dict[str, str]) -> int:
        pid = os.fork()
        if pid == 0:  # the job's process: a new session, the job's environment, the worker's main
            code = EXIT_FAILED
            try:
                os.setsid()
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.environ.clear()
                os.environ.update(env)
                os.chdir(env["FFMPEG_WORKDIR"])
                from .main import main

                main()  # exits with os._exit
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else EXIT_FAILED
            except BaseException as exc:
                print(f"ffmpeg-worker (warm): {type(exc).__name__}: {exc}", file=sys.stderr)
            finally:
                os._exit(code)
        self.child = pid
        try:
            _, status = os.waitpid(pid, 0)
        finally:
            self.child = None
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # whatever the job left running
            kill_leftovers()
        return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)

    def wipe(self) -> None:
        """Nothing of a job stays for the next: every file and folder on the scratch volume."""
        for entry in self.scratch.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    entry.unlink()

    def serve(self) -> int:
        self.wipe()
        for served in range(1, self.max_jobs + 1):
            secret = self.wait_claim()
            log.info("claim %d of %d", served, self.max_jobs)
            try:
                code = self.run_claim(secret)
            except Exception as exc:  # a claim it cannot read: the operator sees no report and recycles
                log.error("claim failed: %s: %s", type(exc).__name__, exc)
                self.wipe()
                return EXIT_FAILED
            if code != 0:
                return 0  # any failure: this pod is replaced
        return 0

    def terminate(self, signum: int, frame: FrameType | None) -> None:
        """The pod is deleted (cancel, timeout, recycle): the job's process group goes first."""
        if self.child is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.child, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(self.child, os.WNOHANG)[0]:
                        break
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.child, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.wipe()
        os._exit(143)


def kill_leftovers(proc: Path = Path("/proc")) -> int:
    """As PID 1 of the pod's own PID namespace (a container's entry point): every other process
    in it is the job's, including one that left the job's process group (a session of its own):
    all are killed, and reaped (orphans are PID 1's children). Elsewhere (not PID 1: a shared or
    the host's PID namespace) the process-group kill is all. The number killed."""
    if os.getpid() != 1:
        return 0
    n = 0
    for entry in proc.iterdir():
        if entry.name.isdigit() and int(entry.name) != 1:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
                n += 1
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    return n


def _utc(t: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC)


def _not_dumpable() -> None:
    """Processes of the same uid may not read this one's memory or /proc environment."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def preload() -> None:
    """What every job's process would import: loaded once, before the first claim."""
    import ffmpegjob_model.lenient
    import ffmpegjob_model.safety
    import ffmpegjob_model.settings
    import ffmpegjob_model.urls  # noqa: F401

    from . import early, main, storage, worker  # noqa: F401


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    environ = dict(os.environ)
    os.environ.pop(contract.ENV_TOKEN, None)
    _not_dumpable()
    sup = Supervisor(environ)
    del environ
    signal.signal(signal.SIGTERM, sup.terminate)
    preload()
    sys.stdout.flush()
    code = sup.serve()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    main()
