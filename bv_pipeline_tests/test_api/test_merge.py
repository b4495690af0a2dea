"""merge_raw returns (point, ts_ms) order whether or not the cold frames arrived in it."""

from __future__ import annotations

import polars as pl
import pytest

from bv_pipeline.api.merge import merge_raw
from bv_pipeline.api.raw_frame import RAW_SCHEMA, empty_raw


def _frame(points: list[str], ts: list[int]) -> pl.DataFrame:
    return pl.DataFrame(
        {"point": points, "ts_ms": ts, "value": [float(t) for t in ts], "value_text": [None] * len(ts)},
        schema=RAW_SCHEMA,
    )


@pytest.mark.parametrize(
    ("points", "ts"),
    [
        (["a", "a", "b", "b"], [1, 2, 1, 3]),  # already sorted
        (["b", "b", "a", "a"], [1, 3, 1, 2]),  # point runs out of name order
        (["a", "b", "a"], [1, 2, 3]),  # a point split over two runs
        (["a", "a", "a"], [3, 1, 2]),  # ts out of order within a point
        (["a"], [5]),
    ],
)
def test_cold_only_merge_is_sorted(points: list[str], ts: list[int]) -> None:
    cold = _frame(points, ts)
    merged, n_hot, n_cold = merge_raw(empty_raw(), [cold])
    assert (n_hot, n_cold) == (0, len(ts))
    assert merged.equals(cold.sort("point", "ts_ms"))
