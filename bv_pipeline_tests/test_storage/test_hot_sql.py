"""Pure tests of the hot-tier SQL builders: D1 limits, exact literals, grouping, schema idempotence."""

from __future__ import annotations

import math
import sqlite3
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bv_pipeline.storage import hot_sql as q


def _db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, q.D1_MAX_PARAMS)
    conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, q.D1_MAX_STATEMENT_BYTES)
    for ddl in q.SCHEMA_DDL:
        conn.execute(ddl)
    return conn


def test_schema_ddl_is_idempotent_and_samples_has_no_rowid() -> None:
    conn = _db()
    for ddl in q.SCHEMA_DDL:
        conn.execute(ddl)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"sites", "points", "samples", "archive_manifest", "sync_state"}
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'samples'").fetchone()[0]
    assert sql.rstrip().endswith("WITHOUT ROWID")


def _eval_as_stored(literal: str) -> float:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (value REAL)")
    conn.execute(f"INSERT INTO t VALUES ({literal})")
    return conn.execute("SELECT value FROM t").fetchone()[0]


def _same(a: float, b: float) -> bool:
    return struct.pack("<d", a) == struct.pack("<d", b) or (a == 0.0 and b == 0.0)


@settings(max_examples=1_000, deadline=None)
@given(st.floats(allow_nan=False) | st.floats(width=32, allow_nan=False).map(float))
def test_float_literal_round_trips_bit_exact(v: float) -> None:
    got = _eval_as_stored(q.float_literal(v))
    assert isinstance(got, float)
    assert _same(got, v)


@pytest.mark.parametrize(
    "v",
    [
        49.4738870309987,  # misparsed by SQLite 3.40 when written as a plain decimal literal
        1.6100000143051147,  # a float32 reading widened to float64, as ACE sends them
        0.30000000000000004,
        5e-324,
        2.2250738585072014e-308,
        1.7976931348623157e308,
        -123456789.123456789,
        2.0**80 + 2.0**28,
        21.3,
        -0.1,
        1e22,
        1e-22,
    ],
)
def test_float_literal_known_hard_values(v: float) -> None:
    assert _same(_eval_as_stored(q.float_literal(v)), v)


def test_float_literal_is_compact_for_typical_sensor_values() -> None:
    assert q.float_literal(21.3) == "213/1e1"
    assert q.float_literal(45.0) == "45"
    assert len(q.float_literal(1.6100000143051147)) <= 24


def test_float_literal_special_values() -> None:
    conn = sqlite3.connect(":memory:")
    assert conn.execute(f"SELECT {q.float_literal(math.inf)}").fetchone()[0] == math.inf
    assert conn.execute(f"SELECT {q.float_literal(-math.inf)}").fetchone()[0] == -math.inf
    assert q.float_literal(math.nan) == "NULL"
    assert q.float_literal(None) == "NULL"


def test_packed_statements_respect_d1_limits_and_apply_exactly() -> None:
    n = 30_000
    pids = [i % 4_583 + 1 for i in range(n)]
    ts = [1_767_225_600_000 + (i // 4_583) * 60_000 + i % 997 for i in range(n)]
    values = [None if i % 50 == 0 else (i * 0.1 if i % 3 else -i / 7) for i in range(n)]
    # 500 distinct texts: more than one statement's 100 parameter slots.
    texts = [f"state-{i % 500}" if i % 7 == 0 else None for i in range(n)]
    values = [None if t is not None else v for v, t in zip(values, texts, strict=True)]
    stmts = q.pack_sample_statements(pids, ts, values, texts)
    assert sum(s.rows for s in stmts) == n
    assert all(len(s.sql.encode()) <= q.D1_MAX_STATEMENT_BYTES for s in stmts)
    assert all(len(s.params) <= q.D1_MAX_PARAMS for s in stmts)
    # Numeric rows are packed densely: well over 1,500 rows per full statement.
    numeric = [s for s in stmts if not s.params]
    assert max(s.rows for s in numeric) > 1_500

    conn = _db()  # enforces D1's 100-variable and 100 KB statement limits natively
    for s in stmts:
        conn.execute(s.sql, s.params)
    got = conn.execute(
        "SELECT point_id, ts_ms, value, value_text FROM samples ORDER BY point_id, ts_ms"
    ).fetchall()
    assert got == sorted(zip(pids, ts, values, texts, strict=True))


def test_replayed_statements_write_nothing_and_late_changes_apply() -> None:
    conn = _db()
    stmts = q.pack_sample_statements([1, 1, 2], [10, 20, 10], [1.5, None, None], [None, None, "on"])
    for s in stmts:
        conn.execute(s.sql, s.params)
    for s in stmts:
        assert conn.execute(s.sql, s.params).rowcount == 0  # the WHERE on DO UPDATE skips unchanged rows
    change = q.pack_sample_statements([1, 2], [20, 10], [None, 3.0], ["off", None])
    for s in change:
        conn.execute(s.sql, s.params)
    rows = conn.execute("SELECT point_id, ts_ms, value, value_text FROM samples ORDER BY 1, 2").fetchall()
    assert rows == [(1, 10, 1.5, None), (1, 20, None, "off"), (2, 10, 3.0, None)]


def test_group_requests_bounds_body_rows_and_keeps_order() -> None:
    stmts = [q.Statement("X" * 1_000, [], rows=100) for _ in range(50)]
    groups = list(q.group_requests(stmts, max_body_bytes=10_500, max_rows=700))
    assert [s for g in groups for s in g] == stmts
    for g in groups:
        assert sum(q.statement_body_bytes(s) for s in g) <= 10_500
        assert sum(s.rows for s in g) <= 700


def test_point_statements_stay_under_param_limit_and_bind_names() -> None:
    names = [f"p{i}'; DROP TABLE points; --" for i in range(250)]
    rows = [q.point_meta_params(n, "analog", "degF", ("sensor",), {"b": "2", "a": "1"}, 60) for n in names]
    conn = _db()
    for s in q.upsert_points_statements("site", 5, rows) + q.insert_bare_points_statements("site", 6, names):
        assert len(s.params) <= q.D1_MAX_PARAMS
        assert "DROP" not in s.sql
        conn.execute(s.sql, s.params)
    got = conn.execute("SELECT name, kv_tags, first_seen_ms FROM points ORDER BY id").fetchall()
    assert [g[0] for g in got] == names
    assert got[0][1] == '{"a": "1", "b": "2"}'
    assert {g[2] for g in got} == {5}
