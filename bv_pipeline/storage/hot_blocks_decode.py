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


def decode_objects(objs: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, pa.Array, np.ndarray]:
    """Decode parsed blocks: (ts, value, valid, value_text, samples per block), samples in block order."""
    nb = len(objs)
    head = np.zeros((4, nb), dtype=np.int64)  # anchor, step, width, slots
    t_parts: list[str] = []
    fast_v: list = []
    fast: list[int] = []
    fast_f32: list[bool] = []
    slow: list[int] = []
    for i, o in enumerate(objs):
        try:
            v, t = o["v"], o["t"]
            head[:, i] = (o["a"], o["s"], o["w"], len(v))
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise BlockFormatError(f"block {i} lacks a valid a/s/w/t/v: {exc!r}") from None
        if not isinstance(t, str) or len(t) != head[2, i] * len(v) or not 0 <= head[2, i] <= MAX_WIDTH:
            raise BlockFormatError(f"block {i}: t does not hold w digits per slot")
        t_parts.append(t)
        if "x" in o or "d" in o:
            slow.append(i)
        else:
            fast_v.extend(v)
            fast.append(i)
            fast_f32.append(o.get("f") == 1)
    anchor, step, width, n_slots = head
    slot_start = np.concatenate([[0], np.cumsum(n_slots)])
    total = int(slot_start[-1])
    blk = np.repeat(np.arange(nb), n_slots)
    slot = np.arange(total, dtype=np.int64) - slot_start[blk]
    try:
        digits = _LUT[np.frombuffer("".join(t_parts).encode("ascii"), np.uint8)]
    except UnicodeEncodeError:
        digits = np.array([-1])
    if np.any(digits < 0):
        raise BlockFormatError("t holds characters outside the base64url alphabet")
    t_start = np.concatenate([[0], np.cumsum(n_slots * width)])[:-1]
    wb = width[blk]
    pos = t_start[blk] + slot * wb
    codes = np.zeros(total, dtype=np.int64)
    for c in range(int(width.max(initial=0))):
        m = wb > c
        codes[m] += digits[pos[m] + c] << (6 * c)
    ts = anchor[blk] + slot * step[blk] + codes
    value = np.full(total, np.nan)
    valid = np.zeros(total, dtype=bool)
    text_idx = np.full(total, -1, dtype=np.int64)
    present = np.ones(total, dtype=bool)
    if fast:
        try:
            arr = pa.array(fast_v, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            raise BlockFormatError(f"a plain block holds a non-number: {exc}") from None
        fb = np.asarray(fast)
        fn = n_slots[fb]
        fpos = np.repeat(slot_start[fb] - np.concatenate([[0], np.cumsum(fn)])[:-1], fn)
        fpos += np.arange(int(fn.sum()))
        vals = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64)
        f32 = np.repeat(np.asarray(fast_f32, dtype=bool), fn)
        if f32.any():
            vals = np.where(f32, vals.astype(np.float32).astype(np.float64), vals)
        value[fpos] = vals
        isvalid = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        valid[fpos] = isvalid
        present[fpos] = isvalid  # null in a plain block is an empty grid slot
    texts: list[str] = []
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
                texts.append(text)  # type: ignore[arg-type]
            elif kind == -1:
                present[g] = False
            g += 1
    counts = np.bincount(blk[present], minlength=nb)
    text_col = pa.array(texts, pa.string()).take(pa.array(text_idx[present], mask=text_idx[present] < 0))
    return ts[present], value[present], valid[present], text_col, counts


def decode_block(block: str | bytes) -> tuple[np.ndarray, pa.Array, pa.Array]:
    """A block -> (ts_ms int64, value float64 with nulls, value_text string)."""
    ts, value, valid, text, _ = decode_objects([_loads(block)])
    return ts, pa.array(value, pa.float64(), mask=~valid), text


def samples_table(
    points: Sequence[str],
    counts: np.ndarray,
    ts: np.ndarray,
    value: np.ndarray,
    valid: np.ndarray,
    text: pa.Array,
) -> pa.Table:
    point_col = pa.array(list(points), pa.string()).take(pa.array(np.repeat(np.arange(len(points)), counts)))
    return pa.Table.from_arrays(
        [point_col, pa.array(ts, pa.int64()), pa.array(value, pa.float64(), mask=~valid), text],
        schema=SAMPLE_SCHEMA,
    )


def decode_blocks(blocks: Sequence[str | bytes], points: Sequence[str]) -> pa.Table:
    """Many blocks (block i holds point ``points[i]``) -> one SAMPLE_SCHEMA table, rows in input order."""
    if len(blocks) != len(points):
        raise ValueError("blocks and points lengths differ")
    ts, value, valid, text, counts = decode_objects([_loads(b) for b in blocks])
    return samples_table(points, counts, ts, value, valid, text)
