"""Key parsing and lookup: every header form the seeds' users send, hashed storage."""

from __future__ import annotations

import base64
import json

import pytest
from ffmpeg_api.keystore import KeyIndex, TenantEntry, candidate_keys, decode_secret, encode_entry, hash_key, new_key


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


@pytest.fixture
def index() -> tuple[KeyIndex, str]:
    key = new_key()
    secret = {"acme": b64(hash_key(key)), "other": b64(json.dumps({"keys": [hash_key("x" * 20)]}))}
    return KeyIndex(decode_secret(secret)), key


@pytest.mark.parametrize(
    "header",
    ["Basic {k}", "Bearer {k}", "basic {k}", "Basic {b64user}", "Basic {b64blank}", "Basic {b64key}", "  Bearer  {k} "],
)
def test_every_documented_header_form_finds_the_tenant(index: tuple[KeyIndex, str], header: str) -> None:
    idx, key = index
    h = header.format(k=key, b64user=b64(f"user:{key}"), b64blank=b64(f"{key}:"), b64key=b64(key))
    assert idx.lookup(h) == "acme"


@pytest.mark.parametrize("header", [None, "", "Basic", "Token abc", "Basic wrong", "Bearer " + "x" * 19])
def test_bad_or_missing_keys_find_nobody(index: tuple[KeyIndex, str], header: str | None) -> None:
    assert index[0].lookup(header) is None


def test_keys_are_stored_hashed_and_json_entries_keep_quotas() -> None:
    key = new_key()
    entry = TenantEntry(keys=[hash_key(key)])
    entry.quota.max_active_jobs = 3
    decoded = decode_secret({"t1": encode_entry(entry)})
    assert key not in base64.b64decode(encode_entry(entry)).decode()
    assert decoded["t1"].quota.max_active_jobs == 3
    assert KeyIndex(decoded).lookup(f"Bearer {key}") == "t1"


def test_unreadable_entries_and_invalid_tenant_names_are_skipped() -> None:
    assert decode_secret({"ok": b64("not a hash"), "Bad_Name": b64(hash_key("k")), "x": "!!!"}) == {}


def test_candidate_keys_never_returns_empty_strings() -> None:
    assert all(candidate_keys(f"Basic {b64(':')}"))
