"""Expired exports are deleted by export_cleanup_job (local directory and S3), on a daily schedule."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from bv_pipeline.config import Settings
from bv_pipeline.definitions import build_definitions
from bv_pipeline.ops.exports import build_export_cleanup_schedule, export_cleanup_job
from bv_pipeline.resources.clock import ClockResource
from bv_pipeline.resources.cold_store import ColdStoreResource
from bv_pipeline.storage import exports as E
from bv_pipeline.storage.interfaces import ObjectStore
from bv_pipeline_tests.fixtures.s3 import S3Bucket

OWNER_A = "a" * 32
OWNER_B = "b" * 32
HOUR = 3_600_000
NOW_MS = int(dt.datetime(2026, 5, 10, 4, 15, tzinfo=dt.UTC).timestamp() * 1000)
SPEC = E.ExportSpec(site="demo", points=("p",), start_ms=0, end_ms=HOUR, interval=None, format="csv")


def put_export(
    store: ObjectStore, owner: str, created_ms: int, ttl_ms: int | None, *, data: bool = True
) -> str:
    """An export created at ``created_ms`` expiring ``ttl_ms`` later (no status document when ttl_ms is None)."""
    eid = E.new_export_id(created_ms)
    if ttl_ms is not None:
        status = E.ExportStatus(
            export_id=eid,
            owner=owner,
            state="succeeded",
            spec=SPEC,
            created_ms=created_ms,
            updated_ms=created_ms,
            expires_ms=created_ms + ttl_ms,
        )
        store.put(status.status_key, status.to_json())
        store.put(E.run_key(owner, eid), b'{"run_id": "r"}')
    if data:
        store.put(E.data_key(owner, eid, "csv"), b"point_name,timestamp\n")
    return eid


@pytest.fixture(params=["local", "s3"])
def cold(request: pytest.FixtureRequest, tmp_path: Path) -> ColdStoreResource:
    if request.param == "local":
        return ColdStoreResource(local_dir=str(tmp_path / "cold"))
    bucket: S3Bucket = request.getfixturevalue("s3_bucket")
    return ColdStoreResource(
        r2_endpoint_url=bucket.endpoint_url,
        r2_bucket=bucket.bucket,
        r2_access_key_id=bucket.access_key_id,
        r2_secret_access_key=bucket.secret_access_key,
        region_name="us-east-1",
    )


def test_cleanup_job_deletes_expired_and_orphaned_exports_only(cold: ColdStoreResource) -> None:
    store = cold.get_store()
    expired = put_export(store, OWNER_A, NOW_MS - 80 * HOUR, 72 * HOUR)
    expires_now = put_export(store, OWNER_B, NOW_MS - 72 * HOUR, 72 * HOUR)
    live = put_export(store, OWNER_A, NOW_MS - 1 * HOUR, 72 * HOUR)
    old_orphan = put_export(store, OWNER_B, NOW_MS - 200 * HOUR, None)
    new_orphan = put_export(store, OWNER_B, NOW_MS - 2 * HOUR, None)
    store.put("exports/README.txt", b"not an export")
    store.put("timeseries/site=demo/date=2025-01-01/part-0.parquet", b"cold data is never touched")
    before = set(store.list(""))

    result = export_cleanup_job.execute_in_process(
        resources={"cold_store": cold, "clock": ClockResource(fixed_now_ms=NOW_MS)},
        run_config={"ops": {"cleanup_expired_exports": {"config": {"orphan_after_hours": 168}}}},
    )
    assert result.success
    gone = {
        k
        for k in before
        if E.parse_export_key(k) and E.parse_export_key(k)[1] in {expired, expires_now, old_orphan}
    }
    assert len(gone) == 3 + 3 + 1  # status, run, data; status, run, data; data
    assert set(store.list("")) == before - gone
    kept_ids = {E.parse_export_key(k)[1] for k in store.list("exports/") if E.parse_export_key(k)}
    assert kept_ids == {live, new_orphan}
    mats = [
        e.event_specific_data.metadata
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.STEP_OUTPUT
    ]
    assert mats and mats[0]["exports_deleted"].value == 3 and mats[0]["objects_deleted"].value == 7
    assert mats[0]["foreign_keys"].value == 1

    # Idempotent: a second run finds nothing more to delete.
    again = export_cleanup_job.execute_in_process(
        resources={"cold_store": cold, "clock": ClockResource(fixed_now_ms=NOW_MS)}
    )
    assert again.success and set(store.list("")) == before - gone


def test_cleanup_runs_daily_and_is_in_the_code_location() -> None:
    schedule = build_export_cleanup_schedule()
    assert schedule.cron_schedule == "15 4 * * *" and schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    when = dt.datetime(2026, 5, 10, 4, 15, tzinfo=dt.UTC)
    with dg.instance_for_test() as instance:
        ctx = dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
        requests = list(schedule.evaluate_tick(ctx).run_requests or [])
    assert [r.run_key for r in requests] == ["export-cleanup|2026-05-10"]
    defs = build_definitions(Settings())
    assert defs.resolve_job_def("export_cleanup_job").name == "export_cleanup_job"
    assert defs.resolve_job_def("export_job").name == "export_job"
    assert defs.resolve_schedule_def("export_cleanup_schedule").job_name == "export_cleanup_job"
