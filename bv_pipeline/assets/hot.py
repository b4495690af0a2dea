"""Hot tier: ``hot_timeseries``, one partition per (day, site). The 5-minute live sync (``ops/live_sync.py``) records
its site-days as materialisations of these partitions; this asset (``hot_sync_job``) is the per-partition path for
manual materialisations and backfills."""
# No "from __future__ import annotations": Dagster resolves Config/resource annotations at definition time.

import dagster as dg

from bv_pipeline.assets.hot_events import HOT_CHECK_NAMES, HOT_TIMESERIES, hot_check_results, sync_metadata
from bv_pipeline.assets.source import ACE_TIMESERIES
from bv_pipeline.logic.hot_sync import SyncMode, SyncResult, check_stats, sync_site_day
from bv_pipeline.partitions import parse_site_day
from bv_pipeline.resources.ace import rate_limit_metadata
from bv_pipeline.resources.ace_resource import AceResource
from bv_pipeline.resources.clock import ClockResource
from bv_pipeline.resources.hot_store import HotStoreResource
from bv_pipeline.resources.policy import PolicyResource
from bv_pipeline.storage.interfaces import HotStore

ACE_POOL = "ace_api"


class HotSyncConfig(dg.Config):
    """How a run chooses its window: ``incremental`` (what the live sync does) or, the default for a manual
    materialisation or a backfill, ``full_day`` (refetch the whole day; upserts are idempotent)."""

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
        check_specs=[dg.AssetCheckSpec(name, asset=HOT_TIMESERIES) for name in HOT_CHECK_NAMES],
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
        # Manual materialisations and backfills are batch work; the live sync (ops/live_sync.py) uses the live lane.
        client = ace.get_client("batch")
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
        metadata = sync_metadata(result, hot.backend) | rate_limit_metadata(client)
        return dg.MaterializeResult(metadata=metadata, check_results=checks)

    return [hot_timeseries]


def _hot_checks(hot: HotStore, r: SyncResult, now_ms: int) -> list[dg.AssetCheckResult]:
    """All three checks from one aggregate query over the synced window (one D1 request)."""
    return hot_check_results(r, check_stats(hot, r, now_ms), now_ms)
