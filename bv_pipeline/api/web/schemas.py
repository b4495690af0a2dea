"""Pydantic models of every JSON answer, for the OpenAPI document only.

The routes build their bodies directly (orjson, Polars' JSON writer) for speed; these models describe those bodies
so the published contract matches what is sent (a schemathesis run checks every answer against them). Models
leave extra fields allowed: new metadata fields are additive.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from bv_pipeline.api.coverage import DayState

Value = float | str | None


class ParameterProblem(BaseModel):
    parameter: str = Field(description="Dotted name of the parameter, or `request`")
    message: str


class ErrorBody(BaseModel):
    """Every error the API shapes: a stable machine-readable `error` and a human `detail`."""

    error: str = Field(
        description="Machine-readable code: invalid_parameter, invalid_time_range, range_too_long, "
        "too_many_points, unauthorized, forbidden, unknown_site, not_found, method_not_allowed, "
        "too_many_samples, rate_limited, cors_rejected, cold_read_failed, internal_error"
    )
    detail: str | list[ParameterProblem] | None = Field(
        description="What was wrong; for invalid_parameter from the schema, one entry per parameter"
    )
    limit: int | None = Field(default=None, description="too_many_points: the per-query limit")
    estimated_samples: int | None = Field(default=None, description="too_many_samples: the estimate")
    budget: int | None = Field(default=None, description="too_many_samples: the configured budget")
    suggestions: list[str] | None = Field(default=None, description="too_many_samples: how to fit the budget")


class QueryMetadata(BaseModel):
    source: Literal["hot", "cold", "split"] = Field(
        description="Kept for old clients: which tier(s) answered (`hot` also for a window nothing answered; "
        "use `coverage` to tell no data from not loaded)"
    )
    hot_samples: int
    cold_samples: int
    d1_samples: int = Field(description="Old name of hot_samples")
    r2_samples: int = Field(description="Old name of cold_samples")
    unknown_points: list[str]
    interval: str | None
    downsampled: bool
    coverage: dict[str, DayState] = Field(
        description="Per UTC day of the window (ISO date, in order): `hot`, `cold` (day objects), `compacted` "
        "(monthly raw or yearly rollup objects), `split` (some points from each tier) when loaded; "
        "`not_loaded` (never synced, archived or backfilled), `before_start` (before BV_START_DATE) or "
        "`future` (after today, UTC) when no tier holds the day. An empty answer over loaded days means the "
        "points had no data. Empty when no requested point is known."
    )
    resolved_points: dict[str, str] | None = Field(
        default=None, description="Requested name -> catalogue name, for case-insensitive matches"
    )
    query_time_ms: float | None = Field(default=None, description="Absent in Arrow IPC schema metadata")


class SampleRow(BaseModel):
    point_name: str
    timestamp: int = Field(description="UTC epoch milliseconds (bucket start when aggregated)")
    value: Value = Field(description="Number, text (enum points) or null; the bucket average when aggregated")
    min: float | None = Field(default=None, description="Aggregated answers only")
    max: float | None = Field(default=None, description="Aggregated answers only")
    count: int | None = Field(default=None, description="Aggregated answers only")


class RowsAnswer(BaseModel):
    """`format=rows` (the default): the old query worker's contract."""

    site_name: str
    point_names: list[str]
    samples: list[SampleRow]
    metadata: QueryMetadata


class Series(BaseModel):
    name: str
    timestamps: list[int]
    values: list[Value]
    min: list[float | None] | None = Field(default=None, description="Aggregated answers only")
    max: list[float | None] | None = Field(default=None, description="Aggregated answers only")
    count: list[int] | None = Field(default=None, description="Aggregated answers only")


class ColumnarAnswer(BaseModel):
    """`format=columnar`: one series of arrays per requested point, in request order."""

    site_name: str
    point_names: list[str]
    series: list[Series]
    metadata: QueryMetadata


class SitesAnswer(BaseModel):
    sites: list[str]


class PointInfo(BaseModel):
    name: str
    kind: str | None
    unit: str | None
    marker_tags: list[str]
    kv_tags: dict[str, str]
    collect_interval_s: int | None


class PointsAnswer(BaseModel):
    site_name: str
    total: int = Field(description="Points matching the search")
    returned: int
    points: list[PointInfo]


class StoreHealth(BaseModel):
    ok: bool
    error: str | None = None


class HealthAnswer(BaseModel):
    status: Literal["healthy", "unhealthy"]
    stores: dict[str, StoreHealth]


def header(description: str) -> dict[str, Any]:
    """An OpenAPI response header that is always sent."""
    return {"description": description, "required": True, "schema": {"type": "string"}}


def error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """An OpenAPI response entry with the error body."""
    return {"model": ErrorBody, "description": description, **({"headers": headers} if headers else {})}


RETRY_AFTER = {"Retry-After": header("Seconds to wait before retrying")}
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: error("Missing or malformed bearer token", {"WWW-Authenticate": header("`Bearer`")}),
    403: error("The bearer token is not valid"),
    429: error("Rate limited for this token", RETRY_AFTER),
}
PARAMETER_ERROR: dict[int | str, dict[str, Any]] = {400: error("Invalid parameter")}
