"""The URL rules for inputs and webhooks (DESIGN.md, "Security, by rule").

- HTTPS only (plain HTTP only when `URL_ALLOW_HTTP` is set, for development);
- every address the host resolves to must be public: loopback, private, link-local (which holds
  the cloud metadata service 169.254.169.254), shared, multicast, reserved and unspecified
  addresses are refused, after DNS resolution, so a public name pointing inside is caught too;
- `URL_ALLOW_HOSTS` (comma-separated host names or CIDRs) lets in-cluster/dev endpoints through.

Fetchers should also check the address they actually connected to (`check_address`), which
defeats DNS rebinding between this check and the connection.

`storage_key_for_url` recognises presigned URLs of this system's own bucket, which are read from
storage directly instead of over HTTP.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from .storage_layout import file_key, split_storage_path, tenant_files_prefix

if TYPE_CHECKING:  # the worker reads its rules and settings as plain views (plain.py), no pydantic
    from .plain import S3Location, URLRulesView
    from .settings import S3Settings
    from .urlrules import URLRules as URLRules

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

# Metadata endpoints that are not link-local everywhere (Alibaba uses shared space, AWS has an
# IPv6 one). They are refused even when an allow-list CIDR would cover them.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
METADATA_HOSTS = frozenset({"metadata", "metadata.google.internal", "metadata.goog"})


class URLRefused(ValueError):
    """A URL that the rules refuse; the message says why."""


class URLUnresolvable(URLRefused):
    """A host name that does not resolve (now): not a security refusal. A surface that accepts
    unreachable inputs (the "Very Good FFmpeg" one) lets the job fail when it is fetched; the
    fetcher checks the addresses again when it connects."""


def __getattr__(name: str) -> Any:
    """`URLRules` (a pydantic model, urlrules.py) is imported when first asked for: a worker uses
    `plain.URLRulesView` and never loads pydantic before FFmpeg starts."""
    if name == "URLRules":
        from .urlrules import URLRules

        return URLRules
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def allowed_entries(allow_hosts: str) -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    """`URL_ALLOW_HOSTS` as host names and networks."""
    hosts: set[str] = set()
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for raw in allow_hosts.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        try:
            nets.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            hosts.add(entry)
    return hosts, nets


def _rules(rules: URLRules | URLRulesView | None) -> URLRules | URLRulesView:
    if rules is not None:
        return rules
    from .urlrules import URLRules

    return URLRules()


def default_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise URLUnresolvable(f"cannot resolve host {host!r}: {exc.strerror}") from None
    return sorted({str(info[4][0]) for info in infos})


def _unmapped(addr: IPAddress) -> IPAddress:
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def address_problem(addr: IPAddress) -> str | None:
    """Why an address may not be reached, or None when it is a public unicast address."""
    addr = _unmapped(addr)
    if addr in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if addr.is_unspecified:
        return "not a public address"
    if addr.is_loopback:
        return "a loopback address"
    if addr.is_link_local:
        return "a link-local address"
    if addr.is_private:
        return "a private address"
    if addr.is_multicast:
        return "a multicast address"
    if addr.is_unspecified or addr.is_reserved or not addr.is_global:
        return "not a public address"
    return None


def check_address(address: str, host: str, rules: URLRules | URLRulesView | None = None) -> None:
    """Refuse a connection to `address` (an IP literal) made for `host`."""
    rules = _rules(rules)
    hosts, nets = rules.allowed_entries()
    addr = _unmapped(ipaddress.ip_address(address.split("%", 1)[0]))
    if addr in METADATA_ADDRESSES:
        raise URLRefused(f"host {host!r} resolves to {addr}, a cloud metadata address")
    if host.lower() in hosts or any(addr in net for net in nets):
        return
    problem = address_problem(addr)
    if problem:
        raise URLRefused(
            f"host {host!r} resolves to {addr}, {problem}; only public addresses may be fetched "
            "(URL_ALLOW_HOSTS lists exceptions)"
        )


def check_url(url: str, rules: URLRules | URLRulesView | None = None,
              resolve: Resolver | None = default_resolver) -> list[str]:
    """Refuse `url` unless the rules allow it; return the addresses it resolved to.

    `resolve=None` checks everything but DNS (names are then checked when connecting)."""
    rules = _rules(rules)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise URLRefused(f"malformed URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and rules.allow_http):
        raise URLRefused(f"URL {url!r} must use https (got {scheme or 'no scheme'!r})")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise URLRefused(f"URL {url!r} has no host")
    if host in METADATA_HOSTS:
        raise URLRefused(f"URL {url!r} names a cloud metadata host")
    hosts, _ = rules.allowed_entries()
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    elif resolve is None:
        return []
    else:
        addresses = resolve(host, port or (443 if scheme == "https" else 80))
    if not addresses:
        raise URLUnresolvable(f"host {host!r} resolves to no address")
    if host in hosts:
        for a in addresses:  # an allowed name still may not reach the metadata service
            if _unmapped(ipaddress.ip_address(a.split("%", 1)[0])) in METADATA_ADDRESSES:
                raise URLRefused(f"host {host!r} resolves to {a}, a cloud metadata address")
        return addresses
    for a in addresses:
        check_address(a, host, rules)
    return addresses


def _origin(url: str) -> tuple[str, str, int] | None:
    try:
        p = urlsplit(url)
        scheme = p.scheme.lower()
        port = p.port or (443 if scheme == "https" else 80)
    except ValueError:
        return None
    if not p.hostname:
        return None
    return scheme, p.hostname.lower(), port


def storage_key_for_url(url: str, s3: S3Settings | S3Location) -> str | None:
    """The object key when `url` points into our own bucket (a presigned GET or a temp file's
    download_url), path-style `<endpoint>/<bucket>/<key>` or virtual-host style
    `<bucket>.<endpoint host>/<key>`, on the public or the internal endpoint; else None.

    The caller must still check that the key belongs to the job's tenant."""
    target = _origin(url)
    if target is None:
        return None
    path = urlsplit(url).path
    for endpoint in {e for e in (s3.endpoint_url, s3.public_endpoint_url) if e}:
        origin = _origin(endpoint)
        if origin is None:
            continue
        base_path = urlsplit(endpoint).path.rstrip("/")
        if target == origin and path.startswith(f"{base_path}/{s3.bucket}/"):
            key = unquote(path[len(base_path) + len(s3.bucket) + 2 :])
            return key or None
        vhost = (origin[0], f"{s3.bucket}.{origin[1]}", origin[2])
        if target == vhost and path.startswith(f"{base_path}/"):
            key = unquote(path[len(base_path) + 1 :])
            return key or None
    return None


class InputNotFound(ValueError):
    """An input names an object of our bucket outside the job's tenant: to the tenant, it does not exist."""


class BadInputSource(ValueError):
    """An input is neither a URL nor a `dir_id/file_name` storage path."""


def input_storage_key(name: str, source: str, tenant: str, s3: S3Settings | S3Location) -> str | None:
    """The object key of an input held in our bucket (a storage path, or a URL into the bucket),
    None for any other URL. The one rule for which object an input names, used by the operator
    (grants, probes) and the worker (fetches): another tenant's object raises InputNotFound."""
    if "://" in source:
        key = storage_key_for_url(source, s3)
        if key is not None and not key.startswith(tenant_files_prefix(tenant)):
            raise InputNotFound(f"input {name!r}: {source.split('?', 1)[0]} does not exist")
        return key
    parts = split_storage_path(source)
    if parts is None:
        raise BadInputSource(f"input {name!r}: {source!r} is neither an https URL nor dir_id/file_name")
    return file_key(tenant, *parts)
