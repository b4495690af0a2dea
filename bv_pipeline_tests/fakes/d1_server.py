"""A local D1-compatible HTTP endpoint for tests and benchmarks (stdlib ``ThreadingHTTPServer`` + sqlite3).

Implements ``POST {prefix}/accounts/{account}/d1/database/{db}/query`` and ``/raw`` with Cloudflare's v4 envelope,
so the real ``cloudflare`` SDK can talk to it. Faithful where our code depends on it:

- ``Authorization: Bearer <token>`` required (403 with code 10000 otherwise).
- A body is ``{"sql", "params"?}`` or ``{"batch": [...]}``; a batch runs in one sqlite transaction and is rolled back
  entirely on any error. ``BEGIN``/``COMMIT``/``SAVEPOINT``/... in user SQL are rejected like D1 does.
- D1 limits are enforced by sqlite itself (``setlimit``): > 100 bound variables -> HTTP 400 code 7500
  ``too many SQL variables ...: SQLITE_ERROR``; a statement > 100,000 bytes -> 400 ``statement too long``.
  An optional ``max_body_bytes`` rejects large requests with 413.
- Failure injection: ``inject(status, count, when="before"|"after")``; ``"after"`` applies the batch and commits,
  then returns the error (the "applied but the response was lost" case that SDK retries replay).
- Every request is logged (status, statements, body bytes, max params and max SQL bytes per statement).
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MAX_PARAMS = 100
MAX_STATEMENT_BYTES = 100_000
MAX_COLUMNS = 100

_ROUTE = re.compile(
    r"^(?P<prefix>.*)/accounts/(?P<acct>[^/]+)/d1/database/(?P<db>[^/]+)/(?P<kind>query|raw)$"
)
_TXN = re.compile(r"^\s*(BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE)\b", re.IGNORECASE)


@dataclass
class RequestRecord:
    path: str
    status: int
    statements: int
    body_bytes: int
    max_params: int  # most bound params any statement of this request carried
    max_sql_bytes: int  # longest statement of this request, in UTF-8 bytes
    injected: bool = False


@dataclass
class _Injection:
    status: int
    remaining: int
    when: str  # "before": fail without touching the DB; "after": apply the batch, then fail
    retry_after_ms: int


class _D1Failure(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class FakeD1:
    base_url: str
    account_id: str
    database_id: str
    token: str
    requests: list[RequestRecord] = field(default_factory=list)
    _injections: list[_Injection] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _db: sqlite3.Connection | None = None
    max_body_bytes: int | None = None

    def inject(self, status: int, count: int = 1, *, when: str = "before", retry_after_ms: int = 5) -> None:
        """Fail the next ``count`` requests with ``status`` (429 carries retry-after headers)."""
        if when not in ("before", "after"):
            raise ValueError("when must be 'before' or 'after'")
        with self._lock:
            self._injections.append(_Injection(status, count, when, retry_after_ms))

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    @property
    def request_count(self) -> int:
        return len(self.requests)

    def sql(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Direct access to the backing database for assertions."""
        assert self._db is not None
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # -- request handling (called by the handler under _lock: one batch at a time, like a single D1 primary) ----

    def _take_injection(self) -> _Injection | None:
        for inj in self._injections:
            if inj.remaining > 0:
                inj.remaining -= 1
                return inj
        return None

    def _run(self, statements: list[dict[str, Any]], raw: bool) -> list[dict[str, Any]]:
        db = self._db
        assert db is not None
        out: list[dict[str, Any]] = []
        db.execute("BEGIN")
        try:
            for st in statements:
                sql = st.get("sql")
                params = st.get("params") or []
                if not isinstance(sql, str) or not isinstance(params, list):
                    raise _D1Failure(
                        400, 7400, "The request is malformed: sql must be a string, params a list"
                    )
                if _TXN.match(sql):
                    raise _D1Failure(
                        400, 7500, "To execute a transaction, please use the state.storage.transaction() APIs"
                    )
                if len(sql.encode()) > MAX_STATEMENT_BYTES:
                    raise _D1Failure(400, 7500, "statement too long: SQLITE_TOOBIG")
                try:
                    cur = db.execute(sql, params)
                    rows = cur.fetchall()
                except (sqlite3.Error, OverflowError) as exc:
                    raise _D1Failure(400, 7500, f"{exc}: SQLITE_ERROR") from exc
                cols = [d[0] for d in cur.description] if cur.description else []
                changes = max(cur.rowcount, 0) if cur.description is None else 0
                meta = {
                    "changed_db": changes > 0,
                    "changes": changes,
                    "duration": 0.1,
                    "last_row_id": cur.lastrowid or 0,
                    "rows_read": len(rows),
                    "rows_written": changes,
                    "size_after": 0,
                }
                results: Any = (
                    {"columns": cols, "rows": [list(r) for r in rows]}
                    if raw
                    else [dict(zip(cols, r, strict=True)) for r in rows]
                )
                out.append({"results": results, "success": True, "meta": meta})
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return out

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            status, extra, payload, nstmt, max_params, max_sql, injected = self._handle_locked(
                path, headers, body
            )
            self.requests.append(
                RequestRecord(path, status, nstmt, len(body), max_params, max_sql, injected=injected)
            )
        return status, extra, json.dumps(payload).encode()

    def _handle_locked(
        self, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], dict[str, Any], int, int, int, bool]:
        def envelope_error(status: int, code: int, message: str) -> dict[str, Any]:
            return {
                "result": [],
                "success": False,
                "errors": [{"code": code, "message": message}],
                "messages": [],
            }

        m = _ROUTE.match(path)
        if not m or not path.startswith("/client/v4/"):
            return 404, {}, envelope_error(404, 7003, "Could not route to " + path), 0, 0, 0, False
        if headers.get("authorization") != f"Bearer {self.token}":
            return 403, {}, envelope_error(403, 10000, "Authentication error"), 0, 0, 0, False
        if m["acct"] != self.account_id or m["db"] != self.database_id:
            return 404, {}, envelope_error(404, 7404, "The database could not be found"), 0, 0, 0, False
        try:
            doc = json.loads(body)
        except ValueError:
            return (
                400,
                {},
                envelope_error(400, 7400, "The request is malformed: invalid JSON"),
                0,
                0,
                0,
                False,
            )
        statements = doc.get("batch") if isinstance(doc, dict) and "batch" in doc else [doc]
        if not isinstance(statements, list) or not all(isinstance(s, dict) for s in statements):
            return 400, {}, envelope_error(400, 7400, "The request is malformed"), 0, 0, 0, False
        nstmt = len(statements)
        max_params = max((len(s.get("params") or []) for s in statements), default=0)
        max_sql = max((len(str(s.get("sql", "")).encode()) for s in statements), default=0)
        stats = (nstmt, max_params, max_sql)
        if self.max_body_bytes is not None and len(body) > self.max_body_bytes:
            return 413, {}, envelope_error(413, 7400, "Request body too large"), *stats, False

        inj = self._take_injection()
        if inj is not None and inj.when == "before":
            return (
                inj.status,
                self._inj_headers(inj),
                envelope_error(inj.status, 7429, "injected failure"),
                *stats,
                True,
            )
        try:
            result = self._run(statements, raw=m["kind"] == "raw")
        except _D1Failure as f:
            return (
                f.status,
                {"cf-d1": f"err={f.code}"},
                envelope_error(f.status, f.code, f.message),
                *stats,
                False,
            )
        if inj is not None:  # "after": the batch is committed but the client never learns it
            return (
                inj.status,
                self._inj_headers(inj),
                envelope_error(inj.status, 7429, "injected failure"),
                *stats,
                True,
            )
        return 200, {}, {"result": result, "success": True, "errors": [], "messages": []}, *stats, False

    @staticmethod
    def _inj_headers(inj: _Injection) -> dict[str, str]:
        if inj.status == 429:
            # retry-after-ms is what the SDK honours first; retry-after is what Cloudflare sends.
            return {"retry-after-ms": str(inj.retry_after_ms), "retry-after": "1"}
        return {"retry-after-ms": str(inj.retry_after_ms)}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, keep-alive requests stall ~40 ms on delayed ACKs.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # silence per-request stderr lines
        return

    def do_POST(self) -> None:  # http.server naming
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, extra, payload = self.server.fake.handle(self.path, headers, body)
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeD1


@contextlib.contextmanager
def run_fake_d1(
    db_path: Path | str | None = None,
    *,
    account_id: str = "acct-test",
    database_id: str = "00000000-0000-4000-8000-00000000d1d1",
    token: str | None = None,
    max_body_bytes: int | None = None,
) -> Iterator[FakeD1]:
    """Start the fake on 127.0.0.1 with an ephemeral port; ``db_path`` None keeps the database in memory."""
    conn = sqlite3.connect(
        str(db_path) if db_path else ":memory:", isolation_level=None, check_same_thread=False
    )
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, MAX_PARAMS)
    conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, MAX_STATEMENT_BYTES)
    conn.setlimit(sqlite3.SQLITE_LIMIT_COLUMN, MAX_COLUMNS)
    server = _Server(("127.0.0.1", 0), _Handler)
    port = server.server_address[1]
    fake = FakeD1(
        base_url=f"http://127.0.0.1:{port}/client/v4",
        account_id=account_id,
        database_id=database_id,
        token=token or secrets.token_hex(16),
        _db=conn,
        max_body_bytes=max_body_bytes,
    )
    server.fake = fake
    thread = threading.Thread(target=server.serve_forever, name="fake-d1", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        conn.close()
