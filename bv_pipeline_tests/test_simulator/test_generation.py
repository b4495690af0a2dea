"""Sample generation: determinism, timing, missing samples, value shapes per kind."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from bv_pipeline.simulator import AceSimulator, SimulatorConfig
from bv_pipeline.simulator.generator import BUCKET_MS, SiteModel
from bv_pipeline.storage.samples import SAMPLE_SCHEMA, sort_samples
from bv_pipeline_tests.fixtures.ace import ACE_TEST_DAY_START_MS, ACE_TEST_NOW_MS, fixed_clock

from .helpers import day_ms

DAY = 86_400_000


def _sim(**kw: object) -> AceSimulator:
    config = SimulatorConfig(**{"points": 60, **kw})  # type: ignore[arg-type]
    return AceSimulator(config, clock=fixed_clock(ACE_TEST_NOW_MS))


def _frame(table: pa.Table) -> pl.DataFrame:
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    return df


def test_truth_schema_order_and_determinism() -> None:
    sim = _sim()
    t1 = sim.truth("demo", day_ms(0), day_ms(60))
    assert t1.schema == SAMPLE_SCHEMA
    assert t1.equals(sort_samples(t1))
    assert t1.equals(_sim().truth("demo", day_ms(0), day_ms(60)))
    # Exactly one of value / value_text is set.
    df = _frame(t1)
    assert (df["value"].is_null() ^ df["value_text"].is_null()).all()


def test_overlapping_windows_agree_and_any_day_regenerates() -> None:
    sim = _sim()
    whole = _frame(sim.truth("demo", day_ms(0), day_ms(90)))
    left = _frame(sim.truth("demo", day_ms(0), day_ms(47.5)))
    right = _frame(sim.truth("demo", day_ms(31), day_ms(90)))
    overlap = whole.filter(pl.col("ts_ms").is_between(day_ms(31), day_ms(47.5), closed="left")).sort(
        "point", "ts_ms"
    )
    assert left.filter(pl.col("ts_ms") >= day_ms(31)).sort("point", "ts_ms").equals(overlap)
    assert right.filter(pl.col("ts_ms") < day_ms(47.5)).sort("point", "ts_ms").equals(overlap)
    union = pl.concat([left, right]).unique(maintain_order=True).sort("point", "ts_ms")
    assert union.equals(whole.sort("point", "ts_ms"))
    # A window years in the past regenerates identically too (nothing depends on "now" except visibility).
    old = ACE_TEST_DAY_START_MS - 800 * DAY
    assert sim.truth("demo", old, old + 3_600_000).equals(_sim().truth("demo", old, old + 3_600_000))


def test_different_seeds_and_sites_differ() -> None:
    a = _sim(seed=1).truth("demo", day_ms(0), day_ms(30))
    b = _sim(seed=2).truth("demo", day_ms(0), day_ms(30))
    assert not a.equals(b)
    two = _sim(sites=("demo", "annex"))
    assert not two.truth("demo", day_ms(0), day_ms(30))["ts_ms"].equals(
        two.truth("annex", day_ms(0), day_ms(30))["ts_ms"]
    )


def test_sample_times_follow_cadence_phase_and_jitter() -> None:
    sim = _sim()
    df = _frame(sim.truth("demo", day_ms(0), day_ms(24 * 60)))
    phase = {p.name: p.phase_ms for p in sim.points("demo")}
    df = df.with_columns(
        offset=pl.col("ts_ms") % 60_000,
        phase=pl.col("point").replace_strict(phase, return_dtype=pl.Int64),
    )
    # Sample k lies at k*60 s + phase + jitter, |jitter| <= 200 ms (offsets are taken modulo the minute).
    jitter = ((df["offset"] - df["phase"] + 30_000) % 60_000) - 30_000
    assert jitter.abs().max() <= 200
    assert jitter.n_unique() > 300  # ms resolution, not a handful of values
    assert (df["ts_ms"] % 1000 != 0).any()
    assert df.group_by("point").agg(ok=(pl.col("ts_ms").diff().drop_nulls() > 59_000).all())["ok"].all()
    # About 1% of the 60 x 1440 slots are missing.
    missing = 1 - df.height / (60 * 1440)
    assert 0.006 < missing < 0.014


def test_missing_fraction_is_configurable() -> None:
    # Slot k lands in [k*60 s - 0.2 s, k*60 s + 5.2 s], so [10 s, 120 min + 10 s) holds exactly 120 slots.
    lo, hi = day_ms(10 / 60), day_ms(120 + 10 / 60)
    full = _sim(missing_fraction=0.0).truth("demo", lo, hi)
    assert full.num_rows == 60 * 120
    sparse = _sim(missing_fraction=0.5).truth("demo", lo, hi)
    assert 0.4 < 1 - sparse.num_rows / (60 * 120) < 0.6


def test_values_by_kind() -> None:
    sim = _sim(points=300)
    df = _frame(sim.truth("demo", day_ms(0), day_ms(24 * 60)))
    kinds = {p.name: p.kind for p in sim.points("demo")}
    labels = {p.name: set(p.labels) for p in sim.points("demo")}
    df = df.with_columns(kind=pl.col("point").replace_strict(kinds))
    by = {k: df.filter(pl.col("kind") == k) for k in kinds.values()}
    assert by["enum"]["value"].is_null().all()
    for row in by["enum"].unique("point").iter_rows(named=True):
        assert row["value_text"] in labels[row["point"]]
    assert by["enum"].group_by("point").agg(n=pl.col("value_text").n_unique())["n"].max() >= 2
    numeric = df.filter(pl.col("kind") != "enum")
    assert numeric["value_text"].is_null().all() and numeric["value"].is_not_null().all()
    assert set(by["binary"]["value"].unique()) == {0.0, 1.0}
    pos = by["position"]["value"]
    assert pos.min() >= 0 and pos.max() <= 100
    temps = by["temperature"].group_by("point").agg(lo=pl.col("value").min(), hi=pl.col("value").max())
    assert ((temps["hi"] - temps["lo"]) > 1.0).all()  # a diurnal cycle, not a constant
    # Setpoints change rarely: a handful of steps per day, not per sample.
    changes = (
        by["setpoint"].sort("point", "ts_ms").group_by("point").agg(n=(pl.col("value").diff() != 0).sum())
    )
    assert changes["n"].max() <= 6
    # Meters are monotonic (strictly, at a 60 s cadence and 0.01 kWh resolution).
    meters = (
        by["meter"]
        .sort("point", "ts_ms")
        .group_by("point")
        .agg(ok=(pl.col("value").diff().drop_nulls() > 0).all())
    )
    assert meters.height >= 1 and meters["ok"].all()
    # Some points look like float32 registers (long shortest reprs), most are short decimals.
    reprs = numeric["value"].cast(pl.String)
    assert (reprs.str.len_chars() >= 15).any()
    assert (reprs.str.len_chars() <= 7).mean() > 0.5  # type: ignore[operator]


def test_meter_is_monotonic_across_days_and_missing_samples() -> None:
    sim = _sim(points=60, missing_fraction=0.3)
    meter = next(p.name for p in sim.points("demo") if p.kind == "meter")
    start = ACE_TEST_DAY_START_MS - 40 * DAY
    t = _frame(sim.truth("demo", start, start + 3 * DAY)).filter(pl.col("point") == meter)
    assert t.height > 2000
    assert (t["value"].diff().drop_nulls() > 0).all()


def test_chunked_generation_matches_bucketed_generation() -> None:
    sim = _sim()
    model: SiteModel = sim._models["demo"]
    start = day_ms(0)
    whole = model.window(start, start + 4 * BUCKET_MS, max_cells=100)  # tiny chunks: one point at a time
    buckets = [model.bucket(start + i * BUCKET_MS) for i in range(4)]
    a = model.to_table(whole)
    b = sort_samples(pa.concat_tables([model.to_table(x) for x in buckets]))
    assert a.equals(b)
    assert np.array_equal(np.sort(whole.ts), np.sort(np.concatenate([x.ts for x in buckets])))
