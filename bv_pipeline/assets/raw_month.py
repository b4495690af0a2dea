"""cold_samples_monthly: each site's raw day objects compacted into one object set per closed month."""
# No "from __future__ import annotations": Dagster resolves Config/resource annotations at definition time.

import datetime as dt
import time

import dagster as dg
from pydantic import Field

from bv_pipeline.assets.cold import COLD_RETRY, COLD_TIMESERIES
from bv_pipeline.assets.rollup_year import ROLLUP_COMPACTION_POOL, format_days
from bv_pipeline.config import validate_site_name
from bv_pipeline.logic.raw_compaction import check_month, compact_samples_month, months_to_compact
from bv_pipeline.partitions import sites_partitions
from bv_pipeline.resources.clock import ClockResource
from bv_pipeline.resources.cold_store import ColdStoreResource
from bv_pipeline.resources.hot_store import HotStoreResource
from bv_pipeline.resources.manifest_store import ManifestStore

COLD_SAMPLES_MONTHLY = dg.AssetKey("cold_samples_monthly")
CHECK_NAME = "monthly_samples_match_manifest"


class MonthlyCompactionConfig(dg.Config):
    # Empty: every closed month with archived days (an up-to-date month costs one index read).
    months: list[str] = Field(
        default_factory=list, description="Months to compact as YYYY-MM; empty means every closed month."
    )


def _parse_month(text: str) -> dt.date:
    try:
        month = dt.date.fromisoformat(f"{text}-01")
        if not 1970 <= month.year <= 9999:
            raise ValueError(text)
        return month
    except ValueError:
        # A configuration error: retrying (COLD_RETRY backs off for minutes) cannot make it succeed.
        raise dg.Failure(
            f"months: {text!r} is not a month in the form YYYY-MM", allow_retries=False
        ) from None


def build_raw_month_assets() -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=COLD_SAMPLES_MONTHLY,
        partitions_def=sites_partitions,
        deps=[COLD_TIMESERIES],
        group_name="cold",
        kinds={"parquet", "s3"},
        pool=ROLLUP_COMPACTION_POOL,
        retry_policy=COLD_RETRY,
        check_specs=[dg.AssetCheckSpec(CHECK_NAME, asset=COLD_SAMPLES_MONTHLY)],
        description=(
            "Per site and closed calendar month, the raw day objects compacted so each point's month is one row "
            "group: `timeseries-month/site=<site>/month=<YYYY-MM>/index.json` naming immutable parts "
            "`gen=<generation>/part-<NNNN>.parquet`. Rebuilt only when the month's archived days change, "
            "verified before it is published, and used by the read API for raw queries over the days whose "
            "checksum still matches the archive manifest (a year of one point: ~24 GETs instead of 365). The day "
            "objects stay the canonical cold tier."
        ),
    )
    def cold_samples_monthly(
        context: dg.AssetExecutionContext,
        config: MonthlyCompactionConfig,
        hot_store: HotStoreResource,
        cold_store: ColdStoreResource,
        clock: ClockResource,
    ) -> dg.MaterializeResult:
        site = validate_site_name(context.partition_key)
        cold = cold_store.get_store()
        manifest = ManifestStore(cold, mirror=hot_store.get_store())
        now_ms = clock.now_ms()
        today = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).date()
        months = sorted({_parse_month(m) for m in config.months}) or months_to_compact(
            manifest, cold, site, today=today
        )
        t = time.perf_counter()
        results = []
        for month in months:
            r = compact_samples_month(manifest, cold, site, month, now_ms=now_ms)
            context.log.info(
                f"{site} {month:%Y-%m}: {r.status}, {r.days_total} days, {len(r.days_skipped)} skipped; "
                f"{r.rows} rows in {r.parts} parts ({r.bytes / 1e6:.1f} MB)"
            )
            results.append(r)
        seconds = time.perf_counter() - t

        checks = [check_month(manifest, cold, site, m) for m in months]
        broken = [c for c in checks if not c.readable or c.stale_days]
        missing = {f"{c.month:%Y-%m}": format_days(c.missing_days) for c in checks if c.missing_days}
        check = dg.AssetCheckResult(
            check_name=CHECK_NAME,
            passed=not broken and not missing,
            # Days not compacted (e.g. a day object that failed to load) only warn: readers use the day objects.
            severity=dg.AssetCheckSeverity.ERROR if broken else dg.AssetCheckSeverity.WARN,
            metadata={
                "months": ", ".join(f"{m:%Y-%m}" for m in months) or "none",
                "problems": dg.MetadataValue.json(
                    {f"{c.month:%Y-%m}": c.problems for c in checks if c.problems}
                ),
                "stale_days": dg.MetadataValue.json(
                    {f"{c.month:%Y-%m}": format_days(c.stale_days) for c in checks if c.stale_days}
                ),
                "days_missing": dg.MetadataValue.json(missing),
            },
        )
        return dg.MaterializeResult(
            metadata={
                "months": ", ".join(f"{m:%Y-%m}" for m in months) or "none",
                "published_months": ", ".join(f"{r.month:%Y-%m}" for r in results if r.status == "published")
                or "none",
                "days_total": sum(r.days_total for r in results),
                "days_skipped": sum(len(r.days_skipped) for r in results),
                "dagster/row_count": sum(r.rows for r in results),
                "bytes": sum(r.bytes for r in results),
                "parts": sum(r.parts for r in results),
                "seconds": round(seconds, 2),
                "per_month": dg.MetadataValue.json(
                    {
                        f"{r.month:%Y-%m}": {
                            "status": r.status,
                            "generation": r.generation,
                            "days": r.days_total,
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

    return [cold_samples_monthly]
