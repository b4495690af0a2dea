"""``ApiConfig``: limits and security settings of the read API, from ``Settings`` (BV_API_* variables)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from bv_pipeline.config import DEFAULT_DAGSTER_GRAPHQL_URL, Settings


@dataclass(frozen=True)
class ApiConfig:
    """Limits and security settings of the read API (defaults suit the embedded stack)."""

    api_tokens: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    max_points_per_query: int = 100
    max_range_days: int = 366
    max_raw_samples: int = 2_000_000  # estimated samples a raw (or sub-hour) query may read
    default_cadence_s: int = 60  # assumed when a point's collect interval is unknown
    max_output_points: int = 100_000  # upper bound of ``max_points`` (at most the schema's MAX_OUTPUT_POINTS)
    rate_limit_per_s: float = 20.0
    rate_limit_burst: int = 60
    max_list_points: int = 10_000
    cold_fetch_threads: int = (
        16  # cold day objects read at once (ranged GETs in flight); see TimeseriesReader
    )
    cold_cache_mib: int = 256  # in-memory cache of cold row-group byte ranges and rollup objects
    start_date: dt.date | None = None  # BV_START_DATE: days before it are reported as ``before_start``
    dagster_graphql_url: str = DEFAULT_DAGSTER_GRAPHQL_URL  # where POST /exports launches export_job
    export_ttl_hours: int = 168
    export_max_active_per_token: int = 2
    export_max_samples: int = 100_000_000

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiConfig:
        """Tokens, origins and the BV_API_* limits, as read and validated by ``Settings.from_env``."""
        return cls(
            api_tokens=settings.api_tokens,
            allowed_origins=settings.allowed_origins,
            start_date=settings.start_date,
            max_points_per_query=settings.api_max_points,
            max_raw_samples=settings.api_sample_budget,
            rate_limit_per_s=settings.api_rate_per_s,
            rate_limit_burst=settings.api_rate_burst,
            cold_fetch_threads=settings.api_cold_fetch_threads,
            cold_cache_mib=settings.api_cold_cache_mib,
            dagster_graphql_url=settings.dagster_graphql_url,
            export_ttl_hours=settings.export_ttl_hours,
            export_max_active_per_token=settings.export_max_active_per_token,
            export_max_samples=settings.export_max_samples,
        )
