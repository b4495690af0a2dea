"""ASGI middleware: one JSON access-log line and the request metrics per HTTP request.

The line holds method, path, route template, status, duration (ms), bytes sent and ``token_id``: the first 12 hex
digits of the bearer token's SHA-256, enough to tell clients apart, never the token. Outermost in the stack, so
it times everything and counts compressed bytes; an exception escaping the app is logged as a 500.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import sys
import time

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bv_pipeline.api.web import metrics

ACCESS_LOGGER = "bv_pipeline.api.access"
UNMATCHED = "unmatched"  # one label for every unknown path: scanners must not grow the metric series


def token_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return _token_id(value)
    return None


@functools.lru_cache(maxsize=256)  # a client sends the same header on every request: hash it once
def _token_id(authorization: bytes) -> str | None:
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return hashlib.sha256(token.strip().encode()).hexdigest()[:12]
    return None


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


def default_access_logger() -> logging.Logger:
    """The access logger, writing bare JSON lines to stdout unless the host application configured it."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    if (
        logger.level == logging.NOTSET
    ):  # a handler added without a level would inherit WARNING and drop every line
        logger.setLevel(logging.INFO)
    return logger


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp, logger: logging.Logger | None = None) -> None:
        self.app = app
        self.logger = logger or default_access_logger()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        sent = 0

        async def send_and_count(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_and_count)
        except Exception:
            status = 500
            raise
        finally:
            seconds = time.perf_counter() - start
            route = route_template(scope)
            metrics.observe_request(route, scope["method"], status, seconds)
            if self.logger.isEnabledFor(logging.INFO):
                client = scope.get("client")
                line = {
                    "ts": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "bytes": sent,
                    "token_id": token_id(scope),
                    "client": client[0] if client else None,
                }
                self.logger.info(orjson.dumps(line).decode())
