"""One database of the local D1 endpoint: runs a request's statements the way D1 does and meters them.

Statements execute through SQLite carrying Cloudflare's row-count patch (``d1meter``), so ``meta.rows_read`` and
``meta.rows_written`` are D1's billing units by construction. Values cross the boundary as D1's JavaScript runtime
moves them (Cloudflare's "Type conversion" table): a parameter that is an integral number binds as INTEGER (JSON
``21.0`` too), an array of byte values as a BLOB; results are JavaScript numbers (an integral REAL comes back as
``21``, ``-0.0`` as ``0``, an infinity as ``null``, an integer beyond 2**53 rounded) and BLOBs arrays of bytes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import re
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from bv_pipeline_tests.fakes.d1meter import sqlite as d1sql

_LEAD = r"^(?:\s|--[^\n]*(?:\n|$)|/\*.*?\*/)*"  # whitespace and comments before the first keyword
_TXN = re.compile(_LEAD + r"(BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE)\b", re.IGNORECASE | re.DOTALL)
_DDL = re.compile(_LEAD + r"(CREATE|DROP|ALTER)\b", re.IGNORECASE | re.DOTALL)
_MAX_SAFE_INTEGER = 2**53
SERVED_BY = "bv-fake-d1"  # D1 names the backend version here (e.g. "v3-prod")


@dataclass(frozen=True)
class D1Limits:
    """D1's limits (Cloudflare's limits page); tests may lower any of them."""

    max_params: int = 100  # bound parameters per statement
    max_statement_bytes: int = 100_000  # SQL text per statement
    max_value_bytes: int = 2_000_000  # per row, string or BLOB (SQLITE_LIMIT_LENGTH)
    max_columns: int = 100
    max_function_args: int = 32
    max_like_pattern_bytes: int = 50
    max_database_bytes: int = 10 * 1000**3  # 10 GB per database, cannot be raised on D1
    max_result_bytes: int = 50_000_000  # per statement result
    query_timeout_s: float | None = None  # D1: 30 s; off by default so a slow CI machine cannot flake


@dataclass
class D1Totals:
    """Cumulative figures of one database since creation or the last ``reset_totals``."""

    rows_read: int = 0  # committed requests only, like meta
    rows_written: int = 0
    requests: int = 0  # every HTTP request addressed to the database, failed and injected ones too
    statements: int = 0  # statements of committed requests
    max_result_bytes: int = 0  # largest single-statement result (JSON bytes)
    size_bytes: int = 0  # page_count * page_size after the last committed request


class D1Failure(Exception):
    """An error answered in Cloudflare's envelope: HTTP ``status``, error ``code`` and ``message``."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class BatchOutcome:
    results: list[str]  # one encoded JSON object per statement
    rows_read: int = 0
    rows_written: int = 0
    result_bytes: int = 0  # all statements' results, JSON bytes
    max_result_bytes: int = 0  # the largest single statement's results


def js_number(v: float) -> float | int | None:
    """A double as JavaScript's JSON.stringify writes it (then read back by a JSON parser)."""
    if not math.isfinite(v):
        return None
    if v.is_integer():
        return int(Decimal(repr(v))) if abs(v) >= _MAX_SAFE_INTEGER else int(v)
    return v


def js_value(v: Any) -> Any:
    t = type(v)
    if t is str:
        return v
    if t is int:
        return v if -_MAX_SAFE_INTEGER <= v <= _MAX_SAFE_INTEGER else js_number(float(v))
    if t is float:
        return js_number(v)
    if t is bytes:
        return list(v)
    return v


def d1_param(v: Any) -> Any:
    """A JSON parameter as D1 binds it: JavaScript has one number type, so an integral number binds as INTEGER
    (``21.0`` and ``-0.0`` too); an array of byte values binds as a BLOB; objects are a type error."""
    if type(v) is float and v.is_integer() and -(2.0**63) <= v < 2.0**63:
        return int(v)
    if isinstance(v, list):
        if all(type(b) is int and 0 <= b <= 255 for b in v):
            return bytes(v)
        raise D1Failure(400, 7500, "D1_TYPE_ERROR: an array parameter must hold byte values (0-255)")
    if isinstance(v, dict):
        raise D1Failure(400, 7500, "D1_TYPE_ERROR: Type 'object' not supported for value '[object Object]'")
    return v


@dataclass
class Database:
    uuid: str
    name: str
    path: Path
    limits: D1Limits
    created_at: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    )
    totals: D1Totals = field(default_factory=D1Totals)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        lim = self.limits
        self.conn = d1sql.Connection(
            self.path,
            limits={
                d1sql.LIMIT_VARIABLE_NUMBER: lim.max_params,
                d1sql.LIMIT_SQL_LENGTH: lim.max_statement_bytes,
                d1sql.LIMIT_LENGTH: lim.max_value_bytes,
                d1sql.LIMIT_COLUMN: lim.max_columns,
                d1sql.LIMIT_FUNCTION_ARG: lim.max_function_args,
                d1sql.LIMIT_LIKE_PATTERN_LENGTH: lim.max_like_pattern_bytes,
            },
        )
        # D1 enforces foreign keys. The fake's files are scratch data: no fsync.
        self.conn.exec("PRAGMA foreign_keys = ON; PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF")
        page_size = int(self.conn.scalar("PRAGMA page_size"))
        self.conn.exec(f"PRAGMA max_page_count = {max(1, lim.max_database_bytes // page_size)}")
        self.totals.size_bytes = self.conn.size_bytes()

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def info(self, *, full: bool = True) -> dict[str, Any]:
        """The database as Cloudflare's API describes it (``D1`` for get/create, the list item otherwise)."""
        doc: dict[str, Any] = {
            "uuid": self.uuid,
            "name": self.name,
            "version": "production",
            "created_at": self.created_at,
        }
        if full:
            with self.lock:
                tables = self.conn.scalar("SELECT count(*) FROM sqlite_schema WHERE type = 'table'")
                size = self.conn.size_bytes()
            doc |= {"file_size": size, "num_tables": tables, "read_replication": {"mode": "disabled"}}
        return doc

    def sql(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        """Direct access for assertions (Python values, not metered)."""
        with self.lock:
            results = self.conn.execute(sql, params)
        return results[-1].rows if results else []

    def run_batch(self, statements: list[dict[str, Any]], *, raw: bool) -> BatchOutcome:
        """Run ``statements`` in one transaction, all or nothing, like a D1 batch; raises D1Failure."""
        with self.lock:
            conn = self.conn
            conn.exec("BEGIN IMMEDIATE")
            try:
                conn.set_deadline(self.limits.query_timeout_s)
                out = BatchOutcome(results=[])
                for st in statements:
                    self._run_one(st, raw, out)
                conn.set_deadline(None)
                conn.exec("COMMIT")
            except BaseException:
                conn.set_deadline(None)
                if conn.in_transaction:  # SQLITE_FULL and some others already rolled it back
                    conn.exec("ROLLBACK")
                raise
            t = self.totals
            t.rows_read += out.rows_read
            t.rows_written += out.rows_written
            t.statements += len(out.results)
            t.max_result_bytes = max(t.max_result_bytes, out.max_result_bytes)
            t.size_bytes = conn.size_bytes()
        return out

    def _run_one(self, st: dict[str, Any], raw: bool, out: BatchOutcome) -> None:
        sql, params = st.get("sql"), st.get("params")
        params = [] if params is None else params
        if not isinstance(sql, str) or not isinstance(params, list):
            raise D1Failure(400, 7400, "The request is malformed: sql must be a string, params a list")
        if len(sql.encode()) > self.limits.max_statement_bytes:
            raise D1Failure(400, 7500, "statement too long: SQLITE_TOOBIG")
        try:
            ran = len(out.results)
            with contextlib.closing(self.conn.statements(sql)) as prepared:
                for i, stmt in enumerate(prepared):
                    self._run_prepared(stmt, i, params, raw, out)
            if len(out.results) == ran:  # only comments
                raise D1Failure(400, 7500, "No SQL statements detected.")
        except d1sql.SqliteError as exc:
            if exc.code == d1sql.SQLITE_FULL:
                raise D1Failure(400, 7500, "Exceeded maximum DB size") from exc
            if exc.code == d1sql.SQLITE_INTERRUPT:
                raise D1Failure(
                    400, 7500, "D1 DB storage operation exceeded timeout which caused object to be reset."
                ) from exc
            raise D1Failure(400, 7500, str(exc)) from exc

    def _run_prepared(self, stmt: Any, index: int, params: list[Any], raw: bool, out: BatchOutcome) -> None:
        conn = self.conn
        text = conn.statement_sql(stmt)
        if _TXN.match(text):
            raise D1Failure(
                400, 7500, "To execute a transaction, please use the state.storage.transaction() APIs"
            )
        if index > 0 and params:
            raise D1Failure(400, 7500, "Bound parameters are only supported on a single statement")
        if conn.parameter_count(stmt) != len(params):
            raise D1Failure(400, 7500, "Wrong number of parameter bindings for SQL query.")
        conn.bind(stmt, [d1_param(v) for v in params])
        started = time.perf_counter()
        res = conn.run(stmt)
        self._encode(res, text, raw, (time.perf_counter() - started) * 1000, out)

    def _encode(
        self, res: d1sql.StatementResult, text: str, raw: bool, elapsed_ms: float, out: BatchOutcome
    ) -> None:
        rows = [[js_value(v) for v in row] for row in res.rows]
        results: Any = (
            {"columns": res.columns, "rows": rows}
            if raw
            else [dict(zip(res.columns, row, strict=True)) for row in rows]
        )
        encoded_results = json.dumps(results, separators=(",", ":"))
        if len(encoded_results) > self.limits.max_result_bytes:
            raise D1Failure(
                400,
                7500,
                f"Query result too large: {len(encoded_results)} bytes exceeds the "
                f"{self.limits.max_result_bytes}-byte limit",
            )
        changed = res.changes > 0 or res.rows_written > 0 or (not res.readonly and bool(_DDL.match(text)))
        meta = {
            "served_by": SERVED_BY,
            "served_by_region": "ENAM",
            "served_by_primary": True,
            "served_by_colo": "LOC",
            "timings": {"sql_duration_ms": elapsed_ms},
            "duration": elapsed_ms,
            "changes": res.changes,
            "last_row_id": 0 if res.readonly else res.last_row_id,  # a read reports 0, as in D1's docs
            "changed_db": changed,
            "size_after": self.conn.size_bytes(),
            "rows_read": res.rows_read,
            "rows_written": res.rows_written,
        }
        out.results.append(
            f'{{"results":{encoded_results},"success":true,"meta":{json.dumps(meta, separators=(",", ":"))}}}'
        )
        out.rows_read += res.rows_read
        out.rows_written += res.rows_written
        out.result_bytes += len(encoded_results)
        out.max_result_bytes = max(out.max_result_bytes, len(encoded_results))
