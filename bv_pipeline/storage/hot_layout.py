"""The hot tier's sample layout and its SQL. Pure: no I/O.

Why this layout (d1-billing reference: a row per sample cost 13.1 M rows written per site-day on D1):

- **Sealed blocks**: one row per (point, UTC hour) in a per-(site, day) table ``"hb_<site>_<yyyymmdd>"``, keyed
  ``point_id * 32 + hour`` as the rowid, so a point's day is 24 adjacent rows and each block stays in-page.
  Columns ``n`` (samples), ``n_numeric``/``vmin``/``vmax``/``vsum`` (over the *finite* numeric values, exactly
  like the cold tier's hourly rollups), ``first_ts``/``last_ts`` and ``block`` (the codec's payload). Hourly reads and the sync checks
  use the summary columns without touching payloads. Retention is ``DROP TABLE`` (D1 counts 0 rows written).
- **Staging**: samples of hours not sealed yet go to ``hot_staging``, one row per (group of up to
  ``STAGING_GROUP_POINTS`` points, hour, write) holding only samples the store did not already hold, so a
  repeated sync writes no sample row at all.
- **Sealing**: once an hour's lookback has passed, its staging rows are merged (in id order, last write wins)
  with any blocks of that hour into blocks written with guarded upserts (an identical block writes nothing),
  and exactly the staging rows that were read are deleted, in the same request as the last block statement.

Row counts per site-day at 4,583 points, 1-minute samples and 5-minute syncs: 110 k block rows plus a few
thousand staging inserts and deletes, against 13.1 M before.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

from bv_pipeline.storage.hot_blocks_sql import block_select_sql
from bv_pipeline.storage.hot_sql import D1_MAX_STATEMENT_BYTES, Statement, float_literal

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
KEY_HOURS = 32  # key = point_id * 32 + hour of day; a power of two >= 24
STAGING_GROUP_POINTS = 1_000
BLOCK_TABLE_PREFIX = "hb_"
_BLOCK_TABLE = re.compile(r"^hb_(?P<site>.+)_(?P<day>\d{8})$")

BLOCK_COLUMNS = ("key", "n", "n_numeric", "vmin", "vmax", "vsum", "first_ts", "last_ts", "block")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def block_table(site: str, day: dt.date) -> str:
    """Unquoted name of the site-day's block table (site slugs may contain '-': always quote in SQL)."""
    return f"{BLOCK_TABLE_PREFIX}{site}_{day:%Y%m%d}"


def parse_block_table(name: str) -> tuple[str, dt.date] | None:
    m = _BLOCK_TABLE.match(name)
    if not m:
        return None
    return m["site"], dt.datetime.strptime(m["day"], "%Y%m%d").date()


def create_block_table(site: str, day: dt.date) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {quote_ident(block_table(site, day))} (key INTEGER PRIMARY KEY, "
        "n INTEGER NOT NULL, n_numeric INTEGER NOT NULL, vmin REAL, vmax REAL, vsum REAL, "
        "first_ts INTEGER NOT NULL, last_ts INTEGER NOT NULL, block TEXT NOT NULL)"
    )


def drop_block_table(site: str, day: dt.date) -> str:
    return f"DROP TABLE IF EXISTS {quote_ident(block_table(site, day))}"


# Every block table of every site: ``name`` range queries on sqlite_master (no LIKE: D1 caps LIKE patterns).
LIST_BLOCK_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table' AND name >= 'hb_' AND name < 'hb`'"


def text_literal(payload: str) -> str:
    """A SQL string literal. Codec payloads are JSON, so they never hold a raw NUL (JSON escapes it)."""
    if "\x00" in payload:
        raise ValueError("payload contains a NUL character")
    return "'" + payload.replace("'", "''") + "'"


def _int_or_null(v: int | None) -> str:
    return "NULL" if v is None else str(int(v))


BlockRow = tuple[int, int, int, float | None, float | None, float | None, int, int, str]


def upsert_blocks_statements(
    site: str,
    day: dt.date,
    rows: Sequence[BlockRow],
    *,
    max_statement_bytes: int = D1_MAX_STATEMENT_BYTES - 1_000,
) -> list[Statement]:
    """Multi-row guarded upserts of blocks: a block whose payload is unchanged is not rewritten (0 rows)."""
    table = quote_ident(block_table(site, day))
    head = f"INSERT INTO {table} ({', '.join(BLOCK_COLUMNS)}) VALUES "
    tail = (
        " ON CONFLICT (key) DO UPDATE SET n = excluded.n, n_numeric = excluded.n_numeric, vmin = excluded.vmin, "
        "vmax = excluded.vmax, vsum = excluded.vsum, first_ts = excluded.first_ts, last_ts = excluded.last_ts, "
        f"block = excluded.block WHERE {table}.block IS NOT excluded.block"
    )
    out: list[Statement] = []
    parts: list[str] = []
    size = len(head) + len(tail)
    for key, n, n_num, vmin, vmax, vsum, first, last, payload in rows:
        part = (
            f"({int(key)},{int(n)},{int(n_num)},{float_literal(vmin)},{float_literal(vmax)},"
            f"{float_literal(vsum)},{int(first)},{int(last)},{text_literal(payload)})"
        )
        part_bytes = len(part.encode())
        if parts and size + part_bytes + 1 > max_statement_bytes:
            out.append(Statement(head + ",".join(parts) + tail, [], len(parts)))
            parts, size = [], len(head) + len(tail)
        parts.append(part)
        size += part_bytes + 1
    if parts:
        out.append(Statement(head + ",".join(parts) + tail, [], len(parts)))
    return out


def insert_staging_statements(
    site: str,
    rows: Sequence[tuple[int, int, int, int, str]],
    *,
    max_statement_bytes: int = D1_MAX_STATEMENT_BYTES - 1_000,
) -> list[Statement]:
    """Staging rows ``(hour_ms, n, first_ts, last_ts, payload)``; the site is the one bound parameter."""
    head = "INSERT INTO hot_staging (site, hour_ms, n, first_ts, last_ts, block) VALUES "
    out: list[Statement] = []
    parts: list[str] = []
    size = len(head)
    for hour_ms, n, first, last, payload in rows:
        part = f"(?1,{int(hour_ms)},{int(n)},{int(first)},{int(last)},{text_literal(payload)})"
        part_bytes = len(part.encode())
        if parts and size + part_bytes + 1 > max_statement_bytes:
            out.append(Statement(head + ",".join(parts), [site], len(parts)))
            parts, size = [], len(head)
        parts.append(part)
        size += part_bytes + 1
    if parts:
        out.append(Statement(head + ",".join(parts), [site], len(parts)))
    return out


def delete_staging_statement(ids: Sequence[int]) -> Statement:
    return Statement(f"DELETE FROM hot_staging WHERE id IN ({','.join(str(int(i)) for i in ids)})")


STAGING_OF_RANGE = (
    "SELECT id, hour_ms, block FROM hot_staging "
    "WHERE site = ?1 AND hour_ms >= ?2 AND hour_ms < ?3 ORDER BY id"
)
STAGING_SUMMARY = (
    "SELECT hour_ms, SUM(n) AS n, MIN(first_ts) AS first_ts, MAX(last_ts) AS last_ts FROM hot_staging "
    "WHERE site = ?1 GROUP BY hour_ms ORDER BY hour_ms"
)
STAGING_HOURS = "SELECT DISTINCT hour_ms FROM hot_staging WHERE site = ?1 AND hour_ms < ?2 ORDER BY hour_ms"
DELETE_STAGING_RANGE = "DELETE FROM hot_staging WHERE site = ?1 AND hour_ms >= ?2 AND hour_ms < ?3"

GET_SEALED = "SELECT sealed_ms FROM hot_seal WHERE site = ?1"
SET_SEALED = (
    "INSERT INTO hot_seal (site, sealed_ms) VALUES (?1, ?2) ON CONFLICT (site) DO UPDATE SET "
    "sealed_ms = excluded.sealed_ms WHERE excluded.sealed_ms > hot_seal.sealed_ms"
)


def read_blocks_sql(site: str, day: dt.date) -> str:
    """?1 JSON array of point ids, ?2 first hour, ?3 last hour (inclusive): one rowid range seek per point.
    CROSS JOIN fixes the loop order (json_each outside): otherwise SQLite may scan the table once per point."""
    table = quote_ident(block_table(site, day))
    return (
        f"SELECT b.key AS key, b.block AS block FROM json_each(?1) AS j CROSS JOIN {table} AS b "
        f"ON b.key BETWEEN j.value * {KEY_HOURS} + ?2 AND j.value * {KEY_HOURS} + ?3 ORDER BY b.key"
    )


def read_summaries_sql(site: str, day: dt.date) -> str:
    """Like ``read_blocks_sql`` but only the summary columns: what hourly reads need."""
    table = quote_ident(block_table(site, day))
    return (
        f"SELECT {day_start_ms(day)} AS day_ms, b.key AS key, b.n AS n, b.n_numeric AS n_numeric, b.vmin AS vmin, b.vmax AS vmax, "
        f"b.vsum AS vsum, b.first_ts AS first_ts, b.last_ts AS last_ts FROM json_each(?1) AS j CROSS JOIN {table} AS b "
        f"ON b.key BETWEEN j.value * {KEY_HOURS} + ?2 AND j.value * {KEY_HOURS} + ?3 ORDER BY b.key"
    )


def day_totals_sql(site: str, day: dt.date) -> str:
    """Samples, earliest and latest timestamp of a whole day table, hours ?1..?2 (from the summary columns)."""
    table = quote_ident(block_table(site, day))
    return (
        f"SELECT COALESCE(SUM(n), 0) AS n, MIN(first_ts) AS first_ts, MAX(last_ts) AS last_ts FROM {table} "
        f"WHERE (key & {KEY_HOURS - 1}) BETWEEN ?1 AND ?2"
    )


def hour_of_day(ts_ms: int) -> int:
    return (ts_ms % DAY_MS) // HOUR_MS


def day_of(ts_ms: int) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=ts_ms // DAY_MS)


def day_start_ms(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * DAY_MS


def view_name(site: str) -> str:
    return f"samples_{site}"


def view_statements(site: str, days: Sequence[dt.date]) -> list[Statement]:
    """``"samples_<site>"``: one row per sample (point, ts_ms, value, value_text) over the site's block tables and
    staging rows, for operators' SQL. Recreated whenever a day table appears or is dropped."""
    lit = "'" + site.replace("'", "''") + "'"
    parts = [
        block_select_sql(f"{quote_ident(block_table(site, d))} AS h", f"h.key / {KEY_HOURS}", "h.block")
        for d in sorted(days)
    ]
    parts.append(
        block_select_sql(
            "hot_staging AS s, json_each(s.block, '$.b') AS pb",
            "json_extract(pb.value, '$.p')",
            "pb.value",
            row="s.block",
            where=f"s.site = {lit}",
        )
    )
    body = " UNION ALL ".join(parts)
    name = quote_ident(view_name(site))
    return [
        Statement(f"DROP VIEW IF EXISTS {name}"),
        Statement(
            f"CREATE VIEW {name} AS SELECT p.name AS point, x.ts_ms AS ts_ms, x.value AS value, "
            f"x.value_text AS value_text FROM ({body}) AS x JOIN points AS p ON p.id = x.point"
        ),
    ]
