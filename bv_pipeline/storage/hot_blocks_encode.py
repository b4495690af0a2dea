"""Vectorised encoding of many hot-tier blocks at once (format: ``hot_blocks``, ``docs/hot-blocks.md``).

``prepare`` formats every numeric sample once (shortest float64 and float32 decimals, each verified by parsing
it back); ``encode_runs`` then lays out the timestamps of all runs (one run = one block) with numpy segment
reductions, picks each block's value mode from summed string lengths and assembles the JSON with one string
join per block. Only blocks holding text values take a per-block Python path (dictionary or inline strings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from bv_pipeline.storage.hot_blocks_decode import ALPHABET, KIND_NULL, KIND_NUM, KIND_TEXT, MAX_WIDTH

_EMPTY = "null"  # an empty grid slot; a null the source sent is "[]"
_ALPHA_BYTES = np.frombuffer(ALPHABET.encode(), np.uint8)
_POW64 = 64 ** np.arange(0, 10, dtype=np.int64)
_POW10 = 10 ** np.arange(0, 19, dtype=np.int64)
_MAX_DECIMALS = 9  # scaled-decimal mode: values with at most this many decimals


@dataclass(frozen=True)
class BlockSummary:
    """Per-block columns stored beside the block so hourly charts never need the raw samples."""

    n: int  # samples in the block (nulls, text, NaN and infinities included)
    n_numeric: int  # samples with a finite numeric value (the count for an average)
    vmin: float | None  # over the finite numeric values, as the cold tier's hourly rollups; None when none
    vmax: float | None
    vsum: float | None  # correctly rounded (math.fsum), independent of order
    first_ts: int
    last_ts: int


@dataclass
class Prepared:
    """Per-sample JSON pieces of sorted samples, formatted once for many blocks."""

    ts: np.ndarray  # int64
    kind: np.ndarray  # int8: KIND_NUM / KIND_TEXT / KIND_NULL
    value: np.ndarray  # float64, NaN where not numeric
    num64: np.ndarray  # object: shortest float64 JSON number, or an escape (esc) for non-finite values
    num32: np.ndarray  # object: shortest float32 decimal when float32-exact, else None
    len64: np.ndarray  # int64 lengths of num64 (0 if not numeric)
    len32: np.ndarray  # int64 lengths of num32 (0 if None)
    esc: np.ndarray  # bool: num64 is a non-finite escape
    text: pa.Array  # string

    def __len__(self) -> int:
        return len(self.ts)


def as_float_array(value: pa.Array | np.ndarray | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
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


def _shortest(values: np.ndarray) -> pa.Array:
    """Shortest round-trip decimals (Arrow's formatter); ``-0`` becomes ``-0.0`` (JSON -0 is the integer 0)."""
    out = pc.cast(pa.array(values), pa.string())
    return pc.if_else(pc.equal(out, "-0"), "-0.0", out)


def _numbers(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(float64 JSON forms, float32 decimals or None, escaped) of numeric values; every form verified."""
    finite = np.isfinite(x)
    with np.errstate(over="ignore", invalid="ignore"):  # float32 casts of huge values overflow: not f32-exact
        x32 = x.astype(np.float32)
        f32 = finite & (x32.astype(np.float64).view(np.uint64) == x.view(np.uint64))
    s64, s32 = _shortest(x), _shortest(x32)
    num64 = s64.to_numpy(zero_copy_only=False)
    back = pc.cast(pc.if_else(pa.array(finite), s64, "0"), pa.float64()).to_numpy()
    for j in np.flatnonzero(back.view(np.uint64) != x.view(np.uint64)).tolist():
        num64[j] = _escape_nonfinite(float(x[j])) if not finite[j] else repr(float(x[j]))
    # Decoding is float32(float64(decimal)): keep a decimal only if double rounding lands on the same float32.
    back32 = pc.cast(pc.if_else(pa.array(f32), s32, "0"), pa.float64()).to_numpy()
    ok32 = f32 & (back32.astype(np.float32) == x32)
    num32 = np.where(ok32, s32.to_numpy(zero_copy_only=False), None)
    return num64, num32, ~finite


def prepare(ts: np.ndarray, value: np.ndarray, valid: np.ndarray, text: pa.Array) -> Prepared:
    n = len(ts)
    has_text = np.asarray(text.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if np.any(valid & has_text):
        raise ValueError("a sample has both value and value_text")
    kind = np.where(valid, KIND_NUM, np.where(has_text, KIND_TEXT, KIND_NULL)).astype(np.int8)
    num64 = np.full(n, None, dtype=object)
    num32 = np.full(n, None, dtype=object)
    esc = np.zeros(n, dtype=bool)
    idx = np.flatnonzero(valid)
    if len(idx):
        num64[idx], num32[idx], esc[idx] = _numbers(value[idx])
    len64 = np.zeros(n, dtype=np.int64)
    len32 = np.zeros(n, dtype=np.int64)
    if len(idx):
        len64[idx] = pc.utf8_length(pa.array(num64[idx], pa.string())).to_numpy()
        len32[idx] = pc.utf8_length(pa.array(num32[idx], pa.string())).fill_null(0).to_numpy()
    return Prepared(ts, kind, np.where(valid, value, np.nan), num64, num32, len64, len32, esc, text)


def _digits(x: np.ndarray, powers: np.ndarray) -> np.ndarray:
    """Digits needed per value (0 for 0) in the base of ``powers``."""
    return np.searchsorted(powers, x, side="right")


def _layout(ts: np.ndarray, starts: np.ndarray, run: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per run (anchor, step, width) and per sample (slot, code) minimising each block's size."""
    lengths = np.diff(starts)
    first, last = starts[:-1], starts[1:] - 1
    rel = ts - ts[first][run]
    w = _digits(rel[last], _POW64)
    # [size, anchor, step, width] per run, [slot, code] per sample; start with offsets from the first sample.
    index = np.arange(len(ts), dtype=np.int64) - first[run]
    best = [lengths * w, ts[first].copy(), np.zeros(len(lengths), np.int64), w, index, rel]
    gaps = np.diff(ts)
    inner = np.ones(len(ts) - 1 if len(ts) else 0, dtype=bool)
    inner[last[:-1]] = False  # a gap across two runs is not a gap
    gap_run = run[1:][inner]
    order = np.lexsort((gaps[inner], gap_run))
    gap_first = np.concatenate([[0], np.cumsum(lengths - 1)])[:-1]
    median = np.zeros(len(lengths), dtype=np.int64)
    has_median = lengths >= 3  # the lower median of each run's gaps
    median[has_median] = gaps[inner][order][(gap_first + (lengths - 2) // 2)[has_median]]
    for step in ((median + 500) // 1000 * 1000, (median + 50) // 100 * 100, median):  # ties keep round steps
        usable = step > 0
        s = np.where(usable, step, 1)[run]
        slots = np.rint(rel / s).astype(np.int64)
        bad = np.bincount(gap_run, weights=np.diff(slots)[inner] <= 0, minlength=len(lengths))
        off = rel - slots * s
        omin = np.minimum.reduceat(off, first)
        codes = off - omin[run]
        cw = _digits(np.maximum.reduceat(codes, first), _POW64)
        n_slots = slots[last] + 1
        size = n_slots * cw + (n_slots - lengths) * (len(_EMPTY) + 1)
        win = usable & (bad == 0) & (lengths >= 3) & (size < best[0])
        best[0] = np.where(win, size, best[0])
        best[1] = np.where(win, ts[first] + omin, best[1])
        best[2] = np.where(win, step, best[2])
        best[3] = np.where(win, cw, best[3])
        sample_win = win[run]
        best[4] = np.where(sample_win, slots, best[4])
        best[5] = np.where(sample_win, codes, best[5])
    if np.any(best[3] > MAX_WIDTH):
        raise ValueError(f"a block spans {int((rel[last]).max())} ms: more than {64**MAX_WIDTH} ms")
    return tuple(best[1:])


def _codes_texts(slot_start: np.ndarray, n_slots: np.ndarray, w: np.ndarray, run: np.ndarray, slot, codes):
    """Each run's ``t`` string: ``w`` base64url digits per slot, little-endian; empty slots are "A"s (0)."""
    t_len = n_slots * w
    t_start = np.concatenate([[0], np.cumsum(t_len)])
    buf = np.full(int(t_start[-1]), ord("A"), dtype=np.uint8)
    wr = w[run]
    pos = t_start[:-1][run] + slot * wr
    for c in range(int(w.max(initial=0))):
        m = wr > c
        buf[pos[m] + c] = _ALPHA_BYTES[(codes[m] >> (6 * c)) & 63]
    data = buf.tobytes().decode("ascii")
    return [data[a:b] for a, b in zip(t_start[:-1].tolist(), t_start[1:].tolist(), strict=True)]


def _text_run(p: Prepared, lo: int, hi: int, elems: np.ndarray) -> tuple[str, bool]:
    """Elements of a run holding texts (dictionary or inline strings): (``d`` header part, mixed)."""
    kinds = p.kind[lo:hi]
    texts = [t for t in p.text.slice(lo, hi - lo).to_pylist() if t is not None]
    inline = [orjson.dumps(t).decode() for t in texts]
    dictionary: dict[str, int] = {}
    for t in texts:
        dictionary.setdefault(t, len(dictionary))
    nums = np.flatnonzero(kinds == KIND_NUM) + lo
    dict_cost = 6 + sum(len(orjson.dumps(t)) + 1 for t in dictionary) + 2 * len(nums)
    use_dict = dict_cost + sum(len(str(dictionary[t])) for t in texts) < sum(map(len, inline))
    at = np.flatnonzero(kinds == KIND_TEXT) + lo
    if use_dict:
        elems[at] = [str(dictionary[t]) for t in texts]
        for i in nums.tolist():
            elems[i] = p.num64[i] if p.esc[i] else "[" + p.num64[i] + "]"
        d = ',"d":' + orjson.dumps(list(dictionary)).decode()
        return d, bool(len(nums)) or bool(np.any(kinds == KIND_NULL))
    elems[at] = inline
    return "", True


def _exact_sum(values: list[float]) -> float:
    """The correctly rounded sum (+/-inf beyond float64), independent of order."""
    try:
        return math.fsum(values)
    except OverflowError:  # an intermediate partial sum overflowed: sum exactly in rationals
        total = sum(map(Fraction, values), Fraction(0))
        try:
            return float(total)
        except OverflowError:
            return math.inf if total > 0 else -math.inf


def summarize_runs(p: Prepared, starts: np.ndarray) -> list[BlockSummary]:
    """Per run ``[starts[i], starts[i+1])``: like the cold tier's hourly rollups, statistics cover the finite
    numeric values only. Separate from ``encode_runs``: staging rows and the hot tier's sealed blocks (which
    computes its summary columns as the cold rollups do) never need it."""
    starts = np.asarray(starts, dtype=np.int64)
    run = np.repeat(np.arange(len(starts) - 1), np.diff(starts))
    finite = (p.kind == KIND_NUM) & np.isfinite(p.value)
    first = starts[:-1]
    count = np.bincount(run[finite], minlength=len(first))
    lo_v = np.minimum.reduceat(np.where(finite, p.value, np.inf), first).tolist()
    hi_v = np.maximum.reduceat(np.where(finite, p.value, -np.inf), first).tolist()
    values = np.where(finite, p.value, 0.0).tolist()
    ts = p.ts.tolist()
    out = []
    for r, (a, b) in enumerate(zip(first.tolist(), starts[1:].tolist(), strict=True)):
        if count[r]:
            stats = (int(count[r]), lo_v[r], hi_v[r], _exact_sum(values[a:b]))
        else:
            stats = (0, None, None, None)
        out.append(BlockSummary(b - a, *stats, ts[a], ts[b - 1]))
    return out


def _scaled(
    p: Prepared, starts: np.ndarray, run: np.ndarray, use32: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The scaled-decimal mode per run: (divisor k, offset o, per-sample v, cost; inf where unusable).

    A value is stored as the integer ``v`` with ``(o + v) / k`` == the value (``k`` = 10**d, exact IEEE
    division of exact integers), checked bit for bit here; in float32 runs the float32 of that quotient must
    match."""
    num = p.kind == KIND_NUM
    first = starts[:-1]
    nb = len(first)
    x = np.where(num, p.value, 0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        x32 = x.astype(np.float32)

        in32 = use32[run]

        def exact(ints: np.ndarray, k: np.ndarray) -> np.ndarray:
            back = ints.astype(np.float64) / k
            same64 = back.view(np.uint64) == x.view(np.uint64)
            same32 = (back.astype(np.float32).view(np.uint32) == x32.view(np.uint32)) & (p.len32 > 0)
            return np.where(in32, same32, same64)

        need = np.full(len(x), _MAX_DECIMALS + 1, dtype=np.int64)
        for d in range(_MAX_DECIMALS, -1, -1):  # the fewest decimals that reproduce each value
            y = x * 10.0**d
            ok = num & np.isfinite(y) & (np.abs(y) < 2.0**53)
            ints = np.where(ok, np.rint(np.where(ok, y, 0.0)), 0).astype(np.int64)
            need = np.where(ok & exact(ints, np.full(len(x), 10.0**d)), d, need)
        digits = np.maximum.reduceat(np.where(num, need, -1), first)
        usable = (digits >= 0) & (digits <= _MAX_DECIMALS)
        usable &= np.bincount(run[p.kind == KIND_TEXT], minlength=nb) == 0
        k = 10.0 ** np.clip(digits, 0, _MAX_DECIMALS)
        y = x * k[run]
        fits = num & np.isfinite(y) & (np.abs(y) < 2.0**53)
        ints = np.where(fits, np.rint(np.where(fits, y, 0.0)), 0).astype(np.int64)
        bad = num & ~(fits & exact(ints, k[run]))
    usable &= np.bincount(run[bad], minlength=nb) == 0
    offset = np.minimum.reduceat(np.where(num, ints, np.iinfo(np.int64).max), first)
    offset = np.where(usable, offset, 0)
    v = ints - offset[run]
    cost = np.bincount(run, weights=np.where(num, _digits(np.maximum(v, 1), _POW10), 0), minlength=nb)
    # ',"k":10,"o":719', plus ',"f":1' in float32 runs (the plain float32 cost it competes with counts it too)
    head = (
        10 + _digits(k.astype(np.int64), _POW10) + _digits(np.abs(offset), _POW10) + (offset < 0) + 6 * use32
    )
    return k.astype(np.int64), offset, v, np.where(usable, cost + head, np.inf)


def encode_runs(
    p: Prepared,
    starts: np.ndarray,
    heads: list[str] | None = None,
    anchor_base: int = 0,
    default_layout: tuple[int, int] | None = None,
) -> list[str]:
    """Blocks for runs ``[starts[i], starts[i+1])`` of ``p`` (each one point, ts strictly increasing).

    Staging rows pass ``heads`` (each block's point reference, written first), store ``a`` relative to
    ``anchor_base`` and omit ``s``/``w`` equal to ``default_layout``."""
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.diff(starts)
    if len(lengths) == 0 or np.any(lengths <= 0):
        raise ValueError("a block needs at least one sample")
    run = np.repeat(np.arange(len(lengths)), lengths)
    steps_ok = np.diff(p.ts) > 0
    steps_ok[starts[1:-1] - 1] = True
    if not np.all(steps_ok):
        raise ValueError("block timestamps must be strictly increasing")
    anchor, step, w, slot, codes = _layout(p.ts, starts, run)
    n_slots = slot[starts[1:] - 1] + 1
    slot_start = np.concatenate([[0], np.cumsum(n_slots)])
    t_texts = _codes_texts(slot_start, n_slots, w, run, slot, codes)
    num = p.kind == KIND_NUM
    has32 = p.len32 > 0
    nb = len(lengths)
    cost64 = np.bincount(run, weights=np.where(num, p.len64, 0), minlength=nb)
    cost32 = 6 + np.bincount(
        run, weights=np.where(num, np.where(has32, p.len32, p.len64 + 2), 0), minlength=nb
    )
    use32 = cost32 < cost64
    scale, offset, ints, scaled_cost = _scaled(p, starts, run, use32)
    use_scale = scaled_cost < np.minimum(cost32, cost64)
    elems = np.where(num & use32[run] & has32, p.num32, p.num64)
    bracket = num & use32[run] & ~has32 & ~p.esc
    for i in np.flatnonzero(bracket).tolist():
        elems[i] = "[" + p.num64[i] + "]"
    scaled_samples = num & use_scale[run]
    if scaled_samples.any():
        elems[scaled_samples] = pc.cast(pa.array(ints[scaled_samples]), pa.string()).to_numpy(
            zero_copy_only=False
        )
        bracket &= ~scaled_samples
    elems[p.kind == KIND_NULL] = "[]"
    mixed = np.bincount(run[bracket | p.esc | (p.kind == KIND_NULL)], minlength=nb) > 0
    dict_heads = [""] * nb
    for r in np.flatnonzero(np.bincount(run[p.kind == KIND_TEXT], minlength=nb)).tolist():
        dict_heads[r], mixed[r] = _text_run(p, int(starts[r]), int(starts[r + 1]), elems)
        use32[r] = use32[r] and not dict_heads[r]  # a dictionary block escapes its numbers as exact float64
    slots_all = np.full(int(slot_start[-1]), _EMPTY, dtype=object)
    slots_all[slot_start[:-1][run] + slot] = elems
    slot_list = slots_all.tolist()
    blocks = []
    for r, (a, b) in enumerate(zip(slot_start[:-1].tolist(), slot_start[1:].tolist(), strict=True)):
        s, wr = int(step[r]), int(w[r])
        layout = "" if (s, wr) == default_layout else f'"s":{s},"w":{wr},'
        flags = ',"f":1' if use32[r] else ""
        if use_scale[r]:
            flags += f',"k":{int(scale[r])},"o":{int(offset[r])}'
        flags += dict_heads[r] + (',"x":1' if mixed[r] else "")
        head = heads[r] if heads else ""
        a_rel = int(anchor[r]) - anchor_base
        blocks.append(
            f'{{{head}"a":{a_rel},{layout}"t":"{t_texts[r]}"{flags},"v":[' + ",".join(slot_list[a:b]) + "]}"
        )
    return blocks


def block_layouts(p: Prepared, starts: np.ndarray) -> list[tuple[int, int]]:
    """The (step, width) the encoder picks for each run."""
    starts = np.asarray(starts, dtype=np.int64)
    run = np.repeat(np.arange(len(starts) - 1), np.diff(starts))
    _, step, w, _, _ = _layout(p.ts, starts, run)
    return list(zip(step.tolist(), w.tolist(), strict=True))
