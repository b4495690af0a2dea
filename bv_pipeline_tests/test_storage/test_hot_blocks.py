"""Hot-tier block codec: bit-exact round trips (hypothesis + targeted cases), SQL expansion in sqlite3, staging."""

from __future__ import annotations

import math
import random
import sqlite3
import struct
from fractions import Fraction
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bv_pipeline.simulator import AceSimulator, SimulatorConfig
from bv_pipeline.storage.hot_blocks import (
    ID_SAMPLE_SCHEMA,
    BlockFormatError,
    BlockSummary,
    decode_block,
    decode_blocks,
    decode_blocks_by_id,
    encode_block,
    encode_table_blocks,
    merge_blocks,
)
from bv_pipeline.storage.hot_blocks_sql import block_select_sql
from bv_pipeline.storage.hot_staging import (
    decode_staging,
    decode_staging_by_id,
    encode_staging,
    staging_points,
)
from bv_pipeline.storage.samples import SAMPLE_SCHEMA

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
F32_161 = float(np.float32(1.61))  # 1.6100000143051147, as ACE sends it


def _bits(x: float) -> int:
    return struct.unpack("<q", struct.pack("<d", x))[0]


def _from_bits(b: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", b))[0]


# A sample value: ("num", float) / ("text", str) / ("null", None).
_floats = st.one_of(
    st.floats(allow_nan=False, width=64),
    st.floats(allow_nan=False, width=32).map(float),  # float32 values widened, as ACE sends them
    st.integers(0, 2**64 - 1).map(_from_bits),  # any bit pattern: NaN payloads, subnormals, -0.0, inf
    st.sampled_from([0.0, -0.0, math.inf, -math.inf, 5e-324, F32_161, 0.1, 72.3, 1e300, 123456.78]),
    st.integers(-1000, 1000).map(lambda i: i / 10),
)
_values = st.one_of(
    _floats.map(lambda x: ("num", x)),
    st.text(max_size=12).map(lambda t: ("text", t)),
    st.sampled_from(["occupied", "unoccupied", "", 'a "q",b', "nan", "1.5", "null", "é☃\u2028"]).map(
        lambda t: ("text", t)
    ),
    st.just(("null", None)),
)


@st.composite
def _timestamps(draw: st.DrawFn) -> list[int]:
    """Sorted unique epoch ms within one hour: regular cadence with jitter and gaps, or irregular."""
    n = draw(st.integers(1, 70))
    if draw(st.booleans()):
        step = draw(st.sampled_from([1000, 5000, 60_000, 59_999, 300_000 // 6]))
        jitter = draw(st.sampled_from([0, 1, 200, 2000]))
        keep = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        offs = draw(st.lists(st.integers(-jitter, jitter), min_size=n, max_size=n))
        ts = sorted({T0 + 5_000 + i * step + o for i, (k, o) in enumerate(zip(keep, offs, strict=True)) if k})
        ts = [t for t in ts if T0 <= t < T0 + 3_600_000]
        return ts or [T0]
    return sorted(draw(st.sets(st.integers(T0, T0 + 3_599_999), min_size=1, max_size=n)))


@st.composite
def _blocks(draw: st.DrawFn) -> tuple[np.ndarray, list[tuple[str, object]]]:
    ts = draw(_timestamps())
    mode = draw(st.sampled_from(["mixed", "f32", "text", "num"]))
    if mode == "f32":
        vals = st.floats(allow_nan=False, width=32).map(lambda x: ("num", float(x)))
    elif mode == "text":
        vals = st.sampled_from(["occupied", "unoccupied", "x"]).map(lambda t: ("text", t))
    elif mode == "num":
        vals = st.integers(-5000, 5000).map(lambda i: ("num", i / 100))
    else:
        vals = _values
    items = draw(st.lists(vals, min_size=len(ts), max_size=len(ts)))
    return np.asarray(ts, dtype=np.int64), items


def _arrays(items: list[tuple[str, object]]) -> tuple[pa.Array, pa.Array]:
    value = pa.array([x if k == "num" else None for k, x in items], pa.float64())
    text = pa.array([x if k == "text" else None for k, x in items], pa.string())
    return value, text


def _assert_same(value: pa.Array, text: pa.Array, items: list[tuple[str, object]]) -> None:
    assert len(value) == len(text) == len(items)
    for v, t, (k, x) in zip(value.to_pylist(), text.to_pylist(), items, strict=True):
        if k == "num":
            assert v is not None and t is None and _bits(v) == _bits(x), (v, x)  # type: ignore[arg-type]
        elif k == "text":
            assert v is None and t == x
        else:
            assert v is None and t is None


def _expected_summary(ts: np.ndarray, items: list[tuple[str, object]]) -> BlockSummary:
    """As the cold tier's hourly rollups: statistics over the finite numeric values only."""
    nums = [x for k, x in items if k == "num" and math.isfinite(x)]  # type: ignore[arg-type]
    if not nums:
        return BlockSummary(len(items), 0, None, None, None, int(ts[0]), int(ts[-1]))
    exact = sum(map(Fraction, nums), Fraction(0))  # type: ignore[arg-type]
    try:
        total = float(exact)
    except OverflowError:
        total = math.inf if exact > 0 else -math.inf
    return BlockSummary(len(items), len(nums), min(nums), max(nums), total, int(ts[0]), int(ts[-1]))  # type: ignore[arg-type, type-var]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_blocks())
def test_block_round_trip_is_bit_exact(block: tuple[np.ndarray, list[tuple[str, object]]]) -> None:
    ts, items = block
    value, text = _arrays(items)
    encoded, summary = encode_block(ts, value, text)
    orjson.loads(encoded)  # valid JSON for any parser, not just ours
    got_ts, got_value, got_text = decode_block(encoded)
    assert got_ts.dtype == np.int64 and got_ts.tolist() == ts.tolist()
    _assert_same(got_value, got_text, items)
    expected = _expected_summary(ts, items)
    assert (summary.n, summary.n_numeric, summary.first_ts, summary.last_ts) == (
        expected.n,
        expected.n_numeric,
        expected.first_ts,
        expected.last_ts,
    )
    for got, want in (
        (summary.vmin, expected.vmin),
        (summary.vmax, expected.vmax),
        (summary.vsum, expected.vsum),
    ):
        assert (got is None and want is None) or (math.isnan(got) and math.isnan(want)) or got == want  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_blocks(), min_size=1, max_size=6))
def test_decode_blocks_concatenates_in_input_order(blocks: list) -> None:
    encoded = [encode_block(ts, *_arrays(items))[0] for ts, items in blocks]
    points = [f"p{i % 3}" for i in range(len(blocks))]
    table = decode_blocks(encoded, points)
    assert table.schema == SAMPLE_SCHEMA
    assert table["point"].to_pylist() == [p for p, (ts, _) in zip(points, blocks, strict=True) for _ in ts]
    assert table["ts_ms"].to_pylist() == [int(t) for ts, _ in blocks for t in ts]
    _assert_same(
        table["value"].combine_chunks(),
        table["value_text"].combine_chunks(),
        [x for _, i in blocks for x in i],
    )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_blocks(), min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_table_encoding_of_many_blocks_is_exact(blocks: list, rnd: random.Random) -> None:
    """The vectorised multi-block path: blocks of several points and hours in one shuffled table."""
    rows = []
    for b, (ts, items) in enumerate(blocks):
        point, hour = f"p{b % 3}", b // 3  # block b's samples land in hour (b // 3) of point p(b % 3)
        rows += [(point, int(t) + hour * 3_600_000, k, x) for t, (k, x) in zip(ts, items, strict=True)]
    rnd.shuffle(rows)
    value, text = _arrays([(k, x) for _, _, k, x in rows])
    table = pa.Table.from_arrays(
        [pa.array([r[0] for r in rows]), pa.array([r[1] for r in rows], pa.int64()), value, text],
        schema=SAMPLE_SCHEMA,
    )
    out = encode_table_blocks(table)
    assert len(out) == len(blocks)
    decoded = decode_blocks([b for _, _, b, _ in out], [p for p, *_ in out])
    rows.sort(key=lambda r: (r[0], r[1]))
    assert decoded["point"].to_pylist() == [r[0] for r in rows]
    assert decoded["ts_ms"].to_pylist() == [r[1] for r in rows]
    _assert_same(
        decoded["value"].combine_chunks(),
        decoded["value_text"].combine_chunks(),
        [(k, x) for *_, k, x in rows],
    )
    for point, hour, _, summary in out:
        mine = [r for r in rows if r[0] == point and hour <= r[1] < hour + 3_600_000]
        ts = np.array([r[1] for r in mine])
        want = _expected_summary(ts, [(k, x) for *_, k, x in mine])
        assert (summary.n, summary.n_numeric, summary.first_ts, summary.last_ts) == (
            want.n,
            want.n_numeric,
            want.first_ts,
            want.last_ts,
        )
        for got, exp in ((summary.vmin, want.vmin), (summary.vmax, want.vmax), (summary.vsum, want.vsum)):
            assert (got is None and exp is None) or (math.isnan(got) and math.isnan(exp)) or got == exp  # type: ignore[arg-type]


def _sql_rows(rows: list[tuple[str, str]], sql_from_point: str = "h.point") -> list[tuple]:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE h (point TEXT, block TEXT)")
    conn.executemany("INSERT INTO h VALUES (?, ?)", rows)
    return conn.execute(
        block_select_sql("h", sql_from_point, "h.block") + " ORDER BY h.rowid, e.key"
    ).fetchall()


def _assert_sql_matches(
    sql_rows: list[tuple], ts: np.ndarray, items: list[tuple[str, object]], f32: bool
) -> None:
    assert [r[1] for r in sql_rows] == ts.tolist()
    for (_, _, v, t), (k, x) in zip(sql_rows, items, strict=True):
        if k == "num" and not math.isnan(x):  # type: ignore[arg-type]
            assert t is None and isinstance(v, float)
            with np.errstate(over="ignore"):
                f32_exact = _bits(float(np.float32(x))) == _bits(x)  # type: ignore[arg-type]
            if f32 and f32_exact:
                assert np.float32(v) == np.float32(x)  # the shortest float32 decimal, e.g. 1.61
            else:
                assert v == x  # exact float64 (-0.0 == 0.0 in SQL, bits checked by the decoder tests)
        elif k == "text":
            assert v is None and t == x.split("\x00")[0]  # type: ignore[union-attr]  # SQLite text stops at NUL
        else:
            assert v is None and t is None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_blocks())
def test_sql_expansion_matches_decoder(block: tuple[np.ndarray, list[tuple[str, object]]]) -> None:
    ts, items = block
    encoded, _ = encode_block(ts, *_arrays(items))
    rows = _sql_rows([("pt", encoded)])
    assert {r[0] for r in rows} == {"pt"}
    _assert_sql_matches(rows, ts, items, orjson.loads(encoded).get("f") == 1)


def test_targeted_values_round_trip_and_show_in_sql() -> None:
    items: list[tuple[str, object]] = [
        ("num", F32_161),
        ("num", -0.0),
        ("num", math.inf),
        ("num", -math.inf),
        ("num", 5e-324),  # subnormal
        ("num", 0.1),  # not float32-exact
        ("num", float(np.float32(1e-40))),  # float32 subnormal
        ("text", ""),
        ("text", 'say "hi", then\\leave\n'),
        ("text", "日本語 🚀"),
        ("null", None),
        ("num", _from_bits(0x7FF8_0000_0000_0001)),  # a NaN payload survives the decoder
    ]
    ts = np.array([T0 + 60_000 * i + (i * 37) % 101 for i in range(len(items))], dtype=np.int64)
    encoded, summary = encode_block(ts, *_arrays(items))
    _, value, text = decode_block(encoded)
    _assert_same(value, text, items)
    assert summary.n == 12 and summary.n_numeric == 5  # finite ones: not inf, -inf, NaN
    rows = _sql_rows([("p", encoded)])
    _assert_sql_matches(rows, ts, [*items[:-1], ("null", None)], orjson.loads(encoded).get("f") == 1)
    assert rows[-1][2] is None  # NaN shows as NULL in SQL (SQLite has no NaN)


def test_timestamps_before_1970_and_far_apart() -> None:
    ts = np.array([-86_400_123, -5_000, -1, 0, 7, 64**5 - 86_400_124], dtype=np.int64)  # the widest span
    encoded, summary = encode_block(ts, np.arange(6, dtype=np.float64))
    assert decode_block(encoded)[0].tolist() == ts.tolist()
    assert [r[1] for r in _sql_rows([("p", encoded)])] == ts.tolist()
    assert (summary.first_ts, summary.last_ts) == (int(ts[0]), int(ts[-1]))


def test_summary_sums_exactly_even_past_float64_range() -> None:
    ts = np.arange(3, dtype=np.int64) * 60_000 + T0
    assert encode_block(ts, np.array([1.7e308, 1.7e308, -1.7e308]))[1].vsum == 1.7e308  # fsum alone overflows
    assert encode_block(ts[:2], np.array([1.7e308, 1.7e308]))[1].vsum == math.inf
    summary = encode_block(ts, np.array([0.1, 0.2, 0.3]))[1]
    assert summary.vsum == 0.6 and sum([0.1, 0.2, 0.3]) != 0.6  # correctly rounded, not left-to-right


def test_float32_block_stores_short_decimals_and_sql_shows_them() -> None:
    values = [float(np.float32(x)) for x in (1.61, 72.3, 0.1, 45.25)]
    ts = np.arange(4, dtype=np.int64) * 60_000 + T0
    encoded, _ = encode_block(ts, np.asarray(values))
    assert '"f":1' in encoded and '"v":[1.61,72.3,0.1,45.25]' in encoded
    assert decode_block(encoded)[1].to_pylist() == values
    assert [r[2] for r in _sql_rows([("p", encoded)])] == [1.61, 72.3, 0.1, 45.25]


def test_scaled_decimals_store_small_integers_and_sql_divides_exactly() -> None:
    readings = [5121551.42, 5121553.59, 5121555.75, 5121557.92, 5121560.08]
    ts = np.arange(5, dtype=np.int64) * 60_000 + T0
    encoded, summary = encode_block(ts, np.asarray(readings))
    assert '"k":100,"o":512155142' in encoded and '"v":[0,217,433,650,866]' in encoded
    assert decode_block(encoded)[1].to_pylist() == readings
    assert [r[2] for r in _sql_rows([("p", encoded)])] == readings
    assert summary.vmin == readings[0] and summary.vmax == readings[-1]
    temps = [float(np.float32(x)) for x in (72.3, 72.4, 71.9, 72.0, 72.6)] * 4  # float32 registers
    ts = np.arange(20, dtype=np.int64) * 60_000 + T0
    encoded, _ = encode_block(ts, np.asarray(temps))
    assert '"f":1,"k":10,"o":719' in encoded and '"v":[4,5,0,1,7,4,5,0,1,7,' in encoded
    assert decode_block(encoded)[1].to_pylist() == temps


def test_regular_cadence_with_jitter_and_a_gap_uses_the_grid() -> None:
    jitter = [0, 150, -200, 37, 199, -5] * 5
    ts = np.array([T0 + 3_000 + 60_000 * i + j for i, j in enumerate(jitter)], dtype=np.int64)
    ts = np.delete(ts, 2)  # a missing sample becomes an empty slot
    encoded, summary = encode_block(ts, np.arange(29, dtype=np.float64))
    obj = orjson.loads(encoded)
    assert obj["s"] == 60_000 and obj["w"] == 2 and obj["v"].count(None) == 1 and "x" not in obj
    assert decode_block(encoded)[0].tolist() == ts.tolist()
    assert [r[1] for r in _sql_rows([("p", encoded)])] == ts.tolist()
    assert (summary.n, summary.vsum, summary.first_ts, summary.last_ts) == (
        29,
        406.0,
        int(ts[0]),
        int(ts[-1]),
    )


def test_text_dictionary_block() -> None:
    labels = ["occupied"] * 30 + ["unoccupied"] * 30
    ts = np.arange(60, dtype=np.int64) * 60_000 + T0
    encoded, summary = encode_block(ts, pa.nulls(60, pa.float64()), pa.array(labels))
    assert '"d":["occupied","unoccupied"]' in encoded
    assert decode_block(encoded)[2].to_pylist() == labels
    assert [r[3] for r in _sql_rows([("p", encoded)])] == labels
    assert summary == BlockSummary(60, 0, None, None, None, int(ts[0]), int(ts[-1]))
    # Mostly labels plus a number and a source null: still a dictionary, flagged "x" for the element walk.
    items: list[tuple[str, object]] = [("text", x) for x in labels[:57]] + [
        ("num", 2.5),
        ("null", None),
        ("num", -0.0),
    ]
    encoded, _ = encode_block(ts, *_arrays(items))
    assert '"d":["occupied","unoccupied"]' in encoded and '"x":1' in encoded
    _assert_same(*decode_block(encoded)[1:], items)
    _assert_sql_matches(_sql_rows([("p", encoded)]), ts, items, f32=False)


@pytest.mark.parametrize(
    ("ts", "value", "text", "message"),
    [
        ([T0, T0], [1.0, 2.0], None, "strictly increasing"),
        ([T0 + 1, T0], [1.0, 2.0], None, "strictly increasing"),
        ([T0], [1.0], ["x"], "both value and value_text"),
        ([T0, T0 + 64**5], [1.0, 2.0], None, "spans"),
        ([], [], None, "at least one sample"),
    ],
)
def test_encode_rejects_bad_input(
    ts: list[int], value: list[float], text: list[str] | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        encode_block(
            np.asarray(ts, dtype=np.int64),
            pa.array(value, pa.float64()),
            None if text is None else pa.array(text, pa.string()),
        )


@pytest.mark.parametrize(
    "block",
    [
        "not json",
        "[1]",
        '{"a":0,"s":0,"w":1,"v":[1]}',
        '{"a":0,"s":0,"w":1,"t":"AB","v":[1]}',
        '{"a":0,"s":0,"w":1,"t":"*","v":[1]}',
        '{"a":0,"s":0,"w":1,"t":"A","v":["x"]}',
        '{"a":0,"s":0,"w":1,"t":"A","x":1,"v":[[1,2]]}',
        '{"a":0,"s":0,"w":1,"t":"A","x":1,"v":[true]}',
        '{"a":0,"s":0,"w":1,"t":"A","d":["a"],"v":[1]}',
        '{"a":0,"s":0,"w":1,"t":"A","d":["a"],"v":[-1]}',
        '{"a":0,"s":0,"w":1,"t":"A","x":1,"v":[["nzz00000000000000"]]}',
        '{"a":0,"s":0,"w":1,"t":"A","k":0,"o":1,"v":[1]}',
        '{"a":"0","s":0,"w":1,"t":"A","v":[1]}',
    ],
)
def test_decode_rejects_malformed_blocks(block: str) -> None:
    with pytest.raises(BlockFormatError):
        decode_block(block)


def _random_table(rng: np.random.Generator, n_points: int, hours: int) -> pa.Table:
    rows = []
    for p in range(n_points):
        for m in range(hours * 60):
            if rng.random() < 0.02:
                continue
            ts = T0 + 1_000 + m * 60_000 + p * 37 + int(rng.integers(-200, 201))
            kind = p % 4
            if kind == 3:
                rows.append((f"pt/{p}", ts, None, ["on", "off"][m // 7 % 2]))
            elif kind == 2:
                rows.append((f"pt/{p}", ts, float(np.float32(rng.normal(20, 2))), None))
            else:
                rows.append((f"pt/{p}", ts, round(float(rng.normal(100, 10)), kind), None))
    rng.shuffle(rows)  # type: ignore[arg-type]
    cols = list(zip(*rows, strict=True))
    return pa.Table.from_arrays([pa.array(c) for c in cols], schema=SAMPLE_SCHEMA)


def test_encode_table_blocks_splits_by_point_and_hour_and_round_trips() -> None:
    table = _random_table(np.random.default_rng(7), 8, 3)
    out = encode_table_blocks(table)
    assert len(out) == 8 * 3
    assert all(hour % 3_600_000 == 0 for _, hour, _, _ in out)
    assert sum(s.n for *_, s in out) == table.num_rows
    decoded = decode_blocks([b for _, _, b, _ in out], [p for p, *_ in out])
    expected = table.sort_by([("point", "ascending"), ("ts_ms", "ascending")])
    assert decoded.equals(expected)
    for point, hour, _, summary in out:
        assert point.startswith("pt/") and hour <= summary.first_ts <= summary.last_ts < hour + 3_600_000
    with pytest.raises(ValueError, match="repeated"):
        encode_table_blocks(pa.concat_tables([table.slice(0, 3), table.slice(1, 1)]))


def test_merge_blocks_new_sample_wins_and_late_ones_are_inserted() -> None:
    ts = np.arange(0, 10, dtype=np.int64) * 60_000 + T0
    old, _ = encode_block(ts, np.arange(10, dtype=np.float64))
    new_ts = np.array([T0 + 30_000, T0 + 120_000, T0 + 3_000_000], dtype=np.int64)
    merged, summary = merge_blocks(old, new_ts, pa.array([None, 99.5, None]), pa.array([None, None, "late"]))
    got_ts, value, text = decode_block(merged)
    assert got_ts.tolist() == sorted([*ts.tolist(), T0 + 30_000, T0 + 3_000_000])
    assert value.to_pylist()[:4] == [0.0, None, 1.0, 99.5]
    assert text.to_pylist()[-1] == "late" and summary.n == 12 and summary.n_numeric == 10


@pytest.mark.parametrize("by_id", [True, False])
def test_staging_round_trip_and_sql(by_id: bool) -> None:
    table = _random_table(np.random.default_rng(3), 20, 1).slice(0, 400)
    names = sorted(set(table["point"].to_pylist()))
    ids = {n: 1000 + i for i, n in enumerate(names)}
    text = encode_staging(table, ids if by_id else None)
    expected = table.sort_by([("point", "ascending"), ("ts_ms", "ascending")])
    by_name = {i: n for n, i in ids.items()}
    assert decode_staging(text, by_name if by_id else None).equals(expected)
    assert staging_points(text) == ([ids[n] for n in names] if by_id else names)
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE staging (body TEXT)")
    conn.execute("INSERT INTO staging VALUES (?)", (text,))
    sql = block_select_sql(
        "staging AS s, json_each(s.body, '$.b') AS pb",
        "json_extract(pb.value, '$.p')",
        "pb.value",
        row="s.body",
    )
    rows = conn.execute(sql + " ORDER BY pb.key, e.key").fetchall()
    assert [r[1] for r in rows] == expected["ts_ms"].to_pylist()
    assert [r[3] for r in rows] == expected["value_text"].to_pylist()
    assert [r[0] for r in rows] == [ids[p] if by_id else p for p in expected["point"].to_pylist()]
    if by_id:
        with pytest.raises(KeyError):
            decode_staging(text, {})
    assert decode_staging(encode_staging(SAMPLE_SCHEMA.empty_table())).num_rows == 0


def _by_id(table: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    names = sorted(set(table["point"].to_pylist()))
    ids = {n: 7 * i + 1 for i, n in enumerate(names)}
    id_col = pa.array([ids[n] for n in table["point"].to_pylist()], pa.int64())
    return pa.Table.from_arrays([id_col, *table.columns[1:]], schema=ID_SAMPLE_SCHEMA), ids


def test_integer_point_ids_for_blocks_and_staging() -> None:
    table, ids = _by_id(_random_table(np.random.default_rng(11), 6, 2))
    out = encode_table_blocks(table)
    assert all(type(pid) is int for pid, *_ in out) and len(out) == 12
    decoded = decode_blocks_by_id([b for _, _, b, _ in out], [pid for pid, *_ in out])
    expected = table.sort_by([("point_id", "ascending"), ("ts_ms", "ascending")])
    assert decoded.schema == ID_SAMPLE_SCHEMA and decoded.equals(expected)
    row = encode_staging(table)
    assert decode_staging_by_id(row).equals(expected)
    assert staging_points(row) == sorted(ids.values())
    assert (
        decode_blocks_by_id([], []).schema == ID_SAMPLE_SCHEMA
        and decode_blocks([], []).schema == SAMPLE_SCHEMA
    )
    assert decode_staging_by_id(encode_staging(table.slice(0, 0))).schema == ID_SAMPLE_SCHEMA
    assert encode_table_blocks(table.slice(0, 0)) == []
    with pytest.raises(BlockFormatError):
        decode_staging_by_id(
            encode_staging(
                table.slice(0, 5).rename_columns(["point", *table.column_names[1:]]).cast(SAMPLE_SCHEMA)
            )
        )


def test_simulator_hour_is_exact_compact_and_readable_in_sql() -> None:
    """Realistic data (jitter, gaps, float32 registers, meters, enums): exact, under 8 bytes/sample, same in SQL."""
    sim = AceSimulator(SimulatorConfig(sites=("s",), points=120), clock=lambda: T0 / 1000 + 86_400)
    truth = sim.truth("s", T0 + 3_600_000, T0 + 7_200_000)
    out = encode_table_blocks(truth)
    blocks, points = [b for _, _, b, _ in out], [p for p, *_ in out]
    assert decode_blocks(blocks, points).equals(truth)
    size = sum(len(b.encode()) for b in blocks)
    assert size / truth.num_rows < 8.0, size / truth.num_rows
    for mode in ('"f":1', '"d":', '"k":', "null"):  # float32, dictionary, scaled decimals, gaps
        assert any(mode in b for b in blocks), mode
    rows = _sql_rows(list(zip(points, blocks, strict=True)))
    assert [(r[0], r[1], r[3]) for r in rows] == list(
        zip(
            truth["point"].to_pylist(),
            truth["ts_ms"].to_pylist(),
            truth["value_text"].to_pylist(),
            strict=True,
        )
    )
    for (_, _, got, _), want in zip(rows, truth["value"].to_pylist(), strict=True):
        assert (got is None and want is None) or np.float32(got) == np.float32(want)
    exact = [b for b in blocks if '"f":1' not in b]
    assert exact  # float64 blocks read back exactly in SQL
    f64_rows = _sql_rows([("p", b) for b in exact])
    f64_want = decode_blocks(exact, ["p"] * len(exact))["value"].to_pylist()
    assert [r[2] for r in f64_rows] == f64_want


def test_sql_expansion_on_d1s_sqlite_reads_one_row_per_slot(tmp_path: Path) -> None:
    """On SQLite carrying D1's row counters (the local D1 endpoint's library): same samples, and a block costs
    one row read for its seek plus one per slot (empty slots included)."""
    from bv_pipeline_tests.fakes.d1meter.sqlite import Connection

    sim = AceSimulator(SimulatorConfig(sites=("s",), points=30), clock=lambda: T0 / 1000 + 86_400)
    truth = sim.truth("s", T0 + 3_600_000, T0 + 7_200_000)
    table, _ = _by_id(truth)
    out = encode_table_blocks(table)
    conn = Connection(tmp_path / "d1.sqlite")
    conn.execute("CREATE TABLE h (point_id INTEGER PRIMARY KEY, block TEXT NOT NULL)")
    for pid, _, block, _ in out:
        conn.execute("INSERT INTO h VALUES (?, ?)", (pid, block))
    result = conn.execute(block_select_sql("h", "h.point_id", "h.block"))[0]
    expected = decode_blocks_by_id([b for _, _, b, _ in out], [p for p, *_ in out])
    assert [(r[0], r[1], r[3]) for r in result.rows] == list(
        zip(*(expected[c].to_pylist() for c in ("point_id", "ts_ms", "value_text")), strict=True)
    )
    for row, want in zip(result.rows, expected["value"].to_pylist(), strict=True):
        assert (row[2] is None and want is None) or np.float32(row[2]) == np.float32(want)
    slots = [len(orjson.loads(b)["v"]) for _, _, b, _ in out]
    assert result.rows_read == len(out) + sum(slots)
    one = conn.execute(block_select_sql("h", "h.point_id", "h.block", where=f"h.point_id = {out[2][0]}"))[0]
    assert len(one.rows) == out[2][3].n and one.rows_read == 1 + slots[2]
