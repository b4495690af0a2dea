"""The read API's observability in one hook: ``install_observability(app)`` adds ``/metrics``, gzip for clients
that accept it, and the access log + request metrics middleware; ``site_freshness`` feeds ``/health``.

Deflate is not offered: Starlette's GZipMiddleware speaks gzip only, and every HTTP client that sends
``Accept-Encoding: deflate`` also accepts gzip.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from bv_pipeline.api.reader import TimeseriesReader
from bv_pipeline.api.web import metrics
from bv_pipeline.api.web.access_log import AccessLogMiddleware

GZIP_MIN_BYTES = 1024  # smaller answers are not worth the CPU (and gzip headers cost ~20 bytes)
FRESHNESS_TTL_S = 30.0  # /health is polled often; on D1 every site costs one request

router = APIRouter(tags=["ops"])


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics() -> Response:
    body, content_type = metrics.render()
    return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})


def install_observability(app: FastAPI) -> None:
    """Call after every other middleware is added: these two become the outermost layers."""
    app.include_router(router)
    app.add_middleware(GZipExceptDownloads, minimum_size=GZIP_MIN_BYTES)
    app.add_middleware(AccessLogMiddleware)
    app.state.freshness = SiteFreshness()


class GZipExceptDownloads:
    """gzip for answers, not for export downloads: those are files (Parquet and csv.gz are compressed already)
    served with their Content-Length, which gzip's chunked re-encoding would drop."""

    def __init__(self, app: ASGIApp, minimum_size: int) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=minimum_size)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith("/exports/") and path.endswith("/download"):
            await self.app(scope, receive, send)
        else:
            await self.gzip(scope, receive, send)


class SiteFreshness:
    """Newest hot sample per site, cached for ``FRESHNESS_TTL_S``."""

    def __init__(
        self, ttl_s: float = FRESHNESS_TTL_S, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.monotonic = monotonic
        self._lock = threading.Lock()
        self._at: float | None = None
        self._newest: dict[str, int | None] = {}

    def newest(self, reader: TimeseriesReader) -> dict[str, int | None]:
        with self._lock:
            if self._at is None or self.monotonic() - self._at > self.ttl_s:
                self._newest = {site: reader.hot.max_ts(site) for site in reader.list_sites()}
                self._at = self.monotonic()
            return dict(self._newest)

    def report(self, reader: TimeseriesReader, now_s: float) -> dict[str, dict[str, Any]]:
        """Per site: the newest synced sample and its age in seconds (null when the hot tier has none)."""
        out: dict[str, dict[str, Any]] = {}
        for site, ts in sorted(self.newest(reader).items()):
            out[site] = {
                "newest_sample": None
                if ts is None
                else dt.datetime.fromtimestamp(ts / 1000, tz=dt.UTC).isoformat(timespec="seconds"),
                "age_s": None if ts is None else max(0, round(now_s - ts / 1000)),
            }
        return out
