"""Downloads of URLs under the URL rules (DESIGN.md, "Security, by rule"): the one guarded HTTP
GET, used by the api (imports of "FFmpeg API" URL inputs) and the worker (URL inputs).

Before each request - the first and every redirect - `check_url` applies the rules after DNS
resolution; once connected, the address actually reached is checked again (`check_address`),
which defeats DNS rebinding between the check and the connection. Redirects are followed by
hand (at most `MAX_REDIRECTS`), the body is streamed to `sink` and bounded by `max_bytes`.
httpx is imported on first use (~60 ms of a worker's start-up when a job has no URL input)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urljoin, urlsplit

from .urls import URLRefused, check_address, check_url

if TYPE_CHECKING:
    import httpx

    from .plain import URLRulesView
    from .urls import URLRules

MAX_REDIRECTS = 5
CHUNK = 1024 * 1024


class Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


class DownloadFailed(Exception):
    """A URL that could not be downloaded; the message names it (without its query string).
    `refused`: the URL rules refused the URL, a redirect or the address connected to."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


def shown(url: str) -> str:
    """A URL as messages show it: without the query, which may hold a signature."""
    return url.split("?", 1)[0]


def download(url: str, sink: Sink, rules: URLRules | URLRulesView, *, max_bytes: int | None = None,
             read_timeout: float = 30.0, connect_timeout: float = 10.0,
             user_agent: str = "kubeffmpeg", on_length: Callable[[int], None] | None = None) -> int:
    """GET `url` into `sink` under the URL rules; returns the bytes written. DownloadFailed on
    a refusal, an HTTP status other than 2xx, too many redirects, a body over `max_bytes` or a
    transport error. `on_length` is called with the announced Content-Length (when there is
    one) before anything is written: it may raise to refuse the body."""
    import httpx

    timeout = httpx.Timeout(30.0, connect=connect_timeout, read=read_timeout)
    try:
        with httpx.Client(follow_redirects=False, timeout=timeout) as http:
            for _ in range(MAX_REDIRECTS + 1):
                check_url(url, rules)
                with http.stream("GET", url, headers={"User-Agent": user_agent}) as resp:
                    _check_peer(resp, url, rules)
                    if resp.is_redirect and "location" in resp.headers:
                        url = urljoin(url, resp.headers["location"])
                        continue
                    if not resp.is_success:
                        raise DownloadFailed(f"{shown(url)} answered HTTP {resp.status_code}")
                    length = resp.headers.get("content-length", "")
                    if max_bytes is not None and length.isdigit() and int(length) > max_bytes:
                        raise DownloadFailed(f"{shown(url)} is larger than the limit of {max_bytes} bytes")
                    if on_length is not None and length.isdigit():
                        on_length(int(length))
                    return _save(resp, sink, url, max_bytes)
    except URLRefused as exc:
        raise DownloadFailed(str(exc), refused=True) from None
    except httpx.HTTPError as exc:
        raise DownloadFailed(f"cannot fetch {shown(url)}: {exc}") from None
    raise DownloadFailed(f"{shown(url)} redirects more than {MAX_REDIRECTS} times")


def _check_peer(resp: httpx.Response, url: str, rules: URLRules | URLRulesView) -> None:
    stream = resp.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if peer:
        check_address(str(peer[0]), urlsplit(url).hostname or "", rules)


def _save(resp: httpx.Response, sink: Sink, url: str, max_bytes: int | None) -> int:
    written = 0
    for chunk in resp.iter_bytes(CHUNK):
        written += len(chunk)
        if max_bytes is not None and written > max_bytes:
            raise DownloadFailed(f"{shown(url)} is larger than the limit of {max_bytes} bytes")
        sink.write(chunk)
    return written
