"""The read API's cold path: concurrent per-day reads, the versioned byte cache, and failures."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from bv_pipeline.api.cold_read import ColdReadError
from bv_pipeline.api.reader import TimeseriesReader
from bv_pipeline.api.service import ApiConfig, create_app
from bv_pipeline.config import ConfigError, Settings
from bv_pipeline.resources.cold_store import LocalObjectStore
from bv_pipeline.resources.hot_store import SqliteHotStore
from bv_pipeline.resources.manifest_store import ManifestStore
from bv_pipeline.storage import cold_keys, parquet_layout
from bv_pipeline.storage.interfaces import PointMeta
from bv_pipeline.storage.samples import day_bounds_ms
from bv_pipeline_tests.test_api import _data as D

SITE = "cold_site"
DAYS = [dt.date(2025, 1, 6) + dt.timedelta(days=i) for i in range(4)]
# 200 points at 1-minute cadence: 288k rows, five 64k-row groups per day; about 45 points per group, so point
# 45 straddles the first group boundary.
NAMES = [f"Bldg/VAV-{i:03d}/ZoneTemp" for i in range(200)]
TOKEN = "cold-token-0123456789abcdef"


def _day(day: dt.date, *, offset: float = 0.0) -> pl.DataFrame:
    lo, hi = day_bounds_ms(day)
    ts = np.arange(lo, hi, 60_000, dtype=np.int64)
    rng = np.random.default_rng(day.toordinal())
    keep = rng.random(len(ts) * len(NAMES)) > 0.01  # gaps, so points do not all have the same row count
    n = len(ts) * len(NAMES)
    point = np.repeat(NAMES, len(ts))
    # value_text on one point only: its row groups must decode the column, the others may skip it.
    text = [("alarm" if i % 97 == 0 else None) if p == NAMES[120] else None for i, p in enumerate(point)]
    return pl.DataFrame(
        {
            "point": point,
            "ts_ms": np.tile(ts, len(NAMES)),
            "value": np.round(rng.normal(21, 2, n), 2) + offset,
            "value_text": pl.Series(text, dtype=pl.String),
        }
    ).filter(pl.Series(keep))


class _Data:
    def __init__(self, root: Path) -> None:
        self.hot = SqliteHotStore(root / "hot.sqlite3")
        self.hot.ensure_schema()
        self.cold = LocalObjectStore(root / "cold")
        frames = []
        for day in DAYS:
            df = _day(day)
            D.put_cold_day(self.hot, self.cold, day, df, deleted=True, source="ace", site=SITE)
            frames.append(df)
        self.truth = pl.concat(frames).sort("point", "ts_ms")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> _Data:
    return _Data(tmp_path_factory.mktemp("cold_reads"))


def _expected(data: _Data, points: list[str], lo: int, hi: int) -> pl.DataFrame:
    return data.truth.filter(pl.col("point").is_in(points) & (pl.col("ts_ms") >= lo) & (pl.col("ts_ms") < hi))


class _FailingStore:
    """Wraps a store; ranged GETs of keys containing ``fail_on`` raise like a network failure would."""

    def __init__(self, inner: LocalObjectStore, fail_on: str) -> None:
        self.inner, self.fail_on = inner, fail_on
        self.ranged_gets = 0

    def get_range(self, key: str, start: int, end: int) -> bytes:
        self.ranged_gets += 1
        if self.fail_on in key:
            raise OSError("connection reset by peer")
        return self.inner.get_range(key, start, end)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize(
    "points",
    [[NAMES[45]], [NAMES[0], NAMES[44], NAMES[45], NAMES[120], NAMES[199]], NAMES[::7]],
    ids=["straddling", "edges_and_text", "many"],
)
def test_concurrent_reads_equal_serial_reads_and_the_truth(data: _Data, points: list[str]) -> None:
    lo = day_bounds_ms(DAYS[0])[0] + 5 * 3_600_000  # partial first and last days
    hi = day_bounds_ms(DAYS[-1])[0] + 7 * 3_600_000 + 1
    serial = TimeseriesReader(data.hot, data.cold, max_workers=1, cache_bytes=0, scan_local_files=False)
    concurrent = TimeseriesReader(data.hot, data.cold, max_workers=16, scan_local_files=False)
    try:
        a = serial.query(SITE, points, lo, hi)
        b = concurrent.query(SITE, points, lo, hi)
    finally:
        serial.close()
        concurrent.close()
    want = _expected(data, points, lo, hi)
    assert a.frame.equals(want)
    assert b.frame.equals(want)
    assert a.cold_samples == b.cold_samples == want.height
    if NAMES[120] in points:
        assert b.frame.filter(pl.col("value_text") == "alarm").height > 0


@pytest.mark.parametrize(
    ("points", "first", "last", "cut_ms"),
    [
        ([NAMES[3]], 0, -1, 0),
        ([NAMES[0], NAMES[17], NAMES[-1], "no-such-point"], 0, -1, 0),
        ([NAMES[5], NAMES[6]], 1, 2, 7_200_000),  # partial first and last day
    ],
)
def test_local_file_scan_equals_the_ranged_read_path(
    data: _Data, points: list[str], first: int, last: int, cut_ms: int
) -> None:
    lo, hi = day_bounds_ms(DAYS[first])[0] + cut_ms, day_bounds_ms(DAYS[last])[1] - cut_ms
    scanning = TimeseriesReader(data.hot, data.cold)
    ranged = TimeseriesReader(data.hot, data.cold, scan_local_files=False)
    try:
        a, b = scanning.query(SITE, points, lo, hi), ranged.query(SITE, points, lo, hi)
        assert a.frame.equals(b.frame) and a.frame.equals(_expected(data, points, lo, hi))
        assert a.cold_bytes_fetched == 0 < b.cold_bytes_fetched  # files scanned in place vs ranged reads
    finally:
        scanning.close()
        ranged.close()


def test_cache_is_bounded_and_serves_repeat_queries(data: _Data) -> None:
    lo, hi = day_bounds_ms(DAYS[0])[0], day_bounds_ms(DAYS[-1])[1]
    reader = TimeseriesReader(data.hot, data.cold, cache_bytes=2_000_000, scan_local_files=False)
    try:
        first = reader.query(SITE, [NAMES[3]], lo, hi)
        again = reader.query(SITE, [NAMES[3]], lo, hi)
        assert first.cold_bytes_fetched > 0 and again.cold_bytes_fetched == 0  # served from the cache
        assert again.frame.equals(first.frame)
        for name in NAMES[::10]:  # every row group of every day: more than 2 MB
            reader.query(SITE, [name], lo, hi)
            assert 0 < reader.cache.current_bytes <= reader.cache.max_bytes
    finally:
        reader.close()


def test_cache_is_not_stale_after_a_day_is_re_archived(tmp_path: Path) -> None:
    data = _Data(tmp_path)
    day = DAYS[1]
    lo, hi = day_bounds_ms(day)
    reader = TimeseriesReader(data.hot, data.cold, scan_local_files=False)
    try:
        before = reader.query(SITE, [NAMES[10]], lo, hi)
        assert before.frame.equals(_expected(data, [NAMES[10]], lo, hi))
        # Re-archive: new content, so a new checksum and size, under the same key; the manifest follows.
        changed = _day(day, offset=100.0)
        D.put_cold_day(data.hot, data.cold, day, changed, deleted=True, source="ace", site=SITE)
        after = reader.query(SITE, [NAMES[10]], lo, hi)
        want = changed.filter(pl.col("point") == NAMES[10]).sort("ts_ms")
        assert after.frame.equals(want)
        assert after.cold_bytes_fetched > 0
    finally:
        reader.close()


def test_object_changed_behind_the_manifest_is_an_error_not_stale_data(tmp_path: Path) -> None:
    data = _Data(tmp_path)
    day = DAYS[2]
    lo, hi = day_bounds_ms(day)
    key = cold_keys.samples_key(SITE, day)
    # Different content under the key without a manifest update (a re-archive caught half-way).
    other, _ = parquet_layout.encode_day(SITE, day, D._arrow(_day(day, offset=5.0)), source="ace")
    data.cold.put(key, other)
    reader = TimeseriesReader(data.hot, data.cold, scan_local_files=False)
    try:
        with pytest.raises(ColdReadError, match=key):
            reader.query(SITE, [NAMES[10]], lo, hi)
        # Same size as the manifest says, different checksum: only the footer's bv.checksum can tell.
        entry = data.hot.manifest_get(SITE, day)
        assert entry is not None
        ManifestStore(data.cold).put(dataclasses.replace(entry, bytes=len(other)))
        with pytest.raises(ColdReadError, match="checksum"):
            reader.query(SITE, [NAMES[10]], lo, hi)
    finally:
        reader.close()


@pytest.mark.parametrize("workers", [1, 8])
def test_a_failing_get_fails_the_query_with_a_clear_error(data: _Data, workers: int) -> None:
    bad_day = DAYS[2]
    store = _FailingStore(data.cold, bad_day.isoformat())
    lo, hi = day_bounds_ms(DAYS[0])[0], day_bounds_ms(DAYS[-1])[1]
    reader = TimeseriesReader(data.hot, store, max_workers=workers)  # type: ignore[arg-type]
    try:
        with pytest.raises(ColdReadError, match=bad_day.isoformat()) as info:
            reader.query(SITE, [NAMES[5]], lo, hi)
        assert "connection reset by peer" in str(info.value)
    finally:
        reader.close()


def test_a_missing_object_fails_the_query(tmp_path: Path) -> None:
    data = _Data(tmp_path)
    data.cold.delete(cold_keys.samples_key(SITE, DAYS[3]))
    lo, hi = day_bounds_ms(DAYS[0])[0], day_bounds_ms(DAYS[-1])[1]
    for scan in (True, False):  # the local scan leaves a missing file to the per-day path, which reports it
        reader = TimeseriesReader(data.hot, data.cold, scan_local_files=scan)
        try:
            with pytest.raises(ColdReadError, match="missing"):
                reader.query(SITE, [NAMES[5]], lo, hi)
        finally:
            reader.close()


@pytest.fixture
def failing_client(data: _Data) -> Iterator[TestClient]:
    data.hot.upsert_points(SITE, [PointMeta(name=n) for n in NAMES[:10]])
    reader = TimeseriesReader(data.hot, _FailingStore(data.cold, DAYS[1].isoformat()))  # type: ignore[arg-type]
    cfg = ApiConfig(api_tokens=(TOKEN,), rate_limit_per_s=1000.0, rate_limit_burst=1000)
    yield TestClient(create_app(reader, cfg))
    reader.close()


def test_service_answers_503_when_a_cold_day_cannot_be_read(failing_client: TestClient) -> None:
    lo, hi = day_bounds_ms(DAYS[0])[0], day_bounds_ms(DAYS[-1])[1]
    resp = failing_client.get(
        "/timeseries/query",
        params={"site_name": SITE, "point_names": NAMES[5], "start_time": lo, "end_time": hi - 1},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"] == "cold_read_failed"
    assert resp.headers["Retry-After"]


def test_cold_read_settings_are_validated() -> None:
    settings = Settings.from_env({"BV_API_COLD_FETCH_THREADS": "32", "BV_API_COLD_CACHE_MIB": "0"})
    cfg = ApiConfig.from_settings(settings)
    assert (cfg.cold_fetch_threads, cfg.cold_cache_mib) == (32, 0)
    assert ApiConfig.from_settings(Settings.from_env({})).cold_fetch_threads == 16
    for env in (
        {"BV_API_COLD_FETCH_THREADS": "0"},
        {"BV_API_COLD_FETCH_THREADS": "1000"},
        {"BV_API_COLD_FETCH_THREADS": "many"},
        {"BV_API_COLD_CACHE_MIB": "-1"},
    ):
        with pytest.raises(ConfigError, match=next(iter(env))):
            Settings.from_env(env)
