"""SQLite-specific behaviour (locking, concurrent readers) and the Dagster resource's backend selection."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

from bv_pipeline.resources.hot_store import (
    D1HotStore,
    D1HotStoreResource,
    HotStoreResource,
    SqliteHotStore,
    SqliteHotStoreResource,
)
from bv_pipeline.storage.samples import SAMPLE_SCHEMA
from bv_pipeline_tests.fakes.d1_server import run_fake_d1

T0 = 1_767_225_600_000


def minute_batch(minute: int, n_points: int = 50) -> pa.Table:
    return pa.table(
        {
            "point": [f"p{i:03d}" for i in range(n_points)],
            "ts_ms": [T0 + minute * 60_000] * n_points,
            "value": [float(minute)] * n_points,
            "value_text": [None] * n_points,
        },
        schema=SAMPLE_SCHEMA,
    )


def test_database_is_locked_is_retried_until_the_lock_goes(tmp_path: Path) -> None:
    store = SqliteHotStore(
        tmp_path / "hot.sqlite3", busy_timeout_ms=10, lock_backoff_s=0.02, max_lock_retries=30
    )
    store.ensure_schema()
    other = sqlite3.connect(tmp_path / "hot.sqlite3", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    other.execute("INSERT INTO sites (name, created_ms) VALUES ('other', 1)")

    def release_after_first_retry() -> None:
        # Deterministic: the lock goes away only once the store has met it and backed off at least once.
        while store.lock_retries == 0:
            time.sleep(0.005)
        other.execute("COMMIT")

    release = threading.Thread(target=release_after_first_retry, daemon=True)
    release.start()
    try:
        stats = store.upsert_samples("demo", minute_batch(0))
    finally:
        release.join(timeout=30)
        other.close()
    assert store.lock_retries > 0
    assert stats.rows == 50
    assert store.count_samples("demo", 0, 2**53) == 50
    assert store.list_sites() == ["demo", "other"]


def test_lock_held_forever_raises_after_bounded_retries(tmp_path: Path) -> None:
    store = SqliteHotStore(
        tmp_path / "hot.sqlite3", busy_timeout_ms=5, lock_backoff_s=0.001, max_lock_retries=3
    )
    store.ensure_schema()
    other = sqlite3.connect(tmp_path / "hot.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            store.set_watermark("demo", T0)
        assert store.lock_retries == 3
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.set_watermark("demo", T0)  # the failed attempt left nothing half-done
    assert store.get_watermark("demo") == T0


def test_failed_upsert_rolls_back_and_forgets_point_ids(tmp_path: Path) -> None:
    store = SqliteHotStore(tmp_path / "hot.sqlite3")
    # No schema: the whole transaction fails; nothing about "p000" may be cached as existing.
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        store.upsert_samples("demo", minute_batch(0))
    store.ensure_schema()
    assert store.upsert_samples("demo", minute_batch(0)).new_points == 50
    assert store.count_samples("demo", 0, 2**53) == 50


def test_readers_are_not_blocked_by_an_open_write_transaction(tmp_path: Path) -> None:
    store = SqliteHotStore(tmp_path / "hot.sqlite3")
    store.ensure_schema()
    store.upsert_samples("demo", minute_batch(0))
    writer = sqlite3.connect(tmp_path / "hot.sqlite3", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("DELETE FROM hot_staging")  # uncommitted
    try:
        assert store.read_samples("demo", None, 0, 2**53).num_rows == 50  # WAL snapshot, no waiting
        assert store.lock_retries == 0
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_concurrent_writer_and_reader_threads(tmp_path: Path) -> None:
    store = SqliteHotStore(tmp_path / "hot.sqlite3")
    store.ensure_schema()
    errors: list[BaseException] = []
    seen: list[int] = []

    def write() -> None:
        try:
            for m in range(40):
                store.upsert_samples("demo", minute_batch(m))
                store.set_watermark("demo", T0 + m * 60_000)
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        try:
            for _ in range(40):
                n = store.read_samples("demo", ["p001", "p002"], 0, 2**53).num_rows
                seen.append(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write), threading.Thread(target=read), threading.Thread(target=read)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(n % 2 == 0 for n in seen)  # every read saw whole committed batches, never half of one
    assert store.count_samples("demo", 0, 2**53) == 40 * 50
    assert store.get_watermark("demo") == T0 + 39 * 60_000


def test_second_instance_on_same_file_sees_the_data(tmp_path: Path) -> None:
    a = SqliteHotStore(tmp_path / "hot.sqlite3")
    a.ensure_schema()
    a.upsert_samples("demo", minute_batch(0))
    b = SqliteHotStore(tmp_path / "hot.sqlite3")
    b.ensure_schema()
    assert b.upsert_samples("demo", minute_batch(1)).new_points == 0
    assert a.count_samples("demo", 0, 2**53) == 100
    assert a.backend == "sqlite" and a.requests_made == 0


def test_resource_defaults_to_sqlite_and_caches_the_store(tmp_path: Path) -> None:
    res = SqliteHotStoreResource(sqlite_path=str(tmp_path / "sub" / "hot.sqlite3"))
    assert isinstance(res, HotStoreResource)
    store = res.get_store()
    assert isinstance(store, SqliteHotStore)
    assert res.get_store() is store
    store.upsert_samples("demo", minute_batch(0))  # schema was ensured by get_store
    assert (tmp_path / "sub" / "hot.sqlite3").exists()


def test_d1_resource_builds_a_d1_store() -> None:
    with run_fake_d1() as fake:
        res = D1HotStoreResource(
            account_id=fake.account_id,
            database_id=fake.database_id,
            api_token=fake.token,
            base_url=fake.base_url,
        )
        assert isinstance(res, HotStoreResource)
        store = res.get_store()
        assert isinstance(store, D1HotStore) and store.backend == "d1"
        assert res.get_store() is store
        assert store.requests_made == 1  # ensure_schema (and the upgrade check), once
        store.set_watermark("demo", T0)
        assert fake.sql("SELECT watermark_ms FROM sites") == [(T0,)]


def test_d1_resource_requires_its_secrets() -> None:
    with pytest.raises(Exception, match="api_token"):
        D1HotStoreResource(account_id="a", database_id="d")  # type: ignore[call-arg]
    # One database for everything needs its id; per-site databases are found by name instead.
    with pytest.raises(ValueError, match="database_id is required"):
        D1HotStoreResource(account_id="a", api_token="t").get_store()


def test_the_base_resource_is_abstract() -> None:
    with pytest.raises(TypeError, match="abstract"):
        HotStoreResource()  # type: ignore[abstract]
