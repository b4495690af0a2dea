"""Error answers: every error the application shapes is JSON ``{"error": ..., "detail": ...}`` plus extra fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from bv_pipeline.api.cold_read import ColdReadError


class ApiError(Exception):
    """An error answered as ``{"error": ..., "detail": ...}`` (plus any extra fields) with ``status``."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: Any,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.extra = extra or {}
        self.headers = headers or {}


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
        headers=dict(headers or {}),
    )


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x not in ("query", "path", "header", "body")]
        out.append({"parameter": ".".join(loc) or "request", "message": str(err.get("msg", "invalid"))})
    return out


HTTP_ERROR_NAMES = {404: "not_found", 405: "method_not_allowed"}


def install_error_handlers(app: FastAPI) -> None:
    """JSON bodies for application errors, validation errors, routing errors and cold-read failures."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        return json_response(exc.status, {"error": exc.error, "detail": exc.detail, **exc.extra}, exc.headers)

    @app.exception_handler(ColdReadError)
    async def _cold_read_error(_: Request, exc: ColdReadError) -> Response:
        # A day that cannot be read fails the whole query: a chart must not silently miss days.
        return json_response(
            503, {"error": "cold_read_failed", "detail": str(exc)[:500]}, {"Retry-After": "5"}
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> Response:
        # Starlette logs the traceback; the client gets JSON without internals.
        return json_response(500, {"error": "internal_error", "detail": "unexpected server error"})

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        return json_response(400, {"error": "invalid_parameter", "detail": _validation_detail(exc)})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return json_response(
            exc.status_code,
            {"error": HTTP_ERROR_NAMES.get(exc.status_code, "http_error"), "detail": exc.detail},
            exc.headers,
        )
