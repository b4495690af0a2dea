"""``export_job`` (one export per run, launched by the read API) and the daily ``export_cleanup_job``.

An export is not an asset (it is a copy of a query answer for one client, deleted after its TTL), so these are
op jobs. The run config names the export (owner and id); the spec is read from its ``status.json``, which the
API wrote before launching. Runs carry the tags ``bv/export`` (the id, limited in ``dagster.yaml`` so exports
never take every run slot) and ``bv/site``.
"""
# No "from __future__ import annotations": Dagster resolves Config/resource annotations at definition time.

import datetime as dt

import dagster as dg
from pydantic import Field

from bv_pipeline.api.reader import TimeseriesReader
from bv_pipeline.logic.export import DEFAULT_CHUNK_SAMPLES, run_export
from bv_pipeline.logic.export_cleanup import cleanup_exports
from bv_pipeline.resources.clock import ClockResource
from bv_pipeline.resources.cold_store import ColdStoreResource
from bv_pipeline.resources.hot_store import HotStoreResource
from bv_pipeline.run_lanes import BATCH_TAGS
from bv_pipeline.storage.exports import ExportStatus, check_export_id, check_owner, status_key

EXPORT_JOB = "export_job"
EXPORT_CLEANUP_JOB = "export_cleanup_job"
EXPORT_TAG = "bv/export"
CLEANUP_CRON = "15 4 * * *"  # daily, after archival (02:00) and compaction (03:30)


class ExportConfig(dg.Config):
    owner: str = Field(description="Owner segment of the export's keys (hash of the API token)")
    export_id: str = Field(description="The export's id, as returned by POST /exports")
    chunk_samples: int = Field(
        default=DEFAULT_CHUNK_SAMPLES, ge=1, description="Rows read per chunk (bounds the run's memory)"
    )
    max_samples: int | None = Field(
        default=None, ge=1, description="Fail when more rows than this are written"
    )


class CleanupConfig(dg.Config):
    orphan_after_hours: int = Field(
        default=168, ge=1, description="Delete an export without a readable status once its id is this old"
    )


@dg.op(
    description="Read the export's window in chunks through the read engine, write CSV/Parquet, upload it under "
    "exports/, keeping status.json up to date (running, rows so far, then succeeded or failed)."
)
def export_timeseries(
    context: dg.OpExecutionContext,
    config: ExportConfig,
    hot_store: HotStoreResource,
    cold_store: ColdStoreResource,
    clock: ClockResource,
) -> dg.Output[None]:
    owner, export_id = check_owner(config.owner), check_export_id(config.export_id)
    store = cold_store.get_store()
    status = ExportStatus.from_json(store.get(status_key(owner, export_id)))
    status = status.advance(clock.now_ms(), run_id=context.run_id)
    reader = TimeseriesReader(hot_store.get_store(), store, max_workers=8, cache_bytes=64 * 1024 * 1024)
    try:
        done = run_export(
            reader,
            store,
            status,
            now_ms=clock.now_ms,
            chunk_samples=config.chunk_samples,
            max_samples=config.max_samples,
            on_chunk=lambda s: context.log.info(
                f"export {export_id}: chunk {s.chunks_done}/{s.chunks_total}, {s.rows:,} rows"
            ),
        )
    finally:
        reader.close()
    return dg.Output(
        None,
        metadata={
            "export_id": export_id,
            "site": done.spec.site,
            "points": len(done.spec.points),
            "rows": done.rows,
            "bytes": done.bytes or 0,
            "chunks": done.chunks_total,
            "key": done.data_key,
        },
    )


@dg.op(description="Delete every object of exports whose expiry passed (and orphaned export directories).")
def cleanup_expired_exports(
    context: dg.OpExecutionContext, config: CleanupConfig, cold_store: ColdStoreResource, clock: ClockResource
) -> dg.Output[None]:
    result = cleanup_exports(
        cold_store.get_store(), now_ms=clock.now_ms(), orphan_after_ms=config.orphan_after_hours * 3_600_000
    )
    if result.foreign_keys:
        context.log.warning(f"keys under exports/ that are no export's: {result.foreign_keys[:20]}")
    return dg.Output(
        None,
        metadata={
            "exports_deleted": len(result.exports_deleted),
            "objects_deleted": result.objects_deleted,
            "exports_kept": result.exports_kept,
            "foreign_keys": len(result.foreign_keys),
        },
    )


@dg.job(name=EXPORT_JOB, description="Write one asynchronous export (launched by POST /exports).")
def export_job() -> None:
    export_timeseries()


@dg.job(name=EXPORT_CLEANUP_JOB, tags=BATCH_TAGS, description="Delete expired exports from object storage.")
def export_cleanup_job() -> None:
    cleanup_expired_exports()


def build_export_cleanup_schedule() -> dg.ScheduleDefinition:
    @dg.schedule(
        name="export_cleanup_schedule",
        cron_schedule=CLEANUP_CRON,
        execution_timezone="UTC",
        job=export_cleanup_job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="04:15 UTC: delete exports past their expiry (BV_EXPORT_TTL_HOURS after creation).",
    )
    def export_cleanup_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        scheduled = context.scheduled_execution_time
        assert scheduled is not None
        return dg.RunRequest(run_key=f"export-cleanup|{scheduled.astimezone(dt.UTC).date().isoformat()}")

    return export_cleanup_schedule
