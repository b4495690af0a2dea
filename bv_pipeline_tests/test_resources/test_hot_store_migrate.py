"""A hot database written by the row-per-sample schema is upgraded in place on first use: every sample moves into
hour blocks exactly, the old table is dropped, and the upgrade says so in the log."""

from __future__ import annotations

import logging
import math
import sqlite3
from pathlib import Path

import pytest

from bv_pipeline.resources.hot_store import D1HotStore, SqliteHotStore
from bv_pipeline.storage import hot_sql as q
from bv_pipeline_tests.fakes.d1_server import run_fake_d1

T0 = 1_767_225_600_000
OLD_SAMPLES_DDL = """CREATE TABLE samples (
    point_id INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    value REAL,
    value_text TEXT,
    PRIMARY KEY (point_id, ts_ms)
) WITHOUT ROWID"""
OLD_ROWS = [
    ("a", T0 + 1, -0.0, None),
    ("a", T0 + 60_001, 1.6100000143051147, None),
    ("a", T0 + 90_000_000, 5e-324, None),  # the next day
    ("b", T0 + 2, None, "occupied ✓"),
    ("b", T0 + 3, None, None),
    ("b", T0 + 3_600_000 * 5, 21.5, None),
]


def _old_statements() -> list[tuple[str, tuple[object, ...]]]:
    out: list[tuple[str, tuple[object, ...]]] = [(OLD_SAMPLES_DDL, ())]
    out += [(q.INSERT_BARE_POINT_ONE, ("demo", 1, n)) for n in ("a", "b")]
    for name, ts, value, text in OLD_ROWS:
        out.append(
            (
                "INSERT INTO samples VALUES ((SELECT id FROM points WHERE name = ?), ?, ?, ?)",
                (name, ts, value, text),
            )
        )
    return out


OLD_READ = (
    "SELECT p.name, s.ts_ms, s.value, s.value_text FROM samples s JOIN points p ON p.id = s.point_id "
    "ORDER BY p.name, s.ts_ms"
)


def _check(store: SqliteHotStore | D1HotStore, want: list[tuple[object, ...]]) -> None:
    """Exactly what the old table held (it kept -0.0 as 0: SQLite stores an integral REAL as an integer)."""
    got = store.read_samples("demo", None, 0, 2**53)
    assert len(want) == len(OLD_ROWS)
    assert got["point"].to_pylist() == [r[0] for r in want]
    assert got["ts_ms"].to_pylist() == [r[1] for r in want]
    assert got["value_text"].to_pylist() == [r[3] for r in want]
    for v, w in zip(got["value"].to_pylist(), [r[2] for r in want], strict=True):
        assert (v is None and w is None) or (math.copysign(1, v) == math.copysign(1, w) and v == w)


def test_sqlite_database_of_the_old_schema_is_upgraded_in_place(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "hot.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    for ddl in q.SCHEMA_DDL[:2]:  # sites, points: unchanged tables
        conn.execute(ddl)
    for sql, params in _old_statements():
        conn.execute(sql, params)
    want = conn.execute(OLD_READ).fetchall()
    conn.close()
    store = SqliteHotStore(path)
    with caplog.at_level(logging.WARNING):
        store.ensure_schema()
    assert any("upgrading a row-per-sample database" in r.message for r in caplog.records)
    assert any("6 samples moved" in r.message for r in caplog.records)
    _check(store, want)
    tables = {r["name"] for r in store._one("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "samples" not in tables and {"hb_demo_20260101", "hb_demo_20260102"} <= tables
    store.ensure_schema()  # idempotent: nothing left to upgrade
    _check(store, want)
    assert store.count_samples("demo", 0, 2**53) == len(OLD_ROWS)
    assert store.max_ts("demo") == T0 + 90_000_000
    store.close()


def test_d1_database_of_the_old_schema_is_upgraded_in_place() -> None:
    with run_fake_d1() as fake:
        for ddl in q.SCHEMA_DDL[:2]:
            fake.sql(ddl)
        for sql, params in _old_statements():
            fake.sql(sql, params)
        want = fake.sql(OLD_READ)
        store = D1HotStore(fake.account_id, fake.database_id, fake.token, base_url=fake.base_url)
        store.ensure_schema()
        _check(store, want)
        assert store.count_samples("demo", 0, 2**53) == len(OLD_ROWS)
        assert fake.sql("SELECT name FROM sqlite_master WHERE name = 'samples'") == []
        store.close()
