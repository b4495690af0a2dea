"""The code location: one explicit ``Definitions``, built from validated settings when Dagster loads it.

``defs`` is lazy (``@dg.definitions``), so importing this module reads no environment; tests call
``build_definitions(Settings(...))`` with their own settings and resources.
"""

from __future__ import annotations

import dagster as dg

from bv_pipeline.assets.cold import build_cold_assets
from bv_pipeline.assets.hot import build_hot_assets
from bv_pipeline.assets.raw_month import build_raw_month_assets
from bv_pipeline.assets.rollup_year import build_rollup_year_assets
from bv_pipeline.assets.source import build_ace_timeseries
from bv_pipeline.config import Settings
from bv_pipeline.jobs import build_jobs
from bv_pipeline.partitions import build_site_days
from bv_pipeline.resources.wiring import build_resources
from bv_pipeline.run_retention import build_run_retention
from bv_pipeline.schedules import build_nightly_archive_schedule, build_rollup_compaction_schedule
from bv_pipeline.sensors import build_ace_sync_sensor


def build_definitions(settings: Settings, resources: dict[str, object] | None = None) -> dg.Definitions:
    site_days = build_site_days(settings.start_date)
    jobs = build_jobs()
    auto = settings.automation
    retention_job, retention_schedule = build_run_retention(auto)
    return dg.Definitions(
        assets=[
            build_ace_timeseries(site_days),
            *build_hot_assets(site_days),
            *build_cold_assets(site_days),
            *build_rollup_year_assets(),
            *build_raw_month_assets(),
        ],
        jobs=[*jobs.all(), retention_job],
        sensors=[build_ace_sync_sensor(settings.sites, jobs.hot_sync, auto.sync_interval_seconds)],
        schedules=[
            build_nightly_archive_schedule(jobs.nightly_archive, auto.cron(auto.archive_time_utc)),
            build_rollup_compaction_schedule(jobs.rollup_compaction, auto.cron(auto.compaction_time_utc)),
            retention_schedule,
        ],
        resources=resources if resources is not None else build_resources(settings),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
