"""Nightly archival at 02:00 UTC: yesterday's cold object, rollup and hot retention for every registered site."""

from __future__ import annotations

import datetime as dt

import dagster as dg

from bv_pipeline.partitions import SITES_PARTITION_NAME, site_day_key

NIGHTLY_CRON = "0 2 * * *"


def build_nightly_archive_schedule(job: dg.UnresolvedAssetJobDefinition) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="nightly_archive_schedule",
        cron_schedule=NIGHTLY_CRON,
        execution_timezone="UTC",
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="02:00 UTC: archive yesterday for every site (verify, then record), build rollups, apply retention.",
    )
    def nightly_archive_schedule(
        context: dg.ScheduleEvaluationContext,
    ) -> list[dg.RunRequest] | dg.SkipReason:
        scheduled = context.scheduled_execution_time
        assert scheduled is not None
        yesterday = scheduled.astimezone(dt.UTC).date() - dt.timedelta(days=1)
        sites = sorted(context.instance.get_dynamic_partitions(SITES_PARTITION_NAME))
        if not sites:
            return dg.SkipReason(
                "no site registered yet (ace_sync_sensor registers BV_SITES on its first tick)"
            )
        return [
            dg.RunRequest(
                run_key=f"archive|{site}|{yesterday.isoformat()}",
                partition_key=site_day_key(site, yesterday),
                tags={"bv/site": site},
            )
            for site in sites
        ]

    return nightly_archive_schedule
