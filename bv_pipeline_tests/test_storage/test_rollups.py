from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bv_pipeline.storage.parquet_layout import (
    KIND_ROLLUP_1H,
    ColdVerificationError,
    DayFileInfo,
    verify_object,
)
from bv_pipeline.storage.rollups import (
    MS_PER_HOUR,
    ROLLUP_SCHEMA,
    decode_rollup,
    encode_rollup_day,
    hourly_rollup,
)
from bv_pipeline.storage.samples import SAMPLE_SCHEMA, day_bounds_ms

DAY = dt.date(2025, 3, 4)
START, END = day_bounds_ms(DAY)


def mixed_samples(seed: int = 3) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = 5000
    points = rng.choice(["t/1", "t/2", "enum", "flow"], n)
    ts = rng.choice(np.arange(START, END, 7_001), n, replace=False)
    values = np.round(rng.normal(20, 3, n), 2).astype(object)
    texts: list[str | None] = [None] * n
    for i in range(n):
        if points[i] == "enum":
            values[i], texts[i] = None, rng.choice(["occ", "unocc"])
        elif i % 97 == 0:
            values[i] = None
        elif i % 89 == 0:
            values[i] = math.nan
        elif i % 83 == 0:
            values[i] = math.inf
    order = rng.permutation(n)  # unsorted on purpose
    return pa.table(
        {
            "point": pa.array(points[order].tolist()),
            "ts_ms": pa.array(ts[order], pa.int64()),
            "value": pa.array([values[i] for i in order], pa.float64()),
            "value_text": pa.array([texts[i] for i in order], pa.string()),
        },
        schema=SAMPLE_SCHEMA,
    )


def direct_rollup(
    samples: pa.Table,
) -> dict[tuple[str, int], tuple[int, int, float | None, float | None, float | None]]:
    """Plain-Python reference: (point, hour) -> (samples, count, sum, min, max) over finite values."""
    groups: dict[tuple[str, int], list] = defaultdict(list)
    for row in samples.to_pylist():
        groups[(row["point"], row["ts_ms"] // MS_PER_HOUR * MS_PER_HOUR)].append(row["value"])
    out = {}
    for k, vals in groups.items():
        finite = [v for v in vals if v is not None and math.isfinite(v)]
        out[k] = (
            len(vals),
            len(finite),
            math.fsum(finite) if finite else None,
            min(finite) if finite else None,
            max(finite) if finite else None,
        )
    return out


def test_hourly_rollup_matches_a_direct_computation() -> None:
    samples = mixed_samples()
    rollup = hourly_rollup(samples)
    assert rollup.schema == ROLLUP_SCHEMA
    rows = rollup.to_pylist()
    keys = [(r["point"], r["hour_ms"]) for r in rows]
    assert keys == sorted(keys)
    ref = direct_rollup(samples)
    assert set(keys) == set(ref)
    for r in rows:
        n, count, total, lo, hi = ref[(r["point"], r["hour_ms"])]
        assert (r["samples"], r["count"], r["min"], r["max"]) == (n, count, lo, hi)
        if count:
            assert r["sum"] == pytest.approx(total, rel=1e-12)
            assert r["avg"] == pytest.approx(total / count, rel=1e-12)
        else:
            assert r["sum"] is None and r["avg"] is None
    enum_rows = [r for r in rows if r["point"] == "enum"]
    assert enum_rows and all(r["count"] == 0 and r["samples"] > 0 for r in enum_rows)


def test_empty_rollup() -> None:
    assert hourly_rollup(SAMPLE_SCHEMA.empty_table()).schema == ROLLUP_SCHEMA


def test_rollup_file_round_trip_and_verify() -> None:
    rollup = hourly_rollup(mixed_samples())
    data, info = encode_rollup_day("demo", DAY, rollup, source="hot")
    assert info.kind == KIND_ROLLUP_1H and info.rows == rollup.num_rows and info.point_count == 4
    back = decode_rollup(data)
    assert back.to_pylist() == rollup.to_pylist()
    md = pq.read_metadata(pa.BufferReader(data))
    assert md.row_group(0).column(0).compression == "ZSTD"
    assert md.metadata[b"bv.kind"] == b"rollup_1h"
    verify_object(data, info)
    with pytest.raises(ColdVerificationError, match="checksum"):
        verify_object(data, DayFileInfo(**{**info.__dict__, "checksum": "blake2b:00"}))


def test_rollup_rejects_hours_outside_the_day_and_duplicates() -> None:
    rollup = hourly_rollup(mixed_samples())
    with pytest.raises(ValueError, match="inside"):
        encode_rollup_day("demo", DAY + dt.timedelta(days=1), rollup)
    with pytest.raises(ValueError, match="duplicate"):
        encode_rollup_day("demo", DAY, pa.concat_tables([rollup, rollup.slice(0, 1)]))
