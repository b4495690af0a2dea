"""``GET /health``: reachability of both stores and data freshness per site, without authentication."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from bv_pipeline.api.web.deps import Clock, Reader
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
def health(request: Request, reader: Reader, clock: Clock) -> Response:
    status = reader.ping()
    ok = all(v is None for v in status.values())
    body = {
        "status": "healthy" if ok else "unhealthy",
        "stores": {k: {"ok": v is None, **({"error": v} if v else {})} for k, v in status.items()},
    }
    if status.get("hot") is None:  # data freshness per site: the newest synced sample and its age
        body["sites"] = request.app.state.freshness.report(reader, clock())
    return json_response(200 if ok else 503, body, {"Cache-Control": "no-store"})
