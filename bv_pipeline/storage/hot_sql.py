"""Hot-tier schema and SQL shared by the SQLite and D1 backends (D1 *is* SQLite). Pure: no I/O.

Tables that always exist:

- ``sites(name PK, created_ms, watermark_ms)``; the watermark only moves forward, and an update that would not
  move it writes nothing (D1 bills rows written; an upsert whose ``DO UPDATE ... WHERE`` is false counts 0).
- ``points(id INTEGER PRIMARY KEY, site, name, ..., UNIQUE(site, name))``: blocks reference the small integer id.
  The metadata upsert is guarded: an unchanged point is never rewritten.
- ``archive_manifest(site, day, ...)`` and ``sync_state(site, day, as_of_ms)`` (guarded: only moves forward).
- ``hot_seal(site PK, sealed_ms)``: hours ending at or before ``sealed_ms`` are sealed (see ``hot_layout``).
- ``hot_staging(id INTEGER PRIMARY KEY, site, hour_ms, n, first_ts, last_ts, block)``: the open hours' samples.

Samples themselves live in per-(site, day) block tables built by ``bv_pipeline.storage.hot_layout``.

Literals: multi-row statements inline numbers this module formats itself from ints/floats (floats as exact
integer arithmetic, see ``float_literal``) and codec payloads (JSON) as string literals; every string from outside (site,
point names, tags) is a bound parameter.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 2

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
    """CREATE TABLE IF NOT EXISTS hot_seal (
    site TEXT PRIMARY KEY NOT NULL,
    sealed_ms INTEGER NOT NULL
) WITHOUT ROWID""",
    # No index: the table holds only the open hours' rows (a few dozen per site), a scan is cheaper than
    # paying an index entry per insert.
    """CREATE TABLE IF NOT EXISTS hot_staging (
    id INTEGER PRIMARY KEY,
    site TEXT NOT NULL,
    hour_ms INTEGER NOT NULL,
    n INTEGER NOT NULL,
    first_ts INTEGER NOT NULL,
    last_ts INTEGER NOT NULL,
    block TEXT NOT NULL
)""",
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
    "watermark_ms = excluded.watermark_ms "
    "WHERE sites.watermark_ms IS NULL OR excluded.watermark_ms > sites.watermark_ms"
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
    "last_seen_ms = MAX(points.last_seen_ms, excluded.last_seen_ms) "
    # The guard: an unchanged point writes nothing (the hourly refresh would otherwise rewrite every point).
    "WHERE points.kind IS NOT excluded.kind OR points.unit IS NOT excluded.unit "
    "OR points.marker_tags IS NOT excluded.marker_tags OR points.kv_tags IS NOT excluded.kv_tags "
    "OR points.collect_interval_s IS NOT excluded.collect_interval_s"
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


# --- exact numeric literals ------------------------------------------------------------------------------------

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
    "as_of_ms = excluded.as_of_ms WHERE excluded.as_of_ms > sync_state.as_of_ms"
)
GET_SYNC_AS_OF = "SELECT as_of_ms FROM sync_state WHERE site = ?1 AND day = ?2"
LIST_SYNC_AS_OF = (
    "SELECT day, as_of_ms FROM sync_state WHERE site = ?1 AND day >= ?2 AND day <= ?3 ORDER BY day"
)
