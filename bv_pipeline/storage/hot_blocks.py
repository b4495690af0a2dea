"""Exact, compact, SQL-expandable encoding of one point's samples within one hour (a hot-tier "block").

Pure: no I/O. The format is specified in ``docs/hot-blocks.md``; in short a block is one JSON object::

    {"a":1767225602800,"s":60000,"w":2,"t":"UDyAIDAAFD0DMCrEND3C...","f":1,"v":[72.3,72.4,72.4,null,72.6,...]}

- ``v`` has one element per *slot*; slot ``i``'s time is ``a + i*s + code(i)`` where ``code(i)`` is the
  ``w``-digit little-endian base64url number at ``t[i*w:(i+1)*w]`` (``w`` may be 0: then code is 0). A regular
  cadence is stored as ``s`` = the step and small per-slot codes (the poll jitter); irregular data uses
  ``s`` = 0 and codes = offsets from ``a``. The encoder picks whichever is shorter.
- Elements of ``v``: ``null`` is an empty grid slot (no sample at that time); a JSON number ``x`` is a numeric
  value ``y`` = ``x``, or ``(o + x) / k`` in a scaled-decimal block (``"k"``: a power of ten, ``"o"``: an
  integer offset), which is ``float64(float32(y))`` with ``"f":1`` (float32 registers: ``1.61`` stands for
  ``1.6100000143051147``) and ``y`` otherwise; a JSON string is a text value; with ``"d":[...]`` (a dictionary
  of texts) an integer is an index into ``d`` instead; ``[]``: the source sent null; ``[x]`` with a number: an
  exact float64 outside the block's mode; ``["inf"]``, ``["-inf"]``, ``["n<16 hex digits>"]``: infinities and
  NaN bits.
- ``"x":1`` marks a block whose ``v`` holds anything besides its bulk kind (numbers; with ``d``, indexes) and
  empty slots; the decoder converts all other blocks' values in one bulk call.

This module is the API; ``hot_blocks_encode`` (vectorised encoder, ``BlockSummary``) and ``hot_blocks_decode``
do the work, ``hot_blocks_sql`` turns a block column into per-sample SQL rows with ``json_each`` and
``hot_staging`` packs many points' samples into one staging row with the same block objects.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bv_pipeline.storage.hot_blocks_decode import (
    ALPHABET,
    ID_SAMPLE_SCHEMA,
    MAX_WIDTH,
    BlockFormatError,
    decode_block,
    decode_blocks,
    decode_blocks_by_id,
)
from bv_pipeline.storage.hot_blocks_encode import (
    BlockSummary,
    Prepared,
    as_float_array,
    encode_runs,
    prepare,
    summarize_runs,
)
from bv_pipeline.storage.samples import SAMPLE_SCHEMA

__all__ = [
    "ALPHABET",
    "HOUR_MS",
    "ID_SAMPLE_SCHEMA",
    "MAX_WIDTH",
    "BlockFormatError",
    "BlockSummary",
    "decode_block",
    "decode_blocks",
    "decode_blocks_by_id",
    "encode_block",
    "encode_table_blocks",
    "encode_table_blocks_only",
    "merge_blocks",
]

HOUR_MS = 3_600_000


def _text_array(value_text: pa.Array | pa.ChunkedArray | None, n: int) -> pa.Array:
    if value_text is None:
        return pa.nulls(n, pa.string())
    if isinstance(value_text, pa.ChunkedArray):
        value_text = value_text.combine_chunks()
    if len(value_text) != n:
        raise ValueError("value_text length differs from ts_ms")
    return value_text.cast(pa.string())


def _one_block(
    ts: np.ndarray, vals: np.ndarray, valid: np.ndarray, text: pa.Array
) -> tuple[str, BlockSummary]:
    if len(ts) == 0:
        raise ValueError("a block needs at least one sample")
    p, starts = prepare(ts, vals, valid, text), np.array([0, len(ts)])
    return encode_runs(p, starts)[0], summarize_runs(p, starts)[0]


def encode_block(
    ts_ms: np.ndarray, value: pa.Array | np.ndarray, value_text: pa.Array | None = None
) -> tuple[str, BlockSummary]:
    """One point's samples (sorted, unique ts) as a block JSON string plus its summary."""
    ts = np.asarray(ts_ms, dtype=np.int64)
    vals, valid = as_float_array(value)
    if len(vals) != len(ts):
        raise ValueError("ts_ms and value lengths differ")
    return _one_block(ts, vals, valid, _text_array(value_text, len(ts)))


def prepare_table(samples: pa.Table) -> tuple[pa.Array, np.ndarray, Prepared]:
    """Sort samples by (point, ts) and format them: (point keys, "point changes after row i", prepared).

    ``samples`` is SAMPLE_SCHEMA or ID_SAMPLE_SCHEMA (an integer ``point_id`` instead of the name). Rejects
    repeated (point, ts)."""
    schema = ID_SAMPLE_SCHEMA if "point_id" in samples.column_names else SAMPLE_SCHEMA
    key = schema.names[0]
    table = samples.select(schema.names).cast(schema).sort_by([(key, "ascending"), ("ts_ms", "ascending")])
    keys = table[key].combine_chunks()
    change = np.asarray(pc.not_equal(keys[1:], keys[:-1]).to_numpy(zero_copy_only=False), dtype=bool)
    ts = table["ts_ms"].to_numpy()
    same = ~change & (ts[1:] == ts[:-1])
    if np.any(same):
        raise ValueError(f"{int(same.sum())} repeated (point, ts_ms) sample(s)")
    vals, valid = as_float_array(table["value"])
    prepared = prepare(ts, vals, valid, _text_array(table["value_text"], table.num_rows))
    return keys, change, prepared


def encode_table_blocks(
    samples: pa.Table, hour_ms: int = HOUR_MS
) -> list[tuple[Any, int, str, BlockSummary]]:
    """Samples (any order, any span) -> (point, hour_start_ms, block, summary) per (point, hour), sorted.

    ``samples`` is SAMPLE_SCHEMA (point names) or ID_SAMPLE_SCHEMA (then ``point`` is the integer id)."""
    if samples.num_rows == 0:
        return []
    keys, hours, blocks, p, starts = _table_runs(samples, hour_ms)
    return list(zip(keys, hours, blocks, summarize_runs(p, starts), strict=True))


def encode_table_blocks_only(samples: pa.Table, hour_ms: int = HOUR_MS) -> list[tuple[Any, int, str]]:
    """``encode_table_blocks`` without the summaries, for callers that keep their own (the hot tier)."""
    if samples.num_rows == 0:
        return []
    keys, hours, blocks, _, _ = _table_runs(samples, hour_ms)
    return list(zip(keys, hours, blocks, strict=True))


def _table_runs(
    samples: pa.Table, hour_ms: int
) -> tuple[list[Any], list[int], list[str], Prepared, np.ndarray]:
    """(point per block, hour start per block, blocks, prepared samples, run starts) of a non-empty table."""
    points, change, p = prepare_table(samples)
    hour = p.ts // hour_ms * hour_ms
    starts = np.concatenate([[0], np.flatnonzero(change | (hour[1:] != hour[:-1])) + 1, [len(points)]])
    firsts = starts[:-1]
    return points.take(pa.array(firsts)).to_pylist(), hour[firsts].tolist(), encode_runs(p, starts), p, starts


def merge_blocks(
    old: str | bytes, ts_ms: np.ndarray, value: pa.Array | np.ndarray, value_text: pa.Array | None = None
) -> tuple[str, BlockSummary]:
    """Merge late samples of the same point into an existing block; a new sample wins on the same ts."""
    old_ts, old_value, old_text = decode_block(old)
    new_ts = np.asarray(ts_ms, dtype=np.int64)
    new_vals, new_valid = as_float_array(value)
    old_vals, old_valid = as_float_array(old_value)
    ts = np.concatenate([old_ts, new_ts])
    vals = np.concatenate([old_vals, new_vals])
    valid = np.concatenate([old_valid, new_valid])
    texts = pa.concat_arrays([old_text, _text_array(value_text, len(new_ts))])
    order = np.argsort(ts, kind="stable")  # old before new on equal ts, so keeping the last keeps the new one
    keep = order[np.r_[ts[order][1:] != ts[order][:-1], True]]
    return _one_block(ts[keep], vals[keep], valid[keep], texts.take(pa.array(keep)))
