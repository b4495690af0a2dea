"""A local D1-compatible HTTP endpoint for tests and benchmarks, driven through the official ``cloudflare`` SDK.

Routes (Cloudflare's v4 envelope, prefix ``/client/v4``):

- ``POST /accounts/{acct}/d1/database/{id}/query`` and ``/raw``: a body ``{"sql", "params"?}`` or
  ``{"batch": [...]}``; the statements run in one transaction, rolled back entirely on any error.
- ``GET /accounts/{acct}/d1/database?name=&page=&per_page=`` (paginated like Cloudflare, ``result_info``),
  ``POST /accounts/{acct}/d1/database`` ``{"name"}`` (a new database with a uuid; a taken name is HTTP 400, code
  7502), ``GET`` and ``DELETE /accounts/{acct}/d1/database/{id}``. Each database is its own SQLite file. The
  list's ``name`` filter matches substrings (Cloudflare documents it only as "a database name to search for"),
  so a client looking one database up must compare names exactly.

Faithful where our code depends on it (see ``d1_database`` for execution and metering):

- Exact billing counters: every statement runs through SQLite carrying Cloudflare's row-count patch (built by
  ``make d1meter`` into ``.build/d1meter/``, or ``$D1METER_LIB``; a missing library fails the test with a clear
  message). Each statement's ``meta`` carries ``rows_read``, ``rows_written``, ``changes``, ``last_row_id``,
  ``changed_db``, ``size_after`` (page_count * page_size), ``duration``, ``timings.sql_duration_ms`` and
  ``served_by*``.
- D1's limits (``D1Limits``; pass ``limits=`` to lower them): 100 bound parameters and 100,000 bytes per
  statement, 2 MB per row/string/BLOB, 100 columns, 10 GB per database ("Exceeded maximum DB size"), 50 MB per
  statement result, an optional query timeout, and an optional ``max_body_bytes`` per request (HTTP 413). SQL
  errors are HTTP 400, code 7500, ``"<sqlite message>: SQLITE_<NAME>"``, header ``cf-d1: err=7500``.
  ``BEGIN``/``COMMIT``/``SAVEPOINT``/... are rejected; bindings must match the statement's parameter count.
- ``Authorization: Bearer <token>`` is required (403, code 10000 otherwise); unknown database: 404, code 7404.
- Failure injection: ``inject(status, count, when="before"|"after")`` on query/raw requests; ``"after"`` commits
  the batch, then answers the error (the "applied but the response was lost" case that SDK retries replay).

Counters for tests and benchmarks:

- ``fake.requests``: one ``RequestRecord`` per HTTP request (status, statements, body bytes, largest params and
  SQL per statement, rows read/written, result bytes); ``reset_log()`` clears it.
- ``fake.totals(database_id=None) -> D1Totals``: per database cumulative rows read/written, requests,
  statements, largest statement result and current size; ``account_totals()`` sums every database;
  ``reset_totals(database_id=None)`` zeroes them (all databases when None).
- ``fake.create_database(name) -> uuid`` creates a database directly; ``fake.database_ids`` lists them and
  ``fake.database_id_named(name)`` finds one.
- ``fake.sql(sql, params, database_id=None)``: direct, unmetered access to a database for assertions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import secrets
import tempfile
import threading
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bv_pipeline_tests.fakes.d1_database import D1Failure, D1Limits, D1Totals, Database
from bv_pipeline_tests.fakes.d1_http import Reply, envelope_error, envelope_ok, start_server

__all__ = ["D1Failure", "D1Limits", "D1Totals", "FakeD1", "RequestRecord", "run_fake_d1"]

MAX_PARAMS = D1Limits.max_params
MAX_STATEMENT_BYTES = D1Limits.max_statement_bytes
MAX_COLUMNS = D1Limits.max_columns

_ROUTE = re.compile(
    r"^/client/v4/accounts/(?P<acct>[^/]+)/d1/database(?:/(?P<db>[^/]+)(?:/(?P<kind>[^/]+))?)?$"
)


@dataclass
class RequestRecord:
    path: str
    status: int
    statements: int
    body_bytes: int
    max_params: int  # most bound params any statement of this request carried
    max_sql_bytes: int  # longest statement of this request, in UTF-8 bytes
    injected: bool = False
    method: str = "POST"
    database_id: str | None = None
    rows_read: int = 0  # committed requests only
    rows_written: int = 0
    result_bytes: int = 0  # the statements' results, JSON bytes


@dataclass
class _Injection:
    status: int
    remaining: int
    when: str  # "before": fail without touching the DB; "after": apply the batch, then fail
    retry_after_ms: int


@dataclass
class FakeD1:
    base_url: str
    account_id: str
    database_id: str  # the database created at start
    token: str
    data_dir: Path
    limits: D1Limits = field(default_factory=D1Limits)
    max_body_bytes: int | None = None
    requests: list[RequestRecord] = field(default_factory=list)
    _databases: dict[str, Database] = field(default_factory=dict)
    _injections: list[_Injection] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- test API ----------------------------------------------------------------------------------------------

    def inject(self, status: int, count: int = 1, *, when: str = "before", retry_after_ms: int = 5) -> None:
        """Fail the next ``count`` query/raw requests with ``status`` (429 carries retry-after headers)."""
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

    def database(self, database_id: str | None = None) -> Database:
        with self._lock:
            db = self._databases.get(database_id or self.database_id)
        if db is None:
            raise KeyError(f"no database {database_id!r}")
        return db

    @property
    def database_ids(self) -> list[str]:
        with self._lock:
            return list(self._databases)

    def database_id_named(self, name: str) -> str:
        """The uuid of the database called ``name`` (KeyError if none)."""
        with self._lock:
            for db_id, db in self._databases.items():
                if db.name == name:
                    return db_id
        raise KeyError(f"no database named {name!r}")

    def sql(
        self, sql: str, params: tuple[Any, ...] | list[Any] = (), *, database_id: str | None = None
    ) -> list[tuple[Any, ...]]:
        """Direct access to a database (default: the one created at start) for assertions; not metered."""
        return self.database(database_id).sql(sql, params)

    def totals(self, database_id: str | None = None) -> D1Totals:
        """A snapshot of a database's cumulative counters (default: the one created at start)."""
        db = self.database(database_id)
        with db.lock:
            return dataclasses.replace(db.totals)

    def account_totals(self) -> D1Totals:
        """Every database's counters summed (largest result: the maximum), as an account's bill sees them."""
        with self._lock:
            dbs = list(self._databases.values())
        out = D1Totals()
        for db in dbs:
            with db.lock:
                t = dataclasses.replace(db.totals)
            out.rows_read += t.rows_read
            out.rows_written += t.rows_written
            out.requests += t.requests
            out.statements += t.statements
            out.size_bytes += t.size_bytes
            out.max_result_bytes = max(out.max_result_bytes, t.max_result_bytes)
        return out

    def reset_totals(self, database_id: str | None = None) -> None:
        """Zero the counters of one database, or of every database when ``database_id`` is None."""
        if database_id:
            dbs = [self.database(database_id)]
        else:
            with self._lock:
                dbs = list(self._databases.values())
        for db in dbs:
            with db.lock:
                db.totals = D1Totals(size_bytes=db.totals.size_bytes)

    def create_database(self, name: str) -> str:
        """Create a database directly (as ``POST .../d1/database`` does); returns its uuid."""
        with self._lock:
            if any(db.name == name for db in self._databases.values()):
                raise D1Failure(400, 7502, "A database with that name already exists.")
            db_id = str(uuidlib.uuid4())
            self._databases[db_id] = Database(db_id, name, self.data_dir / f"{db_id}.sqlite3", self.limits)
        return db_id

    def close(self) -> None:
        with self._lock:
            dbs, self._databases = list(self._databases.values()), {}
        for db in dbs:
            db.close()

    # -- HTTP --------------------------------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        split = urlsplit(target)
        rec = RequestRecord(split.path, 0, 0, len(body), 0, 0, method=method)
        try:
            reply = self._route(method, split.path, parse_qs(split.query), headers, body, rec)
        except D1Failure as f:
            headers = {"cf-d1": f"err={f.code}"} if f.code == 7500 else {}  # D1's own (SQL) errors carry it
            reply = Reply(f.status, envelope_error(f.code, f.message), headers)
        except Exception as exc:  # a bug in the fake: answer it visibly rather than dropping the connection
            reply = Reply(500, envelope_error(7500, f"fake D1 internal error: {type(exc).__name__}: {exc}"))
        payload = reply.payload if isinstance(reply.payload, bytes) else json.dumps(reply.payload).encode()
        rec.status = reply.status
        with self._lock:
            self.requests.append(rec)
        return reply.status, reply.headers, payload

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
        rec: RequestRecord,
    ) -> Reply:
        m = _ROUTE.match(path)
        if not m:
            return Reply(404, envelope_error(7003, "Could not route to " + path))
        if headers.get("authorization") != f"Bearer {self.token}":
            return Reply(403, envelope_error(10000, "Authentication error"))
        if m["acct"] != self.account_id:
            return Reply(403, envelope_error(10000, "Authentication error"))
        db_id, kind = m["db"], m["kind"]
        if db_id is None:
            if method == "GET":
                return self._list(query)
            if method == "POST":
                return self._create(body)
        elif kind is None:
            if method == "GET":
                return Reply(200, envelope_ok(self._lookup(db_id).info()))
            if method == "DELETE":
                return self._delete(db_id)
        elif kind in ("query", "raw") and method == "POST":
            rec.database_id = db_id
            return self._query(self._lookup(db_id), kind == "raw", body, rec)
        return Reply(404, envelope_error(7003, f"Could not route to {method} {path}"))

    def _lookup(self, db_id: str) -> Database:
        with self._lock:
            db = self._databases.get(db_id)
        if db is None:
            raise D1Failure(404, 7404, "The database could not be found")
        return db

    def _list(self, query: dict[str, list[str]]) -> Reply:
        try:
            page = int(query.get("page", ["1"])[0])
            per_page = int(query.get("per_page", ["1000"])[0])
        except ValueError:
            raise D1Failure(400, 7400, "page and per_page must be integers") from None
        if page < 1 or not 10 <= per_page <= 10_000:
            raise D1Failure(400, 7400, "page must be >= 1 and per_page between 10 and 10000")
        name = query.get("name", [""])[0]
        with self._lock:
            matching = [db for db in self._databases.values() if name in db.name]
        chunk = matching[(page - 1) * per_page : page * per_page]
        info = {"page": page, "per_page": per_page, "count": len(chunk), "total_count": len(matching)}
        return Reply(200, envelope_ok([db.info(full=False) for db in chunk], result_info=info))

    def _create(self, body: bytes) -> Reply:
        try:
            doc = json.loads(body)
        except ValueError:
            raise D1Failure(400, 7400, "The request is malformed: invalid JSON") from None
        name = doc.get("name") if isinstance(doc, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise D1Failure(400, 7400, "The request is malformed: a database name is required")
        return Reply(200, envelope_ok(self._lookup(self.create_database(name)).info()))

    def _delete(self, db_id: str) -> Reply:
        with self._lock:
            db = self._databases.pop(db_id, None)
        if db is None:
            raise D1Failure(404, 7404, "The database could not be found")
        db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db.path}{suffix}").unlink(missing_ok=True)
        return Reply(200, envelope_ok(None))

    def _query(self, db: Database, raw: bool, body: bytes, rec: RequestRecord) -> Reply:
        with db.lock:
            db.totals.requests += 1
        try:
            doc = json.loads(body)
        except ValueError:
            raise D1Failure(400, 7400, "The request is malformed: invalid JSON") from None
        statements = doc.get("batch") if isinstance(doc, dict) and "batch" in doc else [doc]
        if (
            not isinstance(statements, list)
            or not statements
            or not all(isinstance(s, dict) for s in statements)
        ):
            raise D1Failure(400, 7400, "The request is malformed")
        rec.statements = len(statements)
        rec.max_params = max(len(s.get("params") or []) for s in statements)
        rec.max_sql_bytes = max(len(str(s.get("sql", "")).encode()) for s in statements)
        if self.max_body_bytes is not None and len(body) > self.max_body_bytes:
            return Reply(413, envelope_error(7400, "Request body too large"))
        inj = self._take_injection()
        if inj is not None and inj.when == "before":
            rec.injected = True
            return self._injected(inj)
        outcome = db.run_batch(statements, raw=raw)
        rec.rows_read, rec.rows_written = outcome.rows_read, outcome.rows_written
        rec.result_bytes = outcome.result_bytes
        if inj is not None:  # "after": the batch is committed but the client never learns it
            rec.injected = True
            return self._injected(inj)
        body_out = '{"result":[' + ",".join(outcome.results) + '],"success":true,"errors":[],"messages":[]}'
        return Reply(200, body_out.encode())

    def _take_injection(self) -> _Injection | None:
        with self._lock:
            for inj in self._injections:
                if inj.remaining > 0:
                    inj.remaining -= 1
                    return inj
        return None

    @staticmethod
    def _injected(inj: _Injection) -> Reply:
        # retry-after-ms is what the SDK honours first; retry-after is what Cloudflare sends.
        headers = {"retry-after-ms": str(inj.retry_after_ms)}
        if inj.status == 429:
            headers["retry-after"] = "1"
        return Reply(inj.status, envelope_error(7429, "injected failure"), headers)


@contextlib.contextmanager
def run_fake_d1(
    db_path: Path | str | None = None,
    *,
    account_id: str = "acct-test",
    database_id: str = "00000000-0000-4000-8000-00000000d1d1",
    database_name: str = "bv-hot",
    token: str | None = None,
    max_body_bytes: int | None = None,
    limits: D1Limits | None = None,
    data_dir: Path | str | None = None,
) -> Iterator[FakeD1]:
    """Start the fake on 127.0.0.1 with an ephemeral port and one database (``database_id``, at ``db_path``).

    Databases live in ``data_dir`` (a temporary directory removed at exit when None); ``db_path`` places the
    start database elsewhere.
    """
    with contextlib.ExitStack() as stack:
        root = Path(data_dir) if data_dir else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        root.mkdir(parents=True, exist_ok=True)
        lim = limits or D1Limits()
        first = Database(
            database_id, database_name, Path(db_path) if db_path else root / "start.sqlite3", lim
        )
        server, thread = start_server(lambda *a: fake.handle(*a))
        fake = FakeD1(
            base_url=f"http://127.0.0.1:{server.server_address[1]}/client/v4",
            account_id=account_id,
            database_id=database_id,
            token=token or secrets.token_hex(16),
            data_dir=root,
            limits=lim,
            max_body_bytes=max_body_bytes,
            _databases={database_id: first},
        )
        try:
            yield fake
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            fake.close()
