"""`ffmpeg-worker`: serve one FFmpegJob (named by FFMPEGJOB_NAME/FFMPEGJOB_NAMESPACE).

Start-up is on every job's critical path, so this module imports only the standard library:
it reads the settings, installs the SIGTERM handler and sends the first requests (the FFmpegJob,
the inputs' sizes: early.py), and only then imports the flow (worker.py) while those requests are
on the network. The single-pod flow loads no pydantic at all: it reads the job, the grants and
the settings as `ffmpegjob_model.plain` views. The flow itself and the exit codes are described
in worker.py.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType

from .errors import Terminated
from .settings import SettingsError, WorkerSettings

log = logging.getLogger("ffmpeg_worker")

# ffmpegjob_model.exitcodes, for the exits taken before the contract package is imported
# (tests/unit/test_worker_loop.py keeps them equal).
EXIT_INVALID, EXIT_IO, EXIT_TERMINATED = 2, 3, 143


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # pydantic (split workers, ffprobe's options) looks for plugins among every installed
    # distribution's entry points on its first model; the worker uses none.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        settings = WorkerSettings.from_env()
    except SettingsError as exc:
        print(f"ffmpeg-worker: bad environment: {exc}", file=sys.stderr)
        sys.exit(EXIT_INVALID)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        code = _serve(settings)
    except Terminated:
        print("ffmpeg-worker: terminated (SIGTERM) while starting", file=sys.stderr)
        code = EXIT_TERMINATED
    _exit(code)


def _exit(code: int) -> None:
    """Exit without the interpreter's clean-up: tearing down the modules of a process that loaded
    pydantic costs about 100 ms, after the work is done and its every thread finished or idle."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    from .kube import remove_temp_files

    remove_temp_files()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _import_flow(mode: str | None) -> None:
    """The flow, imported on a thread of its own from the start, while the main thread reads the
    API server's configuration and sends the first requests (OpenSSL's loading of the CA bundle,
    the sockets, the token file all release the GIL). The main thread imports the same modules
    later as usual: it waits for what this thread has begun, and an import that failed here is
    tried, and reported, there again."""
    try:
        import ffmpegjob_model.plain  # noqa: F401

        from . import storage, worker  # noqa: F401

        if mode:
            from . import split  # noqa: F401
    except BaseException as exc:  # the main thread's own import reports it
        log.debug("background import failed: %s", exc)


def _serve(settings: WorkerSettings) -> int:
    threading.Thread(target=_import_flow, args=(settings.mode,), name="import", daemon=True).start()
    from .early import EarlyReads
    from .kube import ConfigError, job_client

    try:
        jobs = job_client(settings.ffmpegjob_namespace, settings.ffmpegjob_name)
    except (ConfigError, OSError, ValueError) as exc:
        print(f"ffmpeg-worker: cannot reach the API server: {exc}", file=sys.stderr)
        return EXIT_IO
    early = EarlyReads(jobs, settings.grants_file)
    try:
        # While the FFmpegJob and the input sizes are on their way: the flow and the rules.
        from ffmpegjob_model.plain import Invalid, S3Location, URLRulesView

        from .storage import load_grants
        from .worker import Worker

        if settings.mode:  # split-and-stitch: chunk and stitch pods
            from .split import worker_class

            worker: type[Worker] = worker_class(settings.mode)
        else:
            worker = Worker
        s3_settings = S3Location.from_env()  # where storage is (to recognise its URLs), no credentials
        try:
            rules = URLRulesView.from_env()
        except Invalid as exc:
            print(f"ffmpeg-worker: bad environment: {exc}", file=sys.stderr)
            return EXIT_INVALID
        try:
            grants = load_grants(settings.grants_file)
        except Exception as exc:
            message = f"cannot read the storage grants: {type(exc).__name__}: {exc}"
            print(f"ffmpeg-worker: {message}", file=sys.stderr)
            jobs.try_patch_status({"error": message})
            return EXIT_IO
        return worker(settings, jobs, s3_settings, rules, grants, early).run()
    finally:
        early.close()


if __name__ == "__main__":
    # `python -m ffmpeg_worker.main` runs this file as `__main__`, a second copy of the module
    # beside `ffmpeg_worker.main`: run that one's main (one module, one SIGTERM handler).
    from ffmpeg_worker.main import main as _main

    _main()
