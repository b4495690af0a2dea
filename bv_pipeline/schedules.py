"""Nightly automation (UTC): archival at 02:00 (yesterday's cold object, rollup and hot retention for every
registered site), then compaction at 03:30 (each site's yearly hourly-rollup objects and monthly raw-sample objects).
Both times are settings (``BV_ARCHIVE_TIME``, ``BV_COMPACTION_TIME``); the constants below are the defaults."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from bv_pipeline.assets.rollup_year import ROLLUP_COMPACTION_TAG
from bv_pipeline.partitions import SITES_PARTITION_NAME, site_day_run_requests

NIGHTLY_CRON = "0 2 * * *"
# After the 02:00 archival of every site has normally finished, so yesterday's rollups are included.
COMPACTION_CRON = "30 3 * * *"


def build_nightly_archive_schedule(
    job: dg.UnresolvedAssetJobDefinition, cron_schedule: str = NIGHTLY_CRON
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="nightly_archive_schedule",
        cron_schedule=cron_schedule,
        execution_timezone="UTC",
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"{cron_schedule} (cron, UTC): archive yesterday for every site (verify, then record), build rollups, apply retention.",
    )
    def nightly_archive_schedule(
        context: dg.ScheduleEvaluationContext,
    ) -> list[dg.RunRequest] | dg.SkipReason:
        scheduled = context.scheduled_execution_time
        assert scheduled is not None
        yesterday = scheduled.astimezone(dt.UTC).date() - dt.timedelta(days=1)
        return site_day_run_requests(context, "archive", yesterday)

    return nightly_archive_schedule


def build_rollup_compaction_schedule(
    job: dg.UnresolvedAssetJobDefinition, cron_schedule: str = COMPACTION_CRON
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="rollup_compaction_schedule",
        cron_schedule=cron_schedule,
        execution_timezone="UTC",
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"{cron_schedule} (cron, UTC): compact each site's new and re-archived daily rollups into its yearly objects and its "
            "closed months' raw day objects into monthly objects."
        ),
    )
    def rollup_compaction_schedule(
        context: dg.ScheduleEvaluationContext,
    ) -> list[dg.RunRequest] | dg.SkipReason:
        scheduled = context.scheduled_execution_time
        assert scheduled is not None
        today = scheduled.astimezone(dt.UTC).date()
        sites = sorted(context.instance.get_dynamic_partitions(SITES_PARTITION_NAME))
        if not sites:
            return dg.SkipReason("no site registered yet")
        return [
            dg.RunRequest(
                run_key=f"rollup-year|{site}|{today.isoformat()}",
                partition_key=site,
                tags={"bv/site": site, ROLLUP_COMPACTION_TAG: site},
            )
            for site in sites
        ]

    return rollup_compaction_schedule
