"""The one place the hot tier touches the block codec (``hot_blocks``, ``hot_staging``; format in
``docs/hot-blocks.md``): polars row frames (pid, ts, value, text) in, JSON payloads out, and back.

A sealed block holds one (point, hour); a staging payload several points of one hour. Both are JSON text that
``json_each`` expands in SQL. Exact: float64 bits, -0.0, NaN payloads, nulls and text round-trip.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
import pyarrow as pa

from bv_pipeline.storage.hot_blocks import encode_table_blocks_only
from bv_pipeline.storage.hot_blocks_decode import ID_SAMPLE_SCHEMA, decode_blocks_by_id
from bv_pipeline.storage.hot_staging import decode_staging_by_id, encode_staging

ROW_SCHEMA: dict[str, pl.DataType] = {
    "pid": pl.Int64(),
    "ts": pl.Int64(),
    "value": pl.Float64(),
    "text": pl.String(),
}


def empty_rows() -> pl.DataFrame:
    return pl.DataFrame(schema=ROW_SCHEMA)


def value_bits(values: pl.Series) -> np.ndarray:
    """float64 bit patterns (int64) of a value column; 0 where null. Equality on bits is exact (-0.0 != 0.0)."""
    return values.fill_null(0.0).to_numpy().astype(np.float64, copy=False).view(np.int64)


def _to_id_table(rows: pl.DataFrame) -> pa.Table:
    return pa.Table.from_arrays(
        [rows["pid"].to_arrow(), rows["ts"].to_arrow(), rows["value"].to_arrow(), rows["text"].to_arrow()],
        schema=ID_SAMPLE_SCHEMA,
    )


def _from_id_table(table: pa.Table) -> pl.DataFrame:
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    return df.rename({"point_id": "pid", "ts_ms": "ts", "value_text": "text"}).cast(ROW_SCHEMA)  # type: ignore[arg-type]


def encode_blocks(rows: pl.DataFrame) -> list[tuple[int, int, str]]:
    """(pid, hour_ms, block) per (point, hour) of rows with unique (pid, ts), sorted. No codec summaries: the
    hot tier computes its summary columns as the cold rollups do (``hot_frames.summaries``)."""
    return [(int(p), h, b) for p, h, b in encode_table_blocks_only(_to_id_table(rows))]


def decode_blocks(blocks: Sequence[str], pids: Sequence[int]) -> pl.DataFrame:
    if not blocks:
        return empty_rows()
    return _from_id_table(decode_blocks_by_id(blocks, pids))


def encode_rows(rows: pl.DataFrame) -> str:
    """One staging payload for rows of several points (unique (pid, ts))."""
    return encode_staging(_to_id_table(rows))


def decode_rows(payload: str) -> pl.DataFrame:
    return _from_id_table(decode_staging_by_id(payload))
