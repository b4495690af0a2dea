"""Arrow-native bulk reads of the SQLite hot tier, in short-lived child processes.

Why: building 6.5 M Python tuples through ``sqlite3`` (one site-day) takes ~17 s; the ADBC SQLite driver reads
the same rows straight into Arrow several times faster. But ADBC bundles its own SQLite library, and two SQLite
libraries in one process release each other's POSIX advisory locks on the WAL database (commit 12f8957: ``disk
I/O error``). In a separate process the driver's SQLite is just another process on the file, which SQLite's
locking handles correctly. So the parent never imports the driver; each child:

- reads a JSON request on stdin (so any site or point name passes through unmangled),
- opens the database read-only (``mode=ro``). As a WAL reader it never blocks the writer; while it reads, a
  checkpoint cannot move past its snapshot, so the WAL may grow for those few seconds,
- writes ``SAMPLE_SCHEMA`` record batches as one Arrow IPC stream to stdout, then exits 0. Its stdout is an
  unnamed in-memory file that the parent memory-maps once the child is done (zero-copy).

Anything else (missing driver, SQL error, unexpected column type, crash, hang) raises ``SqliteExportError``
carrying the child's stderr. Rows come back in (point, ts_ms) order, like ``SqliteHotStore.read_samples``.
Several children split the site by point-name range (each in name order), so their outputs simply concatenate.
Each child reads its own snapshot: a write committed between two children's starts may be seen by one range
and not the other. Every row returned was committed, which is all archival needs (retention re-checks every hot
row against cold before deleting).
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from subprocess import PIPE, Popen, TimeoutExpired
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc

from bv_pipeline.storage import hot_sql as q
from bv_pipeline.storage.samples import SAMPLE_SCHEMA, empty_samples

__all__ = ["ExportRequest", "SqliteExportError", "main", "read_site_range"]

DEFAULT_BATCH_ROWS = 65_536
_STDERR_TAIL = 4_000
# The child finds this very package even when the parent got it from a sys.path tweak (e.g. pytest's rootdir);
# appended, so a normally importable bv_pipeline (installed, PYTHONPATH, cwd) resolves exactly as in the parent.
_CHILD_BOOT = (
    "import sys; sys.path.append(sys.argv.pop(1)); "
    "from bv_pipeline.storage.sqlite_export import main; raise SystemExit(main())"
)
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class SqliteExportError(RuntimeError):
    """A bulk-read child failed; the message carries its exit status and stderr."""


@dataclass(frozen=True)
class ExportRequest:
    db: str
    site: str
    start_ms: int
    end_ms: int
    name_from: str | None = None  # names >= this (None: no lower bound)
    name_to: str | None = None  # names < this (None: no upper bound)
    batch_rows: int = DEFAULT_BATCH_ROWS
    busy_timeout_ms: int = 5_000


# ------------------------------------------------------------------------------------------------ child side

_COLUMN_TYPES = {
    "point": pa.string(),
    "ts_ms": pa.int64(),
    "value": pa.float64(),
    "value_null": pa.int64(),
    "value_text": pa.string(),
    "value_text_null": pa.int64(),
}


def _with_nulls(values: pa.Array, is_null: pa.Array) -> pa.Array:
    if not pc.any(is_null.cast(pa.bool_())).as_py():
        return values
    return pc.if_else(pc.equal(is_null, 0), values, pa.scalar(None, values.type))


# Other layouts of the same strings that a driver version might pick; cast losslessly.
_STRING_LIKE = (pa.large_string(), pa.string_view())


def to_samples(batch: pa.RecordBatch) -> pa.RecordBatch:
    """One driver batch (``hot_sql.bulk_read_sql`` columns) as a SAMPLE_SCHEMA batch; refuses any other types."""
    cols = dict(zip(batch.schema.names, batch.columns, strict=True))
    for name, col in cols.items():
        if _COLUMN_TYPES.get(name) == pa.string() and col.type in _STRING_LIKE:
            cols[name] = col.cast(pa.string())
    got = {name: col.type for name, col in cols.items()}
    if got != _COLUMN_TYPES:
        raise TypeError(f"bulk read returned columns {got}, expected {_COLUMN_TYPES}; refusing to guess")
    return pa.RecordBatch.from_arrays(
        [
            cols["point"],
            cols["ts_ms"],
            _with_nulls(cols["value"], cols["value_null"]),
            _with_nulls(cols["value_text"], cols["value_text_null"]),
        ],
        schema=SAMPLE_SCHEMA,
    )


def _read_only_uri(path: str) -> str:
    return "file:" + urllib.parse.quote(str(Path(path).resolve())) + "?mode=ro"


def export(req: ExportRequest, sink: Any) -> int:
    """Stream the requested rows to ``sink`` as one Arrow IPC stream. Returns the row count."""
    import adbc_driver_manager as adbc
    import adbc_driver_sqlite

    sql = q.bulk_read_sql(name_from=req.name_from is not None, name_to=req.name_to is not None)
    params: list[pa.Array] = [pa.array([req.site]), pa.array([req.start_ms]), pa.array([req.end_ms])]
    params += [pa.array([b]) for b in (req.name_from, req.name_to) if b is not None]
    rows = 0
    with (
        adbc_driver_sqlite.connect(_read_only_uri(req.db)) as db,
        adbc.AdbcConnection(db) as conn,
        adbc.AdbcStatement(conn) as pragma,
        adbc.AdbcStatement(conn) as stmt,
    ):
        # A reader can briefly meet SQLITE_BUSY (e.g. while another connection recovers the WAL index).
        pragma.set_sql_query(f"PRAGMA busy_timeout = {int(req.busy_timeout_ms)}")
        pragma.execute_update()
        # Larger batches than the driver's 1024 rows: fewer, bigger IPC messages.
        stmt.set_options(**{adbc_driver_sqlite.StatementOptions.BATCH_ROWS.value: str(req.batch_rows)})
        stmt.set_sql_query(sql)
        stmt.bind(pa.record_batch(params, names=[f"p{i}" for i in range(len(params))]))
        handle, _ = stmt.execute_query()
        with (
            pa.RecordBatchReader.from_stream(handle) as reader,
            pa.ipc.new_stream(sink, SAMPLE_SCHEMA) as out,
        ):
            for batch in reader:
                if batch.num_rows:
                    out.write_batch(to_samples(batch))
                    rows += batch.num_rows
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Child entry point: an ``ExportRequest`` as JSON on stdin, the Arrow IPC stream on stdout."""
    if argv:
        print(
            "usage: an ExportRequest as JSON on stdin; writes an Arrow IPC stream to stdout", file=sys.stderr
        )
        return 2
    req = ExportRequest(**json.loads(sys.stdin.read()))
    sink = pa.PythonFile(sys.stdout.buffer, mode="w")
    export(req, sink)
    sys.stdout.buffer.flush()
    return 0


# ----------------------------------------------------------------------------------------------- parent side


def _anonymous_file() -> IO[bytes]:
    """Where a child writes its stream: an unnamed in-memory file where Linux has one (nothing on disk, nothing
    to clean up after a crash), else an unlinked temp file. A file rather than a pipe: the child never waits on
    the parent, and the parent memory-maps the finished stream instead of copying it."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None:
        return os.fdopen(memfd_create("bv-sqlite-export", os.MFD_CLOEXEC), "w+b")
    return tempfile.TemporaryFile()


def _tail(f: IO[bytes]) -> str:
    f.seek(0)
    text = f.read().decode("utf-8", "replace").strip()
    return text[-_STDERR_TAIL:] if text else "(no stderr)"


@dataclass
class _Child:
    req: ExportRequest
    proc: Popen[bytes]
    out: IO[bytes]
    err: IO[bytes]

    @property
    def what(self) -> str:
        r = self.req
        return f"site {r.site!r} [{r.start_ms}, {r.end_ms}) names [{r.name_from!r}, {r.name_to!r})"

    def table(self) -> pa.Table:
        size = os.fstat(self.out.fileno()).st_size
        if size == 0:
            raise SqliteExportError(f"bulk read child for {self.what} exited 0 but wrote nothing")
        # Zero-copy: the table's buffers point into the mapping, which lives as long as they do.
        mapped = mmap.mmap(self.out.fileno(), size, access=mmap.ACCESS_READ)
        try:
            table = pa.ipc.open_stream(pa.py_buffer(mapped)).read_all()
        except pa.ArrowException as exc:
            raise SqliteExportError(
                f"bulk read child for {self.what} wrote an unreadable stream: {exc}"
            ) from exc
        if not table.schema.equals(SAMPLE_SCHEMA):
            raise SqliteExportError(f"bulk read child for {self.what} sent {table.schema}, not SAMPLE_SCHEMA")
        return table


class _Children:
    """Started children with their output and stderr files; on exit anything still running is killed and every
    child reaped, whatever happened."""

    def __init__(self) -> None:
        self.children: list[_Child] = []

    def __enter__(self) -> _Children:
        return self

    def start(self, req: ExportRequest) -> None:
        with contextlib.ExitStack() as files:  # closed again only if the child cannot be started
            out = files.enter_context(_anonymous_file())
            err = files.enter_context(tempfile.TemporaryFile())
            proc = Popen(
                [sys.executable, "-c", _CHILD_BOOT, _PACKAGE_ROOT],
                stdin=PIPE,
                stdout=out,
                stderr=err,  # a file: a chatty child never blocks on a pipe nobody drains
            )
            files.pop_all()
        self.children.append(_Child(req, proc, out, err))
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # a child dead at start-up: its status and stderr tell why
            proc.stdin.write(json.dumps(asdict(req)).encode())
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()

    def wait(self, deadline: float) -> None:
        for c in self.children:
            try:
                rc = c.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutExpired:
                raise SqliteExportError(
                    f"bulk read child for {c.what} did not finish in time; killed"
                ) from None
            if rc != 0:
                raise SqliteExportError(
                    f"bulk read child for {c.what} exited with status {rc}:\n{_tail(c.err)}"
                )

    def __exit__(self, *exc: object) -> None:
        for c in self.children:
            if c.proc.poll() is None:
                c.proc.kill()
        for c in self.children:
            c.proc.wait()
            c.out.close()
            c.err.close()


def read_site_range(
    db: Path | str,
    site: str,
    start_ms: int,
    end_ms: int,
    *,
    name_splits: Sequence[str] = (),
    timeout_s: float = 900.0,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    busy_timeout_ms: int = 5_000,
) -> pa.Table:
    """Every sample of ``site`` in [start_ms, end_ms) as SAMPLE_SCHEMA, sorted by (point, ts_ms), read by one
    child per point-name range: ``name_splits`` (sorted, distinct) cut the names into len + 1 ranges, read in
    parallel. Raises SqliteExportError when any child fails or the read takes longer than ``timeout_s``."""
    if list(name_splits) != sorted(set(name_splits)):
        raise ValueError("name_splits must be sorted and distinct")
    path = str(Path(db).resolve())
    deadline = time.monotonic() + timeout_s
    with _Children() as children:
        for lo, hi in zip([None, *name_splits], [*name_splits, None], strict=True):
            children.start(ExportRequest(path, site, start_ms, end_ms, lo, hi, batch_rows, busy_timeout_ms))
        children.wait(deadline)
        tables = [t for t in (c.table() for c in children.children) if t.num_rows]
    if not tables:
        return empty_samples()
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


if __name__ == "__main__":
    raise SystemExit(main())
