"""Bucketed aggregates and chart downsampling, vectorised with Polars and numpy.

Aggregates are built from *partials* (point, bucket_ms, count, sum, min, max) so that raw samples from the hot
tier and hourly rollups from the cold tier combine exactly: averages are always sum/count over the combined
partials, never an average of averages.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import polars as pl

INTERVALS_MS: dict[str, int] = {
    "1min": 60_000,
    "5min": 300_000,
    "15min": 900_000,
    "1h": 3_600_000,
    "1d": 86_400_000,
}
# Intervals whose buckets are unions of whole UTC hours, so the cold tier's hourly rollups can answer them.
ROLLUP_INTERVALS = frozenset({"1h", "1d"})

DownsampleMethod = Literal["minmax", "lttb"]

PARTIAL_SCHEMA: dict[str, pl.DataType] = {
    "point": pl.String(),
    "bucket_ms": pl.Int64(),
    "count": pl.Int64(),
    "sum": pl.Float64(),
    "min": pl.Float64(),
    "max": pl.Float64(),
}
AGG_SCHEMA: dict[str, pl.DataType] = {
    "point": pl.String(),
    "ts_ms": pl.Int64(),
    "avg": pl.Float64(),
    "min": pl.Float64(),
    "max": pl.Float64(),
    "count": pl.Int64(),
}


def empty_partials() -> pl.DataFrame:
    return pl.DataFrame(schema=PARTIAL_SCHEMA)


def _changes(keys: np.ndarray) -> np.ndarray:
    """True where ``keys`` differs from the previous row, and at row 0."""
    new = np.empty(len(keys), dtype=bool)
    new[0] = True
    np.not_equal(keys[1:], keys[:-1], out=new[1:])
    return new


def _group_starts(point_run: np.ndarray, bucket: np.ndarray) -> np.ndarray:
    """First row of each (point, bucket) run."""
    return np.flatnonzero(_changes(point_run) | _changes(bucket))


def _in_canonical_order(point_run: np.ndarray, ts: np.ndarray, n_points: int) -> bool:
    """Each point's rows form one run, in strictly increasing ts_ms: the order sums are defined in."""
    if int(point_run[-1]) + 1 != n_points:
        return False
    same_point = point_run[1:] == point_run[:-1]
    return bool(np.all(~same_point | (ts[1:] > ts[:-1])))


def partials_from_raw(samples: pl.DataFrame, interval_ms: int) -> pl.DataFrame:
    """Per (point, bucket) count/sum/min/max of the finite numeric samples.

    Text, null, NaN and +/-inf samples are skipped, exactly as the cold tier's hourly rollups skip them, so a
    bucket computed from raw samples equals one combined from rollups.

    Deterministic: each bucket's sum adds its samples in ts_ms order (one ``np.add.reduceat`` over a
    contiguous array), so the same samples give bit-identical sums however they were chunked, ordered or read
    concurrently. Polars' parallel group-by sums in an order that depends on row order and chunking, which
    made identical queries answer 70.175 or 70.17499999999998 and broke ETag revalidation. Rows arrive sorted
    by (point, ts_ms) from the merge; anything else is sorted first.
    """
    if samples.height == 0:
        return empty_partials()
    numeric = samples.select("point", "ts_ms", "value").filter(pl.col("value").is_finite().fill_null(False))
    if numeric.height == 0:
        return empty_partials()
    point_run = numeric.select(pl.col("point").rle_id()).to_series().to_numpy()
    ts = numeric["ts_ms"].to_numpy()
    if not _in_canonical_order(point_run, ts, numeric["point"].n_unique()):
        numeric = numeric.sort("point", "ts_ms")
        point_run = numeric.select(pl.col("point").rle_id()).to_series().to_numpy()
        ts = numeric["ts_ms"].to_numpy()
    # Epoch-aligned buckets are UTC-aligned too: the epoch is a UTC midnight. numpy's % floors like Python's.
    bucket = ts - ts % interval_ms
    starts = _group_starts(point_run, bucket)
    values = np.ascontiguousarray(numeric["value"].to_numpy())
    return pl.DataFrame(
        {
            "point": numeric["point"].gather(starts),
            "bucket_ms": bucket[starts],
            "count": np.diff(np.append(starts, len(values))).astype(np.int64),
            "sum": np.add.reduceat(values, starts),
            "min": np.minimum.reduceat(values, starts),
            "max": np.maximum.reduceat(values, starts),
        },
        schema=PARTIAL_SCHEMA,
    )


def partials_from_rollup(rollup: pl.DataFrame, interval_ms: int) -> pl.DataFrame:
    """Re-bucket hourly rollup rows (point, hour_ms, count, sum, min, max) into ``interval_ms`` partials.

    Sums are added in hour order by a fixed sequence of vector additions, so the same hourly rows give
    bit-identical partials however they arrive (a day per frame from daily rollups, or a year per frame from the
    compacted yearly object). Polars' parallel group-by sums depend on how rows are chunked, which differed in
    the last bits of a daily average between the two.
    """
    if rollup.height == 0:
        return empty_partials()
    hour_ms = 3_600_000
    hours = (
        rollup.lazy()
        .filter(pl.col("count") > 0)
        .with_columns((pl.col("hour_ms") - pl.col("hour_ms") % interval_ms).alias("bucket_ms"))
    )
    if interval_ms == hour_ms:  # one hourly row per bucket: nothing to combine, one query plan
        return hours.select(list(PARTIAL_SCHEMA)).cast(PARTIAL_SCHEMA).collect()  # type: ignore[arg-type]
    rows = hours.collect()
    if rows.height == 0:
        return rows.select(list(PARTIAL_SCHEMA)).cast(PARTIAL_SCHEMA)  # type: ignore[arg-type]
    rows = rows.sort("point", "bucket_ms", "hour_ms").with_columns(
        pl.struct("point", "bucket_ms").rle_id().alias("gid")
    )
    slots = interval_ms // hour_ms
    gid = rows["gid"].to_numpy()
    grid = np.zeros((int(gid[-1]) + 1, slots))
    grid[gid, ((rows["hour_ms"] - rows["bucket_ms"]) // hour_ms).to_numpy()] = rows["sum"].to_numpy()
    total = grid[:, 0].copy()
    for j in range(1, slots):  # x + 0.0 == x, so empty hours change nothing
        total += grid[:, j]
    return (
        rows.group_by("gid", maintain_order=True)
        .agg(
            pl.col("point").first(),
            pl.col("bucket_ms").first(),
            pl.col("count").sum().cast(pl.Int64),
            pl.col("min").min(),
            pl.col("max").max(),
        )
        .with_columns(pl.Series("sum", total))
        .select(list(PARTIAL_SCHEMA))
        .cast(PARTIAL_SCHEMA)  # type: ignore[arg-type]
    )


def finalize(partials: list[pl.DataFrame]) -> pl.DataFrame:
    """Combine partials (possibly several per bucket) into avg/min/max/count rows sorted by (point, ts_ms).

    A bucket's partial sums are added in a canonical order (by value, then count), so the answer does not depend
    on the order the partials arrive in (tiers, compacted or daily objects, pool completion order).
    """
    frames = [p for p in partials if p.height]
    if not frames:
        return pl.DataFrame(schema=AGG_SCHEMA)
    rows = pl.concat(frames).sort("point", "bucket_ms", "sum", "count", nulls_last=True)
    point_run = rows.select(pl.col("point").rle_id()).to_series().to_numpy()
    bucket = rows["bucket_ms"].to_numpy()
    starts = _group_starts(point_run, bucket)
    if len(starts) == rows.height:  # one partial per bucket (the usual case): nothing to combine
        combined = rows
    else:
        sums = np.ascontiguousarray(rows["sum"].to_numpy())
        combined = pl.DataFrame(
            {
                "point": rows["point"].gather(starts),
                "bucket_ms": bucket[starts],
                "count": np.add.reduceat(rows["count"].to_numpy(), starts),
                "sum": np.add.reduceat(sums, starts),
                "min": np.minimum.reduceat(rows["min"].to_numpy(), starts),
                "max": np.maximum.reduceat(rows["max"].to_numpy(), starts),
            },
            schema=PARTIAL_SCHEMA,
        )
    return combined.select(
        "point",
        pl.col("bucket_ms").alias("ts_ms"),
        (pl.col("sum") / pl.col("count")).alias("avg"),
        "min",
        "max",
        "count",
    ).cast(AGG_SCHEMA)  # type: ignore[arg-type]


def minmax_indices(values: np.ndarray, max_points: int) -> np.ndarray:
    """Indices that keep each bucket's minimum and maximum: at most ``max_points``, sorted, extremes preserved.

    Buckets are equal runs of samples; the padded reshape makes the per-bucket argmin/argmax one numpy call.
    """
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    n_buckets = max(1, max_points // 2)
    size = math.ceil(n / n_buckets)
    rows = math.ceil(n / size)
    pad = rows * size - n
    lo = np.concatenate([values, np.full(pad, np.inf)]).reshape(rows, size)
    hi = np.concatenate([values, np.full(pad, -np.inf)]).reshape(rows, size)
    base = np.arange(rows) * size
    idx = np.concatenate([base + lo.argmin(axis=1), base + hi.argmax(axis=1)])
    return np.unique(idx)[:max_points]


def lttb_indices(ts: np.ndarray, values: np.ndarray, max_points: int) -> np.ndarray:
    """Largest-Triangle-Three-Buckets: visually faithful but a Python loop per bucket, so opt-in only."""
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    if max_points < 3:  # LTTB always keeps both ends, so it needs room for at least one bucket between them
        return minmax_indices(values, max_points)
    x = ts.astype(np.float64)
    y = values.astype(np.float64)
    out = np.empty(max_points, dtype=np.int64)
    out[0] = 0
    out[-1] = n - 1
    edges = np.linspace(1, n - 1, max_points - 1).astype(np.int64)  # max_points-2 buckets between the ends
    a = 0
    for i in range(max_points - 2):
        lo, hi = edges[i], max(edges[i + 1], edges[i] + 1)
        nxt_lo, nxt_hi = edges[i + 1], (edges[i + 2] if i + 2 < len(edges) else n)
        nxt_hi = max(nxt_hi, nxt_lo + 1)
        avg_x = x[nxt_lo:nxt_hi].mean()
        avg_y = y[nxt_lo:nxt_hi].mean()
        area = np.abs((x[a] - avg_x) * (y[lo:hi] - y[a]) - (x[a] - x[lo:hi]) * (avg_y - y[a]))
        a = lo + int(area.argmax())
        out[i + 1] = a
    return np.unique(out)


def downsample(
    frame: pl.DataFrame, value_col: str, max_points: int, method: DownsampleMethod
) -> pl.DataFrame:
    """Reduce every point's series of ``frame`` (sorted by point) to at most ``max_points`` rows, choosing rows
    by ``value_col``.

    Series with numeric values are reduced on those values (text samples are dropped from a reduced series);
    a text-only series keeps evenly spaced samples.
    """
    parts: list[pl.DataFrame] = []
    if not frame.height:
        return frame
    # Sorted by point: equal first and last names mean one series, which needs no partitioning.
    one = frame["point"][0] == frame["point"][-1]
    series_list = [frame] if one else frame.partition_by("point", maintain_order=True)
    for series in series_list:
        if series.height <= max_points:
            parts.append(series)
            continue
        numeric = series.filter(pl.col(value_col).is_not_null() & pl.col(value_col).is_not_nan())
        if numeric.height == 0:
            keep = np.unique(np.linspace(0, series.height - 1, max_points).astype(np.int64))
            parts.append(series[keep])
            continue
        if numeric.height <= max_points:
            parts.append(numeric)
            continue
        vals = numeric[value_col].to_numpy()
        if method == "lttb":
            keep = lttb_indices(numeric["ts_ms"].to_numpy(), vals, max_points)
        else:
            keep = minmax_indices(vals, max_points)
        parts.append(numeric[keep])
    if not parts:
        return frame
    return pl.concat(parts)
