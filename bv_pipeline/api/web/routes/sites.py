"""Discovery: ``GET /sites`` and ``GET /sites/{site}/points`` (search by name, kind, unit or marker tag)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from bv_pipeline.api.web.deps import Config, Reader
from bv_pipeline.api.web.errors import json_response
from bv_pipeline.api.web.schemas import AUTH_ERRORS, PARAMETER_ERROR, PointsAnswer, SitesAnswer, error
from bv_pipeline.api.web.security import Authorized
from bv_pipeline.api.web.validation import SITE_PATTERN, known_site

router = APIRouter(tags=["discovery"])


@router.get(
    "/sites",
    summary="Sites with data in the hot tier",
    operation_id="list_sites",
    responses={
        200: {
            "model": SitesAnswer,
            "description": "Site slugs",
            # For clients and stateful API tests: a listed site's points.
            "links": {
                "SitePoints": {
                    "operationId": "list_points",
                    "parameters": {"site": "$response.body#/sites/0"},
                }
            },
        },
        **AUTH_ERRORS,
    },
)
def sites(_: Authorized, reader: Reader) -> Response:
    return json_response(200, {"sites": reader.list_sites()}, {"Cache-Control": "private, max-age=60"})


@router.get(
    "/sites/{site}/points",
    summary="Point discovery with metadata",
    operation_id="list_points",
    responses={
        200: {
            "model": PointsAnswer,
            "description": "Points, sorted by name",
            "links": {
                "PointSamples": {
                    "operationId": "query_timeseries",
                    "parameters": {
                        "site_name": "$response.body#/site_name",
                        "point_names": "$response.body#/points/0/name",
                    },
                }
            },
        },
        **PARAMETER_ERROR,
        404: error("Unknown site"),
        **AUTH_ERRORS,
    },
)
def points(
    _: Authorized,
    reader: Reader,
    cfg: Config,
    site: Annotated[str, Path(description="Site slug", pattern=SITE_PATTERN)],
    search: Annotated[
        str | None,
        Query(
            description="Case-insensitive substring of the name, kind, unit or a marker tag",
            max_length=200,
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000, description="Maximum points returned")] = 1000,
) -> Response:
    known_site(reader, site)
    cat = sorted(reader.catalogue(site).values(), key=lambda p: p.name)
    if search:
        needle = search.casefold()
        cat = [
            p
            for p in cat
            if needle in p.name.casefold()
            or needle in (p.kind or "").casefold()
            or needle in (p.unit or "").casefold()
            or any(needle in t.casefold() for t in p.marker_tags)
        ]
    total = len(cat)
    out = [asdict(p) for p in cat[: min(limit, cfg.max_list_points)]]
    return json_response(
        200,
        {"site_name": site, "total": total, "returned": len(out), "points": out},
        {"Cache-Control": "private, max-age=60"},
    )
