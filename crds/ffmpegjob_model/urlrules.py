"""`URLRules`, the URL rules' settings as a pydantic model read from the environment (urls.py
names it; it lives here so that importing urls.py loads no pydantic: plain.URLRulesView is the
worker's reading of the same variables)."""

from __future__ import annotations

import ipaddress
from typing import ClassVar

from .envmodel import EnvModel


class URLRules(EnvModel):
    """Read from `URL_ALLOW_HOSTS` / `URL_ALLOW_HTTP` unless given."""

    env_prefix: ClassVar[str] = "URL_"

    allow_hosts: str = ""
    allow_http: bool = False

    def allowed_entries(self) -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
        from .urls import allowed_entries

        return allowed_entries(self.allow_hosts)
