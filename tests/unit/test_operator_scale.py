"""The operator's scale levers (issue 15) decide what kopf's own code would: the lean diff base
equals kopf's, and a Job event is skipped only when the Job state the status reflects is
unchanged."""

from __future__ import annotations

import copy
from typing import Any

import kopf
from ffmpeg_operator.jobmemory import JobMemory
from ffmpeg_operator.scale import LeanDiffBaseStorage
from ffmpegjob_model.model import GROUP

FFJ: dict[str, Any] = {
    "apiVersion": f"{GROUP}/v1alpha1", "kind": "FFmpegJob",
    "metadata": {
        "name": "j", "namespace": "ffmpeg", "uid": "u1", "resourceVersion": "7", "generation": 2,
        "labels": {"team": "a"},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "note": "x",
                        f"{GROUP}/kopf-managed": "yes", f"{GROUP}/last-handled-configuration": "{}"},
        "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}}],
    },
    "spec": {"machine": "cpu", "commands": ["-i {{in}} {{out}}"], "suspend": True, "cancel": False},
    "status": {"phase": "Pending", "conditions": [{"type": "Submitted", "status": "True"}]},
}


def test_the_lean_diff_base_equals_kopfs() -> None:
    lean = LeanDiffBaseStorage(prefix=GROUP, key="last-handled-configuration")
    full = kopf.AnnotationsDiffBaseStorage(prefix=GROUP, key="last-handled-configuration")
    for extra in (None, ["spec.cancel", "spec.suspend"], ["status.phase"], [("metadata", "name")]):
        body = kopf.Body(copy.deepcopy(FFJ))  # type: ignore[arg-type]
        assert lean.build(body=body, extra_fields=extra) == full.build(body=body, extra_fields=extra)


SUSPENDED_MANIFEST: dict[str, Any] = {
    "metadata": {"name": "ffj-u1", "namespace": "ffmpeg", "labels": {"x": "y"}},
    "spec": {"suspend": True, "backoffLimit": 0, "activeDeadlineSeconds": 600, "template": {}},
}
# The same Job as the API server then shows it: defaults filled in, the Job controller's
# Suspended condition and zero counters added.
AS_SERVED: dict[str, Any] = {
    "metadata": {"name": "ffj-u1", "namespace": "ffmpeg", "uid": "j1", "resourceVersion": "9"},
    "spec": {"suspend": True, "backoffLimit": 0, "activeDeadlineSeconds": 600, "completions": 1,
             "parallelism": 1, "completionMode": "NonIndexed", "template": {}},
    "status": {"conditions": [{"type": "Suspended", "status": "True", "reason": "JobSuspended"}],
               "ready": 0, "terminating": 0, "uncountedTerminatedPods": {}},
}


def test_a_created_jobs_first_events_are_expected_and_its_start_is_not() -> None:
    m = JobMemory()
    m.expect(SUSPENDED_MANIFEST)
    assert m.unchanged(AS_SERVED)
    assert m.created("ffmpeg", "ffj-u1") is not None and m.created("ffmpeg", "ffj-u1") is None  # taken once
    resumed = copy.deepcopy(AS_SERVED)
    resumed["spec"]["suspend"] = False
    assert not m.unchanged(resumed)
    running = copy.deepcopy(AS_SERVED)
    running["status"].update(active=1, startTime="2026-01-01T00:00:00Z")
    assert not m.unchanged(running)
    m.remember(running)
    assert m.unchanged(copy.deepcopy(running)) and not m.unchanged(AS_SERVED)


def test_a_finished_or_deleted_job_is_never_skipped() -> None:
    m = JobMemory()
    m.remember(AS_SERVED)
    done = copy.deepcopy(AS_SERVED)
    done["status"]["conditions"].append({"type": "Complete", "status": "True"})
    assert not m.unchanged(done)
    deleting = copy.deepcopy(AS_SERVED)
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert not m.unchanged(deleting)
    m.forget(AS_SERVED)
    assert not m.unchanged(AS_SERVED) and len(m) == 0
