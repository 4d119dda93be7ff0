"""A /healthz for a replica that waits on the Lease: it is healthy (standing by), and without an
answer its liveness probe would restart it forever. Closed before kopf takes the port."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"standby": true}' if self.path.startswith("/healthz") else b"{}"
        self.send_response(200 if self.path.startswith("/healthz") else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:  # probes every few seconds: keep logs quiet
        return


class StandbyHealth:
    def __init__(self, port: int) -> None:
        self.server = ThreadingHTTPServer(("0.0.0.0", port), _Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="standby-health", daemon=True)

    def __enter__(self) -> StandbyHealth:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
