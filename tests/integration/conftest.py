"""Fixtures of the integration tests on top of tests/integration/helpers.py (the session's
stack fixtures are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from helpers import Receiver
from kubernetes import client


@pytest.fixture
def custom(kube_api: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube_api)


@pytest.fixture
def receiver_factory() -> Iterator[Callable[..., Receiver]]:
    """`make(answers)`: a Receiver answering POSTs with `answers` in order, then 200; all closed
    at the end of the test."""
    made: list[Receiver] = []

    def make(answers: list[int] | None = None) -> Receiver:
        made.append(Receiver(answers))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture
def receiver(receiver_factory: Callable[..., Receiver]) -> Receiver:
    """A Receiver that answers 200 to everything (set `.answers` for failures first)."""
    return receiver_factory()
