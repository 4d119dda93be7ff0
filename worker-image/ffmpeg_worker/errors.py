"""How a worker run ends early: the exceptions `Worker.run` turns into status and exit code.
Standard library only: the SIGTERM handler is installed before anything heavy is imported."""

from __future__ import annotations


class JobFailed(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Terminated(Exception):
    """Raised in the main thread by the SIGTERM handler."""
