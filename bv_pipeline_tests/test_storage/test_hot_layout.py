"""Pure tests of the block layout: statements within D1's limits, guarded block upserts, exact frames."""

from __future__ import annotations

import datetime as dt
import math
import sqlite3

import polars as pl
import pyarrow as pa

from bv_pipeline.storage import hot_frames as hf
from bv_pipeline.storage import hot_layout as hl
from bv_pipeline.storage import hot_sql as q
from bv_pipeline.storage import rollups
from bv_pipeline.storage.hot_codec import ROW_SCHEMA, decode_blocks, decode_rows, encode_rows, value_bits

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY = dt.date(2026, 1, 1)


def _db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, q.D1_MAX_PARAMS)
    conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, q.D1_MAX_STATEMENT_BYTES)
    for ddl in q.SCHEMA_DDL:
        conn.execute(ddl)
    return conn


def rows(n_points: int, minutes: int, start: int = T0) -> pl.DataFrame:
    pid = [p for p in range(1, n_points + 1) for _ in range(minutes)]
    ts = [start + m * 60_000 for _ in range(n_points) for m in range(minutes)]
    val = [math.sin(p * 0.1 + t / 1e7) * 100 for p, t in zip(pid, ts, strict=True)]
    return pl.DataFrame({"pid": pid, "ts": ts, "value": val, "text": [None] * len(pid)}, schema=ROW_SCHEMA)


def test_codec_adapter_is_exact_for_every_kind_of_value() -> None:
    vals = [-0.0, 0.0, math.inf, -math.inf, math.nan, 5e-324, 1.6100000143051147, None, None]
    texts = [None] * 7 + ["occupied ✓", None]
    frame = pl.DataFrame(
        {"pid": [3] * 9, "ts": [T0 + i for i in range(9)], "value": vals, "text": texts}, schema=ROW_SCHEMA
    )
    back = decode_rows(encode_rows(frame))
    assert back["text"].to_list() == texts
    assert back["value"].is_null().to_list() == frame["value"].is_null().to_list()
    assert (value_bits(back["value"]) == value_bits(frame["value"])).all()
    assert back["ts"].to_list() == frame["ts"].to_list()


def test_block_upserts_respect_d1_limits_and_a_replay_writes_nothing() -> None:
    data = rows(500, 60)
    blocks = hf.build_blocks(data)
    assert list(blocks) == [DAY] and len(blocks[DAY]) == 500
    stmts = hl.upsert_blocks_statements("site-a", DAY, blocks[DAY])
    assert all(len(s.sql.encode()) <= q.D1_MAX_STATEMENT_BYTES and not s.params for s in stmts)
    conn = _db()  # enforces D1's 100-variable and 100 KB statement limits natively
    conn.execute(hl.create_block_table("site-a", DAY))
    assert sum(conn.execute(s.sql).rowcount for s in stmts) == 500
    assert sum(conn.execute(s.sql).rowcount for s in stmts) == 0  # identical blocks: not rewritten
    table = hl.quote_ident(hl.block_table("site-a", DAY))
    key, n, n_num, vsum, block = conn.execute(
        f"SELECT key, n, n_numeric, vsum, block FROM {table} ORDER BY key LIMIT 1"
    ).fetchone()
    assert key == 1 * hl.KEY_HOURS + 0 and n == n_num == 60
    first = data.filter(pl.col("pid") == 1)
    rollup = rollups.hourly_rollup(
        pa.table({"point": ["p"] * 60, "ts_ms": first["ts"].to_arrow(), "value": first["value"].to_arrow()})
    )
    assert vsum == rollup["sum"][0].as_py()  # the same hour summed like the cold tier's rollup
    assert decode_blocks([block], [1]).equals(first)
    conn.execute(hl.drop_block_table("site-a", DAY))
    assert hl.parse_block_table(hl.block_table("site-a", DAY)) == ("site-a", DAY)


def test_staging_payloads_fit_a_statement_and_group_points() -> None:
    data = rows(2_500, 5)
    staged = hf.staging_payloads(data)
    assert sum(r[1] for r in staged) == data.height
    assert len(staged) >= 3  # groups of at most 1,000 points
    stmts = hl.insert_staging_statements("s", staged)
    assert all(len(s.sql.encode()) <= q.D1_MAX_STATEMENT_BYTES and s.params == ["s"] for s in stmts)
    conn = _db()
    for s in stmts:
        conn.execute(s.sql, s.params)
    assert conn.execute("SELECT SUM(n) FROM hot_staging").fetchone()[0] == data.height
    back = hf.merge_last(
        [decode_rows(b) for (b,) in conn.execute("SELECT block FROM hot_staging ORDER BY id")]
    )
    assert back.equals(data.sort("pid", "ts"))


def test_not_stored_compares_exact_bits_and_text() -> None:
    stored = pl.DataFrame(
        {
            "pid": [1, 1, 1, 1],
            "ts": [1, 2, 3, 4],
            "value": [0.0, 1.0, None, None],
            "text": [None, None, "a", None],
        },
        schema=ROW_SCHEMA,
    )
    incoming = pl.DataFrame(
        {
            "pid": [1, 1, 1, 1, 1],
            "ts": [1, 2, 3, 4, 5],
            "value": [-0.0, 1.0, None, None, 7.0],
            "text": [None, None, "b", None, None],
        },
        schema=ROW_SCHEMA,
    )
    new = hf.not_stored(incoming, stored)
    assert new["ts"].to_list() == [1, 3, 5]  # -0.0 differs from 0.0; changed text; unseen
    merged = hf.merge_last([stored, new])
    assert merged["ts"].to_list() == [1, 2, 3, 4, 5]
    assert merged["text"].to_list() == [None, None, "b", None, None]
    assert math.copysign(1.0, merged["value"][0]) == -1.0
