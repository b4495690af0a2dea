"""Cold tier: one verified Parquet object per (site, day), its hourly rollup, and hot-tier retention."""
# No "from __future__ import annotations": Dagster resolves Config/resource annotations at definition time.

import datetime as dt
import time
from typing import Literal

import dagster as dg
from pydantic import Field

from bv_pipeline.assets.hot import ACE_POOL, HOT_TIMESERIES
from bv_pipeline.assets.settle import LATE_CHECK, late_check, settle_metadata
from bv_pipeline.assets.source import ACE_TIMESERIES
from bv_pipeline.logic.archive import apply_retention, archive_site_day, build_rollup_day
from bv_pipeline.logic.settle import correct_site_day, settle_site_day
from bv_pipeline.partitions import parse_site_day
from bv_pipeline.resources.ace import rate_limit_metadata
from bv_pipeline.resources.ace_resource import AceResource
from bv_pipeline.resources.clock import ClockResource
from bv_pipeline.resources.cold_store import ColdStoreResource
from bv_pipeline.resources.hot_store import HotStoreResource
from bv_pipeline.resources.policy import PolicyResource
from bv_pipeline.storage import parquet_layout

COLD_TIMESERIES = dg.AssetKey("cold_timeseries")
COLD_ROLLUPS = dg.AssetKey("cold_rollups")
HOT_RETENTION = dg.AssetKey("hot_retention")
RAW_BYTES_PER_SAMPLE = 24  # point id + ts + value uncompressed: the compression-ratio baseline

# Vendor calls and object uploads fail transiently; back off exponentially so a backfill rides out an outage.
COLD_RETRY = dg.RetryPolicy(
    max_retries=4, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


class ArchiveConfig(dg.Config):
    mode: Literal["merge", "correct"] = Field(
        default="merge",
        description=(
            "merge (default): settle the day from ACE, then archive the union of the stored day and the source. "
            "correct: replace the day with exactly what ACE serves now (verify-then-commit; hot copy replaced too)."
        ),
    )
    settle: bool = Field(
        default=True, description="merge mode: re-read the day from ACE first (late samples)"
    )


def build_cold_assets(site_days: dg.MultiPartitionsDefinition) -> list[dg.AssetsDefinition]:
    @dg.asset(
        key=COLD_TIMESERIES,
        partitions_def=site_days,
        deps=[HOT_TIMESERIES, ACE_TIMESERIES],
        group_name="cold",
        kinds={"parquet", "s3"},
        pool=ACE_POOL,
        retry_policy=COLD_RETRY,
        check_specs=[
            dg.AssetCheckSpec("row_count_matches_source", asset=COLD_TIMESERIES),
            dg.AssetCheckSpec("no_duplicate_samples", asset=COLD_TIMESERIES),
            dg.AssetCheckSpec("schema_version_current", asset=COLD_TIMESERIES),
            dg.AssetCheckSpec("object_readable", asset=COLD_TIMESERIES),
            dg.AssetCheckSpec(LATE_CHECK, asset=COLD_TIMESERIES),
        ],
        description=(
            "One Parquet object per site per day at `timeseries/site=<site>/date=<YYYY-MM-DD>/part-0.parquet` "
            "(R2, or the local cold directory). Written from the hot tier when it holds the day, otherwise fetched "
            "straight from ACE; merged with any existing object; read back and verified before it is recorded in "
            "the archive manifest."
        ),
    )
    def cold_timeseries(
        context: dg.AssetExecutionContext,
        config: ArchiveConfig,
        ace: AceResource,
        hot_store: HotStoreResource,
        cold_store: ColdStoreResource,
        clock: ClockResource,
        policy: PolicyResource,
    ) -> dg.MaterializeResult:
        site_day = parse_site_day(context.partition_key)
        hot, cold = hot_store.get_store(), cold_store.get_store()
        client = ace.get_client()
        settled = None
        extra: dict[str, object] = {"mode": config.mode}
        try:
            if config.mode == "correct":
                c = correct_site_day(hot, cold, client, site_day.site, site_day.day, now_ms=clock.now_ms())
                r = c.archive
                extra |= {
                    "rows_before": c.rows_before,
                    "checksum_before": c.checksum_before or "none",
                    "hot_replaced": c.hot_replaced,
                }
            else:
                if config.settle:
                    settled = settle_site_day(
                        hot, cold, client, site_day.site, site_day.day, now_ms=clock.now_ms()
                    )
                    extra |= settle_metadata(settled)
                r = archive_site_day(hot, cold, client, site_day.site, site_day.day, now_ms=clock.now_ms())
        finally:
            client.close()
        context.log.info(f"archived {r.key}: {r.rows} rows, {r.bytes} bytes from {r.source}")

        # The checks re-read the object independently of the verification inside archive_site_day.
        t = time.perf_counter()
        readback = parquet_layout.decode_day(cold.get(r.key))
        info = parquet_layout.read_info(cold.get(r.key))
        check_seconds = time.perf_counter() - t
        distinct = readback.group_by(["point", "ts_ms"]).aggregate([]).num_rows
        expected = r.source_rows - r.duplicates_in_source + r.merged_from_existing
        checks = [
            dg.AssetCheckResult(
                check_name="row_count_matches_source",
                passed=readback.num_rows == expected,
                metadata={
                    "object_rows": readback.num_rows,
                    "source_rows": r.source_rows,
                    "rows_kept_from_previous_object": r.merged_from_existing,
                },
            ),
            dg.AssetCheckResult(
                check_name="no_duplicate_samples",
                passed=distinct == readback.num_rows,
                metadata={"distinct_point_ts": distinct, "rows": readback.num_rows},
            ),
            dg.AssetCheckResult(
                check_name="schema_version_current",
                passed=info.schema_version == parquet_layout.SCHEMA_VERSION,
                metadata={"schema_version": info.schema_version},
            ),
            dg.AssetCheckResult(
                check_name="object_readable",
                passed=info.checksum == r.checksum and info.rows == readback.num_rows,
                metadata={"checksum": r.checksum},
            ),
        ]
        if settled is not None:
            checks.append(late_check(settled, policy.settle_warn_late_samples, COLD_TIMESERIES))
        else:
            checks.append(
                dg.AssetCheckResult(
                    check_name=LATE_CHECK, passed=True, metadata={"settled": f"no (mode {config.mode})"}
                )
            )
        phases = {f"seconds_{k}": round(v, 3) for k, v in r.phase_seconds.items()}
        phases["seconds_checks"] = round(check_seconds, 3)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": r.rows,
                "object_key": r.key,
                "source": r.source,
                "bytes": r.bytes,
                "bytes_per_sample": round(r.bytes_per_sample, 3),
                "compression_ratio_vs_24B": round(RAW_BYTES_PER_SAMPLE / r.bytes_per_sample, 2)
                if r.rows
                else 0.0,
                "rows_kept_from_previous_object": r.merged_from_existing,
                "ace_requests": r.ace_requests,
                **rate_limit_metadata(client),
                **phases,
                **extra,
            },
            check_results=checks,
        )

    @dg.asset(
        key=COLD_ROLLUPS,
        partitions_def=site_days,
        deps=[COLD_TIMESERIES],
        group_name="cold",
        kinds={"parquet", "s3"},
        retry_policy=COLD_RETRY,
        description=(
            "Hourly avg/min/max/count/sum per point for one site-day at `rollups/1h/site=<site>/date=<day>/"
            "part-0.parquet`, computed from the verified cold object, so year-long charts never read raw data. "
            "Archival already builds it with the raw object; this step rebuilds it only when the archive manifest "
            "names no rollup of the current raw checksum."
        ),
    )
    def cold_rollups(
        context: dg.AssetExecutionContext,
        hot_store: HotStoreResource,
        cold_store: ColdStoreResource,
        clock: ClockResource,
    ) -> dg.MaterializeResult:
        site_day = parse_site_day(context.partition_key)
        r = build_rollup_day(
            cold_store.get_store(),
            site_day.site,
            site_day.day,
            hot=hot_store.get_store(),
            now_ms=clock.now_ms(),
        )
        metadata: dict[str, object] = {
            "dagster/row_count": r.rows,
            "object_key": r.key,
            "bytes": r.bytes,
            "rebuilt": r.rebuilt,
        }
        if r.points is not None:
            metadata["points"] = r.points
        return dg.MaterializeResult(metadata=metadata)

    @dg.asset(
        key=HOT_RETENTION,
        partitions_def=site_days,
        deps=[COLD_TIMESERIES],
        group_name="cold",
        kinds={"sqlite", "cloudflare"},
        pool=ACE_POOL,
        description=(
            "Hot-tier retention for a site as of the partition's day: deletes hot days older than the hot window "
            "only after proving the verified cold object holds every one of their rows (re-archiving first when "
            "it does not)."
        ),
    )
    def hot_retention(
        context: dg.AssetExecutionContext,
        policy: PolicyResource,
        ace: AceResource,
        hot_store: HotStoreResource,
        cold_store: ColdStoreResource,
        clock: ClockResource,
    ) -> dg.MaterializeResult:
        site_day = parse_site_day(context.partition_key)
        client = ace.get_client()
        try:
            # Retention runs "as of" the day after the partition's day: the nightly run for D executes on D+1.
            r = apply_retention(
                hot_store.get_store(),
                cold_store.get_store(),
                client,
                site_day.site,
                today=site_day.day + dt.timedelta(days=1),
                hot_days=policy.hot_storage_days,
                now_ms=clock.now_ms(),
            )
        finally:
            client.close()
        context.log.info(
            f"retention {site_day.site}: deleted {len(r.deleted_days)} days, {r.rows_deleted} rows"
        )
        return dg.MaterializeResult(
            metadata={
                "cutoff_day": r.cutoff_day.isoformat(),
                "deleted_days": ", ".join(d.isoformat() for d in r.deleted_days) or "none",
                "rows_deleted": r.rows_deleted,
                "rearchived_days": ", ".join(d.isoformat() for d in r.rearchived_days) or "none",
                "kept_days": dg.MetadataValue.json(r.kept_days),
                **rate_limit_metadata(client),  # re-archiving a day reads it from ACE
            }
        )

    return [cold_timeseries, cold_rollups, hot_retention]
