"""Multipart upload routes of both surfaces (routers/uploads.py) through FastAPI's TestClient
over the in-memory bucket: what the API decides itself (limits, part URLs, ownership, abort).
Storage's own side (parts, ListParts, completing) runs on MinIO in
tests/integration/test_large_files.py."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from fakes import FakeBucket, FakeKubernetes, api_services
from fastapi.testclient import TestClient
from ffmpeg_api.app import create_app
from ffmpegjob_model.multipart import upload_record_key

ACME = {"Authorization": "Bearer kff_acme_key"}
OTHER = {"Authorization": "Bearer kff_other_key"}
MiB = 1024**2


@pytest.fixture
def bucket() -> FakeBucket:
    return FakeBucket()


@pytest.fixture
def api(bucket: FakeBucket) -> Iterator[TestClient]:
    services = api_services(FakeKubernetes(), bucket, {"acme": "kff_acme_key", "other": "kff_other_key"},
                            single_put_max_bytes=10 * MiB, multipart_part_bytes=5 * MiB)
    with TestClient(create_app(services=services)) as c:
        yield c


def test_the_single_put_flows_refuse_a_declared_size_over_the_limit(api: TestClient) -> None:
    r = api.post("/file", json={"file_name": "big.mov", "file_size": 10 * MiB + 1}, headers=ACME)
    assert r.status_code == 400
    assert r.json()["error"] == ("file_size 10485761 is over the single-upload limit of 10485760 bytes: upload it "
                                 "in parts with a multipart upload (POST /uploads; docs/large-files.md)")
    r = api.post("/api/tmp-file", json={"file_name": "big.mov", "file_size": 10 * MiB + 1}, headers=ACME)
    assert r.status_code == 400 and "POST /api/uploads" in r.json()["message"]
    assert r.json()["errorCode"] == "badRequest"
    assert api.post("/file", json={"file_name": "ok.mov", "file_size": 10 * MiB}, headers=ACME).status_code == 200
    assert api.post("/api/tmp-file", json={"file_name": "ok.mov"}, headers=ACME).status_code == 200


def test_initiate_answers_the_part_plan_and_a_url_per_part(api: TestClient, bucket: FakeBucket) -> None:
    r = api.post("/uploads", json={"file_name": "big.mov", "file_size": 12 * MiB}, headers=ACME)
    assert r.status_code == 200, r.text
    up = r.json()["upload"]
    assert (up["part_size"], up["part_count"], up["file_size"]) == (5 * MiB, 3, 12 * MiB)
    assert up["file_path"] == f"{up['dir_id']}/big.mov" and up["upload_id"].startswith("up_")
    assert up["download_url"] is None and up["urls_expire_in_seconds"] == 3600
    assert [p["part_number"] for p in up["parts"]] == [1, 2, 3]
    query = parse_qs(urlsplit(up["parts"][2]["url"]).query)
    assert query["partNumber"] == ["3"] and query["uploadId"] == ["upload-1"]  # the S3 id stays server-side
    assert upload_record_key("acme", up["upload_id"]) in bucket.objects
    # The VGF surface: a temporary file with its download URL, no dir_id.
    r = api.post("/api/uploads", json={"file_name": "big.mov", "file_size": 12 * MiB, "part_size": 6 * MiB},
                 headers=ACME)
    data = r.json()["data"]
    assert r.status_code == 200 and data["part_count"] == 2 and data["download_url"].startswith("http")
    r = api.post("/api/uploads", json={"file_name": "x.mov", "file_size": 1, "dir_id": up["dir_id"]}, headers=ACME)
    assert r.status_code == 400


def test_fresh_part_urls_in_batches(api: TestClient) -> None:
    up = api.post("/uploads", json={"file_name": "b.mov", "file_size": 12 * MiB}, headers=ACME).json()["upload"]
    r = api.post(f"/uploads/{up['upload_id']}/urls", json={"part_numbers": [3, 1, 3]}, headers=ACME)
    assert r.status_code == 200 and [p["part_number"] for p in r.json()["parts"]] == [1, 3]
    r = api.post(f"/uploads/{up['upload_id']}/urls", json={"part_numbers": [4]}, headers=ACME)
    assert r.status_code == 400 and "outside 1..3" in r.json()["error"]
    r = api.post(f"/api/uploads/{up['upload_id']}/urls", json={"part_numbers": list(range(1, 1002))}, headers=ACME)
    assert r.status_code == 400  # at most 1,000 at once


@pytest.mark.parametrize("body", [
    {"file_name": "a.mov", "file_size": 100 * MiB, "part_size": MiB},  # under S3's 5 MiB
    {"file_name": "a.mov", "file_size": 10_000 * 5 * MiB + 1, "part_size": 5 * MiB},  # > 10,000 parts
    {"file_name": "a/b.mov", "file_size": 10},
    {"file_name": "a.mov", "file_size": -1},
    {"file_name": "a.mov"},
])
def test_impossible_uploads_are_400s(api: TestClient, body: dict[str, object]) -> None:
    assert api.post("/uploads", json=body, headers=ACME).status_code == 400


def test_someone_elses_upload_is_not_found_and_abort_is_the_owners(api: TestClient, bucket: FakeBucket) -> None:
    up = api.post("/uploads", json={"file_name": "b.mov", "file_size": 12 * MiB}, headers=ACME).json()["upload"]
    uid = up["upload_id"]
    for path in (f"/uploads/{uid}", f"/api/uploads/{uid}"):
        assert api.get(path, headers=OTHER).status_code == 404
        assert api.delete(path, headers=OTHER).status_code == 404
        assert api.post(f"{path}/complete", headers=OTHER).status_code == 404
        assert api.post(f"{path}/urls", json={"part_numbers": [1]}, headers=OTHER).status_code == 404
    assert bucket.aborted_uploads == []
    assert api.get("/uploads/up_nosuchupload", headers=ACME).status_code == 404
    assert api.get("/uploads/..%2F..%2Fx", headers=ACME).status_code == 404
    r = api.delete(f"/uploads/{uid}", headers=ACME)
    assert r.status_code == 200 and r.json() == {"ok": True, "upload_id": uid, "aborted": True}
    assert bucket.aborted_uploads == ["upload-1"]
    assert upload_record_key("acme", uid) not in bucket.objects
    assert api.delete(f"/uploads/{uid}", headers=ACME).status_code == 404


def test_initiating_into_another_tenants_directory_is_not_found(api: TestClient) -> None:
    theirs = api.post("/directory", headers=OTHER).json()["directory"]["id"]
    r = api.post("/uploads", json={"file_name": "a.mov", "file_size": 10, "dir_id": theirs}, headers=ACME)
    assert r.status_code == 404
    mine = api.post("/directory", headers=ACME).json()["directory"]["id"]
    r = api.post("/uploads", json={"file_name": "a.mov", "file_size": 10, "dir_id": mine}, headers=ACME)
    assert r.status_code == 200 and r.json()["upload"]["dir_id"] == mine
