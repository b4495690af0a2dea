"""Hot tier: ``hot_timeseries``, one partition per (day, site), filled from ACE by the 5-minute sync sensor."""
# No "from __future__ import annotations": Dagster resolves Config/resource annotations at definition time.

from typing import Any

import dagster as dg

from bv_pipeline.assets.source import ACE_TIMESERIES
from bv_pipeline.logic.hot_sync import SyncMode, SyncResult, sync_site_day
from bv_pipeline.partitions import parse_site_day
from bv_pipeline.resources.ace import AceResource, rate_limit_metadata
from bv_pipeline.resources.clock import ClockResource
from bv_pipeline.resources.hot_store import HotStoreResource
from bv_pipeline.resources.policy import PolicyResource
from bv_pipeline.sensors import SYNC_TAG
from bv_pipeline.storage.interfaces import HotStore
from bv_pipeline.storage.samples import day_bounds_ms

HOT_TIMESERIES = dg.AssetKey("hot_timeseries")
ACE_POOL = "ace_api"
FUTURE_SKEW_MS = 120_000  # clock skew tolerated before a sample counts as "from the future"
FRESHNESS_MS = 30 * 60_000  # today's newest sample should be at most this old


class HotSyncConfig(dg.Config):
    """How a run chooses its window. The sync sensor asks for ``incremental``; a manual materialisation or a
    backfill defaults to ``full_day`` (refetch the whole day; upserts are idempotent)."""

    mode: str = SyncMode.FULL_DAY.value


def build_hot_assets(site_days: dg.MultiPartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=HOT_TIMESERIES,
        partitions_def=site_days,
        deps=[ACE_TIMESERIES],
        group_name="hot",
        kinds={"sqlite", "cloudflare"},
        pool=ACE_POOL,
        retry_policy=dg.RetryPolicy(
            max_retries=3, delay=15, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
        ),
        check_specs=[
            dg.AssetCheckSpec("no_future_samples", asset=HOT_TIMESERIES),
            dg.AssetCheckSpec("no_duplicate_samples", asset=HOT_TIMESERIES),
            dg.AssetCheckSpec("latest_sample_fresh", asset=HOT_TIMESERIES),
        ],
        description=(
            "Recent raw samples in the hot tier (D1, or the embedded SQLite file). A run fetches the day's pending "
            "window from ACE in bounded chunks and upserts it; progress is kept per (site, day) in the store."
        ),
    )
    def hot_timeseries(
        context: dg.AssetExecutionContext,
        config: HotSyncConfig,
        ace: AceResource,
        hot_store: HotStoreResource,
        clock: ClockResource,
        policy: PolicyResource,
    ) -> dg.MaterializeResult:
        site_day = parse_site_day(context.partition_key)
        hot = hot_store.get_store()
        # The sensor's syncs are the live sync: they take ACE slots in the live lane, never limited by backfills.
        client = ace.get_client("live" if SYNC_TAG in context.run.tags else "batch")
        now_ms = clock.now_ms()
        try:
            mode = SyncMode(config.mode)
        except ValueError:
            raise dg.Failure(
                f"config.mode must be one of {[m.value for m in SyncMode]}, not {config.mode!r}"
            ) from None

        def progress(r: SyncResult) -> None:
            context.log.info(f"chunk {r.chunks}: {r.rows_upserted} rows so far")

        try:
            result = sync_site_day(
                client,
                hot,
                site_day.site,
                site_day.day,
                now_ms=now_ms,
                mode=mode,
                lookback_minutes=policy.sync_lookback_minutes,
                chunk_minutes=policy.sync_chunk_minutes,
                log=context.log,
                on_chunk=progress,
            )
        finally:
            client.close()
        checks = _hot_checks(hot, result, now_ms)
        metadata = _sync_metadata(result, hot.backend) | rate_limit_metadata(client)
        return dg.MaterializeResult(metadata=metadata, check_results=checks)

    return [hot_timeseries]


def _sync_metadata(r: SyncResult, backend: str) -> dict[str, Any]:
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
        "hot_api_requests": r.hot_requests,
    }
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


def _hot_checks(hot: HotStore, r: SyncResult, now_ms: int) -> list[dg.AssetCheckResult]:
    """All three checks from one aggregate query over the synced window (one D1 request)."""
    _, day_end = day_bounds_ms(r.day)
    if r.window_start_ms is None or r.window_end_ms is None:
        skipped = "nothing was synced in this run"
        return [
            dg.AssetCheckResult(check_name=name, passed=True, description=skipped)
            for name in ("no_future_samples", "no_duplicate_samples", "latest_sample_fresh")
        ]
    # The stats cover the synced window plus the rest of the day, so samples "from the future" are seen too.
    stats = hot.window_stats(r.site, r.window_start_ms, day_end, now_ms + FUTURE_SKEW_MS)
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
