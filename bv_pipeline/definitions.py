"""The code location: one explicit ``Definitions``, built from validated settings when Dagster loads it.

``defs`` is lazy (``@dg.definitions``), so importing this module reads no environment; tests call
``build_definitions(Settings(...))`` with their own settings and resources.
"""

from __future__ import annotations

import dagster as dg

from bv_pipeline.alerts.sensors import build_condition_alert_sensors, build_run_alert_sensors
from bv_pipeline.assets.cold import COLD_TIMESERIES, build_cold_assets
from bv_pipeline.assets.hot import build_hot_assets
from bv_pipeline.assets.raw_month import build_raw_month_assets
from bv_pipeline.assets.rollup_year import build_rollup_year_assets
from bv_pipeline.assets.settle import build_settle_assets, build_settle_job, build_settle_schedule
from bv_pipeline.assets.source import build_ace_timeseries
from bv_pipeline.config import Settings
from bv_pipeline.jobs import build_jobs
from bv_pipeline.maintenance import rebuild_cache_job
from bv_pipeline.ops.exports import build_export_cleanup_schedule, export_cleanup_job, export_job
from bv_pipeline.ops.live_sync import live_sync_job
from bv_pipeline.partitions import build_site_days
from bv_pipeline.resources.wiring import build_alerting_resource, build_resources
from bv_pipeline.run_retention import build_run_retention
from bv_pipeline.schedules import build_nightly_archive_schedule, build_rollup_compaction_schedule
from bv_pipeline.sensors import build_ace_sync_sensor


def build_definitions(settings: Settings, resources: dict[str, object] | None = None) -> dg.Definitions:
    site_days = build_site_days(settings.start_date)
    jobs = build_jobs()
    settle_job = build_settle_job()
    auto = settings.automation
    retention_job, retention_schedule = build_run_retention(auto)
    return dg.Definitions(
        assets=[
            build_ace_timeseries(site_days),
            *build_hot_assets(site_days),
            *build_cold_assets(site_days),
            *build_rollup_year_assets(),
            *build_raw_month_assets(),
            *build_settle_assets(site_days, [COLD_TIMESERIES]),
        ],
        jobs=[
            *jobs.all(),
            live_sync_job,
            retention_job,
            rebuild_cache_job,
            settle_job,
            export_job,
            export_cleanup_job,
        ],
        sensors=[
            build_ace_sync_sensor(settings.sites, auto.sync_interval_seconds, auto.sync_sites_per_run),
            *build_run_alert_sensors(),
            *build_condition_alert_sensors(settings.sites),
        ],
        schedules=[
            build_nightly_archive_schedule(jobs.nightly_archive, auto.cron(auto.archive_time_utc)),
            build_rollup_compaction_schedule(jobs.rollup_compaction, auto.cron(auto.compaction_time_utc)),
            retention_schedule,
            build_settle_schedule(settle_job, settings.settle_delay_hours),
            build_export_cleanup_schedule(),
        ],
        resources={"alerting": build_alerting_resource(settings), **resources}
        if resources is not None
        else build_resources(settings),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
