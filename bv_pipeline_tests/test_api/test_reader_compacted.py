"""1h/1d queries answered from the compacted yearly rollups equal the daily-rollup answers, exactly."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from bv_pipeline.api.reader import TimeseriesReader
from bv_pipeline.logic.rollup_compaction import compact_rollups_year
from bv_pipeline.resources.cold_store import LocalObjectStore, S3ObjectStore
from bv_pipeline.resources.hot_store import SqliteHotStore
from bv_pipeline.resources.manifest_store import ManifestStore
from bv_pipeline.storage import cold_keys
from bv_pipeline.storage.interfaces import ObjectStore, PointMeta
from bv_pipeline.storage.samples import SAMPLE_SCHEMA, day_bounds_ms
from bv_pipeline_tests.fixtures.s3 import S3Bucket
from bv_pipeline_tests.rollup_year_data import POINTS, SITE, put_day
from bv_pipeline_tests.test_api._data import day_samples

# Across a year boundary, so two yearly objects answer one query.
COLD = [dt.date(2024, 12, 28) + dt.timedelta(days=i) for i in range(7)]  # 12-28 .. 01-03
VERIFIED_IN_HOT = dt.date(2025, 1, 4)  # archived, still in hot, but hot lacks one point: that point from cold
HOT_ONLY = dt.date(2025, 1, 5)
NOW = int(dt.datetime(2025, 1, 6, 3, 30, tzinfo=dt.UTC).timestamp() * 1000)
SMALL = {"part_target_bytes": 3_000, "min_group_rows": 100}


class CountingStore:
    """Counts whole-object GETs of daily rollups, to see which path answered."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.daily_rollup_gets = 0

    def get(self, key: str) -> bytes:
        if key.startswith(cold_keys.ROLLUP_1H_PREFIX + "/"):
            self.daily_rollup_gets += 1
        return self.inner.get(key)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


@pytest.fixture(params=["local", "s3"])
def cold(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(tmp_path / "cold")
    bucket: S3Bucket = request.getfixturevalue("s3_bucket")
    return S3ObjectStore(bucket.client, bucket.bucket)


@pytest.fixture
def hot(tmp_path: Path) -> SqliteHotStore:
    store = SqliteHotStore(tmp_path / "hot.sqlite3")
    store.ensure_schema()
    store.upsert_points(SITE, [PointMeta(name=p) for p in POINTS])
    return store


@pytest.fixture
def data(hot: SqliteHotStore, cold: ObjectStore) -> Iterator[ObjectStore]:
    for d in COLD:
        put_day(hot, cold, d)
    put_day(hot, cold, VERIFIED_IN_HOT, deleted=False)
    hot.upsert_samples(SITE, day_samples(VERIFIED_IN_HOT, POINTS[:-1]).to_arrow().cast(SAMPLE_SCHEMA))
    hot.upsert_samples(SITE, day_samples(HOT_ONLY, POINTS).to_arrow().cast(SAMPLE_SCHEMA))
    for year in (2024, 2025):
        compact_rollups_year(ManifestStore(cold), cold, SITE, year, now_ms=NOW, **SMALL)
    yield cold


def readers(
    hot: SqliteHotStore, cold: ObjectStore
) -> tuple[TimeseriesReader, TimeseriesReader, CountingStore]:
    counting = CountingStore(cold)
    compacted = TimeseriesReader(hot, counting, max_workers=4, catalogue_ttl_s=0)  # type: ignore[arg-type]
    daily = TimeseriesReader(hot, cold, max_workers=4, use_compacted_rollups=False)
    return compacted, daily, counting


def assert_same_answer(a: pl.DataFrame, b: pl.DataFrame, lo: int, hi: int) -> None:
    """Bit-identical on every bucket of a whole cold day (the rollup paths). Other buckets (hot days, partial
    edge days) are aggregated from raw samples by Polars' parallel group-by, whose float sums vary in the last
    bits from run to run even on one reader (a property of the raw path, not of the rollups): those to 1e-12."""
    assert a.select("point", "ts_ms").equals(b.select("point", "ts_ms"))
    whole = [day_bounds_ms(d) for d in COLD if lo <= day_bounds_ms(d)[0] and day_bounds_ms(d)[1] <= hi]
    rolled = pl.any_horizontal(False, *[pl.col("ts_ms").is_between(s, e, closed="left") for s, e in whole])
    assert a.filter(rolled).height > 0
    assert a.filter(rolled).equals(b.filter(rolled))
    assert_frame_equal(a.filter(~rolled), b.filter(~rolled), check_exact=False, rel_tol=1e-12)


def window(first: dt.date, last: dt.date) -> tuple[int, int]:
    return day_bounds_ms(first)[0], day_bounds_ms(last)[1]


@pytest.mark.parametrize("interval", ["1h", "1d"])
def test_compacted_and_daily_paths_agree(hot: SqliteHotStore, data: ObjectStore, interval: str) -> None:
    compacted, daily, counting = readers(hot, data)
    windows = [
        window(COLD[0], HOT_ONLY),  # both years, a verified day in hot missing one point, a hot-only day
        (day_bounds_ms(COLD[1])[0] + 7_200_000, day_bounds_ms(COLD[4])[1] - 3_600_000),  # partial edge days
        window(COLD[4], COLD[4]),
    ]
    for lo, hi in windows:
        for points in (POINTS, POINTS[2:4], [POINTS[-1]]):
            a = compacted.query(SITE, points, lo, hi, interval=interval)
            b = daily.query(SITE, points, lo, hi, interval=interval)
            assert a.frame.height > 0
            assert_same_answer(a.frame, b.frame, lo, hi)
            assert (a.rollup_days, a.cold_samples, a.source) == (b.rollup_days, b.cold_samples, b.source)
    assert counting.daily_rollup_gets == 0  # every whole cold day came from the yearly objects
    # Coverage: the yearly objects answered the archived days; the verified day hot holds only partly is split.
    lo, hi = windows[0]
    states = {d: "compacted" for d in COLD} | {VERIFIED_IN_HOT: "split", HOT_ONLY: "hot"}
    assert compacted.query(SITE, POINTS, lo, hi, interval=interval).coverage == states
    daily_states = {d: "cold" for d in COLD} | {VERIFIED_IN_HOT: "split", HOT_ONLY: "hot"}
    assert daily.query(SITE, POINTS, lo, hi, interval=interval).coverage == daily_states
    compacted.close()
    daily.close()


def test_day_rearchived_after_compaction_uses_its_daily_rollup(
    hot: SqliteHotStore, data: ObjectStore
) -> None:
    compacted, daily, counting = readers(hot, data)
    lo, hi = window(COLD[0], COLD[-1])
    before = compacted.query(SITE, POINTS, lo, hi, interval="1h").frame
    put_day(hot, data, COLD[2], offset=100.0)  # new raw checksum + rebuilt daily rollup, not yet compacted
    a = compacted.query(SITE, POINTS, lo, hi, interval="1h")
    b = daily.query(SITE, POINTS, lo, hi, interval="1h")
    assert a.frame.equals(b.frame)
    assert not a.frame.equals(before)  # the re-archived values are visible
    assert counting.daily_rollup_gets == 1  # only the stale day fell back
    # Once compacted again, the yearly object answers every day again.
    compact_rollups_year(ManifestStore(data), data, SITE, 2024, now_ms=NOW + 3_600_000, **SMALL)
    c = compacted.query(SITE, POINTS, lo, hi, interval="1h")
    assert c.frame.equals(b.frame) and counting.daily_rollup_gets == 1
    compacted.close()
    daily.close()


def test_missing_yearly_object_falls_back_to_daily(hot: SqliteHotStore, data: ObjectStore) -> None:
    compacted, daily, counting = readers(hot, data)
    data.delete(cold_keys.rollup_year_index_key(SITE, 2025))
    lo, hi = window(COLD[0], COLD[-1])
    a = compacted.query(SITE, POINTS, lo, hi, interval="1d")
    assert a.frame.equals(daily.query(SITE, POINTS, lo, hi, interval="1d").frame)
    assert counting.daily_rollup_gets == 3  # the 2025 days
    assert a.coverage == {d: "compacted" if d.year == 2024 else "cold" for d in COLD}
    compacted.close()
    daily.close()


def test_raw_queries_ignore_the_yearly_objects(hot: SqliteHotStore, data: ObjectStore) -> None:
    compacted, daily, _ = readers(hot, data)
    lo, hi = window(COLD[0], COLD[1])
    a = compacted.query(SITE, POINTS[:2], lo, hi)
    assert a.frame.equals(daily.query(SITE, POINTS[:2], lo, hi).frame)
    assert a.frame.select(pl.len()).item() > 0 and a.rollup_days == 0
    compacted.close()
    daily.close()
