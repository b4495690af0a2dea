"""The sample budget: a raw or sub-hour query that would read too much is refused (413) before reading."""

from __future__ import annotations

import math

from bv_pipeline.api.aggregate import ROLLUP_INTERVALS
from bv_pipeline.api.reader import TimeseriesReader
from bv_pipeline.api.web.config import ApiConfig
from bv_pipeline.api.web.errors import ApiError
from bv_pipeline.storage.samples import MS_PER_DAY


def check_budget(
    reader: TimeseriesReader,
    cfg: ApiConfig,
    site: str,
    points: list[str],
    start_ms: int,
    end_ms: int,
    interval: str | None,
) -> None:
    """413 before reading when a raw or sub-hour request would read more than ``max_raw_samples``.

    Estimate = sum over points of window / cadence (the point's collect interval when known, else the default).
    ``1h``/``1d`` are exempt: cold days come from rollups (24 rows per point-day).
    """
    if interval in ROLLUP_INTERVALS or not points:
        return
    cat = reader.catalogue(site)
    span_ms = end_ms - start_ms
    estimate = 0
    for p in points:
        meta = cat.get(p)
        cadence_s = (
            meta.collect_interval_s if meta and meta.collect_interval_s else None
        ) or cfg.default_cadence_s
        estimate += math.ceil(span_ms / (cadence_s * 1000))
    if estimate <= cfg.max_raw_samples:
        return
    per_point = max(1, estimate // len(points))
    fit_points = max(0, cfg.max_raw_samples // per_point)
    fit_days = cfg.max_raw_samples * (span_ms / MS_PER_DAY) / estimate
    suggestions = ["use interval=1h (or 1d): cold days are then answered from hourly rollups"]
    if fit_points >= 1:
        suggestions.append(f"request at most {fit_points} points per query for this window")
    suggestions.append(f"shorten the window to about {fit_days:.1f} days for these points")
    suggestions.append("or export the whole answer asynchronously: POST /exports with links.export.body")
    raise ApiError(
        413,
        "too_many_samples",
        f"about {estimate:,} samples would be read; the budget is {cfg.max_raw_samples:,}",
        extra={
            "estimated_samples": estimate,
            "budget": cfg.max_raw_samples,
            "suggestions": suggestions,
            "links": {"export": export_link(site, points, start_ms, end_ms, interval)},
        },
    )


def export_link(
    site: str, points: list[str], start_ms: int, end_ms: int, interval: str | None
) -> dict[str, object]:
    """The ``POST /exports`` request equivalent to a refused query (``end_ms`` exclusive, sent inclusive)."""
    return {
        "method": "POST",
        "href": "/exports",
        "body": {
            "site_name": site,
            "point_names": list(points),
            "start_time": start_ms,
            "end_time": end_ms - 1,
            "interval": interval,
            "format": "csv",
        },
    }
