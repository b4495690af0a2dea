"""TimeseriesReader over the real SQLite hot store and local object store."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import numpy as np
import polars as pl
import pytest

from bv_pipeline.api.aggregate import INTERVALS_MS, minmax_indices
from bv_pipeline.api.reader import TimeseriesReader
from bv_pipeline.api.reader_resource import TimeseriesReaderResource
from bv_pipeline.resources.cold_store import ColdStoreResource
from bv_pipeline.resources.hot_store import SqliteHotStoreResource
from bv_pipeline.storage import cold_keys
from bv_pipeline.storage.samples import day_bounds_ms
from bv_pipeline_tests.test_api import _data as D


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> D.Dataset:
    return D.build(tmp_path_factory.mktemp("reader"))


@pytest.fixture
def reader(ds: D.Dataset) -> Iterator[TimeseriesReader]:
    r = TimeseriesReader(ds.hot, ds.cold, max_workers=4)
    yield r
    r.close()


def window(first: dt.date, last: dt.date) -> tuple[int, int]:
    return day_bounds_ms(first)[0], day_bounds_ms(last)[1]


def expected_agg(raw: pl.DataFrame, interval_ms: int) -> pl.DataFrame:
    """Direct computation from raw samples: finite numeric values only, epoch-aligned buckets."""
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


def test_split_query_has_no_gap_and_no_duplicate(reader: TimeseriesReader, ds: D.Dataset) -> None:
    lo, hi = window(D.DAYS[0], D.DAYS[-1])
    res = reader.query(D.SITE, D.POINTS, lo, hi)
    assert res.source == "split"
    assert res.frame.select("point", "ts_ms").is_duplicated().sum() == 0
    assert res.frame.equals(ds.truth)
    hot_days = {D.OVERLAP, D.MISSED, *D.HOT_ONLY}
    n_hot = sum(ds.day_truth(d).filter(pl.col("point") != D.EXTRA).height for d in hot_days)
    assert res.hot_samples == n_hot
    assert res.cold_samples == ds.truth.height - n_hot
    assert res.hot_samples + res.cold_samples == res.frame.height


def test_overlapping_day_prefers_hot_and_fills_points_hot_lacks_from_cold(
    reader: TimeseriesReader, ds: D.Dataset
) -> None:
    lo, hi = window(D.OVERLAP, D.OVERLAP)
    res = reader.query(D.SITE, [D.TEMP, D.EXTRA], lo, hi)
    temp = res.frame.filter(pl.col("point") == D.TEMP)
    # The cold copy of this day is offset by +1000: every value must be the hot one.
    assert temp.height > 0 and temp["value"].max() < 500  # type: ignore[operator]
    assert temp.equals(ds.day_truth(D.OVERLAP).filter(pl.col("point") == D.TEMP))
    extra = res.frame.filter(pl.col("point") == D.EXTRA)
    assert extra.equals(ds.day_truth(D.OVERLAP).filter(pl.col("point") == D.EXTRA))
    assert res.source == "split" and res.cold_samples == extra.height and res.hot_samples == temp.height


def test_day_missed_by_archival_is_answered_from_hot(reader: TimeseriesReader, ds: D.Dataset) -> None:
    lo, hi = window(D.MISSED, D.MISSED)
    res = reader.query(D.SITE, [D.TEMP, D.METER], lo, hi)
    assert res.source == "hot" and res.cold_samples == 0
    assert res.frame.equals(ds.day_truth(D.MISSED).filter(pl.col("point").is_in([D.TEMP, D.METER])))


def test_backfilled_day_only_in_cold_is_answered(reader: TimeseriesReader, ds: D.Dataset) -> None:
    lo, hi = window(D.BACKFILLED, D.BACKFILLED)
    res = reader.query(D.SITE, [D.TEMP], lo, hi)
    assert res.source == "cold" and res.hot_samples == 0
    assert res.frame.height > 0
    assert res.frame.equals(ds.day_truth(D.BACKFILLED).filter(pl.col("point") == D.TEMP))


def test_partial_window_clips_both_tiers(reader: TimeseriesReader, ds: D.Dataset) -> None:
    # From mid D3 (cold) to mid D4 (hot): both edges fall inside days.
    lo = day_bounds_ms(D.DAYS[3])[0] + 13 * 3_600_000 + 1
    hi = day_bounds_ms(D.DAYS[4])[0] + 7 * 3_600_000 + 1
    res = reader.query(D.SITE, [D.TEMP, D.MODE], lo, hi)
    want = ds.truth.filter(
        pl.col("point").is_in([D.TEMP, D.MODE]) & (pl.col("ts_ms") >= lo) & (pl.col("ts_ms") < hi)
    )
    assert res.frame.equals(want)
    assert res.source == "split"


def test_text_samples_are_returned_raw_and_skipped_in_aggregates(reader: TimeseriesReader) -> None:
    lo, hi = window(D.DAYS[2], D.DAYS[8])
    raw = reader.query(D.SITE, [D.MODE], lo, hi)
    assert raw.frame.height > 0
    assert set(raw.frame["value_text"].unique().to_list()) == {"occupied", "unoccupied"}
    assert raw.frame["value"].null_count() == raw.frame.height
    for interval in ("15min", "1h", "1d"):
        agg = reader.query(D.SITE, [D.MODE, D.TEMP], lo, hi, interval=interval)
        assert set(agg.frame["point"].unique().to_list()) == {D.TEMP}


@pytest.mark.parametrize("interval", list(INTERVALS_MS))
def test_aggregates_match_direct_computation(reader: TimeseriesReader, ds: D.Dataset, interval: str) -> None:
    points = [D.TEMP, D.DAMPER, D.METER, D.EXTRA]
    lo, hi = window(D.DAYS[0], D.DAYS[-1])
    res = reader.query(D.SITE, points, lo, hi, interval=interval)
    want = expected_agg(ds.truth.filter(pl.col("point").is_in(points)), INTERVALS_MS[interval])
    got = res.frame
    assert got.select("point", "ts_ms", "count").equals(want.select("point", "ts_ms", "count"))
    for col in ("avg", "min", "max"):
        np.testing.assert_allclose(got[col].to_numpy(), want[col].to_numpy(), rtol=1e-12, atol=1e-9)
    if interval in ("1h", "1d"):
        # Whole cold days come from the hourly rollups, not raw samples: D0-D3 (archived), D4 (EXTRA, which
        # hot lacks that day) and D6 (backfilled).
        assert res.rollup_days == 6
    else:
        assert res.rollup_days == 0


def test_hourly_rollups_agree_with_raw_on_unaligned_window(reader: TimeseriesReader, ds: D.Dataset) -> None:
    # Edge days that are only partly covered must not use whole-day rollups.
    lo = day_bounds_ms(D.DAYS[1])[0] + 5 * 3_600_000 + 17 * 60_000
    hi = day_bounds_ms(D.DAYS[6])[0] + 20 * 3_600_000 + 5
    res = reader.query(D.SITE, [D.TEMP, D.METER], lo, hi, interval="1h")
    raw = ds.truth.filter(
        pl.col("point").is_in([D.TEMP, D.METER]) & (pl.col("ts_ms") >= lo) & (pl.col("ts_ms") < hi)
    )
    want = expected_agg(raw, INTERVALS_MS["1h"])
    assert res.frame.select("point", "ts_ms", "count").equals(want.select("point", "ts_ms", "count"))
    np.testing.assert_allclose(res.frame["avg"].to_numpy(), want["avg"].to_numpy(), rtol=1e-12)
    assert res.rollup_days == 2  # D2 and D3; D1 and D6 are partial, D4/D5 are hot


def test_minmax_downsampling_keeps_extremes_within_budget(reader: TimeseriesReader, ds: D.Dataset) -> None:
    lo, hi = window(D.DAYS[0], D.DAYS[-1])
    full = reader.query(D.SITE, [D.TEMP, D.DAMPER], lo, hi).frame
    res = reader.query(D.SITE, [D.TEMP, D.DAMPER], lo, hi, max_points=100)
    assert res.downsampled
    for point in (D.TEMP, D.DAMPER):
        s_full = full.filter(pl.col("point") == point)
        s = res.frame.filter(pl.col("point") == point)
        assert 0 < s.height <= 100
        assert s["value"].max() == s_full["value"].max()
        assert s["value"].min() == s_full["value"].min()
        assert s["ts_ms"].is_sorted()
        # Every kept row is a real sample.
        assert s.join(s_full, on=["point", "ts_ms", "value"], how="anti").height == 0


def test_lttb_downsampling(reader: TimeseriesReader) -> None:
    lo, hi = window(D.DAYS[0], D.DAYS[-1])
    full = reader.query(D.SITE, [D.TEMP], lo, hi).frame
    res = reader.query(D.SITE, [D.TEMP], lo, hi, max_points=50, downsample_method="lttb")
    assert 2 < res.frame.height <= 50
    assert res.frame["ts_ms"][0] == full["ts_ms"][0] and res.frame["ts_ms"][-1] == full["ts_ms"][-1]


def test_minmax_indices_on_random_series() -> None:
    rng = np.random.default_rng(3)
    for n, m in [(10, 20), (1000, 10), (1001, 7), (99_999, 2000), (5, 2)]:
        values = rng.normal(size=n)
        idx = minmax_indices(values, m)
        assert len(idx) == n if n <= m else len(idx) <= m
        assert np.all(np.diff(idx) > 0)
        assert values.argmax() in idx and values.argmin() in idx


def test_cold_path_uses_ranged_reads_and_caches_them(ds: D.Dataset) -> None:
    # A day big enough for several 64k-row groups: 200 points at 1-minute cadence (288k rows).
    site, day = "ranged_site", dt.date(2025, 2, 1)
    lo, hi = day_bounds_ms(day)
    ts = np.arange(lo, hi, 60_000, dtype=np.int64)
    names = [f"Bldg/VAV-{i:03d}/ZoneTemp" for i in range(200)]
    big = pl.DataFrame(
        {
            "point": np.repeat(names, len(ts)),
            "ts_ms": np.tile(ts, len(names)),
            "value": np.random.default_rng(1).normal(21, 2, len(ts) * len(names)),
            "value_text": pl.Series([None] * (len(ts) * len(names)), dtype=pl.String),
        }
    )
    size = D.put_cold_day(ds.hot, ds.cold, day, big, deleted=True, source="ace", site=site)
    reader = TimeseriesReader(ds.hot, ds.cold)
    try:
        first = reader.query(site, [names[77]], lo, hi)
        assert first.source == "cold"
        assert first.frame.equals(big.filter(pl.col("point") == names[77]))
        # Footer plus one or two row groups, not the whole object.
        assert 0 < first.cold_bytes_fetched < size / 2
        assert ds.cold.size(cold_keys.samples_key(site, day)) == size
        again = reader.query(site, [names[77]], lo, hi)
        assert again.cold_bytes_fetched == 0  # footer and row groups served from the LRU cache
        assert again.frame.equals(first.frame)
    finally:
        reader.close()


def test_unknown_and_case_folded_points_are_resolved(reader: TimeseriesReader) -> None:
    resolved, renamed, unknown = reader.resolve_points(D.SITE, [D.TEMP.upper(), "No.Such.Point", D.TEMP])
    assert resolved == [D.TEMP]
    assert renamed == {D.TEMP.upper(): D.TEMP}
    assert unknown == ["No.Such.Point"]


def test_empty_window_and_no_points(reader: TimeseriesReader) -> None:
    lo, _ = window(D.DAYS[0], D.DAYS[0])
    assert reader.query(D.SITE, [D.TEMP], lo, lo).frame.height == 0
    assert reader.query(D.SITE, [], lo, lo + 1000, interval="1h").frame.height == 0
    with pytest.raises(ValueError):
        reader.query(D.SITE, [D.TEMP], lo, lo + 1000, interval="7min")


def test_hot_reads_of_separate_day_runs_are_merged_in_order(reader: TimeseriesReader, ds: D.Dataset) -> None:
    # Hot days separated by cold ones are read as separate runs; the result must still be (point, ts) sorted.
    lo, hi = window(D.OVERLAP, D.HOT_ONLY[-1])
    frame, hourly = reader._read_hot(D.SITE, [D.TEMP, D.DAMPER], [D.OVERLAP, D.HOT_ONLY[1]], lo, hi)
    assert hourly is None  # raw reads: no hourly summaries
    want = pl.concat([ds.day_truth(d) for d in (D.OVERLAP, D.HOT_ONLY[1])]).filter(
        pl.col("point").is_in([D.TEMP, D.DAMPER])
    )
    assert frame.equals(want.sort("point", "ts_ms"))


def test_dagster_resource_builds_a_reader(ds: D.Dataset) -> None:
    resource = TimeseriesReaderResource(
        hot_store=SqliteHotStoreResource(sqlite_path=str(ds.hot.path)),
        cold_store=ColdStoreResource(local_dir=str(ds.cold.root)),
    )

    @dg.asset
    def backfilled_day_rows(reader: TimeseriesReaderResource) -> int:
        lo, hi = window(D.BACKFILLED, D.BACKFILLED)
        return reader.get_reader().query(D.SITE, [D.TEMP], lo, hi).frame.height

    result = dg.materialize([backfilled_day_rows], resources={"reader": resource})
    assert result.success
    want = ds.day_truth(D.BACKFILLED).filter(pl.col("point") == D.TEMP).height
    assert result.output_for_node("backfilled_day_rows") == want > 0
