"""Aggregates are bit-identical however their inputs are ordered, chunked or read concurrently (ETags rely on it)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl

from bv_pipeline.api import payloads
from bv_pipeline.api.aggregate import PARTIAL_SCHEMA, finalize, partials_from_raw
from bv_pipeline.api.raw_frame import RAW_SCHEMA
from bv_pipeline.api.reader import TimeseriesReader
from bv_pipeline_tests.test_api import _data as D

HOUR = 3_600_000
T0 = 1_740_787_200_000  # 2025-03-01T00:00Z
# Summed in ts order these average to 70.175; with the middle two swapped, to 70.17499999999998 (the values an
# order-dependent group-by answered for one identical query under concurrency).
VALUES = [70.21, 69.64, 70.44, 70.41]


def _raw(rows: list[tuple[str, int, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "point": [r[0] for r in rows],
            "ts_ms": [r[1] for r in rows],
            "value": [r[2] for r in rows],
            "value_text": [None] * len(rows),
        },
        schema=RAW_SCHEMA,
    )


def test_the_data_is_order_sensitive_in_plain_float_arithmetic() -> None:
    swapped = [VALUES[0], VALUES[2], VALUES[1], VALUES[3]]
    assert sum(VALUES) / 4 == 70.175
    assert sum(swapped) / 4 == 70.17499999999998


def test_hour_average_does_not_depend_on_row_order_or_chunking() -> None:
    rows = [("p", T0 + i * 60_000, v) for i, v in enumerate(VALUES)]
    in_order = _raw(rows)
    swapped = _raw([rows[0], rows[2], rows[1], rows[3]])
    chunked = pl.concat([_raw(rows[:1]), _raw(rows[2:3]), _raw(rows[1:2]), _raw(rows[3:])], rechunk=False)
    answers = [
        finalize([partials_from_raw(f, HOUR)]) for f in (in_order, swapped, chunked, in_order.reverse())
    ]
    for a in answers:
        assert a["avg"].to_list() == [70.175]
        assert a["count"].to_list() == [4]
        assert (a["min"][0], a["max"][0]) == (69.64, 70.44)


def test_partials_are_bit_identical_across_orders_on_a_larger_series() -> None:
    rng = np.random.default_rng(5)
    n = 3 * 1440
    frames = [
        _raw([(p, T0 + i * 60_000, v) for i, v in enumerate(np.round(70 + rng.normal(0, 2, n), 2))])
        for p in ("a", "b", "c")
    ]
    ordered = pl.concat(frames)
    variants = [
        ordered.sample(fraction=1.0, shuffle=True, seed=3),
        ordered.reverse(),
        pl.concat([ordered.slice(i, 997) for i in range(0, ordered.height, 997)], rechunk=False),
    ]
    ref = partials_from_raw(ordered, HOUR)
    assert ref.height == 3 * 72
    for v in variants:
        got = partials_from_raw(v, HOUR)
        assert got.equals(ref)  # exact: floats compared bit for bit (no NaN here)
        assert got["sum"].to_numpy().tobytes() == ref["sum"].to_numpy().tobytes()


def test_finalize_does_not_depend_on_the_order_partials_arrive_in() -> None:
    def partial(values: list[float]) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "point": ["p"],
                "bucket_ms": [T0],
                "count": [len(values)],
                "sum": [sum(values)],
                "min": [min(values)],
                "max": [max(values)],
            },
            schema=PARTIAL_SCHEMA,
        )

    parts = [partial([v]) for v in VALUES]
    a = finalize(parts)
    b = finalize([parts[0], parts[2], parts[1], parts[3]])
    c = finalize(parts[::-1])
    assert a.equals(b) and a.equals(c)
    assert a["count"].to_list() == [4]


def test_concurrent_identical_aggregate_queries_get_one_etag(tmp_path: Path) -> None:
    ds = D.build(tmp_path)
    reader = TimeseriesReader(ds.hot, ds.cold, max_workers=4)
    lo, hi = D.day_bounds_ms(D.DAYS[0])[0], D.day_bounds_ms(D.DAYS[-1])[1]
    try:

        def etag(_: int) -> str:
            res = reader.query(D.SITE, [D.TEMP, D.DAMPER, D.METER], lo, hi, interval="1h")
            return payloads.data_etag(res, "k", payloads.build_meta(res, [], {}))

        with ThreadPoolExecutor(8) as pool:
            tags = set(pool.map(etag, range(32)))
        assert len(tags) == 1
    finally:
        reader.close()
