"""The one in-memory form of time-series samples shared by every tier.

A batch of samples is a ``pyarrow.Table`` with ``SAMPLE_SCHEMA``:

- ``point``: the ACE point name (full path, case preserved).
- ``ts_ms``: sample time as UTC epoch milliseconds.
- ``value``: the value as float64 when the wire string parses as a finite or infinite number, else null.
- ``value_text``: the original wire string when it is *not* numeric (enums such as ``"occupied"``), else null.

Exactly one of ``value`` / ``value_text`` is set for a sample that had a value; both null means the source sent
null. Nothing is dropped: non-numeric strings are kept verbatim.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc

SAMPLE_SCHEMA = pa.schema(
    [
        pa.field("point", pa.string(), nullable=False),
        pa.field("ts_ms", pa.int64(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("value_text", pa.string()),
    ]
)

MS_PER_DAY = 86_400_000


def empty_samples() -> pa.Table:
    return SAMPLE_SCHEMA.empty_table()


def sort_samples(table: pa.Table) -> pa.Table:
    """Sort by (point, ts_ms), the order every tier stores and compares in."""
    if table.num_rows == 0:
        return table
    return table.sort_by([("point", "ascending"), ("ts_ms", "ascending")])


def dedupe_samples(table: pa.Table) -> tuple[pa.Table, int]:
    """Drop repeated (point, ts_ms) rows, keeping the last occurrence. Returns (table, duplicates removed)."""
    if table.num_rows == 0:
        return table, 0
    import polars as pl

    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    out = df.unique(subset=["point", "ts_ms"], keep="last", maintain_order=True)
    removed = df.height - out.height
    return out.to_arrow().cast(SAMPLE_SCHEMA), removed


def day_bounds_ms(day: dt.date) -> tuple[int, int]:
    """[start, end) of a UTC calendar day in epoch milliseconds."""
    start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)
    return start, start + MS_PER_DAY


def ms_to_date(ts_ms: int) -> dt.date:
    return dt.datetime.fromtimestamp(ts_ms / 1000, tz=dt.UTC).date()


def count_non_numeric(table: pa.Table) -> int:
    return int(pc.sum(pc.is_valid(table["value_text"])).as_py() or 0) if table.num_rows else 0


def count_nulls(table: pa.Table) -> int:
    if table.num_rows == 0:
        return 0
    both_null = pc.and_(pc.is_null(table["value"]), pc.is_null(table["value_text"]))
    return int(pc.sum(both_null).as_py() or 0)
