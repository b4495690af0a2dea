"""``GET /timeseries/query``: the old query worker's contract plus aggregates, downsampling and binary formats."""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from bv_pipeline.api import coverage, payloads
from bv_pipeline.api.web import metrics
from bv_pipeline.api.web.budget import check_budget
from bv_pipeline.api.web.deps import Clock, Config, Reader
from bv_pipeline.api.web.errors import ApiError
from bv_pipeline.api.web.http_cache import cache_control, etag_matches
from bv_pipeline.api.web.schemas import (
    AUTH_ERRORS,
    PARAMETER_ERROR,
    RETRY_AFTER,
    ColumnarAnswer,
    RowsAnswer,
    error,
    header,
)
from bv_pipeline.api.web.security import Authorized
from bv_pipeline.api.web.validation import (
    MAX_OUTPUT_POINTS,
    MAX_TS_MS,
    POINT_NAMES_PATTERN,
    SITE_PATTERN,
    check_point_names,
    check_site,
    known_site,
)
from bv_pipeline.storage.samples import MS_PER_DAY

router = APIRouter(tags=["timeseries"])


@router.get(
    "/timeseries/query",
    summary="Samples of points over a time window, raw or aggregated",
    operation_id="query_timeseries",
    responses={
        200: {
            "model": RowsAnswer | ColumnarAnswer,
            "description": "Samples (JSON rows by default; columnar, MessagePack or Arrow IPC on request; "
            "the binary formats carry the same fields, Arrow's metadata in the schema)",
            "content": {m: {} for m in payloads.SUPPORTED_MEDIA if m != payloads.MEDIA_JSON},
            "headers": {
                "ETag": header("Strong tag of this answer (send it back in If-None-Match)"),
                "Cache-Control": header("Long and immutable for fully archived windows, short otherwise"),
                "X-Query-Time-Ms": header("Server time spent on the query"),
            },
        },
        304: {
            "description": "Not modified (If-None-Match matched the ETag)",
            "headers": {"ETag": header("The matching tag")},
        },
        **PARAMETER_ERROR,
        404: error("Unknown site"),
        413: error("The raw request would exceed the sample budget (with suggestions)"),
        **AUTH_ERRORS,
        503: error("A cold object could not be read; the query fails rather than miss days", RETRY_AFTER),
    },
)
def query(
    request: Request,
    _: Authorized,
    reader: Reader,
    cfg: Config,
    clock: Clock,
    site_name: Annotated[str, Query(description="Site slug, e.g. ses_falls_city", pattern=SITE_PATTERN)],
    point_names: Annotated[
        str,
        Query(
            description="Comma-separated point names (case-sensitive; unique case-insensitive matches are "
            "resolved), at most BV_API_MAX_POINTS of them (else 400 too_many_points), each at most 512 characters",
            max_length=100_000,
            pattern=POINT_NAMES_PATTERN,
        ),
    ],
    start_time: Annotated[int, Query(ge=0, le=MAX_TS_MS, description="Window start, UTC epoch milliseconds")],
    end_time: Annotated[
        int,
        Query(
            ge=0,
            le=MAX_TS_MS,
            description="Window end, UTC epoch milliseconds, inclusive (as the old worker); not before "
            "start_time (else 400 invalid_time_range) and at most 366 days after it (else 400 range_too_long)",
        ),
    ],
    interval: Annotated[
        Literal["1min", "5min", "15min", "1h", "1d"] | None,
        Query(description="Bucket size for avg/min/max/count aggregates; omit for raw samples"),
    ] = None,
    max_points: Annotated[
        int | None,
        Query(ge=2, le=MAX_OUTPUT_POINTS, description="Downsample each series to at most this many points"),
    ] = None,
    downsample: Annotated[Literal["minmax", "lttb"], Query(description="Downsampling method")] = "minmax",
    format: Annotated[
        Literal["rows", "columnar"],
        Query(description="rows: the old list of {point_name, timestamp, value}; columnar: series of arrays"),
    ] = "rows",
) -> Response:
    t0 = time.perf_counter()
    check_site(site_name)
    names = check_point_names(point_names, cfg.max_points_per_query)
    if start_time > end_time:
        raise ApiError(400, "invalid_time_range", "start_time is after end_time")
    end_excl = end_time + 1  # the old contract's end_time is inclusive
    if end_excl - start_time > cfg.max_range_days * MS_PER_DAY:
        raise ApiError(
            400,
            "range_too_long",
            f"the window spans more than {cfg.max_range_days} days; split the request",
        )
    if max_points is not None and max_points > cfg.max_output_points:
        raise ApiError(400, "invalid_parameter", f"max_points must be at most {cfg.max_output_points}")
    known_site(reader, site_name)
    resolved, renamed, unknown = reader.resolve_points(site_name, names)
    check_budget(reader, cfg, site_name, resolved, start_time, end_excl, interval)

    result = reader.query(
        site_name,
        resolved,
        start_time,
        end_excl,
        interval=interval,
        max_points=max_points,
        downsample_method=downsample,
    )
    metrics.observe_query(reader, result)
    media = payloads.negotiate(request.headers.get("accept"))
    now_s = clock()
    today = dt.datetime.fromtimestamp(now_s, dt.UTC).date()
    day_states = coverage.refine(result.coverage, start_date=cfg.start_date, today=today)
    meta = payloads.build_meta(result, unknown, renamed, day_states)
    request_key = "|".join([media, format, site_name, ",".join(names), str(start_time), str(end_time)])
    etag = payloads.data_etag(result, request_key, meta)
    headers = {
        "ETag": etag,
        "Cache-Control": cache_control(result, now_s),
        "Vary": "Accept, Authorization, Origin",
    }
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    elapsed = (time.perf_counter() - t0) * 1000
    if media == payloads.MEDIA_ARROW:
        body = payloads.encode_arrow(result, meta)
    elif media == payloads.MEDIA_MSGPACK:
        body = payloads.encode_msgpack(result, meta, format, elapsed)
    else:
        body = payloads.encode_json(result, meta, format, elapsed)
    headers["X-Query-Time-Ms"] = f"{elapsed:.2f}"
    return Response(body, media_type=media, headers=headers)
