"""A day archived partially, then re-archived complete, answers exactly from a running API without a restart.

The reported incident: a partial day was archived (and its hot copy retired), later re-archived complete by
retention; the day's hourly rollup was not rebuilt (``interval=1h`` wrong in half the point-hours) and the running
API's rollup cache, keyed by object name, kept serving the old rollup until a restart. Here the same sequence runs
against one live FastAPI app (in-process ASGI), on the local directory and on the moto S3 server.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from bv_pipeline.api.aggregate import INTERVALS_MS
from bv_pipeline.api.reader import TimeseriesReader
from bv_pipeline.api.service import ApiConfig, create_app
from bv_pipeline.logic.archive import apply_retention
from bv_pipeline.logic.hot_sync import SyncMode, sync_site_day
from bv_pipeline.resources.ace import AceClient
from bv_pipeline.resources.cold_store import LocalObjectStore, S3ObjectStore, make_s3_client
from bv_pipeline.resources.hot_store import SqliteHotStore
from bv_pipeline.resources.manifest_store import ManifestStore
from bv_pipeline.simulator import AceSimulator, SimulatorConfig
from bv_pipeline.storage.interfaces import ObjectStore
from bv_pipeline.storage.samples import day_bounds_ms
from bv_pipeline_tests.fixtures.s3 import S3Bucket

DAY = dt.date(2026, 3, 5)
TOKEN = "t" * 32
HOUR = 3_600_000


def expected_agg(raw: pl.DataFrame, interval_ms: int) -> pl.DataFrame:
    return (
        raw.filter(pl.col("value").is_finite().fill_null(False))
        .group_by("point", (pl.col("ts_ms") - pl.col("ts_ms") % interval_ms).alias("ts_ms"))
        .agg(
            pl.col("value").mean().alias("avg"),
            pl.col("value").min().alias("min"),
            pl.col("value").max().alias("max"),
            pl.len().cast(pl.Int64).alias("count"),
        )
        .sort("point", "ts_ms")
    )


def api_frame(client: TestClient, points: list[str], interval: str | None) -> pl.DataFrame:
    lo, hi = day_bounds_ms(DAY)
    params: dict[str, Any] = {
        "site_name": "demo",
        "point_names": ",".join(points),
        "start_time": lo,
        "end_time": hi - 1,  # inclusive
        "format": "columnar",
    }
    if interval:
        params["interval"] = interval
    resp = client.get("/timeseries/query", params=params, headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200, resp.text
    rows = []
    for s in resp.json()["series"]:
        cols = {k: v for k, v in s.items() if isinstance(v, list)}
        n = len(cols["timestamps"])
        for i in range(n):
            rows.append(
                {"point": s["name"], "ts_ms": cols["timestamps"][i]}
                | {("avg" if k == "values" else k): v[i] for k, v in cols.items() if k != "timestamps"}
            )
    return pl.DataFrame(rows).sort("point", "ts_ms") if rows else pl.DataFrame()


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_rearchived_day_is_exact_in_a_running_api(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    start, end = day_bounds_ms(DAY)
    now = {"ms": start + 12 * HOUR}
    sim = AceSimulator(SimulatorConfig(points=12, seed=3), clock=lambda: now["ms"] / 1000)
    ace = AceClient("http://ace-simulator/api", "k", transport=sim.transport(), sleep=lambda _s: None)
    hot = SqliteHotStore(tmp_path / "hot.sqlite3")
    hot.ensure_schema()
    cold: ObjectStore
    if backend == "local":
        cold = LocalObjectStore(tmp_path / "cold")
    else:
        b: S3Bucket = request.getfixturevalue("s3_bucket")
        cold = S3ObjectStore(
            make_s3_client(b.endpoint_url, "us-east-1", b.access_key_id, b.secret_access_key), b.bucket
        )

    # Noon: half the day is in hot; retention (hot window 0 days) archives that half and retires the hot copy.
    sync_site_day(ace, hot, "demo", DAY, now_ms=now["ms"], mode=SyncMode.FULL_DAY)
    apply_retention(hot, cold, ace, "demo", today=DAY + dt.timedelta(days=1), hot_days=0, now_ms=now["ms"])
    first = ManifestStore(cold).get("demo", DAY)
    assert first is not None and first.hot_deleted_ms and first.rollup_current

    reader = TimeseriesReader(hot, cold, max_workers=4)
    client = TestClient(create_app(reader, ApiConfig(api_tokens=(TOKEN,), rate_limit_per_s=1000.0)))
    points = sorted(p.name for p in sim.points("demo"))[:6]
    half = pl.from_arrow(sim.truth("demo", start, end, as_of_ms=now["ms"]))
    assert isinstance(half, pl.DataFrame)
    before = api_frame(client, points, "1h")  # the running API now caches the half-day rollup
    assert before["count"].sum() == half.filter(pl.col("point").is_in(points)).height

    # Next day: the rest of the day reaches hot, and retention re-archives the day complete (rows grew).
    now["ms"] = end + HOUR
    sync_site_day(ace, hot, "demo", DAY, now_ms=now["ms"], mode=SyncMode.FULL_DAY)
    r = apply_retention(
        hot, cold, ace, "demo", today=DAY + dt.timedelta(days=1), hot_days=0, now_ms=now["ms"]
    )
    assert r.rearchived_days == [DAY] and r.deleted_days == [DAY]
    second = ManifestStore(cold).get("demo", DAY)
    assert second is not None and second.checksum != first.checksum
    assert second.rollup_current  # the rollup followed its raw object in the same run

    full = pl.from_arrow(sim.truth("demo", start, end))
    assert isinstance(full, pl.DataFrame)
    full = full.filter(pl.col("point").is_in(points))
    assert full.height > half.filter(pl.col("point").is_in(points)).height
    fresh_client = TestClient(
        create_app(TimeseriesReader(hot, cold, max_workers=4), ApiConfig(api_tokens=(TOKEN,)))
    )
    for interval in ("1h", "1d"):
        got = api_frame(client, points, interval)  # the same running app, no restart
        want = expected_agg(full, INTERVALS_MS[interval])
        assert got.select("point", "ts_ms", "count", "min", "max").equals(
            want.select("point", "ts_ms", "count", "min", "max")
        ), interval
        np.testing.assert_allclose(got["avg"].to_numpy(), want["avg"].to_numpy(), rtol=1e-12)
        assert got.equals(api_frame(fresh_client, points, interval))  # identical to a restarted API
    raw = api_frame(client, points, None)
    assert raw["ts_ms"].to_list() == full.sort("point", "ts_ms")["ts_ms"].to_list()
    reader.close()
