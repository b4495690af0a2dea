"""Asset jobs: what the sensor and the schedule launch. Partitions are inferred from the assets."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from bv_pipeline.assets.cold import COLD_ROLLUPS, COLD_TIMESERIES, HOT_RETENTION
from bv_pipeline.assets.hot import HOT_TIMESERIES
from bv_pipeline.assets.raw_month import COLD_SAMPLES_MONTHLY
from bv_pipeline.assets.rollup_year import COLD_ROLLUPS_YEARLY

HOT_SYNC_JOB = "hot_sync_job"
NIGHTLY_ARCHIVE_JOB = "nightly_archive_job"
ROLLUP_COMPACTION_JOB = "rollup_compaction_job"


@dataclass(frozen=True)
class Jobs:
    hot_sync: dg.UnresolvedAssetJobDefinition
    nightly_archive: dg.UnresolvedAssetJobDefinition
    rollup_compaction: dg.UnresolvedAssetJobDefinition

    def all(self) -> list[dg.UnresolvedAssetJobDefinition]:
        return [self.hot_sync, self.nightly_archive, self.rollup_compaction]


def build_jobs() -> Jobs:
    return Jobs(
        hot_sync=dg.define_asset_job(
            HOT_SYNC_JOB,
            selection=dg.AssetSelection.assets(HOT_TIMESERIES),
            description="Sync one site-day from ACE into the hot tier (launched by ace_sync_sensor).",
        ),
        nightly_archive=dg.define_asset_job(
            NIGHTLY_ARCHIVE_JOB,
            selection=dg.AssetSelection.assets(COLD_TIMESERIES, COLD_ROLLUPS, HOT_RETENTION),
            description="Archive a site-day to cold storage, build its rollup, then apply hot-tier retention.",
        ),
        # Its own job: a job holds assets of one partitions definition, and these assets are partitioned by site.
        rollup_compaction=dg.define_asset_job(
            ROLLUP_COMPACTION_JOB,
            selection=dg.AssetSelection.assets(COLD_ROLLUPS_YEARLY, COLD_SAMPLES_MONTHLY),
            description=(
                "Compact a site's cold tier for reads: daily hourly rollups into yearly objects, raw day objects "
                "of closed months into monthly objects (new and re-archived days)."
            ),
        ),
    )
