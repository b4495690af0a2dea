"""ACE's request budget, shared by every process that calls ACE: GCRA token buckets in a shared store.

GCRA keeps one number per bucket, its "theoretical arrival time" (TAT). A request reserves a slot by moving the TAT
forward by one interval (``60 / per_minute`` seconds) in a single atomic statement; it may be sent
``burst`` intervals before the new TAT, so the long-run rate is exact and bursts stay small. The reservation is
virtual: a caller that was told to wait has its slot whether or not its ``sleep`` really advanced the clock.

Stores (one abstract base, one class per backend):

- ``MemorySlotStore``: one process (direct ``AceClient`` use, tests);
- ``SqliteSlotStore``: every process on one box (a WAL-mode SQLite file, one ``INSERT ... ON CONFLICT ... RETURNING``
  per reservation, which SQLite runs under its write lock, reading its clock under that lock);
- ``PostgresSlotStore``: several boxes (the same single statement; the server's clock is the time, so boxes
  with slightly different clocks still share one schedule).

Lanes: the live sync ("live") takes slots from the global bucket only; everything else ("batch": backfills, nightly
archival, settling, retention) must first pass a batch bucket running at ``batch_share`` of the global rate, then the
global bucket. Batch therefore never uses more than its share and live always has the rest. Batch reserves its
global slot only once its batch slot is due, so it never queues ahead of live requests with future slots.

Hand-written rather than pyrate-limiter 4.x: that library keeps a sliding-window log (a row per request, bursts up
to a whole window), has no injectable clock, cannot pass two buckets per request, and its Postgres bucket needs
psycopg 3 (this project ships psycopg2 through dagster-postgres).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

LANES = ("live", "batch")
GLOBAL_BUCKET = "ace"
BATCH_BUCKET = "ace:batch"
# A TAT further ahead than this is not a queue (at 1 request/minute that would be 1,440 waiting requests) but a
# clock that jumped backwards or a store copied from elsewhere: the bucket restarts from now instead of blocking.
MAX_AHEAD_S = 86_400.0
_EPSILON_S = 1e-9  # float residue from summing intervals is not a wait


class Slot(NamedTuple):
    """A reserved request slot: send at ``send_at``; ``now`` is the store's time when it was reserved."""

    send_at: float
    now: float

    @property
    def wait_s(self) -> float:
        wait = self.send_at - self.now
        return wait if wait > _EPSILON_S else 0.0


@dataclass(frozen=True)
class Bucket:
    """A GCRA bucket: long-run ``per_minute`` requests, at most ``burst`` back to back."""

    name: str
    per_minute: float
    burst: int

    def __post_init__(self) -> None:
        if not self.per_minute > 0:
            raise ValueError(f"bucket {self.name!r}: per_minute must be > 0")
        if self.burst < 1:
            raise ValueError(f"bucket {self.name!r}: burst must be >= 1")

    @property
    def interval_s(self) -> float:
        return 60.0 / self.per_minute


class RateLimitStoreError(RuntimeError):
    """The shared rate-limit store cannot be opened or reached; the message names it, never a password."""


class SlotStore(ABC):
    """Atomically reserves the next slot of a bucket; safe to call from several threads at once."""

    @abstractmethod
    def reserve(self, bucket: Bucket, now: float | None = None) -> Slot:
        """Move ``bucket``'s TAT one interval on and return the reserved slot.

        ``now`` (seconds) comes from an injected clock; ``None`` uses the store's own clock.
        """

    @abstractmethod
    def hold(self, bucket: Bucket, seconds: float, now: float | None = None) -> None:
        """Send nothing from ``bucket`` for ``seconds`` (ACE answered 429 with ``Retry-After``), then resume at
        its rate without a burst: the TAT moves to at least ``now + seconds + (burst - 1) * interval``."""

    def close(self) -> None:  # noqa: B027 - only stores holding a connection need it
        """Release the store's connection (if any)."""


def _held_tat_offset(bucket: Bucket, seconds: float) -> float:
    return seconds + (bucket.burst - 1) * bucket.interval_s


def _slot(tat: float, now: float, bucket: Bucket) -> Slot:
    # The new TAT is max(old TAT, now) + interval; the request may go burst intervals before it.
    return Slot(tat - bucket.burst * bucket.interval_s, now)


class MemorySlotStore(SlotStore):
    """Buckets of one process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tat: dict[str, float] = {}
        self._lock = threading.Lock()

    def reserve(self, bucket: Bucket, now: float | None = None) -> Slot:
        with self._lock:
            now = self._clock() if now is None else now
            old = self._tat.get(bucket.name, now)
            tat = (now if old > now + MAX_AHEAD_S else max(old, now)) + bucket.interval_s
            self._tat[bucket.name] = tat
        return _slot(tat, now, bucket)

    def hold(self, bucket: Bucket, seconds: float, now: float | None = None) -> None:
        with self._lock:
            now = self._clock() if now is None else now
            held = now + _held_tat_offset(bucket, seconds)
            self._tat[bucket.name] = max(self._tat.get(bucket.name, held), held)


# SQLite's own clock, read inside the statement (after the write lock is held) and the same for every use within
# one statement: a process that waited for the lock is not scheduled at the time it started waiting.
_SQLITE_NOW = "COALESCE(?2, (julianday('now') - 2440587.5) * 86400.0)"
_SQLITE_RESERVE = f"""
INSERT INTO ace_rate_limit (bucket, tat) VALUES (?1, {_SQLITE_NOW} + ?3)
ON CONFLICT (bucket) DO UPDATE SET
    tat = CASE WHEN tat > excluded.tat + ?4 THEN excluded.tat ELSE max(tat + ?3, excluded.tat) END
RETURNING tat, {_SQLITE_NOW}
"""
_SQLITE_HOLD = f"""
INSERT INTO ace_rate_limit (bucket, tat) VALUES (?1, {_SQLITE_NOW} + ?3)
ON CONFLICT (bucket) DO UPDATE SET tat = max(tat, excluded.tat)
"""


class SqliteSlotStore(SlotStore):
    """Buckets in a SQLite file shared by every process on one box; SQLite's clock (epoch seconds) is the time."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit: each reservation is one statement, atomic under SQLite's write lock; waiting writers
            # retry for busy_timeout_s.
            self._conn = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._set_up(time.monotonic() + busy_timeout_s)
        except (OSError, sqlite3.Error) as exc:
            raise RateLimitStoreError(f"cannot open the ACE rate-limit store {self.path}: {exc}") from exc

    def _set_up(self, deadline: float) -> None:
        # Switching a new file to WAL needs an exclusive lock and SQLite does not call the busy handler for it:
        # when several processes open the file at once, the losers retry here.
        while True:
            try:
                if self._conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self._conn.execute("PRAGMA journal_mode=WAL")
                # A reservation lost in a power cut is harmless: no fsync per reservation.
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS ace_rate_limit (bucket TEXT PRIMARY KEY, tat REAL NOT NULL)"
                )
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def reserve(self, bucket: Bucket, now: float | None = None) -> Slot:
        with self._lock:
            tat, store_now = self._conn.execute(
                _SQLITE_RESERVE, (bucket.name, now, bucket.interval_s, MAX_AHEAD_S)
            ).fetchone()
        return _slot(float(tat), float(store_now), bucket)

    def hold(self, bucket: Bucket, seconds: float, now: float | None = None) -> None:
        with self._lock:
            self._conn.execute(_SQLITE_HOLD, (bucket.name, now, _held_tat_offset(bucket, seconds)))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


# Concurrent CREATE TABLE IF NOT EXISTS can still collide in the catalog: the first process to start creates it.
_PG_CREATE_IN_TRANSACTION = """
BEGIN;
SELECT pg_advisory_xact_lock(hashtext('bv_ace_rate_limit'));
CREATE TABLE IF NOT EXISTS bv_ace_rate_limit (bucket text PRIMARY KEY, tat double precision NOT NULL);
COMMIT;
"""
# The server's clock, read when the statement starts: a concurrent reservation holds the row lock only for its
# own single statement (well under a millisecond), so the time is at most that stale.
_PG_RESERVE = """
WITH clock AS (SELECT COALESCE(%(now)s::float8, extract(epoch FROM clock_timestamp())::float8) AS now)
INSERT INTO bv_ace_rate_limit AS r (bucket, tat) SELECT %(bucket)s, clock.now + %(interval)s FROM clock
ON CONFLICT (bucket) DO UPDATE SET
    tat = CASE WHEN r.tat > excluded.tat + %(ahead)s THEN excluded.tat
               ELSE GREATEST(r.tat + %(interval)s, excluded.tat) END
RETURNING r.tat, (SELECT now FROM clock)
"""
_PG_HOLD = """
INSERT INTO bv_ace_rate_limit AS r (bucket, tat)
SELECT %(bucket)s, COALESCE(%(now)s::float8, extract(epoch FROM clock_timestamp())::float8) + %(offset)s
ON CONFLICT (bucket) DO UPDATE SET tat = GREATEST(r.tat, excluded.tat)
"""


class PostgresSlotStore(SlotStore):
    """Buckets in a PostgreSQL table shared by several boxes; the server's clock is the time."""

    def __init__(self, url: str, *, connect_timeout_s: int = 10) -> None:
        self._url = url
        parsed = urlparse(url)
        self.where = f"PostgreSQL {parsed.hostname}:{parsed.port or 5432}{parsed.path}"
        self._connect_timeout_s = connect_timeout_s
        self._lock = threading.Lock()
        self._conn: Any = None
        with self._lock:
            self._execute(_PG_CREATE_IN_TRANSACTION, None)

    def _execute(self, sql: str, params: dict[str, Any] | None) -> Any:
        """Run ``sql``, reconnecting once (a server restart, an idle connection closed by a proxy); the first row."""
        import psycopg2  # only the several-boxes profile needs it

        for attempt in (1, 2):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg2.connect(self._url, connect_timeout=self._connect_timeout_s)
                    self._conn.autocommit = True
                with self._conn.cursor() as cur:
                    cur.execute(sql, params)
                    return cur.fetchone() if cur.description else None
            except psycopg2.OperationalError as exc:
                if self._conn is not None:
                    self._conn.close()
                if attempt == 2:
                    raise RateLimitStoreError(
                        f"the ACE rate-limit store ({self.where}, BV_ACE_RATE_LIMIT_URL) is unreachable: {exc}"
                    ) from exc
        raise AssertionError("unreachable")

    def reserve(self, bucket: Bucket, now: float | None = None) -> Slot:
        params = {"bucket": bucket.name, "now": now, "interval": bucket.interval_s, "ahead": MAX_AHEAD_S}
        with self._lock:
            tat, server_now = self._execute(_PG_RESERVE, params)
        return _slot(float(tat), float(server_now), bucket)

    def hold(self, bucket: Bucket, seconds: float, now: float | None = None) -> None:
        params = {"bucket": bucket.name, "now": now, "offset": _held_tat_offset(bucket, seconds)}
        with self._lock:
            self._execute(_PG_HOLD, params)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()


class LaneLimiter:
    """Takes one slot from each bucket in turn, sleeping until it is due. ``acquire`` returns the seconds waited."""

    def __init__(
        self,
        store: SlotStore,
        buckets: Sequence[Bucket],
        *,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not buckets:
            raise ValueError("a lane needs at least one bucket")
        self.store = store
        self.buckets = tuple(buckets)
        self._clock = clock
        self._sleep = sleep

    def hold(self, seconds: float) -> None:
        """ACE asked to wait ``seconds`` (HTTP 429 ``Retry-After``): every process holds its requests that long."""
        for bucket in self.buckets:
            self.store.hold(bucket, seconds, None if self._clock is None else self._clock())

    def acquire(self) -> float:
        waited = 0.0
        for bucket in self.buckets:
            slot = self.store.reserve(bucket, None if self._clock is None else self._clock())
            if slot.wait_s:
                self._sleep(slot.wait_s)
                waited += slot.wait_s
        return waited


def default_burst(per_minute: float) -> int:
    """One second's worth of requests, at least one."""
    return max(1, int(per_minute // 60))


def ace_buckets(per_minute: int, batch_share: float, lane: str) -> tuple[Bucket, ...]:
    """The buckets a request of ``lane`` passes, in order."""
    if per_minute < 1:
        raise ValueError("requests_per_minute must be >= 1")
    if not 0 < batch_share <= 1:
        raise ValueError(f"batch_share must be in (0, 1], got {batch_share}")
    if lane not in LANES:
        raise ValueError(f"ACE lane must be one of {LANES}, got {lane!r}")
    global_bucket = Bucket(GLOBAL_BUCKET, per_minute, default_burst(per_minute))
    if lane == "live":
        return (global_bucket,)
    batch_per_minute = per_minute * batch_share
    return Bucket(BATCH_BUCKET, batch_per_minute, default_burst(batch_per_minute)), global_bucket


class RateLimiter(LaneLimiter):
    """One process's own GCRA bucket (``AceClient`` without a shared store): ``per_minute`` requests, ``burst``."""

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        burst: int | None = None,
    ) -> None:
        if per_minute < 1:
            raise ValueError("requests_per_minute must be >= 1")
        bucket = Bucket(GLOBAL_BUCKET, per_minute, burst or default_burst(per_minute))
        super().__init__(MemorySlotStore(clock), (bucket,), clock=clock, sleep=sleep)
        self.per_minute = per_minute
        self.burst = bucket.burst

    @property
    def interval_s(self) -> float:
        return 60.0 / self.per_minute


# One store per process and target: connections are not shared across fork, and reopening per client would cost a
# connection per ACE run step.
_STORES: dict[tuple[int, str], SlotStore] = {}
_STORES_LOCK = threading.Lock()


def shared_slot_store(*, url: str | None = None, path: str | None = None) -> SlotStore:
    """This process's store for a PostgreSQL ``url`` (several boxes) or else a SQLite ``path`` (one box)."""
    if not url and not path:
        raise ValueError("a shared ACE rate-limit store needs a PostgreSQL URL or a SQLite path")
    key = (os.getpid(), f"pg:{url}" if url else f"sqlite:{Path(path).resolve()}")  # type: ignore[arg-type]
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            store = PostgresSlotStore(url) if url else SqliteSlotStore(path)  # type: ignore[arg-type]
            _STORES[key] = store
        return store
