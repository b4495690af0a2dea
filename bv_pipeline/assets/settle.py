"""Settling pass for late samples, as an asset: re-read a closed day from ACE ``BV_SETTLE_DELAY_HOURS`` after it
ended and store what arrived late (``logic.settle``). The pass before archival runs inside ``cold_timeseries``."""
# No "from __future__ import annotations": Dagster resolves Config/resource annotations at definition time.

import datetime as dt

import dagster as dg

from bv_pipeline.assets.hot import ACE_POOL
from bv_pipeline.logic.settle import SettleResult, settle_site_day
from bv_pipeline.partitions import parse_site_day, site_day_run_requests
from bv_pipeline.resources.ace import rate_limit_metadata
from bv_pipeline.resources.ace_resource import AceResource
from bv_pipeline.resources.clock import ClockResource
from bv_pipeline.resources.cold_store import ColdStoreResource
from bv_pipeline.resources.hot_store import HotStoreResource
from bv_pipeline.resources.policy import PolicyResource
from bv_pipeline.run_lanes import BATCH_TAGS

COLD_SETTLED = dg.AssetKey("cold_settled")
SETTLE_JOB = "settle_job"
LATE_CHECK = "late_samples_within_threshold"


def settle_metadata(r: SettleResult) -> dict[str, object]:
    return {
        "settled_into": r.target,
        "late_samples": r.late_samples,
        # ACE does not say when a sample arrived: age when found (now - ts) is an upper bound of its lateness.
        "late_max_age_when_found_minutes": r.max_age_minutes,
        "late_by_age_when_found": dg.MetadataValue.json(r.late_by_age),
        "settle_samples_fetched": r.fetched,
        "settle_ace_requests": r.ace_requests,
        "settle_rearchived": r.rearchived,
    }


def late_check(r: SettleResult, threshold: int, asset: dg.AssetKey) -> dg.AssetCheckResult:
    """Passes when at most ``threshold`` late samples were found; a warning otherwise (they were stored)."""
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=LATE_CHECK,
        passed=r.late_samples <= threshold,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "late_samples": r.late_samples,
            "threshold": threshold,
            "max_age_minutes": r.max_age_minutes,
        },
    )


def build_settle_assets(
    site_days: dg.MultiPartitionsDefinition, deps: list[dg.AssetKey]
) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=COLD_SETTLED,
        partitions_def=site_days,
        deps=deps,
        group_name="cold",
        kinds={"parquet", "s3"},
        pool=ACE_POOL,
        check_specs=[dg.AssetCheckSpec(LATE_CHECK, asset=COLD_SETTLED)],
        description=(
            "Settling pass of one site-day, BV_SETTLE_DELAY_HOURS after it ended: re-read the day from ACE and "
            "store the samples that arrived after the live sync's lookback (into hot while hot holds the day, "
            "else merged into the verified cold object). Metadata: how many, and how old when found."
        ),
    )
    def cold_settled(
        context: dg.AssetExecutionContext,
        ace: AceResource,
        hot_store: HotStoreResource,
        cold_store: ColdStoreResource,
        clock: ClockResource,
        policy: PolicyResource,
    ) -> dg.MaterializeResult:
        site_day = parse_site_day(context.partition_key)
        client = ace.get_client()
        try:
            r = settle_site_day(
                hot_store.get_store(),
                cold_store.get_store(),
                client,
                site_day.site,
                site_day.day,
                now_ms=clock.now_ms(),
            )
        finally:
            client.close()
        context.log.info(
            f"settled {site_day.site} {site_day.day}: {r.late_samples} late samples into {r.target}"
        )
        return dg.MaterializeResult(
            metadata=settle_metadata(r) | rate_limit_metadata(client),  # type: ignore[arg-type]
            check_results=[late_check(r, policy.settle_warn_late_samples, COLD_SETTLED)],
        )

    return [cold_settled]


def build_settle_job() -> "dg.UnresolvedAssetJobDefinition":
    return dg.define_asset_job(
        SETTLE_JOB,
        selection=dg.AssetSelection.assets(COLD_SETTLED),
        tags=BATCH_TAGS,
        description="Settling pass of one site-day (launched by settle_schedule BV_SETTLE_DELAY_HOURS after it ends).",
    )


def build_settle_schedule(job: "dg.UnresolvedAssetJobDefinition", delay_hours: int) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="settle_schedule",
        cron_schedule="20 * * * *",
        execution_timezone="UTC",
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Hourly: settle each site's latest day that ended at least {delay_hours} h ago (once per day: run key)."
        ),
    )
    def settle_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest] | dg.SkipReason:
        scheduled = context.scheduled_execution_time
        assert scheduled is not None
        # The latest day that ended at least delay_hours ago. Every tick for 24 hours asks for it under the same
        # run key, so Dagster launches it once, and a daemon down for less than a day still settles it.
        day = (scheduled.astimezone(dt.UTC) - dt.timedelta(hours=delay_hours)).date() - dt.timedelta(days=1)
        return site_day_run_requests(context, "settle", day)

    return settle_schedule
