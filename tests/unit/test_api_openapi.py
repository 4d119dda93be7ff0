"""The checked-in OpenAPI document is what the app serves; regenerate with
`python -m ffmpeg_api.openapi` after changing an endpoint."""

from __future__ import annotations

import json

from ffmpeg_api.openapi import DEFAULT_PATH, document, render


def test_checked_in_spec_matches_the_app() -> None:
    assert DEFAULT_PATH.read_text() == render(), "api/openapi.json is stale: run python -m ffmpeg_api.openapi"


def test_spec_lists_every_seed_endpoint_with_the_error_shape() -> None:
    doc = document()
    paths = doc["paths"]
    expected = {
        ("/ffmpeg/process", "post"), ("/ffmpeg/process/async", "post"), ("/ffmpeg/run", "post"),
        ("/job/{jobId}", "get"), ("/job/{jobId}", "delete"), ("/ffprobe/analyze", "post"),
        ("/file", "post"), ("/file/{dirId}/{fileName}", "get"), ("/file/{dirId}/{fileName}", "delete"),
        ("/file/download/{dirId}/{fileName}", "get"), ("/directory", "post"), ("/directory", "get"),
        ("/directory/{dirId}", "get"), ("/api/ffmpeg", "post"), ("/api/ffmpeg", "get"),
        ("/api/ffmpeg/{job_id}", "get"), ("/api/ffmpeg/{job_id}", "delete"), ("/api/ffmpeg/{job_id}/cancel", "post"),
        ("/api/tmp-file", "post"), ("/api/jobs", "get"), ("/api/jobs/{job_id}", "get"),
        ("/api/jobs/{job_id}/cancel", "post"),
    }
    assert {(p, m) for p, ops in paths.items() for m in ops} >= expected
    err = paths["/ffmpeg/process"]["post"]["responses"]["400"]["content"]["application/json"]["schema"]
    assert err == {"$ref": "#/components/schemas/ErrorResponse"}
    assert json.loads(render()) == doc
