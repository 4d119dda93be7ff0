"""The one guarded download (`ffmpegjob_model.fetch`, used by the api's imports and the worker's
URL inputs), against a real HTTP server on loopback."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ffmpegjob_model.fetch import DownloadFailed, download
from ffmpegjob_model.urls import URLRules

BODY = b"x" * 5000


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", self.path.split("to=", 1)[1])
            self.end_headers()
            return
        if self.path.startswith("/missing"):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


ALLOWED = URLRules(allow_hosts="127.0.0.1", allow_http=True)


def test_an_allowed_url_is_streamed_into_the_sink(base: str) -> None:
    sink = io.BytesIO()
    assert download(f"{base}/file.mp4", sink, ALLOWED) == len(BODY) and sink.getvalue() == BODY


def test_loopback_and_plain_http_are_refused_without_the_allow_list(base: str) -> None:
    with pytest.raises(DownloadFailed) as e:
        download(f"{base}/file.mp4", io.BytesIO(), URLRules(allow_http=True))
    assert e.value.refused and "loopback" in str(e.value)
    with pytest.raises(DownloadFailed) as e:
        download(f"{base}/file.mp4", io.BytesIO(), URLRules(allow_hosts="127.0.0.1"))
    assert e.value.refused and "https" in str(e.value)


def test_every_redirect_is_checked_again(base: str) -> None:
    with pytest.raises(DownloadFailed) as e:
        download(f"{base}/redirect?to=https://169.254.169.254/latest/meta-data", io.BytesIO(), ALLOWED)
    assert e.value.refused and "metadata" in str(e.value)
    assert download(f"{base}/redirect?to=/file.mp4", io.BytesIO(), ALLOWED) == len(BODY)


def test_limits_and_failures_are_not_refusals(base: str) -> None:
    with pytest.raises(DownloadFailed) as e:
        download(f"{base}/file.mp4", io.BytesIO(), ALLOWED, max_bytes=1000)
    assert not e.value.refused and "larger than the limit of 1000 bytes" in str(e.value)
    with pytest.raises(DownloadFailed) as e:
        download(f"{base}/missing?sig=secret", io.BytesIO(), ALLOWED)
    assert not e.value.refused and "answered HTTP 404" in str(e.value) and "secret" not in str(e.value)
