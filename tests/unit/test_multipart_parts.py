"""The part arithmetic of multipart uploads (ffmpegjob_model.multipart): sizes, counts, ranges,
S3's limits, and what completing checks."""

from __future__ import annotations

from itertools import pairwise

import pytest
from ffmpegjob_model.multipart import (
    MAX_OBJECT_BYTES,
    MAX_PART_BYTES,
    MAX_PARTS,
    MIN_PART_BYTES,
    PartPlan,
    PartPlanError,
    check_parts,
    new_upload_id,
    plan_parts,
    valid_upload_id,
)

MiB, GiB = 1024**2, 1024**3


def test_parts_cover_the_file_exactly_once() -> None:
    for size in (0, 1, MIN_PART_BYTES - 1, MIN_PART_BYTES, MIN_PART_BYTES + 1, 31 * MiB + 7):
        plan = plan_parts(size, MIN_PART_BYTES)
        ranges = [plan.part_range(n) for n in range(1, plan.count + 1)]
        assert ranges[0][0] == 0
        assert all(a[0] + a[1] == b[0] for a, b in pairwise(ranges))
        assert sum(length for _, length in ranges) == size
        assert all(length == plan.part_size for _, length in ranges[:-1])  # only the last is short


def test_counts() -> None:
    assert plan_parts(0, 5 * MiB).count == 1  # an empty file is one empty part
    assert plan_parts(5 * MiB, 5 * MiB).count == 1
    assert plan_parts(5 * MiB + 1, 5 * MiB).count == 2
    assert plan_parts(30 * MiB, 5 * MiB).part_range(6) == (25 * MiB, 5 * MiB)
    assert plan_parts(31 * MiB, 5 * MiB).part_range(7) == (30 * MiB, MiB)


def test_default_part_size_grows_to_fit_ten_thousand_parts() -> None:
    assert plan_parts(10 * GiB).part_size == 64 * MiB
    big = plan_parts(1024 * GiB)  # 1 TiB: 64 MiB parts would be 16,384
    assert big.count <= MAX_PARTS and big.part_size % MiB == 0
    assert big.part_size * MAX_PARTS >= 1024 * GiB
    top = plan_parts(MAX_OBJECT_BYTES)
    assert top.count <= MAX_PARTS and MIN_PART_BYTES <= top.part_size <= MAX_PART_BYTES


def test_a_small_default_is_raised_to_s3s_minimum() -> None:
    assert plan_parts(100 * MiB, default_part_size=MiB).part_size == MIN_PART_BYTES


@pytest.mark.parametrize(("size", "part", "words"), [
    (100 * MiB, MIN_PART_BYTES - 1, "between"),
    (100 * MiB, MAX_PART_BYTES + 1, "between"),
    (MAX_PARTS * MIN_PART_BYTES + 1, MIN_PART_BYTES, "more than 10000 parts"),
    (MAX_OBJECT_BYTES + 1, None, "largest object"),
    (-1, None, "negative"),
])
def test_impossible_plans_say_why(size: int, part: int | None, words: str) -> None:
    with pytest.raises(PartPlanError, match=words):
        plan_parts(size, part)


def test_part_numbers_outside_the_plan() -> None:
    plan = PartPlan(12 * MiB, 5 * MiB)
    for n in (0, 4):
        with pytest.raises(PartPlanError):
            plan.part_range(n)


def test_check_parts_names_missing_extra_and_wrong_sized() -> None:
    plan = PartPlan(31 * MiB, 5 * MiB)  # 7 parts, the last 1 MiB
    full = {n: plan.part_length(n) for n in range(1, 8)}
    assert check_parts(plan, full) == []
    problems = check_parts(plan, {1: 5 * MiB, 4: 5 * MiB, 5: 5 * MiB, 7: 2 * MiB, 9: 1})
    assert problems[0] == "missing parts 2-3, 6"
    assert "parts 9 are beyond the last part (7)" in problems
    assert any("7 (2097152 bytes, expected 1048576)" in p for p in problems)


def test_upload_ids() -> None:
    a, b = new_upload_id(), new_upload_id()
    assert a != b and valid_upload_id(a)
    assert not valid_upload_id("up_../../x") and not valid_upload_id("dir_0123")


def test_the_operator_aborts_expired_uploads_only() -> None:
    from datetime import UTC, datetime, timedelta

    from fakes import FakeBucket
    from ffmpeg_operator.storage import sweep_expired_uploads
    from ffmpegjob_model.multipart import UploadRecord, upload_record_key

    bucket = FakeBucket()
    now = datetime.now(UTC)

    def record(upload_id: str, age: float) -> UploadRecord:
        r = UploadRecord(id=upload_id, tenant="t1", dir_id="dir_1", file_name="a.mov", key="files/t1/dir_1/a.mov",
                         s3_upload_id=f"s3-{upload_id}", size=10, part_size=MIN_PART_BYTES,
                         content_type="video/quicktime", created=now - timedelta(seconds=age), ttl=3600)
        bucket.put(upload_record_key("t1", upload_id), r.model_dump_json().encode())
        return r

    old, fresh = record(new_upload_id(), 7200), record(new_upload_id(), 60)
    bucket.put("uploads/t1/garbage.json", b"{not json")
    assert sweep_expired_uploads(bucket, bucket.name, now) == [f"t1/{old.id}"]
    assert bucket.aborted_uploads == [old.s3_upload_id]
    assert upload_record_key("t1", old.id) not in bucket.objects
    assert upload_record_key("t1", fresh.id) in bucket.objects
