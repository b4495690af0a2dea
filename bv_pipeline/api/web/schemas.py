"""Pydantic models of every JSON answer, for the OpenAPI document only.

The routes build their bodies directly (orjson, Polars' JSON writer) for speed; these models describe those bodies
so the published contract matches what is sent (a schemathesis run checks every answer against them). Models
leave extra fields allowed: new metadata fields are additive.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from bv_pipeline.api.coverage import DayState
from bv_pipeline.api.web.validation import MAX_TS_MS, SITE_PATTERN

Value = float | str | None


class ParameterProblem(BaseModel):
    parameter: str = Field(description="Dotted name of the parameter, or `request`")
    message: str


class ErrorBody(BaseModel):
    """Every error the API shapes: a stable machine-readable `error` and a human `detail`."""

    error: str = Field(
        description="Machine-readable code: invalid_parameter, invalid_time_range, range_too_long, "
        "too_many_points, unauthorized, forbidden, unknown_site, not_found, method_not_allowed, "
        "too_many_samples, rate_limited, cors_rejected, cold_read_failed, internal_error; exports: "
        "unknown_points, export_too_large, too_many_active_exports, dagster_unavailable, unknown_export, "
        "export_not_ready, export_expired, export_missing"
    )
    detail: str | list[ParameterProblem] | None = Field(
        description="What was wrong; for invalid_parameter from the schema, one entry per parameter"
    )
    limit: int | None = Field(default=None, description="too_many_points: the per-query limit")
    estimated_samples: int | None = Field(default=None, description="too_many_samples: the estimate")
    budget: int | None = Field(default=None, description="too_many_samples: the configured budget")
    suggestions: list[str] | None = Field(default=None, description="too_many_samples: how to fit the budget")
    links: dict[str, Any] | None = Field(
        default=None,
        description="too_many_samples: `export` is the equivalent POST /exports request (method, href, body)",
    )


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


class SiteFreshness(BaseModel):
    newest_sample: str | None = Field(description="UTC time of the newest sample in the hot tier")
    age_s: int | None = Field(description="Seconds since that sample")


class HealthAnswer(BaseModel):
    status: Literal["healthy", "unhealthy"]
    stores: dict[str, StoreHealth]
    sites: dict[str, SiteFreshness] | None = Field(
        default=None, description="Per site, when the hot tier answers: how fresh its data is"
    )


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


# One point name: no commas or control characters, not blank, at most 512 characters (as in /timeseries/query).
ExportPointName = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=512,
        pattern=r"^[^,\x00-\x1f\x7f]*[^,\s\x00-\x1f\x7f\x85\xa0][^,\x00-\x1f\x7f]*$",
    ),
]


class ExportRequest(BaseModel):
    """`POST /exports`: the same window and points as `/timeseries/query`, written to a file asynchronously."""

    model_config = ConfigDict(extra="forbid")

    site_name: str = Field(description="Site slug", pattern=SITE_PATTERN)
    point_names: list[ExportPointName] = Field(
        min_length=1,
        max_length=10_000,
        description="Point names (as in /timeseries/query; at most BV_API_MAX_POINTS, every one must exist)",
    )
    start_time: int = Field(ge=0, le=MAX_TS_MS, description="Window start, UTC epoch milliseconds")
    end_time: int = Field(ge=0, le=MAX_TS_MS, description="Window end, UTC epoch milliseconds, inclusive")
    interval: Literal["1min", "5min", "15min", "1h", "1d"] | None = Field(
        default=None, description="Bucket size for avg/min/max/count rows; omit (null) for raw samples"
    )
    format: Literal["csv", "csv.gz", "parquet"] = Field(
        default="csv", description="File format of the result (csv.gz: CSV compressed with gzip)"
    )


class ExportProgress(BaseModel):
    rows: int = Field(description="Rows written so far")
    estimated_rows: int
    chunks_done: int
    chunks_total: int = Field(description="0 until the run has planned its chunks")


class ExportDownload(BaseModel):
    url: str = Field(description="Presigned URL (R2/S3) or this API's /exports/{id}/download")
    url_expires_at: str | None
    filename: str
    media_type: str


class ExportAnswer(BaseModel):
    export_id: str
    state: Literal["queued", "running", "succeeded", "failed"]
    request: dict[str, Any] = Field(description="The request as accepted (point names resolved)")
    progress: ExportProgress
    rows: int | None = Field(description="Rows in the result (succeeded)")
    bytes: int | None = Field(description="Size of the result in bytes (succeeded)")
    error: str | None = Field(description="Why it failed (failed)")
    created_at: str
    updated_at: str
    expires_at: str = Field(description="After this the export is deleted (BV_EXPORT_TTL_HOURS)")
    run_id: str | None = Field(description="The Dagster run writing it")
    run_url: str | None = Field(description="The run in the Dagster UI")
    links: dict[str, str]
    download: ExportDownload | None = Field(default=None, description="GET /exports/{id} once succeeded")


class ExportList(BaseModel):
    exports: list[ExportAnswer]
