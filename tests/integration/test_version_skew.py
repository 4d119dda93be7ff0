"""Version skew, for real: the CRD in the API server is newer than the operator's and the
worker's model. It gains a defaulted spec field and a status field (as the next release's CRD
would), so every FFmpegJob read back carries fields the running components do not know. The
operator and the worker of this checkout - the "previous" release relative to that CRD - must
still run the job (read leniently), while REST-style parsing of the same object stays strict."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from devstack.stack import StackInfo
from ffmpegjob_model.model import GROUP, PLURAL, VERSION, FFmpegJobSpec
from kubernetes import client
from pydantic import ValidationError

pytestmark = pytest.mark.stack
CRD = f"{PLURAL}.{GROUP}"
NEW_SPEC_FIELD = {"type": "integer", "default": 5, "minimum": 0,
                  "description": "A field of a newer release (this test's stand-in)."}
NEW_STATUS_FIELD = {"type": "string", "description": "A status field of a newer release."}


def _version_index(crd: dict[str, Any]) -> int:
    return next(i for i, v in enumerate(crd["spec"]["versions"]) if v["name"] == VERSION)


@pytest.fixture
def newer_crd(kube_api: client.ApiClient) -> Iterator[None]:
    """The CRD with `spec.futureWeight` (default 5) and `status.queueNote` added; removed afterwards."""
    ext = client.ApiextensionsV1Api(kube_api)
    crd = kube_api.sanitize_for_serialization(ext.read_custom_resource_definition(CRD))
    i = _version_index(crd)
    base = f"/spec/versions/{i}/schema/openAPIV3Schema/properties"
    add = [{"op": "add", "path": f"{base}/spec/properties/futureWeight", "value": NEW_SPEC_FIELD},
           {"op": "add", "path": f"{base}/status/properties/queueNote", "value": NEW_STATUS_FIELD}]
    ext.patch_custom_resource_definition(CRD, add)
    time.sleep(2)  # the API server's CRD handler picks up the new schema
    try:
        yield
    finally:
        ext.patch_custom_resource_definition(CRD, [{"op": "remove", "path": f"{base}/spec/properties/futureWeight"},
                                                   {"op": "remove", "path": f"{base}/status/properties/queueNote"}])


def test_previous_operator_and_worker_run_a_job_of_a_newer_crd(stack: StackInfo, kube_api: client.ApiClient,
                                                               newer_crd: None) -> None:
    custom = client.CustomObjectsApi(kube_api)
    ns, name = stack.namespace, f"skew-{uuid.uuid4().hex[:6]}"
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FFmpegJob", "metadata": {"name": name},
            "spec": {"outputs": [{"name": "out.mp4"}], "output": {"dirId": "dir_skew"},
                     "commands": ["-f lavfi -i testsrc=size=160x120:rate=10 -t 1 -c:v libx264 {{out.mp4}}"]}}
    obj = custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
    assert obj["spec"]["futureWeight"] == 5  # defaulted by the API server: every reader sees it
    custom.patch_namespaced_custom_object_status(GROUP, VERSION, ns, PLURAL, name,
                                                 {"status": {"queueNote": "from a newer operator"}})
    with pytest.raises(ValidationError):  # what REST input would get: strict
        FFmpegJobSpec.model_validate(obj["spec"])
    deadline = time.monotonic() + 120
    st: dict[str, Any] = {}
    while time.monotonic() < deadline:
        st = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name).get("status") or {}
        if st.get("phase") in ("Succeeded", "Failed"):
            break
        time.sleep(0.5)
    assert st.get("phase") == "Succeeded", json.dumps(st)[:2000]
    assert st["result"][0]["fileName"] == "out.mp4" and st["queueNote"] == "from a newer operator"
