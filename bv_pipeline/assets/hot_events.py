"""What a ``hot_timeseries`` sync reports to Dagster, shared by the asset (one site-day per run) and the live-sync
op (many site-days per run): the materialisation metadata and the three asset checks."""

from __future__ import annotations

from typing import Any

import dagster as dg

from bv_pipeline.logic.hot_sync import FUTURE_SKEW_MS, SyncResult
from bv_pipeline.storage.interfaces import WindowStats
from bv_pipeline.storage.samples import day_bounds_ms

HOT_TIMESERIES = dg.AssetKey("hot_timeseries")
HOT_CHECK_NAMES = ("no_future_samples", "no_duplicate_samples", "latest_sample_fresh")
FRESHNESS_MS = 30 * 60_000  # today's newest sample should be at most this old


def sync_metadata(r: SyncResult, backend: str, *, hot_requests: bool = True) -> dict[str, Any]:
    """``hot_requests=False`` leaves out ``hot_api_requests`` (threads sharing one store cannot attribute them)."""
    md: dict[str, Any] = {
        "mode": r.mode.value,
        "rows_upserted": r.rows_upserted,
        "rows_new": r.rows_new,
        "hours_sealed": r.hours_sealed,
        "new_points": r.new_points,
        "non_numeric_values": r.non_numeric,
        "null_values": r.nulls,
        "duplicates_removed": r.duplicates,
        "ace_requests": r.ace_requests,
        "ace_pages": r.ace_pages,
        "ace_retries": r.ace_retries,
        "cursor_repairs": r.cursor_repairs,
        "chunks": r.chunks,
        "hot_backend": backend,
    }
    if hot_requests:
        md["hot_api_requests"] = r.hot_requests
    if r.window_start_ms is not None and r.window_end_ms is not None:
        md["window_start"] = dg.MetadataValue.timestamp(r.window_start_ms / 1000)
        md["window_end"] = dg.MetadataValue.timestamp(r.window_end_ms / 1000)
    if r.as_of_ms is not None:
        md["watermark"] = dg.MetadataValue.timestamp(r.as_of_ms / 1000)
    if r.max_sample_ts_ms is not None:
        md["latest_sample"] = dg.MetadataValue.timestamp(r.max_sample_ts_ms / 1000)
    if r.notes:
        md["notes"] = "; ".join(r.notes)
    return md


def hot_check_results(r: SyncResult, stats: WindowStats | None, now_ms: int) -> list[dg.AssetCheckResult]:
    """The three checks of one synced site-day from ``check_stats`` (None: nothing was synced)."""
    _, day_end = day_bounds_ms(r.day)
    if stats is None:
        skipped = "nothing was synced in this run"
        return [
            dg.AssetCheckResult(check_name=name, passed=True, description=skipped) for name in HOT_CHECK_NAMES
        ]
    in_window = stats.rows - stats.future_rows if now_ms + FUTURE_SKEW_MS < day_end else stats.rows
    results = [
        dg.AssetCheckResult(
            check_name="no_future_samples",
            passed=stats.future_rows == 0,
            metadata={"samples_after_now": stats.future_rows},
        ),
        # Each chunk was de-duplicated on (point, ts) and chunks are disjoint, so the store must hold exactly the
        # distinct samples this run received for the window: more means duplicates, fewer means loss.
        dg.AssetCheckResult(
            check_name="no_duplicate_samples",
            passed=in_window == r.rows_upserted,
            metadata={"stored_rows_in_window": in_window, "distinct_rows_received": r.rows_upserted},
        ),
    ]
    if now_ms >= day_end:
        results.append(
            dg.AssetCheckResult(
                check_name="latest_sample_fresh",
                passed=True,
                description="past day: freshness applies to today",
            )
        )
    else:
        age = None if stats.max_ts is None else now_ms - stats.max_ts
        results.append(
            dg.AssetCheckResult(
                check_name="latest_sample_fresh",
                passed=age is not None and age <= FRESHNESS_MS,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"latest_sample_age_minutes": round(age / 60_000, 1) if age is not None else -1},
            )
        )
    return results


def check_evaluation(
    result: dg.AssetCheckResult, partition: str, *, asset_key: dg.AssetKey = HOT_TIMESERIES
) -> dg.AssetCheckEvaluation:
    """An ``AssetCheckResult`` as the evaluation event an op logs for one partition (``context.log_event``)."""
    assert result.check_name is not None
    return dg.AssetCheckEvaluation(
        asset_key=asset_key,
        check_name=result.check_name,
        passed=bool(result.passed),
        metadata=result.metadata,
        severity=result.severity,
        description=result.description,
        partition=partition,
    )
