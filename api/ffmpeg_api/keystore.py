"""API keys, stored hashed in one Kubernetes Secret (`API_KEYS_SECRET`).

Each data entry is one tenant: key `<tenant>`, value either the sha256 hex of one key or JSON
`{"keys": ["<sha256 hex>", ...], "quota": {"max_active_jobs": 10, "max_gb_sec": 5000},
 "rate_limit": {"requests_per_second": 10, "burst": 20}}`.
Keys themselves are never stored; a leaked Secret does not leak usable keys."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets

from pydantic import BaseModel, Field, ValidationError

# A tenant is a DNS label: it becomes a label value on FFmpegJobs and a storage prefix.
TENANT_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_TENANT = re.compile(TENANT_PATTERN)
_HEX = re.compile(r"^[0-9a-f]{64}$")
KEY_PREFIX = "kff_"


class Quota(BaseModel):
    max_active_jobs: int | None = Field(default=None, ge=0, description="Jobs pending or running at once.")
    max_gb_sec: float | None = Field(default=None, ge=0, description="gb_sec summed over the tenant's jobs.")
    max_queued_jobs: int | None = Field(
        default=None, ge=0, description="With Kueue: jobs waiting beyond max_active_jobs before a 429.")


class RateLimit(BaseModel):
    """Per API key of the tenant; unset fields take the API's defaults, 0 means unlimited."""

    requests_per_second: float | None = Field(default=None, ge=0)
    burst: int | None = Field(default=None, ge=0, description="Requests allowed at once above the rate.")


class TenantEntry(BaseModel):
    keys: list[str] = Field(default_factory=list)
    quota: Quota = Field(default_factory=Quota)
    rate_limit: RateLimit = Field(default_factory=RateLimit)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def valid_tenant(tenant: str) -> bool:
    return bool(_TENANT.fullmatch(tenant))


def parse_entry(raw: str) -> TenantEntry | None:
    raw = raw.strip()
    if _HEX.fullmatch(raw.lower()):
        return TenantEntry(keys=[raw.lower()])
    try:
        entry = TenantEntry.model_validate(json.loads(raw))
    except (ValueError, ValidationError):
        return None
    entry.keys = [k.lower() for k in entry.keys if _HEX.fullmatch(k.lower())]
    return entry


def decode_secret(data: dict[str, str]) -> dict[str, TenantEntry]:
    """Secret `.data` (base64 values) -> tenant -> entry; unreadable entries are skipped."""
    out: dict[str, TenantEntry] = {}
    for tenant, b64 in data.items():
        try:
            raw = base64.b64decode(b64).decode()
        except (binascii.Error, UnicodeDecodeError):
            continue
        entry = parse_entry(raw)
        if entry is not None and valid_tenant(tenant):
            out[tenant] = entry
    return out


def encode_entry(entry: TenantEntry) -> str:
    return base64.b64encode(entry.model_dump_json(exclude_defaults=False).encode()).decode()


def candidate_keys(authorization: str | None) -> list[str]:
    """What an `Authorization` header may carry: `Bearer <key>`, `Basic <key>` (the "FFmpeg API"
    dashboard's form) or standard Basic `base64(user:key)` / `base64(key:)`."""
    if not authorization:
        return []
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() not in ("basic", "bearer") or not token:
        return []
    out = [token]
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(token, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            decoded = ""
        if ":" in decoded:
            user, _, password = decoded.partition(":")
            out += [p for p in (password, user) if p]
        elif decoded.isprintable() and decoded:
            out.append(decoded)
    return out


class KeyIndex:
    """hash -> tenant, built from one read of the Secret."""

    def __init__(self, tenants: dict[str, TenantEntry]) -> None:
        self.tenants = tenants
        self.by_hash = {h: t for t, e in tenants.items() for h in e.keys}

    def lookup(self, authorization: str | None) -> str | None:
        found = self.match(authorization)
        return found[0] if found else None

    def match(self, authorization: str | None) -> tuple[str, str] | None:
        """(tenant, hash of the key presented) or None."""
        for key in candidate_keys(authorization):
            h = hash_key(key)
            tenant = self.by_hash.get(h)
            if tenant is not None:
                return tenant, h
        return None
