"""``SqliteHotStore``: the hot tier in a local SQLite file (WAL), the embedded default."""

from __future__ import annotations

import contextlib
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bv_pipeline.resources.hot_store_base import BlockHotStore, Rows
from bv_pipeline.storage import hot_sql as q
from bv_pipeline.storage.gc_pause import gc_paused

T = TypeVar("T")

# One writer at a time per database file within the process: sqlite would serialise writers anyway, but waiting
# on a Python lock is cheaper and fairer than spinning on SQLITE_BUSY. Other processes are handled by
# busy_timeout plus the retry loop.
_WRITE_LOCKS: dict[str, threading.Lock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def _write_lock_for(path: Path) -> threading.Lock:
    key = str(path.resolve())
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(key, threading.Lock())


def _is_lock_error(exc: sqlite3.OperationalError) -> bool:
    msg = str(exc).lower()
    return "database is locked" in msg or "database is busy" in msg or "database table is locked" in msg


class SqliteHotStore(BlockHotStore):
    """Hot tier in a local SQLite file (WAL). Thread-safe: one serialised writer connection, one reader
    connection per thread, so the read API keeps reading while a sync writes."""

    backend = "sqlite"

    def __init__(
        self,
        path: Path | str,
        *,
        busy_timeout_ms: int = 5_000,
        max_lock_retries: int = 8,
        lock_backoff_s: float = 0.05,
        cache_mib: int = 512,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout_ms = busy_timeout_ms
        self.max_lock_retries = max_lock_retries
        self.lock_backoff_s = lock_backoff_s
        self.cache_mib = cache_mib
        self.lock_retries = 0  # how often a locked database was retried (observability and tests)
        self._write_lock = _write_lock_for(self.path)
        self._writer: sqlite3.Connection | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_guard = threading.Lock()

    # -- connections ------------------------------------------------------------------------------------------

    def _connect(self, cache_mib: int) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves so a writer takes the lock up front (a deferred
        # read->write upgrade in WAL fails with SQLITE_BUSY without waiting on the busy handler).
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA cache_size = {-1024 * int(cache_mib)}")
        conn.execute("PRAGMA temp_store = MEMORY")
        return conn

    def _writer_conn(self) -> sqlite3.Connection:
        if self._writer is None:
            self._writer = self._retry(lambda: self._connect(self.cache_mib))
        return self._writer

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._retry(lambda: self._connect(min(self.cache_mib, 64)))
            self._local.conn = conn
            with self._readers_guard:
                self._readers.append(conn)
        return conn

    def close(self) -> None:
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        with self._readers_guard:
            for c in self._readers:
                with contextlib.suppress(sqlite3.Error):
                    c.close()
            self._readers.clear()
        self._local = threading.local()

    def _retry(self, fn: Callable[[], T]) -> T:
        for attempt in range(self.max_lock_retries + 1):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _is_lock_error(exc) or attempt == self.max_lock_retries:
                    raise
                self.lock_retries += 1
                delay = min(self.lock_backoff_s * 2**attempt, 2.0)
                time.sleep(delay * (0.5 + random.random() / 2))
        raise AssertionError("unreachable")

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn in one IMMEDIATE transaction on the writer connection; retried as a whole when locked
        (every write is idempotent, so a retried transaction is harmless)."""

        def attempt() -> T:
            conn = self._writer_conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        with self._write_lock:
            try:
                return self._retry(attempt)
            except BaseException:
                # Ids resolved inside a rolled-back transaction must not survive in the cache.
                self._ids.clear()
                self._forget_tables()
                raise

    # -- BlockHotStore primitives --------------------------------------------------------------------------

    @property
    def requests_made(self) -> int:
        return 0

    def _batch_limits(self) -> tuple[int, int]:
        # One transaction per unit like D1's batches (the same crash points), but far larger units.
        return 64_000_000, 2_000_000

    def _run(self, statements: Sequence[q.Statement]) -> list[Rows]:
        if all(st.sql.lstrip().upper().startswith(("SELECT", "WITH")) for st in statements):
            return [self._read(st.sql, st.params) for st in statements]

        def run(conn: sqlite3.Connection) -> list[Rows]:
            return [_dict_rows(conn.execute(st.sql, st.params)) for st in statements]

        return self._write(run)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> Rows:  # type: ignore[override]
        def fetch() -> Rows:
            with gc_paused():  # rows of plain values: collector passes over them are pure overhead
                return _dict_rows(self._reader().execute(sql, list(params)))

        return self._retry(fetch)


def _dict_rows(cur: sqlite3.Cursor) -> Rows:
    if cur.description is None:
        cur.fetchall()
        return []
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
