"""Multipart uploads of large files over REST (docs/large-files.md): the part arithmetic and the
record the API keeps of each upload. The API, the Python client and the tests share these rules.

S3's limits: a single PUT carries at most 5 GiB; a multipart upload has at most 10,000 parts,
each 5 MiB to 5 GiB except the last, which may be smaller.

    uploads/<tenant>/<upload_id>.json      an open upload (UploadRecord), deleted when it is
                                           completed or aborted; expired ones are aborted
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field

MIN_PART_BYTES = 5 * 1024**2  # S3's smallest part (all but the last)
MAX_PART_BYTES = 5 * 1024**3  # S3's largest part, and its largest single PUT
MAX_PARTS = 10_000
MAX_OBJECT_BYTES = 5 * 1024**4  # S3's largest object
DEFAULT_PART_BYTES = 64 * 1024**2
# Part URLs presigned in one answer (initiate, or a batch asked for later).
MAX_URL_BATCH = 1000

UPLOAD_ID_PATTERN = r"^up_[0-9a-f]{24}$"
_UPLOAD_ID = re.compile(UPLOAD_ID_PATTERN)


class PartPlanError(ValueError):
    """A size or part size that no multipart upload can carry; the message says why."""


@dataclass(frozen=True)
class PartPlan:
    """How a file of `size` bytes is cut: parts 1..count of `part_size` bytes, the last shorter."""

    size: int
    part_size: int

    @property
    def count(self) -> int:
        return max(1, math.ceil(self.size / self.part_size))

    def part_range(self, number: int) -> tuple[int, int]:
        """(offset, length) of part `number` (1-based)."""
        if not 1 <= number <= self.count:
            raise PartPlanError(f"part {number} is outside 1..{self.count}")
        offset = (number - 1) * self.part_size
        return offset, min(self.part_size, self.size - offset)

    def part_length(self, number: int) -> int:
        return self.part_range(number)[1]


def plan_parts(size: int, part_size: int | None = None, default_part_size: int = DEFAULT_PART_BYTES) -> PartPlan:
    """The parts of a `size`-byte file: `part_size` when given (checked), else the default, grown
    (to a whole MiB) as far as 10,000 parts need."""
    if size < 0:
        raise PartPlanError("file_size must not be negative")
    if size > MAX_OBJECT_BYTES:
        raise PartPlanError(f"file_size {size} is over S3's largest object ({MAX_OBJECT_BYTES} bytes)")
    if part_size is not None:
        if not MIN_PART_BYTES <= part_size <= MAX_PART_BYTES:
            raise PartPlanError(f"part_size {part_size} must be between {MIN_PART_BYTES} (5 MiB) "
                                f"and {MAX_PART_BYTES} (5 GiB)")
        if math.ceil(size / part_size) > MAX_PARTS:
            need = math.ceil(size / MAX_PARTS)
            raise PartPlanError(f"part_size {part_size} makes more than {MAX_PARTS} parts of {size} bytes: "
                                f"use at least {need}")
        return PartPlan(size, part_size)
    chosen = max(MIN_PART_BYTES, min(default_part_size, MAX_PART_BYTES))
    if math.ceil(size / chosen) > MAX_PARTS:
        mib = 1024**2
        chosen = math.ceil(size / MAX_PARTS / mib) * mib
    return PartPlan(size, chosen)


def check_parts(plan: PartPlan, sizes: dict[int, int]) -> list[str]:
    """What is wrong with the uploaded parts (part number -> size) before completing: missing
    parts, parts of the wrong size. Empty when the upload can be completed."""
    problems: list[str] = []
    missing = [n for n in range(1, plan.count + 1) if n not in sizes]
    if missing:
        problems.append(f"missing parts {_ranges(missing)}")
    extra = sorted(n for n in sizes if not 1 <= n <= plan.count)
    if extra:
        problems.append(f"parts {_ranges(extra)} are beyond the last part ({plan.count})")
    wrong = [f"{n} ({s} bytes, expected {plan.part_length(n)})" for n, s in sorted(sizes.items())
             if 1 <= n <= plan.count and s != plan.part_length(n)]
    if wrong:
        problems.append("parts of the wrong size: " + ", ".join(wrong[:10]))
    return problems


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7' (at most 10 runs shown)."""
    runs: list[str] = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ", ".join(runs[:10]) + (", ..." if len(runs) > 10 else "")


def new_upload_id() -> str:
    return "up_" + secrets.token_hex(12)


def valid_upload_id(upload_id: str) -> bool:
    return bool(_UPLOAD_ID.fullmatch(upload_id))


def upload_record_key(tenant: str, upload_id: str) -> str:
    return f"{uploads_prefix(tenant)}{upload_id}.json"


def uploads_prefix(tenant: str | None = None) -> str:
    return "uploads/" if tenant is None else f"uploads/{tenant}/"


class UploadRecord(BaseModel):
    """An open multipart upload, stored as JSON at `upload_record_key` (the S3 UploadId stays
    with the API: clients name the upload by `id`)."""

    id: str
    tenant: str
    dir_id: str
    file_name: str
    key: str
    s3_upload_id: str
    size: int = Field(ge=0)
    part_size: int = Field(ge=MIN_PART_BYTES, le=MAX_PART_BYTES)
    content_type: str
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    ttl: int = Field(ge=1, description="Seconds after `created` when an unfinished upload is aborted.")

    @property
    def plan(self) -> PartPlan:
        return PartPlan(self.size, self.part_size)

    @property
    def expires(self) -> datetime:
        return self.created + timedelta(seconds=self.ttl)

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.expires
