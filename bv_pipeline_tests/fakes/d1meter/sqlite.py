"""ctypes driver for ``libsqlite3_d1.so``: SQLite carrying Cloudflare's row counters (see ``patch_rowcounts.py``).

Every statement reports what D1 puts in ``meta``: ``rows_read`` and ``rows_written`` (the patched
``sqlite3_stmt_status`` counters 1025 / 1026, i.e. D1's billing units by construction), ``changes`` and
``last_row_id``. The library is located by :func:`library_path` and loaded on first use, never at import.
"""

from __future__ import annotations

import ctypes as C
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LIBRARY_ENV = "D1METER_LIB"
REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_LIBRARY = REPO_ROOT / ".build" / "d1meter" / "libsqlite3_d1.so"

SQLITE_OK, SQLITE_ROW, SQLITE_DONE = 0, 100, 101
_ROWS_READ, _ROWS_WRITTEN = 1025, 1026
_INTEGER, _FLOAT, _TEXT, _BLOB, _NULL = 1, 2, 3, 4, 5
_TRANSIENT = C.c_void_p(-1)
_OPEN_READWRITE_CREATE = 0x2 | 0x4

# sqlite3_limit() ids
LIMIT_LENGTH, LIMIT_SQL_LENGTH, LIMIT_COLUMN = 0, 1, 2
LIMIT_FUNCTION_ARG, LIMIT_LIKE_PATTERN_LENGTH, LIMIT_VARIABLE_NUMBER = 6, 8, 9

CODE_NAMES = {
    1: "SQLITE_ERROR", 2: "SQLITE_INTERNAL", 3: "SQLITE_PERM", 4: "SQLITE_ABORT", 5: "SQLITE_BUSY",
    6: "SQLITE_LOCKED", 7: "SQLITE_NOMEM", 8: "SQLITE_READONLY", 9: "SQLITE_INTERRUPT", 10: "SQLITE_IOERR",
    11: "SQLITE_CORRUPT", 12: "SQLITE_NOTFOUND", 13: "SQLITE_FULL", 14: "SQLITE_CANTOPEN",
    15: "SQLITE_PROTOCOL", 16: "SQLITE_EMPTY", 17: "SQLITE_SCHEMA", 18: "SQLITE_TOOBIG",
    19: "SQLITE_CONSTRAINT", 20: "SQLITE_MISMATCH", 21: "SQLITE_MISUSE", 22: "SQLITE_NOLFS",
    23: "SQLITE_AUTH", 24: "SQLITE_FORMAT", 25: "SQLITE_RANGE", 26: "SQLITE_NOTADB",
}  # fmt: skip
SQLITE_FULL, SQLITE_INTERRUPT = 13, 9


class LibraryMissing(RuntimeError):
    """The patched SQLite library is not built: tests that need exact D1 row counts cannot run."""


class SqliteError(Exception):
    """An SQLite error; ``str()`` is ``"<message>: SQLITE_<NAME>"``, the form D1 reports."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code & 0xFF  # primary result code
        self.message = message
        super().__init__(f"{message}: {CODE_NAMES.get(self.code, 'SQLITE_ERROR')}")


@dataclass
class StatementResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    rows_read: int
    rows_written: int
    changes: int
    last_row_id: int
    readonly: bool


def library_path() -> Path:
    """``$D1METER_LIB`` if set, else ``.build/d1meter/libsqlite3_d1.so`` in the repository (``make d1meter``)."""
    return Path(os.environ.get(LIBRARY_ENV) or DEFAULT_LIBRARY)


_lib: C.CDLL | None = None
_lib_lock = threading.Lock()


def load_library() -> C.CDLL:
    global _lib
    with _lib_lock:
        if _lib is None:
            path = library_path()
            if not path.is_file():
                raise LibraryMissing(
                    f"D1 row-count SQLite library not found at {path}. Build it with `make d1meter` (npm + gcc, "
                    f"about 30 s; `make test` does it first) or point ${LIBRARY_ENV} at a built libsqlite3_d1.so."
                )
            _lib = _declare(C.CDLL(str(path)))
    return _lib


def _declare(lib: C.CDLL) -> C.CDLL:
    p, i, i64, s = C.c_void_p, C.c_int, C.c_int64, C.c_char_p
    sigs: dict[str, tuple[list[Any], Any]] = {
        "sqlite3_open_v2": ([s, C.POINTER(p), i, s], i),
        "sqlite3_close_v2": ([p], i),
        "sqlite3_prepare_v2": ([p, p, i, C.POINTER(p), C.POINTER(p)], i),
        "sqlite3_step": ([p], i),
        "sqlite3_finalize": ([p], i),
        "sqlite3_exec": ([p, s, p, p, p], i),
        "sqlite3_stmt_status": ([p, i, i], i),
        "sqlite3_stmt_readonly": ([p], i),
        "sqlite3_sql": ([p], s),
        "sqlite3_changes64": ([p], i64),
        "sqlite3_total_changes64": ([p], i64),
        "sqlite3_last_insert_rowid": ([p], i64),
        "sqlite3_errmsg": ([p], s),
        "sqlite3_extended_errcode": ([p], i),
        "sqlite3_error_offset": ([p], i),
        "sqlite3_column_count": ([p], i),
        "sqlite3_column_name": ([p, i], s),
        "sqlite3_column_type": ([p, i], i),
        "sqlite3_column_int64": ([p, i], i64),
        "sqlite3_column_double": ([p, i], C.c_double),
        "sqlite3_column_text": ([p, i], p),
        "sqlite3_column_blob": ([p, i], p),
        "sqlite3_column_bytes": ([p, i], i),
        "sqlite3_bind_parameter_count": ([p], i),
        "sqlite3_bind_int64": ([p, i, i64], i),
        "sqlite3_bind_double": ([p, i, C.c_double], i),
        "sqlite3_bind_text": ([p, i, s, i, p], i),
        "sqlite3_bind_blob": ([p, i, s, i, p], i),
        "sqlite3_bind_null": ([p, i], i),
        "sqlite3_limit": ([p, i, i], i),
        "sqlite3_get_autocommit": ([p], i),
        "sqlite3_progress_handler": ([p, i, p, p], None),
        "sqlite3_libversion": ([], s),
    }
    for name, (args, res) in sigs.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, res
    return lib


_PROGRESS = C.CFUNCTYPE(C.c_int, C.c_void_p)


class Connection:
    """One SQLite connection through the patched library. Not thread-safe: callers serialise access."""

    def __init__(self, path: str | Path, *, limits: dict[int, int] | None = None) -> None:
        self._lib = load_library()
        self._db = C.c_void_p()
        rc = self._lib.sqlite3_open_v2(str(path).encode(), C.byref(self._db), _OPEN_READWRITE_CREATE, None)
        if rc != SQLITE_OK:
            raise SqliteError(rc, f"cannot open {path}")
        for limit_id, value in (limits or {}).items():
            self._lib.sqlite3_limit(self._db, limit_id, value)
        self._deadline: float | None = None
        self._progress = _PROGRESS(self._on_progress)  # keep a reference: SQLite holds the pointer

    @staticmethod
    def version() -> str:
        return load_library().sqlite3_libversion().decode()

    def close(self) -> None:
        if self._db:
            self._lib.sqlite3_close_v2(self._db)
            self._db = C.c_void_p()

    def exec(self, sql: str) -> None:
        """Run trusted SQL (transaction control, pragmas) without results or counters."""
        if self._lib.sqlite3_exec(self._db, sql.encode(), None, None, None) != SQLITE_OK:
            raise self._error()

    @property
    def in_transaction(self) -> bool:
        return not self._lib.sqlite3_get_autocommit(self._db)

    def scalar(self, sql: str) -> Any:
        (res,) = self.execute(sql)
        return res.rows[0][0] if res.rows else None

    def set_deadline(self, seconds: float | None) -> None:
        """Interrupt statements running past ``seconds`` from now (SQLITE_INTERRUPT); None disables it."""
        self._deadline = None if seconds is None else time.monotonic() + seconds
        handler = self._progress if seconds is not None else None
        self._lib.sqlite3_progress_handler(
            self._db, 10_000, C.cast(handler, C.c_void_p) if handler else None, None
        )

    def _on_progress(self, _arg: Any) -> int:
        return int(self._deadline is not None and time.monotonic() > self._deadline)

    def _error(self, rc: int | None = None) -> SqliteError:
        code = self._lib.sqlite3_extended_errcode(self._db) if rc is None else rc
        msg = (self._lib.sqlite3_errmsg(self._db) or b"").decode("utf-8", "replace")
        offset = self._lib.sqlite3_error_offset(self._db)
        if offset >= 0 and " at offset " not in msg:
            msg += f" at offset {offset}"
        return SqliteError(code, msg)

    def statements(self, sql: str) -> Iterator[C.c_void_p]:
        """Prepare ``sql`` one statement at a time (several may be joined by semicolons); finalizes each."""
        buf = C.create_string_buffer(sql.encode())
        tail = C.c_void_p(C.addressof(buf))
        end = C.addressof(buf) + len(buf) - 1
        while tail.value is not None and tail.value < end:
            stmt, nxt = C.c_void_p(), C.c_void_p()
            rc = self._lib.sqlite3_prepare_v2(self._db, tail, end - tail.value, C.byref(stmt), C.byref(nxt))
            if rc != SQLITE_OK:
                raise self._error()
            if not stmt.value:  # only whitespace or comments left
                return
            try:
                yield stmt
            finally:
                self._lib.sqlite3_finalize(stmt)
            tail = nxt

    def statement_sql(self, stmt: C.c_void_p) -> str:
        return (self._lib.sqlite3_sql(stmt) or b"").decode("utf-8", "replace")

    def parameter_count(self, stmt: C.c_void_p) -> int:
        return int(self._lib.sqlite3_bind_parameter_count(stmt))

    def bind(self, stmt: C.c_void_p, params: Sequence[Any]) -> None:
        lib = self._lib
        for i, v in enumerate(params, start=1):
            if v is None:
                rc = lib.sqlite3_bind_null(stmt, i)
            elif isinstance(v, bool | int):
                if not -(2**63) <= v < 2**63:
                    raise SqliteError(25, f"integer parameter {i} out of the 64-bit range")
                rc = lib.sqlite3_bind_int64(stmt, i, int(v))
            elif isinstance(v, float):
                rc = lib.sqlite3_bind_double(stmt, i, v)
            elif isinstance(v, bytes | bytearray | memoryview):
                b = bytes(v)
                rc = lib.sqlite3_bind_blob(stmt, i, b, len(b), _TRANSIENT)
            elif isinstance(v, str):
                b = v.encode()
                rc = lib.sqlite3_bind_text(stmt, i, b, len(b), _TRANSIENT)
            else:
                raise SqliteError(20, f"unsupported type {type(v).__name__} for parameter {i}")
            if rc != SQLITE_OK:
                raise self._error(rc)

    def run(self, stmt: C.c_void_p) -> StatementResult:
        """Step a bound statement to completion, collecting rows and the statement's counters."""
        lib, db = self._lib, self._db
        ncol = lib.sqlite3_column_count(stmt)
        columns = [lib.sqlite3_column_name(stmt, i).decode() for i in range(ncol)]
        before = lib.sqlite3_total_changes64(db)
        rows: list[tuple[Any, ...]] = []
        step, read_row = lib.sqlite3_step, self._row_reader(stmt, ncol)
        while True:
            rc = step(stmt)
            if rc == SQLITE_ROW:
                rows.append(read_row())
            elif rc == SQLITE_DONE:
                break
            else:
                raise self._error()
        return StatementResult(
            columns=columns,
            rows=rows,
            rows_read=lib.sqlite3_stmt_status(stmt, _ROWS_READ, 0),
            rows_written=lib.sqlite3_stmt_status(stmt, _ROWS_WRITTEN, 0),
            changes=lib.sqlite3_total_changes64(db) - before,
            last_row_id=lib.sqlite3_last_insert_rowid(db),
            readonly=bool(lib.sqlite3_stmt_readonly(stmt)),
        )

    def _row_reader(self, stmt: C.c_void_p, ncol: int) -> Any:
        """A function reading the current row as Python values (hot path: everything bound locally)."""
        lib, cols, string_at = self._lib, range(ncol), C.string_at
        ctype, as_int, as_float = lib.sqlite3_column_type, lib.sqlite3_column_int64, lib.sqlite3_column_double
        as_text, as_blob, nbytes = lib.sqlite3_column_text, lib.sqlite3_column_blob, lib.sqlite3_column_bytes

        def read_row() -> tuple[Any, ...]:
            row: list[Any] = []
            append = row.append
            for i in cols:
                t = ctype(stmt, i)
                if t == _INTEGER:
                    append(as_int(stmt, i))
                elif t == _FLOAT:
                    append(as_float(stmt, i))
                elif t == _TEXT:
                    ptr = as_text(stmt, i)
                    append(string_at(ptr, nbytes(stmt, i)).decode("utf-8", "replace"))
                elif t == _BLOB:
                    ptr = as_blob(stmt, i)
                    n = nbytes(stmt, i)
                    append(string_at(ptr, n) if n else b"")
                else:
                    append(None)
            return tuple(row)

        return read_row

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[StatementResult]:
        """Run every statement of ``sql`` (``params`` bind the single statement); one result per statement."""
        out = []
        for stmt in self.statements(sql):
            self.bind(stmt, params)
            out.append(self.run(stmt))
        return out

    def size_bytes(self) -> int:
        return int(self.scalar("PRAGMA page_count")) * int(self.scalar("PRAGMA page_size"))
