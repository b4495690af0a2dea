"""Hot-tier schema and SQL builders shared by the SQLite and D1 backends. Pure: no I/O.

Schema (identical SQL on both backends, D1 *is* SQLite):

- ``sites(name PK, created_ms, watermark_ms)``: one row per site; the watermark only moves forward
  (``MAX(COALESCE(old, new), new)``; plain ``MAX(NULL, x)`` is NULL in SQLite, hence the COALESCE).
- ``points(id INTEGER PRIMARY KEY, site, name, ..., UNIQUE(site, name))``: samples reference a small integer id
  instead of repeating the point name (names are 30-60 bytes, the id is 1-3 bytes on disk). Names are compared
  with the default BINARY collation, so they are case-sensitive and exact (the old system lower-cased them).
  Tags are JSON text (D1 has the JSON extension). ``first_seen_ms``/``last_seen_ms`` track when the point was
  first created and last listed by ``upsert_points``.
- ``samples(point_id, ts_ms, value REAL, value_text TEXT, PRIMARY KEY(point_id, ts_ms)) WITHOUT ROWID``: the
  clustered key makes "one point over a range" a single B-tree range scan. Measured (performance-anchors section 4):
  21 B/sample vs 44 for a rowid table plus index, and 5-50x faster point reads.
- ``archive_manifest(site, day 'YYYY-MM-DD', ..., PRIMARY KEY(site, day))``: verified cold objects.

Improvements over the brief's sketch, and why:

- The sample upsert's ``DO UPDATE`` carries ``WHERE samples.value IS NOT excluded.value OR ...``: a replayed
  batch (SDK retry after a lost response, overlapping sync windows) then writes nothing. D1 bills and rate-limits
  by rows written, and SQLite skips dirtying pages.
- Rows whose ``value_text`` is NULL (the vast majority) use a 3-column insert form, saving ~5 bytes per row in
  packed D1 statements; text rows use the 4-column form with the text as a bound parameter.
- Point-name filters go through ``json_each(?)`` (one bound parameter for any number of names), so D1's
  100-parameter limit never caps how many points a read names.
- ``max_ts`` asks each point's PK for its maximum (a correlated sub-select), which SQLite answers with one B-tree
  seek per point instead of scanning every sample of the site.

Literals: the D1 packer inlines numbers (point ids, epoch ms, float values) that this module formats itself from
ints/floats, floats as exact integer arithmetic (see ``float_literal``); every string from outside (site, point
names, value_text) is a bound parameter.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1

SCHEMA_DDL: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS sites (
    name TEXT PRIMARY KEY NOT NULL,
    created_ms INTEGER NOT NULL,
    watermark_ms INTEGER
)""",
    """CREATE TABLE IF NOT EXISTS points (
    id INTEGER PRIMARY KEY,
    site TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT,
    unit TEXT,
    marker_tags TEXT NOT NULL DEFAULT '[]',
    kv_tags TEXT NOT NULL DEFAULT '{}',
    collect_interval_s INTEGER,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    UNIQUE (site, name)
)""",
    """CREATE TABLE IF NOT EXISTS samples (
    point_id INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    value REAL,
    value_text TEXT,
    PRIMARY KEY (point_id, ts_ms)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS archive_manifest (
    site TEXT NOT NULL,
    day TEXT NOT NULL,
    object_key TEXT NOT NULL,
    rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    checksum TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    verified_ms INTEGER NOT NULL,
    source TEXT NOT NULL,
    hot_deleted_ms INTEGER,
    PRIMARY KEY (site, day)
)""",
    # Per (site, day): wall-clock instant of the last successful fetch of that day. The sync derives its next
    # window from this (minus a lookback), so progress survives failed runs and days sync independently.
    """CREATE TABLE IF NOT EXISTS sync_state (
    site TEXT NOT NULL,
    day TEXT NOT NULL,
    as_of_ms INTEGER NOT NULL,
    PRIMARY KEY (site, day)
) WITHOUT ROWID""",
)

# D1 limits (reference section 2). The packer stays a little under the statement cap for safety.
D1_MAX_PARAMS = 100
D1_MAX_STATEMENT_BYTES = 100_000


@dataclass
class Statement:
    sql: str
    params: list[Any] = field(default_factory=list)
    rows: int = 0  # sample rows this statement carries (0 for non-sample statements)

    def as_batch_item(self) -> dict[str, Any]:
        return {"sql": self.sql, "params": self.params} if self.params else {"sql": self.sql}


# --- sites / watermark -------------------------------------------------------------------------------------------

ENSURE_SITE = "INSERT INTO sites (name, created_ms) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING"
SET_WATERMARK = (
    "INSERT INTO sites (name, created_ms, watermark_ms) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO UPDATE SET "
    "watermark_ms = MAX(COALESCE(sites.watermark_ms, excluded.watermark_ms), excluded.watermark_ms)"
)
GET_WATERMARK = "SELECT watermark_ms FROM sites WHERE name = ?1"
LIST_SITES = "SELECT name FROM sites ORDER BY name"

# --- points ------------------------------------------------------------------------------------------------------

POINT_IDS = "SELECT id, name FROM points WHERE site = ?1"
COUNT_POINTS = "SELECT COUNT(*) AS n FROM points WHERE site = ?1"
LIST_POINTS = "SELECT name, kind, unit, marker_tags, kv_tags, collect_interval_s FROM points WHERE site = ?1 ORDER BY name"
_POINT_COLS = "site, name, kind, unit, marker_tags, kv_tags, collect_interval_s, first_seen_ms, last_seen_ms"
# Explicit metadata is authoritative (it comes from the ACE point list), so it replaces what is stored.
_POINT_META_CONFLICT = (
    " ON CONFLICT (site, name) DO UPDATE SET kind = excluded.kind, unit = excluded.unit, "
    "marker_tags = excluded.marker_tags, kv_tags = excluded.kv_tags, "
    "collect_interval_s = excluded.collect_interval_s, "
    "last_seen_ms = MAX(points.last_seen_ms, excluded.last_seen_ms)"
)
# Points named only by samples get a bare row; existing metadata is never touched.
_POINT_BARE_CONFLICT = " ON CONFLICT (site, name) DO NOTHING"

UPSERT_POINT_ONE = f"INSERT INTO points ({_POINT_COLS}) VALUES (?1, ?3, ?4, ?5, ?6, ?7, ?8, ?2, ?2)" + (
    _POINT_META_CONFLICT
)
INSERT_BARE_POINT_ONE = (
    "INSERT INTO points (site, name, first_seen_ms, last_seen_ms) VALUES (?1, ?3, ?2, ?2)"
    + _POINT_BARE_CONFLICT
)


def point_meta_params(
    name: str,
    kind: str | None,
    unit: str | None,
    marker_tags: Sequence[str],
    kv_tags: dict[str, str],
    collect_interval_s: int | None,
) -> list[Any]:
    return [
        name,
        kind,
        unit,
        json.dumps(list(marker_tags), ensure_ascii=False),
        json.dumps(dict(sorted(kv_tags.items())), ensure_ascii=False),
        collect_interval_s,
    ]


def upsert_points_statements(
    site: str, now_ms: int, rows: Sequence[list[Any]], *, max_params: int = D1_MAX_PARAMS
) -> list[Statement]:
    """Multi-row point upserts: ?1 = site, ?2 = now, then 6 numbered params per point (<= max_params each)."""
    per = 6
    chunk = (max_params - 2) // per
    out: list[Statement] = []
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        groups = []
        params: list[Any] = [site, now_ms]
        for i, row in enumerate(part):
            b = 3 + i * per
            groups.append(f"(?1, ?{b}, ?{b + 1}, ?{b + 2}, ?{b + 3}, ?{b + 4}, ?{b + 5}, ?2, ?2)")
            params.extend(row)
        sql = f"INSERT INTO points ({_POINT_COLS}) VALUES " + ", ".join(groups) + _POINT_META_CONFLICT
        out.append(Statement(sql, params))
    return out


def insert_bare_points_statements(
    site: str, now_ms: int, names: Sequence[str], *, max_params: int = D1_MAX_PARAMS
) -> list[Statement]:
    """Create points that samples named but nobody described yet (?1 = site, ?2 = now, one param per name)."""
    chunk = max_params - 2
    out: list[Statement] = []
    for start in range(0, len(names), chunk):
        part = list(names[start : start + chunk])
        groups = ", ".join(f"(?1, ?{3 + i}, ?2, ?2)" for i in range(len(part)))
        sql = (
            "INSERT INTO points (site, name, first_seen_ms, last_seen_ms) VALUES "
            + groups
            + _POINT_BARE_CONFLICT
        )
        out.append(Statement(sql, [site, now_ms, *part]))
    return out


# --- samples -----------------------------------------------------------------------------------------------------

_SITE_POINTS = "SELECT id FROM points WHERE site = ?1"
_NUM_HEAD = "INSERT INTO samples (point_id, ts_ms, value) VALUES "
_NUM_TAIL = (
    " ON CONFLICT (point_id, ts_ms) DO UPDATE SET value = excluded.value, value_text = NULL "
    "WHERE samples.value IS NOT excluded.value OR samples.value_text IS NOT NULL"
)
_TXT_HEAD = "INSERT INTO samples (point_id, ts_ms, value, value_text) VALUES "
_TXT_TAIL = (
    " ON CONFLICT (point_id, ts_ms) DO UPDATE SET value = excluded.value, value_text = excluded.value_text "
    "WHERE samples.value IS NOT excluded.value OR samples.value_text IS NOT excluded.value_text"
)
# Single-row forms for SQLite executemany (same conflict semantics as the packed D1 forms).
UPSERT_SAMPLE_NUM = _NUM_HEAD + "(?, ?, ?)" + _NUM_TAIL
UPSERT_SAMPLE_TXT = _TXT_HEAD + "(?, ?, ?, ?)" + _TXT_TAIL


_TWO53 = 1 << 53
_POW2_STEP = 62  # 2**62 is the largest power of two that is an int64 literal


def float_literal(v: float | None) -> str:
    """SQL expression that evaluates to exactly this float64, independent of SQLite's text-to-float parser.

    A plain ``repr`` literal is not enough: SQLite before 3.43 parses decimals with long-double arithmetic and
    double rounding, e.g. ``49.4738870309987`` comes back as ``49.473887030998696``. So only integer literals
    and correctly rounded IEEE operations on exact operands are used:

    - integral values: the integer literal (REAL affinity converts it exactly);
    - shortest decimal ``m * 10**-k`` with ``|m| < 2**53`` and ``k <= 22``: ``m/1e<k>``. Both operands are exact
      doubles and one IEEE division rounds correctly, so the result is the double nearest the decimal, which is
      ``v`` (Clinger's fast path);
    - otherwise (17 significant digits, e.g. float32 values widened to float64): ``v = M * 2**E`` with an
      integer ``|M| < 2**53``, written ``M*1.0`` times/divided by int64 powers of two, every step exact.

    NaN -> NULL (SQLite stores NaN as NULL anyway); +/-inf -> ``9e999`` / ``-9e999`` (overflow is exact)."""
    if v is None or math.isnan(v):
        return "NULL"
    if math.isinf(v):
        return "9e999" if v > 0 else "-9e999"
    v = float(v)
    if v == 0.0:
        return "0.0"
    if v.is_integer() and abs(v) < 2**63:
        return str(int(v))
    mant, _, exp = repr(v).partition("e")
    ip, _, fp = mant.partition(".")
    m = int(ip + fp)
    k = len(fp) - (int(exp) if exp else 0)  # v = m / 10**k
    while m % 10 == 0 and k > 0:
        m //= 10
        k -= 1
    if abs(m) < _TWO53 and 0 < k <= 22:
        return f"{m}/1e{k}"
    frac, e2 = math.frexp(v)
    big_m, e2 = int(frac * _TWO53), e2 - 53
    while big_m % 2 == 0:
        big_m //= 2
        e2 += 1
    out = f"{big_m}*1.0"
    op = "*" if e2 > 0 else "/"
    rest = abs(e2)
    while rest > 0:
        step = min(rest, _POW2_STEP)
        out += f"{op}{1 << step}"
        rest -= step
    return out


def pack_sample_statements(
    point_ids: Sequence[int],
    ts_ms: Sequence[int],
    values: Sequence[float | None],
    texts: Sequence[str | None],
    *,
    max_statement_bytes: int = D1_MAX_STATEMENT_BYTES - 1_000,
    max_params: int = D1_MAX_PARAMS,
    max_rows: int = 5_000,
) -> list[Statement]:
    """Pack sample rows into multi-row upserts for D1.

    Numbers are inlined as literals formatted here (int() / repr(float)), so a statement holds ~2,000 rows within
    the 100 KB statement cap. value_text strings stay bound parameters: each distinct string of a statement is
    bound once as ?N and rows refer to it, so repeated enum texts do not cap a statement at 100 rows. Rows must
    already be de-duplicated on (point_id, ts_ms): numeric and text rows go to different statements, which would
    otherwise reorder "last one wins".
    """
    out: list[Statement] = []
    num_tail_len = len(_NUM_TAIL.encode())
    txt_tail_len = len(_TXT_TAIL.encode())

    num_parts: list[str] = []
    num_len = len(_NUM_HEAD) + num_tail_len
    txt_parts: list[str] = []
    txt_slots: dict[str, int] = {}  # distinct text -> its ?N; enum texts repeat, so rows share parameters
    txt_len = len(_TXT_HEAD) + txt_tail_len

    def flush_num() -> None:
        nonlocal num_parts, num_len
        if num_parts:
            out.append(Statement(_NUM_HEAD + ",".join(num_parts) + _NUM_TAIL, [], len(num_parts)))
        num_parts = []
        num_len = len(_NUM_HEAD) + num_tail_len

    def flush_txt() -> None:
        nonlocal txt_parts, txt_slots, txt_len
        if txt_parts:
            out.append(
                Statement(_TXT_HEAD + ",".join(txt_parts) + _TXT_TAIL, list(txt_slots), len(txt_parts))
            )
        txt_parts = []
        txt_slots = {}
        txt_len = len(_TXT_HEAD) + txt_tail_len

    for pid, ts, v, t in zip(point_ids, ts_ms, values, texts, strict=True):
        if t is None:
            part = f"({int(pid)},{int(ts)},{float_literal(v)})"
            if num_parts and (num_len + len(part) + 1 > max_statement_bytes or len(num_parts) >= max_rows):
                flush_num()
            num_parts.append(part)
            num_len += len(part) + 1
        else:
            slot = txt_slots.get(t)
            # Worst case a new slot needs 3 digits; recompute after a flush so the slot number is right.
            part_len = len(f"({int(pid)},{int(ts)},{float_literal(v)},?{max_params})")
            if txt_parts and (
                txt_len + part_len + 1 > max_statement_bytes
                or (slot is None and len(txt_slots) >= max_params)
                or len(txt_parts) >= max_rows
            ):
                flush_txt()
                slot = None
            if slot is None:
                slot = txt_slots[t] = len(txt_slots) + 1
            part = f"({int(pid)},{int(ts)},{float_literal(v)},?{slot})"
            txt_parts.append(part)
            txt_len += len(part) + 1
    flush_num()
    flush_txt()
    return out


def statement_body_bytes(st: Statement) -> int:
    """Bytes this statement adds to a JSON request body (SQL has no characters that JSON escapes besides quotes)."""
    return len(st.sql.encode()) + len(json.dumps(st.params, ensure_ascii=False).encode()) + 32


def group_requests(
    statements: Sequence[Statement], *, max_body_bytes: int, max_rows: int, max_statements: int = 1_000
) -> Iterator[list[Statement]]:
    """Greedy grouping of statements into batch requests bounded by body size, sample rows and statement count."""
    cur: list[Statement] = []
    size = rows = 0
    for st in statements:
        b = statement_body_bytes(st)
        if cur and (size + b > max_body_bytes or rows + st.rows > max_rows or len(cur) >= max_statements):
            yield cur
            cur, size, rows = [], 0, 0
        cur.append(st)
        size += b
        rows += st.rows
    if cur:
        yield cur


# --- reads / deletes ---------------------------------------------------------------------------------------------

_SAMPLES_OF_SITE = f"point_id IN ({_SITE_POINTS})"
COUNT_SAMPLES = f"SELECT COUNT(*) AS n FROM samples WHERE {_SAMPLES_OF_SITE} AND ts_ms >= ?2 AND ts_ms < ?3"
MAX_TS = "SELECT MAX((SELECT MAX(s.ts_ms) FROM samples s WHERE s.point_id = p.id)) AS m FROM points p WHERE p.site = ?1"
DELETE_RANGE = f"DELETE FROM samples WHERE {_SAMPLES_OF_SITE} AND ts_ms >= ?2 AND ts_ms < ?3"
# D1: delete one id range of the site's points per statement, so no single statement runs into the 30 s cap.
DELETE_RANGE_IDS = (
    "DELETE FROM samples WHERE point_id IN (SELECT id FROM points WHERE site = ?1 AND id >= ?4 AND id <= ?5) "
    "AND ts_ms >= ?2 AND ts_ms < ?3"
)


def read_samples_sql(*, filtered: bool, d1: bool = False) -> str:
    """?1 site, ?2 start, ?3 end, ?4 JSON array of names when filtered. Ordered by (name, ts) in BINARY order,
    which is the UTF-8 byte order Arrow and Python sort strings in.

    For D1 the value is split into a finite value and an ``inf`` marker: JSON (and D1's JavaScript runtime) has
    no representation for infinity."""
    value = (
        "CASE WHEN s.value IN (9e999, -9e999) THEN NULL ELSE s.value END AS value, "
        "CASE WHEN s.value = 9e999 THEN 1 WHEN s.value = -9e999 THEN -1 END AS inf"
        if d1
        else "s.value AS value"
    )
    name_filter = " AND p.name IN (SELECT value FROM json_each(?4))" if filtered else ""
    return (
        f"SELECT p.name AS point, s.ts_ms AS ts_ms, {value}, s.value_text AS value_text "
        "FROM points p JOIN samples s ON s.point_id = p.id "
        f"WHERE p.site = ?1{name_filter} AND s.ts_ms >= ?2 AND s.ts_ms < ?3 ORDER BY p.name, s.ts_ms"
    )


def bulk_read_sql(*, name_from: bool, name_to: bool) -> str:
    """Whole-site read for the Arrow-native bulk export (``bv_pipeline.storage.sqlite_export``): ?1 site,
    ?2 start, ?3 end, then the lower name bound (names >= it) and the upper one (names < it) as ?4, ?5 in that
    order, each only when asked for. Same rows and order as
    ``read_samples_sql(filtered=False)``: SQLite walks the (site, name) index, so ORDER BY costs no sort.

    Arrow drivers infer column types from the first rows they see, and a column of NULLs infers wrongly. So no
    column is ever NULL: a nullable value comes as a stand-in plus an ``IS NULL`` flag. ``value`` has REAL
    affinity, so it reads back REAL even where SQLite stored an integral value as an INTEGER on disk."""
    names = (" AND p.name >= ?4" if name_from else "") + (
        f" AND p.name < ?{4 + name_from}" if name_to else ""
    )
    return (
        "SELECT p.name AS point, s.ts_ms AS ts_ms, COALESCE(s.value, 0.0) AS value, "
        "s.value IS NULL AS value_null, COALESCE(s.value_text, '') AS value_text, "
        "s.value_text IS NULL AS value_text_null "
        "FROM points p JOIN samples s ON s.point_id = p.id "
        f"WHERE p.site = ?1{names} AND s.ts_ms >= ?2 AND s.ts_ms < ?3 ORDER BY p.name, s.ts_ms"
    )


SITE_POINT_NAMES = "SELECT name FROM points WHERE site = ?1 ORDER BY name"
# "At least n rows?" without counting a whole day: the scan stops after ?4 rows.
COUNT_SAMPLES_UP_TO = (
    f"SELECT COUNT(*) AS n FROM (SELECT 1 FROM samples WHERE {_SAMPLES_OF_SITE} AND ts_ms >= ?2 AND ts_ms < ?3 "
    "LIMIT ?4)"
)

# --- archive manifest --------------------------------------------------------------------------------------------

_MANIFEST_COLS = (
    "site, day, object_key, rows, bytes, checksum, schema_version, verified_ms, source, hot_deleted_ms"
)
MANIFEST_PUT = (
    f"INSERT INTO archive_manifest ({_MANIFEST_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) "
    "ON CONFLICT (site, day) DO UPDATE SET object_key = excluded.object_key, rows = excluded.rows, "
    "bytes = excluded.bytes, checksum = excluded.checksum, schema_version = excluded.schema_version, "
    "verified_ms = excluded.verified_ms, source = excluded.source, hot_deleted_ms = excluded.hot_deleted_ms"
)
MANIFEST_GET = f"SELECT {_MANIFEST_COLS} FROM archive_manifest WHERE site = ?1 AND day = ?2"
MANIFEST_LIST = (
    f"SELECT {_MANIFEST_COLS} FROM archive_manifest WHERE site = ?1 AND day >= ?2 AND day <= ?3 ORDER BY day"
)
MANIFEST_COLUMNS = tuple(c.strip() for c in _MANIFEST_COLS.split(","))

# --- per-day sync progress and range extremes ---------------------------------------------------------------------

SET_SYNC_AS_OF = (
    "INSERT INTO sync_state (site, day, as_of_ms) VALUES (?1, ?2, ?3) ON CONFLICT (site, day) DO UPDATE SET "
    "as_of_ms = MAX(sync_state.as_of_ms, excluded.as_of_ms)"
)
GET_SYNC_AS_OF = "SELECT as_of_ms FROM sync_state WHERE site = ?1 AND day = ?2"
LIST_SYNC_AS_OF = (
    "SELECT day, as_of_ms FROM sync_state WHERE site = ?1 AND day >= ?2 AND day <= ?3 ORDER BY day"
)
# Per-point PK seeks, like MAX_TS: never a scan of the site's samples.
MIN_TS = "SELECT MIN((SELECT MIN(s.ts_ms) FROM samples s WHERE s.point_id = p.id)) AS m FROM points p WHERE p.site = ?1"
MAX_TS_BETWEEN = (
    "SELECT MAX((SELECT MAX(s.ts_ms) FROM samples s WHERE s.point_id = p.id AND s.ts_ms >= ?2 AND s.ts_ms < ?3)) "
    "AS m FROM points p WHERE p.site = ?1"
)
WINDOW_STATS = (
    f"SELECT COUNT(*) AS n, COALESCE(SUM(ts_ms >= ?4), 0) AS future, MAX(ts_ms) AS m FROM samples "
    f"WHERE {_SAMPLES_OF_SITE} AND ts_ms >= ?2 AND ts_ms < ?3"
)
