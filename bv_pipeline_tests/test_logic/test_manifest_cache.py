"""Losing the hot tier's manifest (or the whole hot database) loses nothing: object storage is the record.

Archived days answer byte-identically after the hot ``archive_manifest`` table is emptied or the hot database is
deleted, before and after ``rebuild_cache_job`` / ``bv-pipeline rebuild-cache`` refill the cache; on the local
directory and on the moto S3 server.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
from pathlib import Path

import orjson
import pytest

from bv_pipeline.api import payloads
from bv_pipeline.api.reader import TimeseriesReader
from bv_pipeline.logic.archive import apply_retention
from bv_pipeline.logic.hot_sync import SyncMode, sync_site_day
from bv_pipeline.logic.manifest_cache import rebuild_hot_cache
from bv_pipeline.maintenance import main as rebuild_cache_main
from bv_pipeline.maintenance import rebuild_cache_job
from bv_pipeline.resources.ace import AceClient
from bv_pipeline.resources.cold_store import ColdStoreResource
from bv_pipeline.resources.hot_store import SqliteHotStore, SqliteHotStoreResource
from bv_pipeline.resources.manifest_store import ManifestStore
from bv_pipeline.simulator import AceSimulator, SimulatorConfig
from bv_pipeline.storage.samples import day_bounds_ms
from bv_pipeline_tests.fixtures.s3 import S3Bucket

TODAY = dt.date(2026, 3, 10)
DAYS = [TODAY - dt.timedelta(days=n) for n in (4, 3, 2)]
NOW_MS = day_bounds_ms(TODAY)[0] + 3 * 3_600_000


def _cold_resource(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> ColdStoreResource:
    if backend == "local":
        return ColdStoreResource(local_dir=str(tmp_path / "cold"))
    b: S3Bucket = request.getfixturevalue("s3_bucket")
    return ColdStoreResource(
        r2_endpoint_url=b.endpoint_url,
        r2_bucket=b.bucket,
        r2_access_key_id=b.access_key_id,
        r2_secret_access_key=b.secret_access_key,
        region_name="us-east-1",
    )


def _answers(hot: SqliteHotStore, cold_res: ColdStoreResource, points: list[str]) -> list[bytes]:
    """Encoded answers (raw, 1h, 1d) over the archived days from a freshly started reader."""
    reader = TimeseriesReader(hot, cold_res.get_store(), max_workers=4)
    try:
        lo, hi = day_bounds_ms(DAYS[0])[0], day_bounds_ms(DAYS[-1])[1]
        out = []
        for interval in (None, "1h", "1d"):
            result = reader.query("demo", points, lo, hi, interval=interval)
            assert result.cold_days == DAYS and result.hot_samples == 0
            doc = payloads.columnar_doc(result, {}, as_lists=True)
            out.append(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY))
        return out
    finally:
        reader.close()


def _api_answers(hot: SqliteHotStore, cold_res: ColdStoreResource, points: list[str]) -> list[bytes]:
    """Response bodies of the read API (raw and 1h, columnar) over the archived days."""
    from fastapi.testclient import TestClient

    from bv_pipeline.api.service import ApiConfig, create_app

    token = "t" * 32
    reader = TimeseriesReader(hot, cold_res.get_store(), max_workers=4)
    client = TestClient(create_app(reader, ApiConfig(api_tokens=(token,)), now=lambda: NOW_MS / 1000))
    lo, hi = day_bounds_ms(DAYS[0])[0], day_bounds_ms(DAYS[-1])[1] - 1
    out = []
    try:
        for extra in ({}, {"interval": "1h"}):
            resp = client.get(
                "/timeseries/query",
                params={
                    "site_name": "demo",
                    "point_names": ",".join(points),
                    "start_time": lo,
                    "end_time": hi,
                }
                | {"format": "columnar"}
                | extra,
                headers={"Authorization": f"Bearer {token}"},
            )
            assert resp.status_code == 200, resp.text
            doc = resp.json()
            doc["metadata"].pop("query_time_ms", None)  # wall-clock time: the only part allowed to differ
            out.append(orjson.dumps(doc))
    finally:
        reader.close()
    return out


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_hot_manifest_loss_and_rebuild(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = AceSimulator(SimulatorConfig(points=10, seed=5), clock=lambda: NOW_MS / 1000)
    ace = AceClient("http://ace-simulator/api", "k", transport=sim.transport(), sleep=lambda _s: None)
    hot_path = tmp_path / "hot.sqlite3"
    hot = SqliteHotStore(hot_path)
    hot.ensure_schema()
    cold_res = _cold_resource(backend, tmp_path, request)
    cold = cold_res.get_store()
    for day in DAYS:
        sync_site_day(ace, hot, "demo", day, now_ms=NOW_MS, mode=SyncMode.FULL_DAY)
    result = apply_retention(hot, cold, ace, "demo", today=TODAY, hot_days=1, now_ms=NOW_MS)
    assert result.deleted_days == DAYS
    points = sorted(p.name for p in sim.points("demo"))[:5]
    before = _answers(hot, cold_res, points)
    api_before = _api_answers(hot, cold_res, points)
    records = ManifestStore(cold).list_all("demo")
    assert [e.day for e in records] == DAYS

    # 1. The manifest table is emptied: answers are unchanged (readers never consult it).
    with sqlite3.connect(hot_path) as conn:
        conn.execute("DELETE FROM archive_manifest")
    assert hot.manifest_list("demo", DAYS[0], DAYS[-1]) == []
    assert _answers(hot, cold_res, points) == before

    # The Dagster job refills it from object storage.
    outcome = rebuild_cache_job.execute_in_process(
        resources={"hot_store": SqliteHotStoreResource(sqlite_path=str(hot_path)), "cold_store": cold_res}
    )
    assert outcome.success
    cached = hot.manifest_list("demo", DAYS[0], DAYS[-1])
    assert cached == [dataclasses.replace(e, rollup=None) for e in records]  # the table has no rollup columns
    assert _answers(hot, cold_res, points) == before
    assert rebuild_hot_cache(hot, ManifestStore(cold))[0].written == 0  # idempotent: nothing to rewrite

    # 2. The whole hot database is gone: a new, empty one answers the archived days identically.
    hot.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{hot_path}{suffix}").unlink(missing_ok=True)
    fresh = SqliteHotStore(hot_path)
    fresh.ensure_schema()
    assert _answers(fresh, cold_res, points) == before
    assert fresh.list_sites() == []  # the API's catalogue is gone too: it would answer 404 for the site
    if (
        backend == "local"
    ):  # the CLI reads the environment; the embedded layout is data_dir/{hot.sqlite3,cold/}
        monkeypatch.setenv("BV_DATA_DIR", str(tmp_path))
        for name in ("R2_ENDPOINT_URL", "R2_BUCKET", "R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY"):
            monkeypatch.delenv(name, raising=False)
        assert rebuild_cache_main([]) == 0
        assert fresh.manifest_list("demo", DAYS[0], DAYS[-1]) == cached
    else:
        rebuild_hot_cache(fresh, ManifestStore(cold), ["demo"])
        assert fresh.manifest_list("demo", DAYS[0], DAYS[-1]) == cached
    assert _answers(fresh, cold_res, points) == before
    # The catalogue is back (names from the archived objects), so the read API answers the same bytes again.
    assert fresh.list_sites() == ["demo"] and set(points) <= set(fresh.point_ids("demo"))
    assert _api_answers(fresh, cold_res, points) == api_before
    fresh.close()
