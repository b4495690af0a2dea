"""cold_rollups_yearly: each site's daily hourly rollups compacted into one object set per calendar year."""
# No "from __future__ import annotations": Dagster resolves Config/resource annotations at definition time.

import datetime as dt
import time

import dagster as dg
from pydantic import Field

from bv_pipeline.assets.cold import COLD_RETRY, COLD_ROLLUPS
from bv_pipeline.config import validate_site_name
from bv_pipeline.logic.rollup_compaction import check_year, compact_rollups_year, years_to_compact
from bv_pipeline.partitions import sites_partitions
from bv_pipeline.resources.clock import ClockResource
from bv_pipeline.resources.cold_store import ColdStoreResource
from bv_pipeline.resources.hot_store import HotStoreResource
from bv_pipeline.resources.manifest_store import ManifestStore

COLD_ROLLUPS_YEARLY = dg.AssetKey("cold_rollups_yearly")
# Compaction holds a site-year in memory (~2-3 GB at 4,583 points): at most this pool's limit run at once.
ROLLUP_COMPACTION_POOL = "rollup_compaction"
# Run tag set by the schedule; dagster.yaml allows one run per value (site) at a time.
ROLLUP_COMPACTION_TAG = "bv/rollup-compaction"
CHECK_NAME = "yearly_rollups_match_manifest"


class CompactionConfig(dg.Config):
    # Empty: every year with archived days (an unchanged year costs two small reads).
    years: list[int] = Field(default_factory=list)


def format_days(days: list[dt.date]) -> str:
    """Days for materialisation metadata: ISO dates joined by commas, or "none"."""
    return ", ".join(d.isoformat() for d in days) or "none"


def build_rollup_year_assets() -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=COLD_ROLLUPS_YEARLY,
        partitions_def=sites_partitions,
        deps=[COLD_ROLLUPS],
        group_name="cold",
        kinds={"parquet", "s3"},
        pool=ROLLUP_COMPACTION_POOL,
        retry_policy=COLD_RETRY,
        check_specs=[dg.AssetCheckSpec(CHECK_NAME, asset=COLD_ROLLUPS_YEARLY)],
        description=(
            "Per site and calendar year, the daily hourly rollups compacted so each point's year is one row "
            "group: `rollups/1h-year/site=<site>/year=<YYYY>/index.json` naming immutable parts "
            "`gen=<generation>/part-<NNNN>.parquet`. Incremental (only new or re-archived days are read), "
            "verified before it is published, and used by the read API for 1h/1d queries on the days whose "
            "checksum still matches the archive manifest."
        ),
    )
    def cold_rollups_yearly(
        context: dg.AssetExecutionContext,
        config: CompactionConfig,
        hot_store: HotStoreResource,
        cold_store: ColdStoreResource,
        clock: ClockResource,
    ) -> dg.MaterializeResult:
        site = validate_site_name(context.partition_key)
        cold = cold_store.get_store()
        manifest = ManifestStore(cold, mirror=hot_store.get_store())
        now_ms = clock.now_ms()
        t = time.perf_counter()
        today = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).date()
        years = sorted(set(config.years)) or years_to_compact(manifest, cold, site, until=today)
        results = []
        for year in years:
            r = compact_rollups_year(manifest, cold, site, year, now_ms=now_ms)
            context.log.info(
                f"{site} {year}: {r.status}, +{len(r.days_added)} days, {len(r.days_refreshed)} refreshed, "
                f"{len(r.days_dropped)} dropped, {len(r.days_skipped)} skipped; {r.rows} rows in {r.parts} parts"
            )
            results.append(r)
        seconds = time.perf_counter() - t

        checks = [check_year(manifest, cold, site, year) for year in years]
        broken = [c for c in checks if not c.readable or c.stale_days]
        missing = {str(c.year): format_days(c.missing_days) for c in checks if c.missing_days}
        check = dg.AssetCheckResult(
            check_name=CHECK_NAME,
            passed=not broken and not missing,
            # Days not compacted yet (e.g. no current daily rollup) only warn: readers fall back to daily rollups.
            severity=dg.AssetCheckSeverity.ERROR if broken else dg.AssetCheckSeverity.WARN,
            metadata={
                "years": ", ".join(str(y) for y in years) or "none",
                "problems": dg.MetadataValue.json({str(c.year): c.problems for c in checks if c.problems}),
                "stale_days": dg.MetadataValue.json(
                    {str(c.year): format_days(c.stale_days) for c in checks if c.stale_days}
                ),
                "days_missing": dg.MetadataValue.json(missing),
            },
        )
        return dg.MaterializeResult(
            metadata={
                "years": ", ".join(str(y) for y in years) or "none",
                "published_years": ", ".join(str(r.year) for r in results if r.status == "published")
                or "none",
                "days_added": sum(len(r.days_added) for r in results),
                "days_refreshed": sum(len(r.days_refreshed) for r in results),
                "days_dropped": sum(len(r.days_dropped) for r in results),
                "days_total": sum(r.days_total for r in results),
                "dagster/row_count": sum(r.rows for r in results),
                "bytes": sum(r.bytes for r in results),
                "parts": sum(r.parts for r in results),
                "seconds": round(seconds, 2),
                "per_year": dg.MetadataValue.json(
                    {
                        str(r.year): {
                            "status": r.status,
                            "generation": r.generation,
                            "added": format_days(r.days_added),
                            "refreshed": format_days(r.days_refreshed),
                            "dropped": format_days(r.days_dropped),
                            "skipped": r.days_skipped,
                            "rows": r.rows,
                            "bytes": r.bytes,
                            "parts": r.parts,
                            "generations_deleted": r.generations_deleted,
                            "seconds": {k: round(v, 2) for k, v in r.phase_seconds.items()},
                        }
                        for r in results
                    }
                ),
            },
            check_results=[check],
        )

    return [cold_rollups_yearly]
