"""Bulk reads of the SQLite hot tier in child processes (``bv_pipeline.storage.sqlite_export``): the same table as
the in-process ``sqlite3`` path, failures that surface, and a writer that keeps writing while a child reads."""

from __future__ import annotations

import datetime as dt
import math
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from bv_pipeline.resources.hot_store import SqliteHotStore
from bv_pipeline.storage import sqlite_export
from bv_pipeline.storage.samples import SAMPLE_SCHEMA, day_bounds_ms, empty_samples
from bv_pipeline.storage.sqlite_export import SqliteExportError, read_site_range

DAY0 = day_bounds_ms(dt.date(2026, 3, 1))[0]
DAY = 86_400_000
EDGE_FLOATS = [
    1.0,
    -0.0,
    0.0,
    2.0**53,
    2.0**53 + 2,
    -(2.0**63),
    1.7976931348623157e308,
    -1.7976931348623157e308,
    5e-324,
    2.2250738585072014e-308,
    math.inf,
    -math.inf,
    0.1,
    0.30000000000000004,
    123456789.123456789,
    -3.0,
    float.fromhex("0x1.fffffffffffffp-1"),
]
# Names in BINARY order traps: upper before lower case, unicode, quotes, a leading dash, spaces.
NAMES = ["-dash", "A.Temp", "a.Temp", "b.Mode", "c'quote\"", "space name", "z.Last", "ünï.Code", "✓.Check"]


def _rows(site_seed: int, day: int) -> pa.Table:
    """Mixed rows: the first point is all NULL then text (leading NULLs over several batches), others numeric
    with edge floats, NULLs and texts ('' included) interleaved."""
    p: list[str] = []
    t: list[int] = []
    v: list[float | None] = []
    x: list[str | None] = []
    base = DAY0 + day * DAY
    for i, name in enumerate(NAMES):
        for k in range(40):
            p.append(name)
            t.append(base + k * 60_000 + i)
            if i == 0:
                v.append(None)
                x.append(None if k < 30 else ["", "occupied", "ünïcode ✓"][k % 3])
            elif k % 7 == 3:
                v.append(None)
                x.append(None)
            elif k % 11 == 5:
                v.append(None)
                x.append(f"text {site_seed}-{k}" if k % 2 else "")
            else:
                v.append(EDGE_FLOATS[(k + i + site_seed) % len(EDGE_FLOATS)] * (1 if k % 2 else -1))
                x.append(None)
    return pa.table({"point": p, "ts_ms": t, "value": v, "value_text": x}, schema=SAMPLE_SCHEMA)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    """Two sites over three days; 'demo' day 2 holds no rows."""
    path = tmp_path / "hot.sqlite3"
    store = SqliteHotStore(path, bulk_read_min_rows=None)
    store.ensure_schema()
    for seed, site in enumerate(["demo", "other"]):
        for day in (0, 1, 3):
            store.upsert_samples(site, _rows(seed, day))
    store.upsert_samples("other", _rows(7, 2))
    store.close()
    yield path


def _in_process(path: Path, site: str, start_ms: int, end_ms: int) -> pa.Table:
    store = SqliteHotStore(path, bulk_read_min_rows=None)
    try:
        return store.read_samples(site, None, start_ms, end_ms)
    finally:
        store.close()


def _bits(table: pa.Table) -> list[tuple[object, ...]]:
    """Rows with each value as its float64 bit pattern, so -0.0 vs 0.0 and NaN payloads would count."""
    values = [None if v is None else struct.pack("<d", v) for v in table["value"].to_pylist()]
    cols = [table[c].to_pylist() for c in ("point", "ts_ms", "value_text")]
    return list(zip(cols[0], cols[1], values, cols[2], strict=True))


@pytest.mark.parametrize(
    ("batch_rows", "splits"),
    [(65_536, []), (7, ["b.Mode"]), (3, ["a.Temp", "zz-not-a-point"])],
)
def test_same_table_as_the_in_process_read(db: Path, batch_rows: int, splits: list[str]) -> None:
    # Small batches: the first point's leading NULLs fill whole driver batches before its texts arrive.
    for site, day in (("demo", 0), ("other", 1)):
        start, end = DAY0 + day * DAY, DAY0 + (day + 1) * DAY
        got = read_site_range(db, site, start, end, name_splits=splits, batch_rows=batch_rows)
        want = _in_process(db, site, start, end)
        assert got.schema.equals(SAMPLE_SCHEMA)
        assert want.num_rows == len(NAMES) * 40
        assert got.equals(want)
        assert _bits(got) == _bits(want)


def test_the_parent_process_never_loads_the_driver(db: Path) -> None:
    # Its bundled SQLite next to the sqlite3 module's in one process breaks WAL locking (commit 12f8957).
    assert read_site_range(db, "demo", DAY0, DAY0 + DAY).num_rows > 0
    assert not [m for m in sys.modules if m.startswith("adbc_driver")]


def test_values_are_exact_except_the_sign_of_zero_sqlite_drops_on_write(db: Path) -> None:
    got = read_site_range(db, "demo", DAY0, DAY0 + DAY)
    written = _rows(0, 0).sort_by([("point", "ascending"), ("ts_ms", "ascending")])
    # SQLite stores an integral REAL as an integer on disk, so -0.0 comes back as 0.0 on either read path.
    want_values = [None if v is None else (0.0 if v == 0 else v) for v in written["value"].to_pylist()]
    assert _bits(got) == _bits(written.set_column(2, "value", pa.array(want_values, pa.float64())))
    raw = got["value"].to_numpy(zero_copy_only=False)
    assert np.isinf(raw).sum() > 0 and np.isnan(raw).sum() == got["value"].null_count


def test_only_the_requested_site_and_range(db: Path) -> None:
    got = read_site_range(db, "other", DAY0 + DAY + 30 * 60_000, DAY0 + 3 * DAY + 1)
    ts = got["ts_ms"].to_numpy()
    assert got.num_rows > 0 and ts.min() >= DAY0 + DAY + 30 * 60_000 and ts.max() <= DAY0 + 3 * DAY
    assert got.equals(_in_process(db, "other", DAY0 + DAY + 30 * 60_000, DAY0 + 3 * DAY + 1))
    # 'other' day 2 has rows; 'demo' day 2 has none (but the site has points).
    assert read_site_range(db, "other", DAY0 + 2 * DAY, DAY0 + 3 * DAY).num_rows == len(NAMES) * 40


def test_empty_day_and_unknown_site_give_the_empty_schema(db: Path) -> None:
    for site, start in (("demo", DAY0 + 2 * DAY), ("nowhere", DAY0)):
        got = read_site_range(db, site, start, start + DAY, name_splits=["b.Mode"])
        assert got.num_rows == 0
        assert got.schema.equals(empty_samples().schema)


def test_missing_database_fails_with_the_childs_error(tmp_path: Path) -> None:
    with pytest.raises(SqliteExportError, match=r"exited with status 1:[\s\S]*failed to open"):
        read_site_range(tmp_path / "absent.sqlite3", "demo", 0, DAY)
    assert not (tmp_path / "absent.sqlite3").exists()  # read-only: never created


def _boot_with(prefix: str) -> str:
    return prefix + "; " + sqlite_export._CHILD_BOOT


def test_missing_driver_fails_loudly(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the child's import of the driver fail as if it were not installed.
    monkeypatch.setattr(
        sqlite_export, "_CHILD_BOOT", _boot_with("import sys; sys.modules['adbc_driver_sqlite'] = None")
    )
    with pytest.raises(SqliteExportError, match=r"adbc_driver_sqlite"):
        read_site_range(db, "demo", DAY0, DAY0 + DAY)


@pytest.mark.parametrize(
    ("boot", "message"),
    [
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "exited with status -9"),
        ("import sys; sys.stdout.buffer.write(b'not arrow'); sys.exit(0)", "unreadable stream"),
        ("import sys; sys.exit(0)", "wrote nothing"),
        ("import sys; sys.stderr.write('boom'); sys.exit(3)", r"exited with status 3:\s+boom"),
    ],
)
def test_child_crash_or_garbage_is_an_error_not_empty_data(
    db: Path, monkeypatch: pytest.MonkeyPatch, boot: str, message: str
) -> None:
    monkeypatch.setattr(sqlite_export, "_CHILD_BOOT", boot)
    with pytest.raises(SqliteExportError, match=message):
        read_site_range(db, "demo", DAY0, DAY0 + DAY, name_splits=["b.Mode"])


def test_hung_child_is_killed_at_the_timeout(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_export, "_CHILD_BOOT", "import time; time.sleep(600)")
    with pytest.raises(SqliteExportError, match="did not finish in time"):
        read_site_range(db, "demo", DAY0, DAY0 + DAY, timeout_s=0.5)


def test_a_value_stored_as_text_in_the_real_column_is_refused(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("UPDATE samples SET value = 'not a number' WHERE ts_ms = ?", (DAY0 + 60_000 + 1,))
    conn.commit()
    conn.close()
    with pytest.raises(SqliteExportError, match=r"(?i)type|mismatch"):
        read_site_range(db, "demo", DAY0, DAY0 + DAY)


def test_unexpected_driver_types_are_refused() -> None:
    batch = pa.record_batch(
        {
            "point": ["a"],
            "ts_ms": [1],
            "value": [1],  # int64 where float64 belongs
            "value_null": [0],
            "value_text": [""],
            "value_text_null": [1],
        }
    )
    with pytest.raises(TypeError, match="refusing to guess"):
        sqlite_export.to_samples(batch)
    # The same strings in another Arrow layout are fine.
    ok = batch.set_column(2, "value", pa.array([1.5])).set_column(
        4, "value_text", pa.array([""], pa.large_string())
    )
    assert sqlite_export.to_samples(ok).to_pylist() == [
        {"point": "a", "ts_ms": 1, "value": 1.5, "value_text": None}
    ]


def test_a_writer_is_not_blocked_while_a_child_reads(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The child holds its read snapshot open (it pauses after its first batch) while this process writes: every
    write commits at once (no busy waiting allowed), the child returns exactly the snapshot it started with, and
    the database stays intact."""
    started, go = db.parent / "started", db.parent / "go"
    pause = (
        "import sys; sys.path.append(sys.argv.pop(1))\n"
        "import pathlib, time; import bv_pipeline.storage.sqlite_export as m; orig = m.to_samples\n"
        "def slow(batch, _n=[0]):\n"
        "    _n[0] += 1\n"
        "    if _n[0] == 1:\n"
        f"        pathlib.Path({str(started)!r}).touch()\n"
        "        for _ in range(6000):\n"
        f"            if pathlib.Path({str(go)!r}).exists(): break\n"
        "            time.sleep(0.01)\n"
        "    return orig(batch)\n"
        "m.to_samples = slow\n"
        "raise SystemExit(m.main())\n"
    )
    monkeypatch.setattr(sqlite_export, "_CHILD_BOOT", pause)
    before = _in_process(db, "demo", DAY0, DAY0 + DAY)
    result: dict[str, pa.Table | BaseException] = {}

    def read() -> None:
        try:
            result["table"] = read_site_range(db, "demo", DAY0, DAY0 + DAY, batch_rows=16)
        except BaseException as exc:
            result["table"] = exc

    reader = threading.Thread(target=read)
    reader.start()
    for _ in range(3000):
        if started.exists() or not reader.is_alive():
            break
        time.sleep(0.01)
    assert started.exists(), result
    writer = SqliteHotStore(db, busy_timeout_ms=1, max_lock_retries=0)
    try:
        for k in range(5):  # new rows in the day being read, changed values, another site
            writer.upsert_samples("demo", _rows(9, 0).slice(k * 20, 20))
            writer.upsert_samples("late", _rows(k, 0))
            writer.delete_range("other", DAY0, DAY0 + DAY)
        assert writer.lock_retries == 0
    finally:
        go.touch()
        reader.join(timeout=60)
        writer.close()
    table = result["table"]
    assert isinstance(table, pa.Table), table
    assert table.equals(before)  # one snapshot, taken before the writes
    after = _in_process(db, "demo", DAY0, DAY0 + DAY)
    assert not after.equals(before)
    assert read_site_range(db, "demo", DAY0, DAY0 + DAY).equals(after)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
