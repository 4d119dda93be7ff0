"""Session fixtures on the real local stack (hack/devstack): the same code as `make dev`.

If a stack is already up (`make dev`), the tests use it and leave it running; otherwise the
session brings one up and takes it down at the end."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from devstack.stack import Stack, StackInfo
from kubernetes import client, config


@pytest.fixture(scope="session")
def stack() -> Iterator[StackInfo]:
    s = Stack()
    if s.is_up():
        info = StackInfo(s.read_env())
        yield info
        return
    info = s.up()
    try:
        yield info
    finally:
        if os.environ.get("DEVSTACK_KEEP") != "1":
            s.down()


@pytest.fixture(scope="session")
def kube_api(stack: StackInfo) -> client.ApiClient:
    return config.new_client_from_config(config_file=stack.kubeconfig)


@pytest.fixture(scope="session")
def s3(stack: StackInfo) -> Any:
    e = stack.env
    return boto3.client(
        "s3",
        endpoint_url=e["S3_ENDPOINT_URL"],
        aws_access_key_id=e["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=e["AWS_SECRET_ACCESS_KEY"],
        region_name=e["S3_REGION"],
    )


@pytest.fixture(scope="session")
def stack_env(stack: StackInfo) -> dict[str, str]:
    """The stack's environment merged over this process's, for subprocesses (kubectl, workers)."""
    return {**os.environ, **stack.env, "PATH": f"{Stack()._bins().kube}:{os.environ['PATH']}"}
