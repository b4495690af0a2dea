"""Exact, compact, SQL-expandable encoding of one point's samples within one hour (a hot-tier "block").

Pure: no I/O. The format is specified in ``docs/hot-blocks.md``; in short a block is one JSON object::

    {"a":1767225602800,"s":60000,"w":2,"t":"UDyAIDAAFD0DMCrEND3CAFAA","f":1,"v":[72.3,72.4,72.4,null,72.6,...]}

- ``v`` has one element per *slot*; slot ``i``'s time is ``a + i*s + code(i)`` where ``code(i)`` is the
  ``w``-digit little-endian base64url number at ``t[i*w:(i+1)*w]`` (``w`` may be 0: then code is 0). A regular
  cadence is stored as ``s`` = the step and small per-slot codes (the poll jitter); irregular data uses ``s`` = 0
  and codes = offsets from ``a``. The encoder picks whichever is shorter.
- Elements of ``v``: ``null`` is an empty grid slot (no sample at that time); a JSON number is a numeric value
  (with ``"f":1`` the shortest decimal of a float32, decoded as ``float64(float32(x))``; else the shortest float64
  repr); a JSON string is a text value; with ``"d":[...]`` (a dictionary of texts) an integer is an index into
  ``d`` instead; ``[]``: the source sent null; ``[x]`` with a number: an exact float64 outside the block's mode;
  ``["inf"]``, ``["-inf"]``, ``["n<16 hex digits>"]``: infinities and NaN bits.
- ``"x":1`` marks a block whose ``v`` holds anything besides its bulk kind (numbers; with ``d``, indexes) and empty
  slots; the decoder converts all other blocks' values in one bulk call.

``hot_blocks_sql`` turns a block column into per-sample SQL rows with ``json_each``; ``hot_staging`` packs many
points' samples into one staging row with the same block objects.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from bv_pipeline.storage.hot_blocks_decode import (
    ALPHABET,
    ID_SAMPLE_SCHEMA,
    KIND_NULL,
    KIND_NUM,
    KIND_TEXT,
    MAX_WIDTH,
    BlockFormatError,
    decode_block,
    decode_blocks,
    decode_blocks_by_id,
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
    "merge_blocks",
]

HOUR_MS = 3_600_000
_EMPTY = "null"  # an empty grid slot; a null the source sent is "[]"
_ALPHA_BYTES = np.frombuffer(ALPHABET.encode(), np.uint8)


@dataclass(frozen=True)
class BlockSummary:
    """Per-block columns stored beside the block so hourly charts never need the raw samples."""

    n: int  # samples in the block (nulls and text included)
    n_numeric: int  # samples with a numeric value
    vmin: float | None  # over numeric values, exact float64; None when there are none
    vmax: float | None
    vsum: float | None  # correctly rounded sum (math.fsum) when finite
    first_ts: int
    last_ts: int


@dataclass
class _Prepared:
    """Per-sample JSON pieces of a sample run, formatted vectorised once for many blocks."""

    ts: np.ndarray  # int64
    kind: np.ndarray  # int8: KIND_NUM / KIND_TEXT / KIND_NULL
    value: np.ndarray  # float64 (NaN where not numeric)
    num64: list[str | None]  # numeric: shortest float64 JSON number, or an escape for non-finite values
    num32: list[str | None]  # numeric and float32-exact: shortest float32 decimal; else None
    text: list[str | None]


def _as_float_array(value: pa.Array | np.ndarray | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values, validity). A numpy array's NaN means null; pass a pa.Array to keep NaN bits."""
    if isinstance(value, np.ndarray):
        arr = np.asarray(value, dtype=np.float64)
        return arr, ~np.isnan(arr)
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    value = value.cast(pa.float64())
    valid = np.asarray(value.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    return np.asarray(value.fill_null(0.0).to_numpy(zero_copy_only=False), dtype=np.float64), valid


def _escape_nonfinite(x: float) -> str:
    if x == math.inf:
        return '["inf"]'
    if x == -math.inf:
        return '["-inf"]'
    return '["n' + np.float64(x).view(np.uint64).item().to_bytes(8, "big").hex() + '"]'


def _shortest(values: np.ndarray, dtype: type) -> list[str]:
    out = pc.cast(pa.array(values.astype(dtype)), pa.string()).to_pylist()
    return ["-0.0" if s == "-0" else s for s in out]  # JSON -0 is the integer 0 for many parsers


def _prepare(ts: np.ndarray, value: np.ndarray, valid: np.ndarray, text: list[str | None]) -> _Prepared:
    n = len(ts)
    has_text = np.fromiter((t is not None for t in text), dtype=bool, count=n)
    if np.any(valid & has_text):
        raise ValueError("a sample has both value and value_text")
    kind = np.where(valid, KIND_NUM, np.where(has_text, KIND_TEXT, KIND_NULL)).astype(np.int8)
    num64: list[str | None] = [None] * n
    num32: list[str | None] = [None] * n
    idx = np.flatnonzero(valid)
    if len(idx):
        _format_numbers(value[idx], idx, num64, num32)
    return _Prepared(ts, kind, np.where(valid, value, np.nan), num64, num32, text)


def _format_numbers(x: np.ndarray, idx: np.ndarray, num64: list[str | None], num32: list[str | None]) -> None:
    """Fill the JSON forms of numeric samples at positions ``idx``; every form is verified by parsing it back."""
    finite = np.isfinite(x)
    with np.errstate(over="ignore", invalid="ignore"):  # float32 casts of huge values overflow: not f32-exact
        x32 = x.astype(np.float32)
        f32 = finite & (x32.astype(np.float64).view(np.uint64) == x.view(np.uint64))
        s64 = _shortest(x, np.float64)
        s32 = _shortest(x, np.float32)
    back = pc.cast(pa.array([s if f else "0" for s, f in zip(s64, finite, strict=True)]), pa.float64())
    ok64 = back.to_numpy().view(np.uint64) == x.view(np.uint64)
    back32 = pc.cast(pa.array([s if f else "0" for s, f in zip(s32, f32, strict=True)]), pa.float64())
    # Decoding is float32(float64(decimal)): check that double rounding lands on the same float32.
    ok32 = f32 & (back32.to_numpy().astype(np.float32) == x32)
    for j, i in enumerate(idx.tolist()):
        if not finite[j]:
            num64[i] = _escape_nonfinite(float(x[j]))
        else:
            num64[i] = s64[j] if ok64[j] else repr(float(x[j]))
            if ok32[j]:
                num32[i] = s32[j]


def _width(max_code: int) -> int:
    w = 0
    while max_code >= 64**w:
        w += 1
    return w


def _ts_layout(ts: np.ndarray) -> tuple[int, int, int, np.ndarray, np.ndarray]:
    """Choose (anchor, step, width, slot of each sample, code of each sample) minimising the encoded size."""
    n = len(ts)
    rel = ts - ts[0]
    best_w = _width(int(rel[-1]))
    best = (n * best_w, int(ts[0]), 0, best_w, np.arange(n, dtype=np.int64), rel)
    if n >= 3:
        med = int(np.median(np.diff(ts)))
        for step in {med, round(med, -2), round(med, -3)}:
            if step <= 0:
                continue
            slots = np.rint(rel / step).astype(np.int64)
            if np.any(np.diff(slots) <= 0):
                continue
            off = rel - slots * step
            omin = int(off.min())
            codes = off - omin
            w = _width(int(codes.max()))
            n_slots = int(slots[-1]) + 1
            size = n_slots * w + (n_slots - n) * (len(_EMPTY) + 1) + len(str(step))
            if size < best[0]:
                best = (size, int(ts[0]) + omin, step, w, slots, codes)
    _, anchor, step, w, slots, codes = best
    if w > MAX_WIDTH:
        raise ValueError(f"a block spans {int(rel[-1])} ms: more than {64**MAX_WIDTH} ms")
    return anchor, step, w, slots, codes


def _codes_text(codes: np.ndarray, slots: np.ndarray, n_slots: int, w: int) -> str:
    if w == 0:
        return ""
    full = np.zeros(n_slots, dtype=np.int64)
    full[slots] = codes
    digits = (full[:, None] >> (6 * np.arange(w, dtype=np.int64))[None, :]) & 63
    return _ALPHA_BYTES[digits.ravel()].tobytes().decode("ascii")


def _summary(p: _Prepared) -> BlockSummary:
    num = p.value[p.kind == KIND_NUM]
    if len(num) == 0:
        return BlockSummary(len(p.ts), 0, None, None, None, int(p.ts[0]), int(p.ts[-1]))
    with np.errstate(invalid="ignore"):  # inf - inf and NaN inputs give NaN, as they should
        total = math.fsum(num.tolist()) if np.all(np.isfinite(num)) else float(np.sum(num))
        lo, hi = float(np.min(num)), float(np.max(num))
    return BlockSummary(len(p.ts), len(num), lo, hi, total, int(p.ts[0]), int(p.ts[-1]))


def block_layout(p: _Prepared, lo: int, hi: int) -> tuple[int, int]:
    """The (step, width) the encoder picks for samples [lo, hi) of ``p``."""
    _, step, w, _, _ = _ts_layout(p.ts[lo:hi])
    return step, w


def encode_prepared(
    p: _Prepared,
    lo: int,
    hi: int,
    extra_head: str = "",
    anchor_base: int = 0,
    default_layout: tuple[int, int] | None = None,
) -> tuple[str, BlockSummary]:
    """Encode samples [lo, hi) of ``p`` (one point, strictly increasing ts) as a block JSON object.

    Staging rows put ``extra_head`` (the point reference) first, store ``a`` relative to ``anchor_base`` and omit
    ``s``/``w`` when they equal ``default_layout`` (the row's defaults)."""
    sub = _Prepared(p.ts[lo:hi], p.kind[lo:hi], p.value[lo:hi], p.num64[lo:hi], p.num32[lo:hi], p.text[lo:hi])
    if hi <= lo:
        raise ValueError("a block needs at least one sample")
    if np.any(np.diff(sub.ts) <= 0):
        raise ValueError("block timestamps must be strictly increasing")
    anchor, step, w, slots, codes = _ts_layout(sub.ts)
    n_slots = int(slots[-1]) + 1
    kinds = sub.kind.tolist()
    nums = [i for i, k in enumerate(kinds) if k == KIND_NUM]
    texts = [t for t in sub.text if t is not None]
    # Value mode: float32 decimals when shorter; a text dictionary when shorter than inline strings.
    cost64 = sum(len(sub.num64[i]) for i in nums)  # type: ignore[arg-type]
    cost32 = 6 + sum(len(sub.num32[i] or sub.num64[i]) + (2 if sub.num32[i] is None else 0) for i in nums)  # type: ignore[arg-type]
    use32 = cost32 < cost64
    inline = [orjson.dumps(t).decode() for t in texts]
    dictionary: dict[str, int] = {}
    for t in texts:
        dictionary.setdefault(t, len(dictionary))
    use_dict = False
    if texts:
        dict_cost = 6 + sum(len(orjson.dumps(t)) + 1 for t in dictionary)
        dict_cost += sum(len(str(dictionary[t])) for t in texts) + 2 * len(nums)
        use_dict = dict_cost < sum(map(len, inline))
    elements = [_EMPTY] * n_slots
    # "x" unless v holds only the block's bulk kind (numbers, or dictionary indexes) and empty-slot nulls.
    mixed = bool(nums) if use_dict else bool(texts)
    text_iter = iter(inline)
    for slot, k, i in zip(slots.tolist(), kinds, range(len(kinds)), strict=True):
        if k == KIND_NULL:
            elements[slot] = "[]"
            mixed = True
        elif k == KIND_TEXT:
            t = sub.text[i]
            elements[slot] = str(dictionary[t]) if use_dict else next(text_iter)  # type: ignore[index]
        else:
            s64: str = sub.num64[i]  # type: ignore[assignment]
            escaped = s64[0] == "["
            if use_dict:
                elements[slot] = s64 if escaped else "[" + s64 + "]"
            elif use32 and sub.num32[i] is not None:
                elements[slot] = sub.num32[i]  # type: ignore[call-overload]
            elif use32 and not escaped:
                elements[slot] = "[" + s64 + "]"
            else:
                elements[slot] = s64
            mixed = mixed or elements[slot][0] == "["
    layout = "" if (step, w) == default_layout else f'"s":{step},"w":{w},'
    head = f'{{{extra_head}"a":{anchor - anchor_base},{layout}"t":"{_codes_text(codes, slots, n_slots, w)}"'
    if use32:
        head += ',"f":1'
    if use_dict:
        head += ',"d":' + orjson.dumps(list(dictionary)).decode()
    if mixed:
        head += ',"x":1'
    return head + ',"v":[' + ",".join(elements) + "]}", _summary(sub)


def _text_list(value_text: pa.Array | pa.ChunkedArray | None, n: int) -> list[str | None]:
    if value_text is None:
        return [None] * n
    return value_text.to_pylist()


def encode_block(
    ts_ms: np.ndarray, value: pa.Array | np.ndarray, value_text: pa.Array | None = None
) -> tuple[str, BlockSummary]:
    """One point's samples (sorted, unique ts) as a block JSON string plus its summary."""
    ts = np.asarray(ts_ms, dtype=np.int64)
    vals, valid = _as_float_array(value)
    if len(vals) != len(ts):
        raise ValueError("ts_ms and value lengths differ")
    p = _prepare(ts, vals, valid, _text_list(value_text, len(ts)))
    return encode_prepared(p, 0, len(ts))


def prepare_table(samples: pa.Table) -> tuple[list, np.ndarray, _Prepared]:
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
    vals, valid = _as_float_array(table["value"])
    return (
        keys.to_pylist(),
        change,
        _prepare(ts, vals, valid, _text_list(table["value_text"], table.num_rows)),
    )


def encode_table_blocks(
    samples: pa.Table, hour_ms: int = HOUR_MS
) -> list[tuple[Any, int, str, BlockSummary]]:
    """Samples (any order, any span) -> (point, hour_start_ms, block, summary) per (point, hour), sorted.

    ``samples`` is SAMPLE_SCHEMA (point names) or ID_SAMPLE_SCHEMA (then ``point`` is the integer id)."""
    if samples.num_rows == 0:
        return []
    points, change, p = prepare_table(samples)
    hour = p.ts // hour_ms * hour_ms
    cut = np.flatnonzero(change | (hour[1:] != hour[:-1])) + 1
    bounds = [0, *cut.tolist(), len(points)]
    out = []
    for lo, hi in itertools.pairwise(bounds):
        block, summary = encode_prepared(p, lo, hi)
        out.append((points[lo], int(hour[lo]), block, summary))
    return out


def merge_blocks(
    old: str | bytes, ts_ms: np.ndarray, value: pa.Array | np.ndarray, value_text: pa.Array | None = None
) -> tuple[str, BlockSummary]:
    """Merge late samples of the same point into an existing block; a new sample wins on the same ts."""
    old_ts, old_value, old_text = decode_block(old)
    new_ts = np.asarray(ts_ms, dtype=np.int64)
    new_vals, new_valid = _as_float_array(value)
    ts = np.concatenate([old_ts, new_ts])
    vals = np.concatenate([np.asarray(old_value.fill_null(0.0).to_numpy(zero_copy_only=False)), new_vals])
    valid = np.concatenate([np.asarray(old_value.is_valid().to_numpy(zero_copy_only=False), bool), new_valid])
    texts = old_text.to_pylist() + _text_list(value_text, len(new_ts))
    order = np.argsort(ts, kind="stable")  # old before new on equal ts, so keeping the last keeps the new one
    keep = order[np.r_[ts[order][1:] != ts[order][:-1], True]]
    if len(keep) == 0:
        raise ValueError("nothing to merge")
    p = _prepare(ts[keep], vals[keep], valid[keep], [texts[i] for i in keep.tolist()])
    return encode_prepared(p, 0, len(keep))
