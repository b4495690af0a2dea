"""The export run: chunked reads through the read engine, CSV/Parquet written exactly, uploaded, status kept.

Against the read API's two-tier data set (hot SQLite + cold objects, text values, a day in both tiers), on a
local directory and on a moto S3 server (multipart upload, presigned URL fetched with plain httpx).
"""

from __future__ import annotations

import io
from pathlib import Path

import dagster as dg
import httpx
import polars as pl
import pyarrow.parquet as pq
import pytest

from bv_pipeline.api.reader import TimeseriesReader
from bv_pipeline.logic.export import ExportTooLarge, StatusPublisher, run_export
from bv_pipeline.ops.exports import export_job
from bv_pipeline.resources import export_files
from bv_pipeline.resources.clock import ClockResource
from bv_pipeline.resources.cold_store import ColdStoreResource, LocalObjectStore, S3ObjectStore
from bv_pipeline.resources.hot_store import SqliteHotStoreResource
from bv_pipeline.storage.exports import ExportSpec, ExportStatus, download_filename, new_export_id
from bv_pipeline.storage.interfaces import ObjectStore
from bv_pipeline.storage.samples import day_bounds_ms
from bv_pipeline_tests.fixtures.s3 import S3Bucket
from bv_pipeline_tests.test_api import _data as D

OWNER = "00112233445566778899aabbccddeeff"
NOW_MS = day_bounds_ms(D.DAYS[-1])[1] + 86_400_000
WINDOW = (day_bounds_ms(D.DAYS[0])[0], day_bounds_ms(D.DAYS[-1])[1])


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> D.Dataset:
    return D.build(tmp_path_factory.mktemp("export"))


def queued(
    store: ObjectStore, fmt: str, interval: str | None = None, points: list[str] | None = None
) -> ExportStatus:
    spec = ExportSpec(
        site=D.SITE,
        points=tuple(points or D.POINTS),
        start_ms=WINDOW[0],
        end_ms=WINDOW[1],
        interval=interval,
        format=fmt,  # type: ignore[arg-type]
    )
    status = ExportStatus(
        export_id=new_export_id(NOW_MS),
        owner=OWNER,
        state="queued",
        spec=spec,
        created_ms=NOW_MS,
        updated_ms=NOW_MS,
        expires_ms=NOW_MS + 3_600_000,
    )
    store.put(status.status_key, status.to_json())
    return status


def expected_raw(ds: D.Dataset) -> pl.DataFrame:
    return ds.truth.rename({"point": "point_name", "ts_ms": "timestamp"}).sort("timestamp", "point_name")


def test_csv_export_is_exact_and_reports_progress_per_chunk(ds: D.Dataset, tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    status = queued(store, "csv")
    reader = TimeseriesReader(ds.hot, ds.cold, max_workers=2)
    seen: list[ExportStatus] = []
    try:
        done = run_export(
            reader,
            store,
            status,
            now_ms=lambda: NOW_MS,
            publisher=StatusPublisher(store, sleep=lambda _s: None),
            chunk_samples=2000,
            on_chunk=seen.append,
        )
    finally:
        reader.close()
    want = expected_raw(ds)
    assert done.state == "succeeded" and done.rows == want.height
    assert ExportStatus.from_json(store.get(status.status_key)) == done
    # 5 points at 5 minutes = 1,440 samples a day -> one day per chunk, 10 days.
    assert [s.chunks_done for s in seen] == list(range(1, 11)) and {s.chunks_total for s in seen} == {10}
    assert [s.rows for s in seen] == sorted(s.rows for s in seen) and seen[-1].rows == want.height
    assert all(s.state == "running" for s in seen)
    data = store.get(status.data_key)
    assert len(data) == done.bytes
    got = pl.read_csv(
        io.BytesIO(data),
        schema={
            "point_name": pl.String,
            "timestamp": pl.Int64,
            "time_utc": pl.String,
            "value": pl.Float64,
            "value_text": pl.String,
        },
    )
    assert got.drop("time_utc").equals(want.select(got.drop("time_utc").columns), null_equal=True)
    assert got["time_utc"][0] == "2025-03-01T" + got["time_utc"][0][11:] and got["time_utc"][0].endswith("Z")
    # Hot wins over the differing cold copy of the day held by both tiers (+1000 in cold).
    assert got.filter(pl.col("value") > 900).height == ds.truth.filter(pl.col("value") > 900).height


def test_parquet_interval_export_equals_the_query_answer(ds: D.Dataset, tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    status = queued(store, "parquet", interval="1h")
    reader = TimeseriesReader(ds.hot, ds.cold, max_workers=2)
    try:
        done = run_export(
            reader,
            store,
            status,
            now_ms=lambda: NOW_MS,
            publisher=StatusPublisher(store, sleep=lambda _s: None),
            chunk_samples=100,
        )
        answer = reader.query(D.SITE, D.POINTS, *WINDOW, interval="1h").frame
    finally:
        reader.close()
    table = pq.read_table(io.BytesIO(store.get(status.data_key)))
    assert str(table.schema.field("timestamp").type) == "timestamp[ms, tz=UTC]"
    got = pl.from_arrow(table).with_columns(
        pl.col("point_name").cast(pl.String), pl.col("timestamp").dt.epoch("ms")
    )
    want = answer.rename({"point": "point_name", "ts_ms": "timestamp"}).sort("timestamp", "point_name")
    assert done.rows == want.height == got.height
    assert got.equals(want.select(got.columns), null_equal=True)


def test_too_many_rows_fails_with_the_reason_in_the_status(ds: D.Dataset, tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    status = queued(store, "csv")
    reader = TimeseriesReader(ds.hot, ds.cold, max_workers=2)
    try:
        with pytest.raises(ExportTooLarge):
            run_export(
                reader,
                store,
                status,
                now_ms=lambda: NOW_MS,
                publisher=StatusPublisher(store, sleep=lambda _s: None),
                chunk_samples=2000,
                max_samples=3000,
            )
    finally:
        reader.close()
    failed = ExportStatus.from_json(store.get(status.status_key))
    assert failed.state == "failed" and "maximum of 3,000 rows" in (failed.error or "")
    assert store.size(status.data_key) is None  # nothing half-written is published


def _copy_store(src: LocalObjectStore, dst: ObjectStore) -> None:
    for key in src.list(""):
        dst.put(key, src.get(key))


def test_export_job_on_s3_uploads_multipart_and_serves_a_presigned_url(
    ds: D.Dataset, s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export_files, "MULTIPART_THRESHOLD_BYTES", 1)  # a multipart upload even for this file
    cold = ColdStoreResource(
        r2_endpoint_url=s3_bucket.endpoint_url,
        r2_bucket=s3_bucket.bucket,
        r2_access_key_id=s3_bucket.access_key_id,
        r2_secret_access_key=s3_bucket.secret_access_key,
        region_name="us-east-1",
    )
    store = cold.get_store()
    assert isinstance(store, S3ObjectStore)
    _copy_store(ds.cold, store)
    status = queued(store, "csv")
    result = export_job.execute_in_process(
        run_config={
            "ops": {"export_timeseries": {"config": {"owner": OWNER, "export_id": status.export_id}}}
        },
        resources={
            "hot_store": SqliteHotStoreResource(sqlite_path=str(ds.root / "hot.sqlite3")),
            "cold_store": cold,
            "clock": ClockResource(fixed_now_ms=NOW_MS),
        },
        tags={"bv/export": status.export_id},
    )
    assert result.success
    done = ExportStatus.from_json(store.get(status.status_key))
    want = expected_raw(ds)
    assert done.state == "succeeded" and done.rows == want.height and done.run_id == result.run_id
    url = export_files.presigned_url(store, done.data_key, expires_in_s=600, filename=download_filename(done))
    assert url is not None and s3_bucket.bucket in url and "Signature=" in url
    got = httpx.get(url, timeout=30)
    assert got.status_code == 200
    assert len(got.content) == done.bytes
    assert download_filename(done) in got.headers.get("content-disposition", "")
    frame = pl.read_csv(
        io.BytesIO(got.content), schema_overrides={"value": pl.Float64, "value_text": pl.String}
    )
    assert frame.height == want.height
    assert frame["value"].equals(want["value"], null_equal=True)
    etag = s3_bucket.client.head_object(Bucket=s3_bucket.bucket, Key=done.data_key)["ETag"]
    assert etag.strip('"').endswith("-1")  # completed as a one-part multipart upload


def test_export_job_failure_marks_the_status_failed(ds: D.Dataset, tmp_path: Path) -> None:
    cold_dir = tmp_path / "cold"
    store = LocalObjectStore(cold_dir)
    _copy_store(ds.cold, store)
    # A corrupt cold object: the read fails, so the export must fail rather than miss a day.
    key = next(k for k in store.list("timeseries/") if D.DAYS[1].isoformat() in k)
    store.put(key, b"not parquet")
    status = queued(store, "parquet")
    result = export_job.execute_in_process(
        run_config={
            "ops": {"export_timeseries": {"config": {"owner": OWNER, "export_id": status.export_id}}}
        },
        resources={
            "hot_store": SqliteHotStoreResource(sqlite_path=str(ds.root / "hot.sqlite3")),
            "cold_store": ColdStoreResource(local_dir=str(cold_dir)),
            "clock": ClockResource(fixed_now_ms=NOW_MS),
        },
        raise_on_error=False,
    )
    assert not result.success
    failed = ExportStatus.from_json(store.get(status.status_key))
    assert failed.state == "failed" and failed.error and failed.run_id == result.run_id
    assert store.size(failed.data_key) is None
    assert dg.DagsterEventType.STEP_FAILURE in [e.event_type for e in result.all_events]


def test_gzip_csv_export_decompresses_to_the_plain_csv(ds: D.Dataset, tmp_path: Path) -> None:
    import gzip

    store = LocalObjectStore(tmp_path / "store")
    plain, packed = queued(store, "csv", interval="15min"), queued(store, "csv.gz", interval="15min")
    reader = TimeseriesReader(ds.hot, ds.cold, max_workers=2)
    try:
        run_export(
            reader,
            store,
            plain,
            now_ms=lambda: NOW_MS,
            publisher=StatusPublisher(store, sleep=lambda _s: None),
            chunk_samples=500,
        )
        done = run_export(
            reader,
            store,
            packed,
            now_ms=lambda: NOW_MS,
            publisher=StatusPublisher(store, sleep=lambda _s: None),
            chunk_samples=500,
        )
    finally:
        reader.close()
    assert packed.data_key.endswith("/data.csv.gz")
    data = store.get(packed.data_key)
    assert len(data) == done.bytes and data[:2] == b"\x1f\x8b"
    assert gzip.decompress(data) == store.get(plain.data_key)
    header = store.get(plain.data_key).split(b"\n", 1)[0]
    assert header == b"point_name,timestamp,time_utc,avg,min,max,count"


def test_status_writes_are_spaced_for_r2s_one_write_per_second_per_key(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    status = queued(store, "csv")
    clock, slept = [100.0], []

    def sleep(s: float) -> None:
        slept.append(round(s, 3))
        clock[0] += s

    pub = StatusPublisher(store, monotonic=lambda: clock[0], sleep=sleep)
    assert pub.publish(status.advance(1, state="running"))  # first write: immediately
    clock[0] += 0.5
    assert not pub.publish(status.advance(2, rows=5), progress=True)  # progress 0.5 s later: skipped
    clock[0] += 1.6
    assert pub.publish(status.advance(3, rows=9), progress=True)  # 2.1 s after the last write: stored
    clock[0] += 0.3
    assert pub.publish(status.advance(4, state="succeeded"))  # a final state waits out the gap
    assert slept == [0.8] and pub.writes == 3
    assert ExportStatus.from_json(store.get(status.status_key)).state == "succeeded"
