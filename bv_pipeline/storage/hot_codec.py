"""The one place the hot tier touches the block codec: encode/decode a set of sample rows to one payload.

A payload holds rows ``(point_id, ts_ms, value, value_text)``: a sealed block holds one (point, hour), a staging
payload several points of one hour. The compact codec is ``bv_pipeline.storage.hot_blocks`` (helper branch
``hot-blocks``); until it is merged this adapter uses an exact, simple stand-in (zlib over the raw columns): float64
bits, -0.0, NaN payloads, nulls and text are kept exactly, only the size differs (about 2-3x the target
bytes per sample). Swapping the codec changes only this module.
"""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import polars as pl

ROW_SCHEMA: dict[str, pl.DataType] = {
    "pid": pl.Int64(),
    "ts": pl.Int64(),
    "value": pl.Float64(),
    "text": pl.String(),
}
_MAGIC = b"HB1"
_HEAD = struct.Struct("<3sI")
_NUMERIC, _NULL, _TEXT = 0, 1, 2


def empty_rows() -> pl.DataFrame:
    return pl.DataFrame(schema=ROW_SCHEMA)


def value_bits(values: pl.Series) -> np.ndarray:
    """float64 bit patterns (int64) of a value column; 0 where null. Equality on bits is exact (-0.0 != 0.0)."""
    return values.fill_null(0.0).to_numpy().astype(np.float64, copy=False).view(np.int64)


def encode_rows(rows: pl.DataFrame) -> bytes:
    """One payload for ``rows`` (ROW_SCHEMA, any order; decoded in the same order)."""
    n = rows.height
    kind = np.where(
        rows["text"].is_not_null().to_numpy(),
        _TEXT,
        np.where(rows["value"].is_null().to_numpy(), _NULL, _NUMERIC),
    ).astype(np.uint8)
    pid = rows["pid"].to_numpy().astype(np.int64)
    ts = rows["ts"].to_numpy().astype(np.int64)
    # Delta coding makes runs of one point at a fixed cadence compress to almost nothing.
    body = b"".join(
        [
            np.diff(pid, prepend=0).astype(np.int64).tobytes(),
            np.diff(ts, prepend=0).astype(np.int64).tobytes(),
            value_bits(rows["value"]).tobytes(),
            kind.tobytes(),
            json.dumps([t for t in rows["text"].to_list() if t is not None], ensure_ascii=False).encode(),
        ]
    )
    return _HEAD.pack(_MAGIC, n) + zlib.compress(body, 6)


def decode_rows(payload: bytes) -> pl.DataFrame:
    magic, n = _HEAD.unpack_from(payload)
    if magic != _MAGIC:
        raise ValueError("not a hot-tier block payload")
    body = zlib.decompress(payload[_HEAD.size :])
    o = 0
    pid = np.cumsum(np.frombuffer(body, np.int64, n, o))
    o += 8 * n
    ts = np.cumsum(np.frombuffer(body, np.int64, n, o))
    o += 8 * n
    bits = np.frombuffer(body, np.int64, n, o).copy()
    o += 8 * n
    kind = np.frombuffer(body, np.uint8, n, o)
    o += n
    texts_iter = iter(json.loads(body[o:].decode()))
    values = pl.Series("value", bits.view(np.float64), pl.Float64)
    values = values.scatter(np.flatnonzero(kind != _NUMERIC), None) if (kind != _NUMERIC).any() else values
    text = [next(texts_iter) if k == _TEXT else None for k in kind] if (kind == _TEXT).any() else [None] * n
    return pl.DataFrame(
        {"pid": pid, "ts": ts, "value": values, "text": pl.Series("text", text, pl.String)},
        schema=ROW_SCHEMA,
    )
