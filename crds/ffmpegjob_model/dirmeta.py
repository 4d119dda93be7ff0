"""A storage directory's metadata object (`dirs/<tenant>/<dir_id>.json`, storage_layout.py names
it; a module of its own so that the layout's functions load no pydantic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field

from .storage_layout import DEFAULT_DIR_TTL


class DirectoryMeta(BaseModel):
    """Stored as JSON at `dirs/<tenant>/<dir_id>.json`."""

    id: str
    tenant: str
    ttl: int = Field(default=DEFAULT_DIR_TTL, ge=1)
    created: datetime = Field(default_factory=lambda: datetime.now(UTC))
    temporary: bool = False

    @property
    def expires(self) -> datetime:
        return self.created + timedelta(seconds=self.ttl)

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.expires
