"""Decoding of hot-tier blocks (format: ``hot_blocks`` docstring and ``docs/hot-blocks.md``). Pure.

Plain blocks (numbers and nulls only, no ``x``/``d`` key) are decoded in bulk: their ``v`` lists are concatenated
and converted by one ``pa.array`` call, which also rejects anything but numbers and nulls; timestamps of all blocks
are decoded with numpy in one pass. Only text/escape/gap blocks walk their elements in Python.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import orjson
import pyarrow as pa

from bv_pipeline.storage.samples import SAMPLE_SCHEMA

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
MAX_WIDTH = 5  # base64 digits per slot code: time ranges below 64**5 ms (12.4 days) per block
_LUT = np.full(256, -1, dtype=np.int64)
_LUT[np.frombuffer(ALPHABET.encode(), np.uint8)] = np.arange(64)
KIND_NUM, KIND_TEXT, KIND_NULL = 0, 1, 2


# SAMPLE_SCHEMA with the hot tier's integer point id instead of the name.
ID_SAMPLE_SCHEMA = pa.schema([pa.field("point_id", pa.int64(), nullable=False), *list(SAMPLE_SCHEMA)[1:]])


class BlockFormatError(ValueError):
    """A block string that is not in the documented format."""


def _loads(block: str | bytes) -> dict:
    try:
        obj = orjson.loads(block)
    except orjson.JSONDecodeError as exc:
        raise BlockFormatError(f"a block is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise BlockFormatError("a block is not a JSON object")
    return obj


def _decode_element(e: object, f32: bool, d: list | None) -> tuple[int, float, str | None]:
    """(kind, value, text) of one slow-path element; kind -1 is an empty slot."""
    te = type(e)
    if e is None:
        return -1, math.nan, None
    if te is float or (te is int and d is None):
        return KIND_NUM, float(np.float32(e)) if f32 else float(e), None  # type: ignore[arg-type]
    if te is int and d is not None and 0 <= e < len(d):  # type: ignore[operator]
        return KIND_TEXT, math.nan, d[e]  # type: ignore[index]
    if te is str:
        return KIND_TEXT, math.nan, e  # type: ignore[return-value]
    if te is list and not e:
        return KIND_NULL, math.nan, None
    if te is list and len(e) == 1:  # type: ignore[arg-type]
        x = e[0]  # type: ignore[index]
        if type(x) in (int, float):
            return KIND_NUM, float(x), None
        if x == "inf" or x == "-inf":
            return KIND_NUM, float(x), None
        if type(x) is str and len(x) == 17 and x[0] == "n":
            return KIND_NUM, float(np.frombuffer(bytes.fromhex(x[1:]), ">u8").view(">f8")[0]), None
    raise BlockFormatError(f"bad block element {e!r}")


def _int_column(values: list, what: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise BlockFormatError(f"block field {what} must be integers: {exc}") from None


def _slot_positions(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(starts[i], starts[i] + lengths[i])``."""
    offsets = np.concatenate([[0], np.cumsum(lengths)])[:-1]
    return np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)


def _bulk(values: list, dtype: pa.DataType, what: str) -> pa.Array:
    try:
        return pa.array(values, dtype)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as exc:
        raise BlockFormatError(f"a {what} block holds a bad element: {str(exc)[:200]}") from None


def decode_objects(objs: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, pa.Array, np.ndarray]:
    """Decode parsed blocks: (ts, value, valid, value_text, samples per block), samples in block order.

    Three paths: plain blocks (numbers and empty-slot nulls) and dictionary blocks (indexes and empty-slot
    nulls) are converted in bulk by one ``pa.array`` call each; ``x`` blocks walk their elements in Python."""
    anchors, steps, widths, n_slots, t_parts = [], [], [], [], []
    plain_v: list = []
    plain: list[int] = []
    plain_f32: list[bool] = []
    dict_v: list = []
    dict_blocks: list[int] = []
    entries: list = []
    entry_counts: list[int] = []
    slow: list[int] = []
    for i, o in enumerate(objs):
        try:
            v = o["v"]
            t_parts.append(o["t"])
            anchors.append(o["a"])
            steps.append(o["s"])
            widths.append(o["w"])
            n_slots.append(len(v))
        except (KeyError, TypeError) as exc:
            raise BlockFormatError(f"block {i} lacks a/s/w/t/v: {exc!r}") from None
        if "x" in o:
            slow.append(i)
        elif "d" in o:
            dict_v.extend(v)
            dict_blocks.append(i)
            entries.extend(o["d"])
            entry_counts.append(len(o["d"]))
        else:
            plain_v.extend(v)
            plain.append(i)
            plain_f32.append(o.get("f") == 1)
    nb = len(objs)
    anchor, step = _int_column(anchors, "a"), _int_column(steps, "s")
    width, slots = _int_column(widths, "w"), np.asarray(n_slots, dtype=np.int64)
    try:
        t_all = "".join(t_parts).encode("ascii")
    except (TypeError, UnicodeEncodeError):
        raise BlockFormatError("t must be a base64url string") from None
    t_len = np.fromiter(map(len, t_parts), dtype=np.int64, count=nb)
    if np.any((width < 0) | (width > MAX_WIDTH) | (t_len != width * slots)):
        raise BlockFormatError("t must hold w (0-5) digits per slot")
    digits = _LUT[np.frombuffer(t_all, np.uint8)]
    if np.any(digits < 0):
        raise BlockFormatError("t holds characters outside the base64url alphabet")
    slot_start = np.concatenate([[0], np.cumsum(slots)])
    total = int(slot_start[-1])
    blk = np.repeat(np.arange(nb), slots)
    slot = np.arange(total, dtype=np.int64) - slot_start[blk]
    ts = anchor[blk] + slot * step[blk]
    wb = width[blk]
    pos = np.repeat(np.concatenate([[0], np.cumsum(t_len)])[:-1], slots) + slot * wb
    for c in range(int(width.max(initial=0))):
        m = wb > c
        ts[m] += digits[pos[m] + c] << (6 * c)
    value = np.full(total, np.nan)
    valid = np.zeros(total, dtype=bool)
    present = np.ones(total, dtype=bool)
    text_idx = np.full(total, -1, dtype=np.int64)
    texts: list = []
    if plain:
        arr = _bulk(plain_v, pa.float64(), "plain")
        fb = np.asarray(plain)
        at = _slot_positions(slot_start[fb], slots[fb])
        vals = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64)
        f32 = np.repeat(np.asarray(plain_f32, dtype=bool), slots[fb])
        if f32.any():
            vals = np.where(f32, vals.astype(np.float32).astype(np.float64), vals)
        value[at] = vals
        ok = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        valid[at] = ok
        present[at] = ok  # null in a plain block is an empty grid slot
    if dict_blocks:
        arr = _bulk(dict_v, pa.int64(), "dictionary")
        db = np.asarray(dict_blocks)
        at = _slot_positions(slot_start[db], slots[db])
        idx = np.asarray(arr.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
        size = np.repeat(np.asarray(entry_counts, dtype=np.int64), slots[db])
        ok = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        if np.any(ok & ((idx < 0) | (idx >= size))):
            raise BlockFormatError("a dictionary index is out of range")
        base = np.repeat(np.concatenate([[0], np.cumsum(entry_counts)])[:-1], slots[db])
        text_idx[at] = np.where(ok, idx + base, -1)
        present[at] = ok
        texts = entries
    for i in slow:
        o = objs[i]
        f32_mode, d = o.get("f") == 1, o.get("d")
        if d is not None and (not isinstance(d, list) or not all(type(x) is str for x in d)):
            raise BlockFormatError(f"block {i}: d is not a list of strings")
        g = int(slot_start[i])
        for e in o["v"]:
            kind, x, text = _decode_element(e, f32_mode, d)
            if kind == KIND_NUM:
                value[g], valid[g] = x, True
            elif kind == KIND_TEXT:
                text_idx[g] = len(texts)
                texts.append(text)
            elif kind == -1:
                present[g] = False
            g += 1
    counts = np.bincount(blk[present], minlength=nb)
    keep = text_idx[present]
    try:
        text_col = pa.array(texts, pa.string()).take(pa.array(keep, mask=keep < 0))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise BlockFormatError(f"d must hold strings: {exc}") from None
    return ts[present], value[present], valid[present], text_col, counts


def decode_block(block: str | bytes) -> tuple[np.ndarray, pa.Array, pa.Array]:
    """A block -> (ts_ms int64, value float64 with nulls, value_text string)."""
    ts, value, valid, text, _ = decode_objects([_loads(block)])
    return ts, pa.array(value, pa.float64(), mask=~valid), text


def samples_table(
    points: Sequence, counts: np.ndarray, ts: np.ndarray, value: np.ndarray, valid: np.ndarray, text: pa.Array
) -> pa.Table:
    """SAMPLE_SCHEMA (``points`` are names) or ID_SAMPLE_SCHEMA (integer ids) rows, ``counts[i]`` for point i."""
    by_id = len(points) > 0 and all(type(p) is int for p in points)
    schema = ID_SAMPLE_SCHEMA if by_id else SAMPLE_SCHEMA
    keys = pa.array(list(points), schema.field(0).type)
    point_col = keys.take(pa.array(np.repeat(np.arange(len(points)), counts)))
    return pa.Table.from_arrays(
        [point_col, pa.array(ts, pa.int64()), pa.array(value, pa.float64(), mask=~valid), text], schema=schema
    )


def decode_blocks(blocks: Sequence[str | bytes], points: Sequence[str]) -> pa.Table:
    """Many blocks (block i holds point ``points[i]``) -> one SAMPLE_SCHEMA table, rows in input order."""
    if len(blocks) != len(points):
        raise ValueError("blocks and points lengths differ")
    ts, value, valid, text, counts = decode_objects([_loads(b) for b in blocks])
    return samples_table([str(p) for p in points], counts, ts, value, valid, text).cast(SAMPLE_SCHEMA)


def decode_blocks_by_id(blocks: Sequence[str | bytes], point_ids: Sequence[int]) -> pa.Table:
    """``decode_blocks`` keyed by integer point ids: an ID_SAMPLE_SCHEMA table, rows in input order."""
    if len(blocks) != len(point_ids):
        raise ValueError("blocks and point_ids lengths differ")
    ts, value, valid, text, counts = decode_objects([_loads(b) for b in blocks])
    ids = [int(p) for p in point_ids]
    return samples_table(ids, counts, ts, value, valid, text).cast(ID_SAMPLE_SCHEMA)
