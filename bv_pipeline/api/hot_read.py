"""Hot-tier read of a query: one range read per contiguous run of hot days.

For hour-aligned intervals (``1h``/``1d``) the whole hours come from the hot tier's block summary columns
(``read_hourly``: no raw samples read); only partial hours at the window's edges are read raw.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from bv_pipeline.api.aggregate import ROLLUP_INTERVALS
from bv_pipeline.api.day_plan import day_runs
from bv_pipeline.api.raw_frame import empty_raw, to_frame
from bv_pipeline.storage.interfaces import HotStore
from bv_pipeline.storage.samples import day_bounds_ms

HOUR_MS = 3_600_000


def read_hot(
    hot: HotStore,
    site: str,
    points: list[str],
    hot_days: list[dt.date],
    start_ms: int,
    end_ms: int,
    interval: str | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """(raw samples sorted by (point, ts_ms), hourly summaries or None) of ``points`` on ``hot_days`` within
    [start_ms, end_ms)."""
    frames: list[pl.DataFrame] = []
    hourly: list[pl.DataFrame] = []
    use_hourly = interval in ROLLUP_INTERVALS and hasattr(hot, "read_hourly")
    # Block stores give a Polars frame directly; any other HotStore its SAMPLE_SCHEMA table.
    read_frame = getattr(hot, "read_frame", None)
    for first, last in day_runs(hot_days):
        lo = max(start_ms, day_bounds_ms(first)[0])
        hi = min(end_ms, day_bounds_ms(last)[1])
        inner_lo, inner_hi = lo + (-lo) % HOUR_MS, hi - hi % HOUR_MS
        if use_hourly and inner_lo < inner_hi:
            hourly.append(hot.read_hourly(site, points, inner_lo, inner_hi))  # type: ignore[attr-defined]
            ranges = [(lo, inner_lo), (inner_hi, hi)]
        else:
            ranges = [(lo, hi)]
        for a, b in ranges:
            if a >= b:
                continue
            frame = (
                read_frame(site, points, a, b)
                if read_frame
                else to_frame(hot.read_samples(site, points, a, b))
            )
            if frame.height:
                frames.append(frame)
    # Each run is sorted by (point, ts); several runs (hot days around cold ones) need one global sort.
    raw = (
        empty_raw()
        if not frames
        else frames[0]
        if len(frames) == 1
        else pl.concat(frames).sort("point", "ts_ms")
    )
    return raw, (pl.concat(hourly) if hourly else None)
