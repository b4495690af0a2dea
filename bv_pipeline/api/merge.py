"""Merging the tiers' rows into one answer: raw samples (hot wins on (point, ts_ms)) and aggregate partials."""

from __future__ import annotations

import numpy as np
import polars as pl

from bv_pipeline.api.aggregate import finalize, partials_from_raw, partials_from_rollup
from bv_pipeline.api.raw_frame import empty_raw


def _ts_overlap(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    a_lo, a_hi = a["ts_ms"].min(), a["ts_ms"].max()
    b_lo, b_hi = b["ts_ms"].min(), b["ts_ms"].max()
    return bool(a_lo <= b_hi and b_lo <= a_hi)  # type: ignore[operator]


def _sorted_by_point_ts(df: pl.DataFrame) -> bool:
    """Rows already in (point, ts_ms) order: cold reads usually return them so, and a sort of a year of one
    point (string keys) costs more than this check."""
    runs = df.select(pl.col("point").rle().struct.field("value")).to_series()
    if runs.len() > 1 and not (runs.is_sorted() and runs.n_unique() == runs.len()):
        return False
    point_run = df.select(pl.col("point").rle_id()).to_series().to_numpy()
    ts = df["ts_ms"].to_numpy()
    return bool(np.all((point_run[1:] != point_run[:-1]) | (ts[1:] > ts[:-1])))


def merge_raw(hot: pl.DataFrame, cold: list[pl.DataFrame]) -> tuple[pl.DataFrame, int, int]:
    """(samples sorted by (point, ts_ms), hot count, cold count); a cold row hot also has is dropped."""
    cold_df = pl.concat(cold) if cold else empty_raw()
    if hot.height and cold_df.height and _ts_overlap(hot, cold_df):
        # Hot wins on (point, ts_ms): drop cold rows hot also has. Only needed when the tiers' time spans
        # overlap (a verified day still in hot); a plain split window skips the join.
        cold_df = cold_df.join(hot.select("point", "ts_ms"), on=["point", "ts_ms"], how="anti")
    n_hot, n_cold = hot.height, cold_df.height
    if not n_cold:
        return hot, n_hot, 0
    if not n_hot:
        return (cold_df if _sorted_by_point_ts(cold_df) else cold_df.sort("point", "ts_ms")), 0, n_cold
    return pl.concat([hot, cold_df]).sort("point", "ts_ms"), n_hot, n_cold


def merge_agg(
    hot: pl.DataFrame, cold_raw: list[pl.DataFrame], cold_rollups: list[pl.DataFrame], interval_ms: int
) -> tuple[pl.DataFrame, int, int]:
    """Buckets of ``interval_ms`` over raw samples of both tiers plus cold hourly rollups, combined by sum and
    count so averages are exact; returns (aggregates, hot samples, cold samples)."""
    raw, n_hot, n_raw_cold = merge_raw(hot, cold_raw)
    partials = [partials_from_raw(raw, interval_ms)]
    n_roll = 0
    for r in cold_rollups:
        partials.append(partials_from_rollup(r, interval_ms))
        n_roll += int(r["count"].sum() or 0)
    return finalize(partials), n_hot, n_raw_cold + n_roll
