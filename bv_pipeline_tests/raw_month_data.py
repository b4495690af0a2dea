"""Raw days for the compacted monthly samples tests: dense points (every 5 minutes) plus sparse ones.

The dense points are the yearly-rollup test points (a meter, an enum point with ``value_text`` and null
``value``, temperatures); the sparse points hold a sample every three hours, so at test-scale group sizes
several of them share a row group while each dense point fills one.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pyarrow as pa

from bv_pipeline.storage.interfaces import HotStore, ObjectStore
from bv_pipeline.storage.samples import SAMPLE_SCHEMA
from bv_pipeline_tests.rollup_year_data import POINTS as DENSE
from bv_pipeline_tests.test_api._data import day_samples, put_cold_day

SITE = "rm_site"
SPARSE = [f"Building1.Zone.Sparse-{i:02d}" for i in range(6)]
POINTS = sorted(DENSE + SPARSE)
_SPARSE_EVERY_MS = 3 * 3_600_000


def raw_day(day: dt.date, *, offset: float = 0.0, points: list[str] | None = None) -> pl.DataFrame:
    """One day's samples (point, ts_ms, value, value_text), sorted by (point, ts_ms)."""
    points = POINTS if points is None else points
    dense = [p for p in points if p not in SPARSE]
    sparse = [p for p in points if p in SPARSE]
    frames = []
    if dense:
        frames.append(day_samples(day, dense, offset=offset))
    if sparse:
        frames.append(day_samples(day, sparse, offset=offset).filter(pl.col("ts_ms") % _SPARSE_EVERY_MS == 0))
    return pl.concat(frames).sort("point", "ts_ms")


def arrow(df: pl.DataFrame) -> pa.Table:
    return df.to_arrow().cast(SAMPLE_SCHEMA)


def archive_day(
    hot: HotStore,
    cold: ObjectStore,
    day: dt.date,
    *,
    offset: float = 0.0,
    points: list[str] | None = None,
    deleted: bool = True,
    rollup: bool = False,
    site: str = SITE,
) -> pl.DataFrame:
    """Write the day object and its verified manifest entry (as archival does). Returns the day's samples."""
    df = raw_day(day, offset=offset, points=points)
    put_cold_day(hot, cold, day, df, deleted=deleted, source="ace", site=site, rollup=rollup)
    return df
