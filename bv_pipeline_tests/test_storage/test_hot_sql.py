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


def test_schema_ddl_is_idempotent_and_has_no_per_sample_table() -> None:
    conn = _db()
    for ddl in q.SCHEMA_DDL:
        conn.execute(ddl)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"sites", "points", "archive_manifest", "sync_state", "hot_seal", "hot_staging"}


def test_guarded_upserts_write_nothing_when_unchanged() -> None:
    conn = _db()
    conn.execute(q.SET_WATERMARK, ("s", 1, 10))
    assert conn.execute(q.SET_WATERMARK, ("s", 1, 10)).rowcount == 0
    assert conn.execute(q.SET_WATERMARK, ("s", 1, 5)).rowcount == 0
    assert conn.execute(q.SET_WATERMARK, ("s", 1, 11)).rowcount == 1
    conn.execute(q.SET_SYNC_AS_OF, ("s", "2026-01-01", 10))
    assert conn.execute(q.SET_SYNC_AS_OF, ("s", "2026-01-01", 10)).rowcount == 0
    assert conn.execute(q.SET_SYNC_AS_OF, ("s", "2026-01-01", 12)).rowcount == 1
    rows = [q.point_meta_params("p", "analog", "degF", ("sensor",), {"a": "1"}, 60)]
    for st_ in q.upsert_points_statements("s", 1, rows):
        assert conn.execute(st_.sql, st_.params).rowcount == 1
    for st_ in q.upsert_points_statements("s", 2, rows):
        assert conn.execute(st_.sql, st_.params).rowcount == 0  # unchanged point: not rewritten
    changed = [q.point_meta_params("p", "analog", "degC", ("sensor",), {"a": "1"}, 60)]
    for st_ in q.upsert_points_statements("s", 3, changed):
        assert conn.execute(st_.sql, st_.params).rowcount == 1


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
