"""``GET /health``: reachability of both stores, without authentication."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from bv_pipeline.api.web.deps import Reader
from bv_pipeline.api.web.errors import json_response
from bv_pipeline.api.web.schemas import HealthAnswer

router = APIRouter(tags=["ops"])


@router.get(
    "/health",
    summary="Liveness of both stores (no auth)",
    operation_id="health",
    responses={
        200: {"model": HealthAnswer, "description": "Both stores answer"},
        503: {"model": HealthAnswer, "description": "A store is unreachable (its error is given)"},
    },
)
def health(reader: Reader) -> Response:
    status = reader.ping()
    ok = all(v is None for v in status.values())
    body = {
        "status": "healthy" if ok else "unhealthy",
        "stores": {k: {"ok": v is None, **({"error": v} if v else {})} for k, v in status.items()},
    }
    return json_response(200 if ok else 503, body, {"Cache-Control": "no-store"})
