"""Raw queries answered from the compacted monthly samples equal the day-object answers and the truth, exactly."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from bv_pipeline.api.reader import TimeseriesReader
from bv_pipeline.logic.raw_compaction import compact_samples_month, read_month_index
from bv_pipeline.resources.cold_store import LocalObjectStore, S3ObjectStore
from bv_pipeline.resources.hot_store import SqliteHotStore
from bv_pipeline.resources.manifest_store import ManifestStore
from bv_pipeline.storage import cold_keys
from bv_pipeline.storage.interfaces import ObjectStore, PointMeta
from bv_pipeline.storage.samples import day_bounds_ms
from bv_pipeline_tests.fixtures.s3 import S3Bucket
from bv_pipeline_tests.raw_month_data import DENSE, POINTS, SITE, SPARSE, archive_day, arrow, raw_day

# Across a month boundary, so two monthly objects answer one query.
COLD = [dt.date(2025, 1, 29) + dt.timedelta(days=i) for i in range(6)]  # 01-29 .. 02-03
HOT_ONLY = [dt.date(2025, 2, 4), dt.date(2025, 2, 5)]
JAN, FEB = dt.date(2025, 1, 1), dt.date(2025, 2, 1)
NOW = int(dt.datetime(2025, 3, 2, 3, 30, tzinfo=dt.UTC).timestamp() * 1000)
HOUR = 3_600_000
UNKNOWN = "No.Such.Point"


def at(day: dt.date, hour: float) -> int:
    return day_bounds_ms(day)[0] + int(hour * HOUR)


# Windows that start and end mid-day.
ALL_COLD = (at(COLD[0], 10.1), at(COLD[-1], 17))  # both months
IN_JAN = (at(COLD[1], 6), at(COLD[2], 13.5))  # two partial days of one month
SPLIT = (at(COLD[-2], 12), at(HOT_ONLY[1], 8))  # two cold days then hot days
POINT_SETS = [[DENSE[0]], sorted([SPARSE[1], DENSE[3], UNKNOWN]), POINTS, [UNKNOWN]]


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


class Data:
    def __init__(self, hot: SqliteHotStore, cold: ObjectStore) -> None:
        self.hot, self.cold = hot, cold
        self.frames: dict[dt.date, pl.DataFrame] = {}

    def truth(self, points: list[str], lo: int, hi: int) -> pl.DataFrame:
        return (
            pl.concat(list(self.frames.values()))
            .filter(pl.col("point").is_in(points) & pl.col("ts_ms").is_between(lo, hi, closed="left"))
            .sort("point", "ts_ms")
        )


@pytest.fixture
def data(hot: SqliteHotStore, cold: ObjectStore) -> Iterator[Data]:
    d = Data(hot, cold)
    for day in COLD:
        d.frames[day] = archive_day(hot, cold, day, rollup=True)
    for day in HOT_ONLY:
        d.frames[day] = raw_day(day)
        hot.upsert_samples(SITE, arrow(d.frames[day]))
    for month in (JAN, FEB):
        result = compact_samples_month(ManifestStore(cold), cold, SITE, month, now_ms=NOW, min_group_rows=200)
        assert result.status == "published"
    yield d


def readers(hot: SqliteHotStore, cold: ObjectStore) -> tuple[TimeseriesReader, TimeseriesReader]:
    compacted = TimeseriesReader(hot, cold, max_workers=4, scan_local_files=False, catalogue_ttl_s=300)
    daily = TimeseriesReader(hot, cold, max_workers=4, use_compacted_samples=False)
    return compacted, daily


def test_compacted_and_daily_paths_agree(data: Data) -> None:
    compacted, daily = readers(data.hot, data.cold)
    for lo, hi in (ALL_COLD, IN_JAN, SPLIT):
        for points in POINT_SETS:
            a = compacted.query(SITE, points, lo, hi)
            b = daily.query(SITE, points, lo, hi)
            expected = data.truth(points, lo, hi)
            assert a.frame.equals(b.frame)
            assert a.frame.equals(expected)
            assert (a.cold_samples, a.hot_samples, a.source) == (b.cold_samples, b.hot_samples, b.source)
            assert a.cold_days == b.cold_days
            if points != [UNKNOWN]:
                assert a.frame.height > 0
                assert set(a.frame["point"].unique()) == set(points) - {UNKNOWN}
            assert a.cold_objects_read < b.cold_objects_read  # two or one parts instead of a GET per day
    # Rows at the window edges: the first and last samples of the mid-day window.
    a = compacted.query(SITE, [DENSE[0]], *ALL_COLD)
    assert a.frame["ts_ms"].min() >= ALL_COLD[0] and a.frame["ts_ms"].max() < ALL_COLD[1]
    assert a.cold_objects_read == 2  # the January part and the February part
    split = compacted.query(SITE, POINTS, *SPLIT)
    assert split.source == "split" and split.hot_samples > 0 and split.cold_samples > 0
    # Coverage names the tier that answered each day: the monthly objects, or the day objects without them.
    tiers = {COLD[-2]: "compacted", COLD[-1]: "compacted", HOT_ONLY[0]: "hot", HOT_ONLY[1]: "hot"}
    assert split.coverage == tiers
    assert daily.query(SITE, POINTS, *SPLIT).coverage == {
        d: s.replace("compacted", "cold") for d, s in tiers.items()
    }
    compacted.close()
    daily.close()


def test_single_cold_day_uses_its_day_object(data: Data) -> None:
    compacted, daily = readers(data.hot, data.cold)
    lo, hi = at(COLD[2], 3), at(COLD[2], 20)
    a = compacted.query(SITE, POINTS, lo, hi)
    assert a.frame.equals(data.truth(POINTS, lo, hi)) and a.frame.height > 0
    assert a.frame.equals(daily.query(SITE, POINTS, lo, hi).frame)
    assert a.cold_objects_read == 1
    compacted.close()
    daily.close()


def test_rearchived_day_comes_from_its_day_object(data: Data) -> None:
    compacted, daily = readers(data.hot, data.cold)
    points = [DENSE[0], SPARSE[0]]
    before = compacted.query(SITE, points, *ALL_COLD).frame
    data.frames[COLD[2]] = archive_day(
        data.hot, data.cold, COLD[2], offset=100.0, rollup=True
    )  # not compacted
    a = compacted.query(SITE, points, *ALL_COLD)
    assert a.frame.equals(data.truth(points, *ALL_COLD))
    assert not a.frame.equals(before)  # the re-archived values are visible
    assert a.frame.equals(daily.query(SITE, points, *ALL_COLD).frame)
    assert a.cold_objects_read == 3  # two parts plus the stale day's object
    assert a.coverage[COLD[2]] == "cold" and a.coverage[COLD[3]] == "compacted"
    # Once compacted again, the monthly objects answer every day again.
    compact_samples_month(
        ManifestStore(data.cold), data.cold, SITE, JAN, now_ms=NOW + HOUR, min_group_rows=200
    )
    compacted.compacted_samples.forget(SITE, JAN)  # type: ignore[union-attr]
    c = compacted.query(SITE, points, *ALL_COLD)
    assert c.frame.equals(a.frame) and c.cold_objects_read == 2
    compacted.close()
    daily.close()


def test_vanished_part_falls_back_to_day_objects(data: Data) -> None:
    compacted, daily = readers(data.hot, data.cold)
    lo, hi = ALL_COLD
    first = compacted.query(SITE, [DENSE[0]], lo, hi)  # caches both indexes and part footers
    assert first.cold_objects_read == 2
    index = read_month_index(data.cold, SITE, FEB)
    assert index is not None
    for p in index.parts:  # garbage-collected under the cached index
        data.cold.delete(p.key)
    for points in ([DENSE[1]], [DENSE[0], SPARSE[2]], POINTS):
        a = compacted.query(SITE, points, lo, hi)
        assert a.frame.equals(data.truth(points, lo, hi)) and a.frame.height > 0
        assert a.frame.equals(daily.query(SITE, points, lo, hi).frame)
    # A fresh reader (no cached footer) falls back too; January alone still comes from its part.
    fresh, _ = readers(data.hot, data.cold)
    a = fresh.query(SITE, POINTS, lo, hi)
    assert a.frame.equals(data.truth(POINTS, lo, hi))
    jan = fresh.query(SITE, POINTS, at(COLD[0], 1), at(COLD[2], 23))
    assert (
        jan.frame.equals(data.truth(POINTS, at(COLD[0], 1), at(COLD[2], 23))) and jan.cold_objects_read == 1
    )
    for r in (compacted, daily, fresh):
        r.close()


@pytest.mark.parametrize("index_bytes", [b"{not json", b'{"kind": "samples_month", "days": []}'])
def test_unreadable_index_falls_back_to_day_objects(data: Data, index_bytes: bytes) -> None:
    data.cold.put(cold_keys.samples_month_index_key(SITE, FEB), index_bytes)
    compacted, _ = readers(data.hot, data.cold)
    a = compacted.query(SITE, POINTS, *ALL_COLD)
    assert a.frame.equals(data.truth(POINTS, *ALL_COLD))
    assert a.cold_objects_read == 1 + 3  # the January part, February's three days from their objects
    compacted.close()


def test_aggregated_partial_window_matches(data: Data) -> None:
    compacted, daily = readers(data.hot, data.cold)
    for lo, hi in (ALL_COLD, IN_JAN, SPLIT):
        for points in ([DENSE[2]], POINTS):
            a = compacted.query(SITE, points, lo, hi, interval="1h")
            b = daily.query(SITE, points, lo, hi, interval="1h")
            assert a.frame.height > 0
            assert a.frame.select("point", "ts_ms", "min", "max", "count").equals(
                b.frame.select("point", "ts_ms", "min", "max", "count")
            )
            # Averages of raw buckets come from Polars' parallel group-by: equal to the last bits or nearly.
            assert_frame_equal(a.frame, b.frame, check_exact=False, rel_tol=1e-12)
            assert (a.rollup_days, a.cold_samples, a.source) == (b.rollup_days, b.cold_samples, b.source)
    # The partial edge days' buckets: counts equal the raw truth's.
    truth = data.truth([DENSE[2]], *ALL_COLD).filter(pl.col("value").is_not_null())
    expected = truth.group_by((pl.col("ts_ms") // HOUR * HOUR).alias("ts_ms")).len().sort("ts_ms")
    got = compacted.query(SITE, [DENSE[2]], *ALL_COLD, interval="1h").frame
    assert got.select("ts_ms", pl.col("count").cast(pl.UInt32).alias("len")).equals(expected)
    compacted.close()
    daily.close()
