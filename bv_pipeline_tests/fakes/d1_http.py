"""HTTP plumbing of the local D1 endpoint: Cloudflare's v4 envelope and a threaded stdlib server."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# (method, target, lower-cased headers, body) -> (status, extra headers, body)
Handle = Callable[[str, str, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]


def envelope_error(code: int, message: str) -> dict[str, Any]:
    return {"result": [], "success": False, "errors": [{"code": code, "message": message}], "messages": []}


def envelope_ok(result: Any, **extra: Any) -> dict[str, Any]:
    return {"result": result, "success": True, "errors": [], "messages": [], **extra}


@dataclass
class Reply:
    status: int
    payload: dict[str, Any] | bytes
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, keep-alive requests stall ~40 ms on delayed ACKs.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # silence per-request stderr lines
        return

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, extra, payload = self.server.d1_handle(self.command, self.path, headers, body)
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = _serve  # http.server naming


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    d1_handle: Handle


def start_server(handle: Handle) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serve ``handle`` on 127.0.0.1 with an ephemeral port, in a daemon thread."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.d1_handle = handle
    thread = threading.Thread(target=server.serve_forever, name="fake-d1", daemon=True)
    thread.start()
    return server, thread
