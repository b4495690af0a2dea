"""Decoding of hot-tier blocks (format: ``hot_blocks`` docstring and ``docs/hot-blocks.md``). Pure.

Blocks without ``x`` are decoded in bulk: the ``v`` lists of all plain blocks are concatenated and converted
by one ``pa.array`` call (which also rejects anything but numbers and nulls), those of all dictionary blocks by
another; timestamps of all blocks are decoded with numpy in one pass. Only ``x`` blocks (inline texts,
escapes, source nulls) walk their elements in Python.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import orjson
import pyarrow as pa

from bv_pipeline.storage.gc_pause import gc_paused
from bv_pipeline.storage.samples import SAMPLE_SCHEMA

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
MAX_WIDTH = 5  # base64 digits per slot code: time ranges below 64**5 ms (12.4 days) per block
_LUT = np.full(256, -1, dtype=np.int64)
_LUT[np.frombuffer(ALPHABET.encode(), np.uint8)] = np.arange(64)
KIND_NUM, KIND_TEXT, KIND_NULL = 0, 1, 2
KIND_PLAIN = 3  # decoder only: a plain JSON number, before the block's scale and float32 mode


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


def _decode_element(e: object, d: list | None) -> tuple[int, float, str | None]:
    """(kind, value, text) of one slow-path element; kind -1 is an empty slot, KIND_PLAIN a number still to be
    mapped through the block's scale and float32 mode."""
    te = type(e)
    if e is None:
        return -1, math.nan, None
    if te is float or (te is int and d is None):
        return KIND_PLAIN, float(e), None  # type: ignore[arg-type]
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
            try:
                return KIND_NUM, float(np.frombuffer(bytes.fromhex(x[1:]), ">u8").view(">f8")[0]), None
            except ValueError:
                pass
    raise BlockFormatError(f"bad block element {e!r}")


def _scale(o: dict, i: int) -> tuple[int, int]:
    """(divisor k, offset o) of a scaled-decimal block; (1, 0) for a plain one."""
    k, off = o.get("k", 1), o.get("o", 0)
    if type(k) is not int or type(off) is not int or k < 1 or abs(off) >= 2**53:
        raise BlockFormatError(f"block {i}: k must be a positive integer and o an integer")
    return k, off


def _int_column(values: list, what: str) -> np.ndarray:
    if not all(type(x) is int for x in values):
        raise BlockFormatError(f"block field {what} must be an integer")
    try:
        return np.asarray(values, dtype=np.int64)
    except OverflowError as exc:
        raise BlockFormatError(f"block field {what} is out of range: {exc}") from None


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
    plain_scale: list[tuple[int, int]] = []
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
            plain_scale.append(_scale(o, i))
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
        k, off = (np.repeat(np.asarray(c, dtype=np.int64), slots[fb]) for c in zip(*plain_scale, strict=True))
        scaled = np.repeat(np.asarray([o_k != (1, 0) for o_k in plain_scale], dtype=bool), slots[fb])
        if scaled.any():  # exact integers (< 2**53) in, one correctly rounded division out
            vals = np.where(scaled, (vals + off) / k, vals)
        f32 = np.repeat(np.asarray(plain_f32, dtype=bool), slots[fb])
        if f32.any():
            with np.errstate(over="ignore"):  # other blocks' huge values overflow float32 (dropped)
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
        k, off = _scale(o, i)
        for e in o["v"]:
            kind, x, text = _decode_element(e, d)
            if kind == KIND_PLAIN:
                x = (x + off) / k if (k, off) != (1, 0) else x
                value[g], valid[g] = float(np.float32(x)) if f32_mode else x, True
            elif kind == KIND_NUM:
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
    schema: pa.Schema,
    points: Sequence,
    counts: np.ndarray,
    ts: np.ndarray,
    value: np.ndarray,
    valid: np.ndarray,
    text: pa.Array,
) -> pa.Table:
    """A ``schema`` (SAMPLE_SCHEMA or ID_SAMPLE_SCHEMA) table with ``counts[i]`` rows for ``points[i]``."""
    keys = pa.array(list(points), schema.field(0).type)
    point_col = keys.take(pa.array(np.repeat(np.arange(len(points)), counts)))
    return pa.Table.from_arrays(
        [point_col, pa.array(ts, pa.int64()), pa.array(value, pa.float64(), mask=~valid), text], schema=schema
    )


def decode_blocks(blocks: Sequence[str | bytes], points: Sequence[str]) -> pa.Table:
    """Many blocks (block i holds point ``points[i]``) -> one SAMPLE_SCHEMA table, rows in input order."""
    if len(blocks) != len(points):
        raise ValueError("blocks and points lengths differ")
    with gc_paused():  # parsed JSON holds no cycles: collector passes over it are pure overhead
        ts, value, valid, text, counts = decode_objects([_loads(b) for b in blocks])
    return samples_table(SAMPLE_SCHEMA, [str(p) for p in points], counts, ts, value, valid, text)


def decode_blocks_by_id(blocks: Sequence[str | bytes], point_ids: Sequence[int]) -> pa.Table:
    """``decode_blocks`` keyed by integer point ids: an ID_SAMPLE_SCHEMA table, rows in input order."""
    if len(blocks) != len(point_ids):
        raise ValueError("blocks and point_ids lengths differ")
    with gc_paused():
        ts, value, valid, text, counts = decode_objects([_loads(b) for b in blocks])
    ids = [int(p) for p in point_ids]
    return samples_table(ID_SAMPLE_SCHEMA, ids, counts, ts, value, valid, text)
