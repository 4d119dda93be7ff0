"""The unit tests run on a fresh clone without building anything: no local stack, no Go
binaries (helm, kube-apiserver, MinIO). A test that needs them belongs in tests/integration."""

from __future__ import annotations

from typing import NoReturn

import pytest


@pytest.fixture(autouse=True)
def _no_built_binaries(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> NoReturn:
        raise AssertionError("a unit test asked for the stack's binaries: move it to tests/integration")

    monkeypatch.setattr("devstack.paths.binaries", refuse)
