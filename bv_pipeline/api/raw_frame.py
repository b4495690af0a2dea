"""The raw-sample frame every read path returns: (point, ts_ms, value, value_text) as Polars, in one schema."""

from __future__ import annotations

import polars as pl
import pyarrow as pa

RAW_SCHEMA: dict[str, pl.DataType] = {
    "point": pl.String(),
    "ts_ms": pl.Int64(),
    "value": pl.Float64(),
    "value_text": pl.String(),
}


def to_frame(table: pa.Table) -> pl.DataFrame:
    """An Arrow table of samples (either tier's layout) as a RAW_SCHEMA frame."""
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    df = df.select(list(RAW_SCHEMA))
    return df if df.schema == RAW_SCHEMA else df.cast(RAW_SCHEMA)  # type: ignore[arg-type]


def empty_raw() -> pl.DataFrame:
    return pl.DataFrame(schema=RAW_SCHEMA)
