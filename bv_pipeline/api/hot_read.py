"""Hot-tier read of a query: one range scan per contiguous run of hot days."""

from __future__ import annotations

import datetime as dt

import polars as pl

from bv_pipeline.api.day_plan import day_runs
from bv_pipeline.api.raw_frame import empty_raw, to_frame
from bv_pipeline.storage.interfaces import HotStore
from bv_pipeline.storage.samples import day_bounds_ms


def read_hot(
    hot: HotStore, site: str, points: list[str], hot_days: list[dt.date], start_ms: int, end_ms: int
) -> pl.DataFrame:
    """Samples of ``points`` on ``hot_days`` within [start_ms, end_ms), sorted by (point, ts_ms)."""
    frames: list[pl.DataFrame] = []
    for first, last in day_runs(hot_days):
        lo = max(start_ms, day_bounds_ms(first)[0])
        hi = min(end_ms, day_bounds_ms(last)[1])
        table = hot.read_samples(site, points, lo, hi)
        if table.num_rows:
            frames.append(to_frame(table))
    if not frames:
        return empty_raw()
    # Each run is sorted by (point, ts); several runs (hot days around cold ones) need one global sort.
    return frames[0] if len(frames) == 1 else pl.concat(frames).sort("point", "ts_ms")
