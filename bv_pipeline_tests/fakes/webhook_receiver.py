"""A real HTTP server that records webhook POSTs (alerts) and can answer with injected error statuses."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class WebhookReceiver:
    url: str = ""
    accepted: list[dict[str, Any]] = field(default_factory=list)  # bodies answered 200, in order
    requests: int = 0  # every POST, rejected ones included
    fail_next: list[int] = field(default_factory=list)  # statuses to answer the next POSTs with
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def texts(self) -> list[str]:
        return [b.get("text", "") for b in self.accepted]

    def take(self) -> list[dict[str, Any]]:
        with self._lock:
            out, self.accepted = self.accepted, []
        return out


@contextmanager
def run_webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        def do_POST(self) -> None:  # http.server naming
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with receiver._lock:
                receiver.requests += 1
                status = receiver.fail_next.pop(0) if receiver.fail_next else 200
                if status == 200:
                    receiver.accepted.append(json.loads(body))
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
