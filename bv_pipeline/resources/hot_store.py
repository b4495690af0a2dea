"""The hot tier: ``SqliteHotStore`` (embedded default), ``D1HotStore`` (Cloudflare D1 over REST via the official
SDK) and the Dagster ``HotStoreResource`` that picks one. Both implement ``bv_pipeline.storage.interfaces.HotStore``
with the same SQL (``bv_pipeline.storage.hot_sql``).

D1 request budget. The account-wide Cloudflare API limit is 1,200 requests / 5 min, so writes are packed:
sample rows become multi-row upserts with numbers inlined as exact literals (``hot_sql.float_literal``): about
3,700 rows per <=99 KB statement for typical sensor values (21.3 -> ``213/1e1``) and about 2,000 for
full-precision doubles. Text values are bound params, one per distinct string per statement (<=100). Statements
are grouped into ``batch`` requests bounded by ``max_body_bytes`` (default 4 MB, a guess well inside what the
API accepts) and ``max_rows_per_request`` (default 50,000 rows, so even a pessimistic 10 k rows/s D1 stays far
inside the 30 s request cap). Point ids are cached per instance; a cache miss creates the missing points and
re-reads the site's ids in one request. Measured against the fake (bench/bench_hot_store.py), a 5-minute sync
of 4,583 points (~22.7 k rows, ~620 KB) is 3 requests on an instance's first sync (ids, samples, watermark) and
2 afterwards.

The SDK retries POSTs (408/409/429/5xx), so every write is an idempotent upsert; a batch replayed after a lost
response leaves exactly one copy of each row.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import cloudflare
import dagster as dg
import httpx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import PrivateAttr

from bv_pipeline.storage import hot_sql as q
from bv_pipeline.storage import sqlite_export
from bv_pipeline.storage.gc_pause import gc_paused
from bv_pipeline.storage.interfaces import HotStore, ManifestEntry, PointMeta, UpsertStats, WindowStats
from bv_pipeline.storage.samples import SAMPLE_SCHEMA, dedupe_samples, empty_samples

T = TypeVar("T")

__all__ = ["D1Error", "D1HotStore", "HotStoreResource", "SqliteHotStore"]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _prepare(samples: pa.Table) -> tuple[pa.Table, list[str], np.ndarray]:
    """Cast to SAMPLE_SCHEMA, drop repeated (point, ts_ms) keeping the last, and dictionary-encode point names.

    Returns (table, unique names, per-row index into names). Duplicates are detected on integer codes (cheap);
    the polars de-duplication only runs when there are any."""
    table = samples.select(SAMPLE_SCHEMA.names).cast(SAMPLE_SCHEMA).combine_chunks()
    enc = pc.dictionary_encode(table["point"]).combine_chunks()
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    ts = table["ts_ms"].to_numpy()
    import polars as pl

    if pl.DataFrame({"c": codes, "t": ts}).n_unique() != table.num_rows:
        table, _ = dedupe_samples(table)
        table = table.combine_chunks()
        enc = pc.dictionary_encode(table["point"]).combine_chunks()
        codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return table, enc.dictionary.to_pylist(), codes


def _manifest_from_row(row: Sequence[Any]) -> ManifestEntry:
    site, day, key, rows, nbytes, checksum, schema_version, verified_ms, source, hot_deleted_ms = row
    return ManifestEntry(
        site=site,
        day=dt.date.fromisoformat(day),
        key=key,
        rows=int(rows),
        bytes=int(nbytes),
        checksum=checksum,
        schema_version=int(schema_version),
        verified_ms=int(verified_ms),
        source=source,
        hot_deleted_ms=None if hot_deleted_ms is None else int(hot_deleted_ms),
    )


def _manifest_params(e: ManifestEntry) -> list[Any]:
    return [
        e.site,
        e.day.isoformat(),
        e.key,
        e.rows,
        e.bytes,
        e.checksum,
        e.schema_version,
        e.verified_ms,
        e.source,
        e.hot_deleted_ms,
    ]


def _point_from_row(row: Sequence[Any]) -> PointMeta:
    name, kind, unit, marker_tags, kv_tags, interval = row
    return PointMeta(
        name=name,
        kind=kind,
        unit=unit,
        marker_tags=tuple(json.loads(marker_tags or "[]")),
        kv_tags=dict(json.loads(kv_tags or "{}")),
        collect_interval_s=None if interval is None else int(interval),
    )


def _point_param_rows(points: Sequence[PointMeta]) -> list[list[Any]]:
    # Last description of a name wins, like samples.
    by_name = {p.name: p for p in points}
    return [
        q.point_meta_params(p.name, p.kind, p.unit, p.marker_tags, p.kv_tags, p.collect_interval_s)
        for p in by_name.values()
    ]


def _samples_table(
    points: list[str], ts: list[int], values: list[float | None], texts: list[str | None]
) -> pa.Table:
    if not points:
        return empty_samples()
    return pa.Table.from_arrays(
        [
            pa.array(points, pa.string()),
            pa.array(ts, pa.int64()),
            pa.array(values, pa.float64()),
            pa.array(texts, pa.string()),
        ],
        schema=SAMPLE_SCHEMA,
    )


# ================================================================================================================
# SQLite
# ================================================================================================================

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


class SqliteHotStore:
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
        sort_before_insert: bool = True,
        bulk_read_min_rows: int | None = 200_000,
        bulk_read_workers: int = 2,
        bulk_read_timeout_s: float = 900.0,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout_ms = busy_timeout_ms
        self.max_lock_retries = max_lock_retries
        self.lock_backoff_s = lock_backoff_s
        self.cache_mib = cache_mib
        # Inserting in (point_id, ts) order walks the clustered B-tree left to right instead of touching ~4,600
        # leaf pages per minute of time-major data. Measured whole day (6.5 M rows): 452 k rows/s sorted vs
        # 219 k rows/s time-major (bench/bench_hot_store.py, with and without --no-sort).
        self.sort_before_insert = sort_before_insert
        # Whole-site reads (points=None) of at least this many rows go through ``sqlite_export``'s child
        # processes (Arrow-native; one site-day measured under load: 20-33 s -> 5-8 s), split by point name over
        # ``bulk_read_workers`` children. Below it the ~0.3 s start-up of a child is not worth it. None: never.
        self.bulk_read_min_rows = bulk_read_min_rows
        self.bulk_read_workers = max(1, bulk_read_workers)
        self.bulk_read_timeout_s = bulk_read_timeout_s
        self.bulk_reads = 0  # reads served by child processes (observability and tests)
        self.lock_retries = 0  # how often a locked database was retried (observability and tests)
        self._write_lock = _write_lock_for(self.path)
        self._writer: sqlite3.Connection | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_guard = threading.Lock()
        self._ids: dict[str, dict[str, int]] = {}

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
                raise

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        def fetch() -> list[tuple[Any, ...]]:
            with gc_paused():  # rows of plain values: collector passes over them are pure overhead
                return self._reader().execute(sql, params).fetchall()

        return self._retry(fetch)

    # -- HotStore ---------------------------------------------------------------------------------------------

    @property
    def requests_made(self) -> int:
        return 0

    def ensure_schema(self) -> None:
        def run(conn: sqlite3.Connection) -> None:
            for ddl in q.SCHEMA_DDL:
                conn.execute(ddl)

        self._write(run)

    def ping(self) -> None:
        self._read("SELECT 1")

    def upsert_points(self, site: str, points: Sequence[PointMeta]) -> int:
        rows = _point_param_rows(points)
        now = _now_ms()

        def run(conn: sqlite3.Connection) -> int:
            conn.execute(q.ENSURE_SITE, (site, now))
            before = conn.execute(q.COUNT_POINTS, (site,)).fetchone()[0]
            conn.executemany(q.UPSERT_POINT_ONE, ([site, now, *r] for r in rows))
            return int(conn.execute(q.COUNT_POINTS, (site,)).fetchone()[0] - before)

        return self._write(run)

    def point_ids(self, site: str) -> dict[str, int]:
        return {name: int(pid) for pid, name in self._read(q.POINT_IDS, (site,))}

    def list_points(self, site: str) -> list[PointMeta]:
        return [_point_from_row(r) for r in self._read(q.LIST_POINTS, (site,))]

    def list_sites(self) -> list[str]:
        return [r[0] for r in self._read(q.LIST_SITES)]

    def _resolve_ids(self, conn: sqlite3.Connection, site: str, names: list[str]) -> tuple[np.ndarray, int]:
        cache = self._ids.setdefault(site, {})
        missing = [n for n in names if n not in cache]
        new_points = 0
        if missing:
            now = _now_ms()
            conn.execute(q.ENSURE_SITE, (site, now))
            cur = conn.executemany(q.INSERT_BARE_POINT_ONE, ((site, now, n) for n in missing))
            new_points = max(cur.rowcount, 0)
            cache.update((name, int(pid)) for pid, name in conn.execute(q.POINT_IDS, (site,)))
        return np.fromiter((cache[n] for n in names), dtype=np.int64, count=len(names)), new_points

    def upsert_samples(self, site: str, samples: pa.Table) -> UpsertStats:
        if samples.num_rows == 0:
            return UpsertStats()
        table, names, codes = _prepare(samples)
        ts = table["ts_ms"].to_numpy()
        values = table["value"]
        texts = table["value_text"]
        is_text = texts.is_valid().to_numpy(zero_copy_only=False)

        def run(conn: sqlite3.Connection) -> UpsertStats:
            lookup, new_points = self._resolve_ids(conn, site, names)
            pids = lookup[codes]
            order = np.lexsort((ts, pids)) if self.sort_before_insert else np.arange(len(pids))
            statements = 0
            num_idx = order[~is_text[order]]
            if len(num_idx):
                vals = pc.take(values, pa.array(num_idx)).to_pylist()
                conn.executemany(
                    q.UPSERT_SAMPLE_NUM, zip(pids[num_idx].tolist(), ts[num_idx].tolist(), vals, strict=True)
                )
                statements += len(num_idx)
            txt_idx = order[is_text[order]]
            if len(txt_idx):
                take = pa.array(txt_idx)
                conn.executemany(
                    q.UPSERT_SAMPLE_TXT,
                    zip(
                        pids[txt_idx].tolist(),
                        ts[txt_idx].tolist(),
                        pc.take(values, take).to_pylist(),
                        pc.take(texts, take).to_pylist(),
                        strict=True,
                    ),
                )
                statements += len(txt_idx)
            return UpsertStats(rows=table.num_rows, new_points=new_points, statements=statements, requests=0)

        return self._write(run)

    def read_samples(self, site: str, points: Sequence[str] | None, start_ms: int, end_ms: int) -> pa.Table:
        if points is not None and not points:
            return empty_samples()
        if points is None:
            if self._bulk_worth_it(site, start_ms, end_ms):
                return self._read_bulk(site, start_ms, end_ms)
            rows = self._read(q.read_samples_sql(filtered=False), (site, start_ms, end_ms))
        else:
            names = json.dumps(list(dict.fromkeys(points)), ensure_ascii=False)
            rows = self._read(q.read_samples_sql(filtered=True), (site, start_ms, end_ms, names))
        if not rows:
            return empty_samples()
        p, t, v, x = (list(c) for c in zip(*rows, strict=True))
        return _samples_table(p, t, v, x)

    def _bulk_worth_it(self, site: str, start_ms: int, end_ms: int) -> bool:
        limit = self.bulk_read_min_rows
        if limit is None or limit <= 0:
            return limit is not None
        return int(self._read(q.COUNT_SAMPLES_UP_TO, (site, start_ms, end_ms, limit))[0][0]) >= limit

    def _read_bulk(self, site: str, start_ms: int, end_ms: int) -> pa.Table:
        names = [r[0] for r in self._read(q.SITE_POINT_NAMES, (site,))]
        if not names:
            return empty_samples()
        # Equal point counts per child; the outer ranges are open, so points added meanwhile are still read.
        n = min(self.bulk_read_workers, len(names))
        splits = sorted({names[len(names) * i // n] for i in range(1, n)})
        table = sqlite_export.read_site_range(
            self.path,
            site,
            start_ms,
            end_ms,
            name_splits=splits,
            timeout_s=self.bulk_read_timeout_s,
            busy_timeout_ms=self.busy_timeout_ms,
        )
        self.bulk_reads += 1
        return table

    def count_samples(self, site: str, start_ms: int, end_ms: int) -> int:
        return int(self._read(q.COUNT_SAMPLES, (site, start_ms, end_ms))[0][0])

    def max_ts(self, site: str) -> int | None:
        m = self._read(q.MAX_TS, (site,))[0][0]
        return None if m is None else int(m)

    def delete_range(self, site: str, start_ms: int, end_ms: int) -> int:
        return self._write(lambda conn: conn.execute(q.DELETE_RANGE, (site, start_ms, end_ms)).rowcount)

    def get_watermark(self, site: str) -> int | None:
        rows = self._read(q.GET_WATERMARK, (site,))
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    def set_watermark(self, site: str, ts_ms: int) -> None:
        self._write(lambda conn: conn.execute(q.SET_WATERMARK, (site, _now_ms(), int(ts_ms))))

    def manifest_get(self, site: str, day: dt.date) -> ManifestEntry | None:
        rows = self._read(q.MANIFEST_GET, (site, day.isoformat()))
        return _manifest_from_row(rows[0]) if rows else None

    def manifest_put(self, entry: ManifestEntry) -> None:
        self._write(lambda conn: conn.execute(q.MANIFEST_PUT, _manifest_params(entry)))

    def manifest_list(self, site: str, start: dt.date, end: dt.date) -> list[ManifestEntry]:
        rows = self._read(q.MANIFEST_LIST, (site, start.isoformat(), end.isoformat()))
        return [_manifest_from_row(r) for r in rows]

    def get_sync_as_of(self, site: str, day: dt.date) -> int | None:
        rows = self._read(q.GET_SYNC_AS_OF, (site, day.isoformat()))
        return int(rows[0][0]) if rows else None

    def set_sync_as_of(self, site: str, day: dt.date, as_of_ms: int) -> None:
        self._write(lambda conn: conn.execute(q.SET_SYNC_AS_OF, (site, day.isoformat(), int(as_of_ms))))

    def list_sync_as_of(self, site: str, start: dt.date, end: dt.date) -> dict[dt.date, int]:
        rows = self._read(q.LIST_SYNC_AS_OF, (site, start.isoformat(), end.isoformat()))
        return {dt.date.fromisoformat(d): int(m) for d, m in rows}

    def record_sync(self, site: str, day: dt.date, as_of_ms: int, watermark_ms: int) -> None:
        def both(conn: sqlite3.Connection) -> None:
            conn.execute(q.SET_SYNC_AS_OF, (site, day.isoformat(), int(as_of_ms)))
            conn.execute(q.SET_WATERMARK, (site, _now_ms(), int(watermark_ms)))

        self._write(both)

    def window_stats(self, site: str, start_ms: int, end_ms: int, future_from_ms: int) -> WindowStats:
        n, future, m = self._read(q.WINDOW_STATS, (site, start_ms, end_ms, future_from_ms))[0]
        return WindowStats(rows=int(n), future_rows=int(future or 0), max_ts=None if m is None else int(m))

    def min_ts(self, site: str) -> int | None:
        m = self._read(q.MIN_TS, (site,))[0][0]
        return None if m is None else int(m)

    def max_ts_between(self, site: str, start_ms: int, end_ms: int) -> int | None:
        m = self._read(q.MAX_TS_BETWEEN, (site, start_ms, end_ms))[0][0]
        return None if m is None else int(m)


# ================================================================================================================
# D1
# ================================================================================================================


class D1Error(RuntimeError):
    """A D1 request failed; carries the HTTP status and D1's error code/message (e.g. 7500 for SQL errors)."""

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def _d1_error(exc: Exception) -> D1Error:
    if isinstance(exc, cloudflare.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        errors = body.get("errors") or []
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        code = first.get("code")
        detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict))
        return D1Error(
            f"D1 request failed with HTTP {exc.status_code}: {detail or exc.message}",
            status=exc.status_code,
            code=int(code) if isinstance(code, int) else None,
        )
    return D1Error(f"D1 request failed: {type(exc).__name__}: {exc}")


class D1HotStore:
    """Hot tier in Cloudflare D1 through ``client.d1.database.query(batch=...)`` (dict rows, ints preserved)."""

    backend = "d1"

    def __init__(
        self,
        account_id: str,
        database_id: str,
        api_token: str,
        *,
        base_url: str | None = None,
        max_retries: int = 2,
        client: cloudflare.Cloudflare | None = None,
        max_body_bytes: int = 4_000_000,
        max_rows_per_request: int = 50_000,
        read_points_per_request: int = 100,
        delete_points_per_statement: int = 250,
        timeout_s: float = 60.0,
    ) -> None:
        self.account_id = account_id
        self.database_id = database_id
        self.max_body_bytes = max_body_bytes
        self.max_rows_per_request = max_rows_per_request
        self.read_points_per_request = read_points_per_request
        self.delete_points_per_statement = delete_points_per_statement
        self._count_lock = threading.Lock()
        self._requests = 0
        self._ids: dict[str, dict[str, int]] = {}
        if client is None:
            # Count every HTTP attempt, SDK retries included, with an httpx request hook on our own client.
            self._hooked = True
            http = cloudflare.DefaultHttpxClient(event_hooks={"request": [self._on_request]})
            client = cloudflare.Cloudflare(
                api_token=api_token,
                base_url=base_url,
                max_retries=max_retries,
                http_client=http,
                timeout=httpx.Timeout(timeout_s, connect=5.0),
            )
        else:
            self._hooked = False  # a caller's client: count 1 + retries_taken per call instead
        self._client = client

    def _on_request(self, request: httpx.Request) -> None:
        with self._count_lock:
            self._requests += 1

    def _add_requests(self, n: int) -> None:
        with self._count_lock:
            self._requests += n

    @property
    def requests_made(self) -> int:
        return self._requests

    def close(self) -> None:
        self._client.close()

    def _query(self, statements: Sequence[q.Statement]) -> list[dict[str, Any]]:
        """One batch request; returns the per-statement results (``results`` rows are dicts). Raises D1Error."""
        batch = [st.as_batch_item() for st in statements]
        try:
            raw = self._client.d1.database.with_raw_response.query(
                self.database_id,
                account_id=self.account_id,
                batch=batch,  # type: ignore[arg-type]  # the SDK types params as strings; numbers work at runtime
            )
        except cloudflare.APIError as exc:
            if not self._hooked:
                self._add_requests(1)
            raise _d1_error(exc) from exc
        if not self._hooked:
            self._add_requests(1 + raw.retries_taken)
        payload = raw.http_response.json()
        if not payload.get("success", False):
            errors = payload.get("errors") or []
            code = errors[0].get("code") if errors else None
            raise D1Error(f"D1 reported failure: {errors}", status=raw.http_response.status_code, code=code)
        results: list[dict[str, Any]] = payload.get("result") or []
        for r in results:
            if not r.get("success", True):
                raise D1Error(f"D1 statement failed: {r}", status=raw.http_response.status_code)
        return results

    def _one(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return self._query([q.Statement(sql, list(params))])[0].get("results") or []

    # -- HotStore ---------------------------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        self._query([q.Statement(ddl) for ddl in q.SCHEMA_DDL])

    def ping(self) -> None:
        self._one("SELECT 1 AS ok")

    def upsert_points(self, site: str, points: Sequence[PointMeta]) -> int:
        now = _now_ms()
        stmts = q.upsert_points_statements(site, now, _point_param_rows(points))
        head = [q.Statement(q.ENSURE_SITE, [site, now]), q.Statement(q.COUNT_POINTS, [site])]
        tail = [q.Statement(q.COUNT_POINTS, [site]), q.Statement(q.POINT_IDS, [site])]
        groups = list(q.group_requests(stmts, max_body_bytes=self.max_body_bytes, max_rows=1)) or [[]]
        groups[0] = head + groups[0]
        groups[-1] = groups[-1] + tail
        before = after = 0
        for i, group in enumerate(groups):
            res = self._query(group)
            if i == 0:
                before = int(res[1]["results"][0]["n"])
            if i == len(groups) - 1:
                after = int(res[-2]["results"][0]["n"])
                self._ids[site] = {r["name"]: int(r["id"]) for r in res[-1]["results"]}
        return after - before

    def point_ids(self, site: str) -> dict[str, int]:
        ids = {r["name"]: int(r["id"]) for r in self._one(q.POINT_IDS, [site])}
        self._ids[site] = dict(ids)
        return ids

    def list_points(self, site: str) -> list[PointMeta]:
        cols = ("name", "kind", "unit", "marker_tags", "kv_tags", "collect_interval_s")
        return [_point_from_row([r[c] for c in cols]) for r in self._one(q.LIST_POINTS, [site])]

    def list_sites(self) -> list[str]:
        return [r["name"] for r in self._one(q.LIST_SITES)]

    def _resolve_ids(self, site: str, names: list[str]) -> tuple[np.ndarray, int, int]:
        """Returns (ids aligned with names, new points, statements). Cache misses cost one request that creates
        missing points and re-reads all of the site's ids."""
        cache = self._ids.setdefault(site, {})
        missing = [n for n in names if n not in cache]
        new_points = statements = 0
        if missing:
            now = _now_ms()
            inserts = q.insert_bare_points_statements(site, now, missing)
            groups = list(q.group_requests(inserts, max_body_bytes=self.max_body_bytes, max_rows=1))
            groups[-1] = groups[-1] + [q.Statement(q.POINT_IDS, [site])]
            groups[0] = [q.Statement(q.ENSURE_SITE, [site, now]), *groups[0]]
            for group in groups:
                res = self._query(group)
                statements += len(group)
                new_points += sum(
                    int((r.get("meta") or {}).get("changes") or 0)
                    for st, r in zip(group, res, strict=True)
                    if st.sql.startswith("INSERT INTO points")
                )
            cache.update((r["name"], int(r["id"])) for r in res[-1]["results"])
        return (
            np.fromiter((cache[n] for n in names), dtype=np.int64, count=len(names)),
            new_points,
            statements,
        )

    def upsert_samples(self, site: str, samples: pa.Table) -> UpsertStats:
        if samples.num_rows == 0:
            return UpsertStats()
        before = self._requests
        table, names, codes = _prepare(samples)
        lookup, new_points, statements = self._resolve_ids(site, names)
        stmts = q.pack_sample_statements(
            lookup[codes].tolist(),
            table["ts_ms"].to_pylist(),
            table["value"].to_pylist(),
            table["value_text"].to_pylist(),
        )
        for group in q.group_requests(
            stmts, max_body_bytes=self.max_body_bytes, max_rows=self.max_rows_per_request
        ):
            self._query(group)
            statements += len(group)
        return UpsertStats(
            rows=table.num_rows,
            new_points=new_points,
            statements=statements,
            requests=self._requests - before,
        )

    def _read_rows(self, stmts: list[q.Statement]) -> Iterator[dict[str, Any]]:
        for st in stmts:
            yield from self._query([st])[0].get("results") or []

    def read_samples(self, site: str, points: Sequence[str] | None, start_ms: int, end_ms: int) -> pa.Table:
        # points=None re-reads the names: another process may have added points since our cache was filled.
        names = sorted(self.point_ids(site)) if points is None else sorted(dict.fromkeys(points))
        if not names:
            return empty_samples()
        # One request per chunk of names (sorted, so concatenated chunks stay sorted by (point, ts)); bounds the
        # rows any single response carries.
        sql = q.read_samples_sql(filtered=True, d1=True)
        step = self.read_points_per_request
        stmts = [
            q.Statement(sql, [site, start_ms, end_ms, json.dumps(names[i : i + step], ensure_ascii=False)])
            for i in range(0, len(names), step)
        ]
        p: list[str] = []
        t: list[int] = []
        v: list[float | None] = []
        x: list[str | None] = []
        for r in self._read_rows(stmts):
            p.append(r["point"])
            t.append(int(r["ts_ms"]))
            inf = r.get("inf")
            val = r["value"]
            v.append(float("inf") * inf if inf else (None if val is None else float(val)))
            x.append(r["value_text"])
        return _samples_table(p, t, v, x)

    def count_samples(self, site: str, start_ms: int, end_ms: int) -> int:
        return int(self._one(q.COUNT_SAMPLES, [site, start_ms, end_ms])[0]["n"])

    def max_ts(self, site: str) -> int | None:
        m = self._one(q.MAX_TS, [site])[0]["m"]
        return None if m is None else int(m)

    def delete_range(self, site: str, start_ms: int, end_ms: int) -> int:
        # Chunked by point-id ranges (one request each) so a whole-day delete never meets the 30 s request cap.
        ids = sorted(self.point_ids(site).values())
        step = self.delete_points_per_statement
        deleted = 0
        for i in range(0, len(ids), step):
            chunk = ids[i : i + step]
            res = self._query(
                [q.Statement(q.DELETE_RANGE_IDS, [site, start_ms, end_ms, chunk[0], chunk[-1]])]
            )
            deleted += int((res[0].get("meta") or {}).get("changes") or 0)
        return deleted

    def get_watermark(self, site: str) -> int | None:
        rows = self._one(q.GET_WATERMARK, [site])
        return None if not rows or rows[0]["watermark_ms"] is None else int(rows[0]["watermark_ms"])

    def set_watermark(self, site: str, ts_ms: int) -> None:
        self._one(q.SET_WATERMARK, [site, _now_ms(), int(ts_ms)])

    def manifest_get(self, site: str, day: dt.date) -> ManifestEntry | None:
        rows = self._one(q.MANIFEST_GET, [site, day.isoformat()])
        return _manifest_from_row([rows[0][c] for c in q.MANIFEST_COLUMNS]) if rows else None

    def manifest_put(self, entry: ManifestEntry) -> None:
        self._one(q.MANIFEST_PUT, _manifest_params(entry))

    def manifest_list(self, site: str, start: dt.date, end: dt.date) -> list[ManifestEntry]:
        rows = self._one(q.MANIFEST_LIST, [site, start.isoformat(), end.isoformat()])
        return [_manifest_from_row([r[c] for c in q.MANIFEST_COLUMNS]) for r in rows]

    def get_sync_as_of(self, site: str, day: dt.date) -> int | None:
        rows = self._one(q.GET_SYNC_AS_OF, [site, day.isoformat()])
        return int(rows[0]["as_of_ms"]) if rows else None

    def set_sync_as_of(self, site: str, day: dt.date, as_of_ms: int) -> None:
        self._one(q.SET_SYNC_AS_OF, [site, day.isoformat(), int(as_of_ms)])

    def list_sync_as_of(self, site: str, start: dt.date, end: dt.date) -> dict[dt.date, int]:
        rows = self._one(q.LIST_SYNC_AS_OF, [site, start.isoformat(), end.isoformat()])
        return {dt.date.fromisoformat(r["day"]): int(r["as_of_ms"]) for r in rows}

    def record_sync(self, site: str, day: dt.date, as_of_ms: int, watermark_ms: int) -> None:
        # Both statements in one batch: one API request per chunk of progress.
        self._query(
            [
                q.Statement(q.SET_SYNC_AS_OF, [site, day.isoformat(), int(as_of_ms)]),
                q.Statement(q.SET_WATERMARK, [site, _now_ms(), int(watermark_ms)]),
            ]
        )

    def window_stats(self, site: str, start_ms: int, end_ms: int, future_from_ms: int) -> WindowStats:
        row = self._one(q.WINDOW_STATS, [site, start_ms, end_ms, future_from_ms])[0]
        m = row["m"]
        return WindowStats(
            rows=int(row["n"]), future_rows=int(row["future"] or 0), max_ts=None if m is None else int(m)
        )

    def min_ts(self, site: str) -> int | None:
        m = self._one(q.MIN_TS, [site])[0]["m"]
        return None if m is None else int(m)

    def max_ts_between(self, site: str, start_ms: int, end_ms: int) -> int | None:
        m = self._one(q.MAX_TS_BETWEEN, [site, start_ms, end_ms])[0]["m"]
        return None if m is None else int(m)


# ================================================================================================================
# Dagster resource
# ================================================================================================================


class HotStoreResource(dg.ConfigurableResource):
    """Selects the hot tier: D1 when account, database and token are all set, else SQLite at ``sqlite_path``
    (default: ``Settings.from_env().hot_db_path``). The store is built once per resource instance and its schema
    ensured once."""

    sqlite_path: str | None = None
    d1_account_id: str | None = None
    d1_database_id: str | None = None
    d1_api_token: str | None = None
    d1_base_url: str | None = None

    _store: HotStore | None = PrivateAttr(default=None)
    _store_guard: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def get_store(self) -> HotStore:
        with self._store_guard:
            if self._store is None:
                store = self._build()
                store.ensure_schema()
                self._store = store
            return self._store

    def _build(self) -> HotStore:
        d1 = {
            "d1_account_id": self.d1_account_id,
            "d1_database_id": self.d1_database_id,
            "d1_api_token": self.d1_api_token,
        }
        present = [k for k, v in d1.items() if v]
        if present and len(present) != len(d1):
            # Refuse rather than silently writing to a local file when one D1 secret is missing.
            missing = [k for k in d1 if k not in present]
            raise ValueError(
                f"D1 is half configured: {', '.join(present)} set but {', '.join(missing)} missing"
            )
        if present:
            return D1HotStore(
                str(self.d1_account_id),
                str(self.d1_database_id),
                str(self.d1_api_token),
                base_url=self.d1_base_url or None,
            )
        if self.sqlite_path:
            return SqliteHotStore(Path(self.sqlite_path))
        from bv_pipeline.config import Settings

        return SqliteHotStore(Settings.from_env().hot_db_path)
