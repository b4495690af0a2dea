"""Asset jobs: what the schedules launch and the UI materialises. Partitions are inferred from the assets. The
5-minute live sync is the op job ``live_sync_job`` (``ops/live_sync.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from bv_pipeline.assets.cold import COLD_ROLLUPS, COLD_TIMESERIES, HOT_RETENTION
from bv_pipeline.assets.hot import HOT_TIMESERIES
from bv_pipeline.assets.raw_month import COLD_SAMPLES_MONTHLY
from bv_pipeline.assets.rollup_year import COLD_ROLLUPS_YEARLY
from bv_pipeline.run_lanes import BATCH_TAGS

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
            tags=BATCH_TAGS,
            description=(
                "Sync one site-day from ACE into the hot tier, one run per partition: manual materialisations "
                "and backfills from the UI (the 5-minute live sync is live_sync_job)."
            ),
        ),
        nightly_archive=dg.define_asset_job(
            NIGHTLY_ARCHIVE_JOB,
            selection=dg.AssetSelection.assets(COLD_TIMESERIES, COLD_ROLLUPS, HOT_RETENTION),
            tags=BATCH_TAGS,
            description="Archive a site-day to cold storage, build its rollup, then apply hot-tier retention.",
        ),
        # Its own job: a job holds assets of one partitions definition, and these assets are partitioned by site.
        rollup_compaction=dg.define_asset_job(
            ROLLUP_COMPACTION_JOB,
            selection=dg.AssetSelection.assets(COLD_ROLLUPS_YEARLY, COLD_SAMPLES_MONTHLY),
            tags=BATCH_TAGS,
            description=(
                "Compact a site's cold tier for reads: daily hourly rollups into yearly objects, raw day objects "
                "of closed months into monthly objects (new and re-archived days)."
            ),
        ),
    )
