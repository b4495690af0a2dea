"""CORS with an allow-list whose refusals are JSON errors like every other answer (Starlette sends plain text)."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

from bv_pipeline.api.web.errors import json_response


class JsonCORSMiddleware(CORSMiddleware):
    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        refused = bytes(response.body).decode().removeprefix("Disallowed CORS ")
        headers = {
            k: v for k, v in response.headers.items() if k.lower() not in ("content-type", "content-length")
        }
        return json_response(
            response.status_code,
            {
                "error": "cors_rejected",
                "detail": f"cross-origin request refused: {refused} not allowed (see BV_ALLOWED_ORIGINS)",
            },
            headers,
        )
