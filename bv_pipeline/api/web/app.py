"""``create_app(reader, config) -> FastAPI``: the chart read API over HTTP.

Endpoints: ``GET /`` (the chart explorer page), ``GET /timeseries/query`` (the old query worker's contract, plus aggregates, downsampling, columnar
JSON, MessagePack and Arrow IPC), ``POST /exports`` and ``GET /exports/...`` (asynchronous exports to CSV or
Parquet), ``GET /sites``, ``GET /sites/{site}/points``, ``GET /health``.

Hardening, after the review of the old worker (seeds/003): bearer tokens compared with ``hmac.compare_digest``;
a CORS allow-list (no ``*`` unless configured); every parameter validated with a JSON 400; a sample budget checked
*before* reading (413 with suggestions); a per-token token-bucket rate limit (429); site names must be slugs and
point names only ever travel as bound parameters; ETags are blake2b over the data (no weak 32-bit hashes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from bv_pipeline.api.export_launcher import ExportLauncher, GraphQLExportLauncher
from bv_pipeline.api.reader import TimeseriesReader
from bv_pipeline.api.web.config import ApiConfig
from bv_pipeline.api.web.cors import JsonCORSMiddleware
from bv_pipeline.api.web.errors import install_error_handlers
from bv_pipeline.api.web.export_service import ExportLimits, ExportService
from bv_pipeline.api.web.observability import install_observability
from bv_pipeline.api.web.routes import exports, health, page, sites, timeseries
from bv_pipeline.api.web.security import Authorizer, TokenBucket
from bv_pipeline.config import Settings


def create_app(
    reader: TimeseriesReader,
    config: ApiConfig | Settings,
    *,
    now: Callable[[], float] = time.time,
    export_launcher: ExportLauncher | None = None,
) -> FastAPI:
    """Build the FastAPI app. ``config`` may be ``Settings`` (limits then take their defaults).

    Exports are written to the reader's object store and launched through ``export_launcher`` (default: the
    Dagster webserver's GraphQL API at ``config.dagster_graphql_url``).
    """
    cfg = config if isinstance(config, ApiConfig) else ApiConfig.from_settings(config)
    app = FastAPI(
        title="bv-pipeline chart read API",
        version="1.1.0",  # 1.1: coverage metadata, documented answers (400 not 422), JSON errors everywhere
        description=(
            "Time series of building-IoT points from the hot tier (recent days) and the cold tier (archived "
            "Parquet), merged without gaps or duplicates. Data endpoints need `Authorization: Bearer <token>`."
        ),
    )
    app.state.reader = reader
    app.state.config = cfg
    app.state.clock = now
    app.state.authorizer = Authorizer(cfg.api_tokens, TokenBucket(cfg.rate_limit_per_s, cfg.rate_limit_burst))
    app.state.exports = ExportService(
        reader.cold,
        export_launcher or GraphQLExportLauncher(cfg.dagster_graphql_url),
        ExportLimits(cfg.export_ttl_hours, cfg.export_max_active_per_token, cfg.export_max_samples),
        now,
    )

    install_error_handlers(app)
    for module in (timeseries, exports, sites, health, page):
        app.include_router(module.router)
    page.mount_static(app)
    add_middleware(app, cfg)
    install_observability(app)  # /metrics, gzip, access log: outermost
    _publish_actual_error_statuses(app)
    return app


def _publish_actual_error_statuses(app: FastAPI) -> None:
    """Drop FastAPI's generated 422 answers from the OpenAPI document: invalid parameters are answered 400."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = generate()
        for path in doc.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        schemas = doc.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def add_middleware(app: FastAPI, cfg: ApiConfig) -> None:
    """Every middleware of the app, in one place (the last added runs first, outermost)."""
    origins = list(cfg.allowed_origins)
    app.add_middleware(
        JsonCORSMiddleware,
        allow_origins=["*"] if "*" in origins else origins,
        allow_credentials=False,  # bearer tokens, never cookies
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Accept", "If-None-Match", "Content-Type"],
        expose_headers=["ETag", "X-Query-Time-Ms", "Retry-After", "Location"],
        max_age=600,
    )
