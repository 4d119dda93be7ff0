"""Times as Kubernetes writes them (RFC 3339, UTC, `Z`): the one home of the format for status
fields, webhook records, REST answers and the operator's Lease."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def format_time(t: datetime) -> str:
    """`metav1.Time`: whole seconds, e.g. `2026-01-02T03:04:05Z`."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(t: datetime) -> str:
    """`metav1.MicroTime` (a Lease's acquire/renew times): exactly six fractional digits."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 string (or a datetime) as an aware datetime (naive means UTC); None when
    empty. A malformed string raises ValueError."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return None
    t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)
