"""Upgrade of a hot database written by the row-per-sample schema (a ``samples`` table): its rows are moved
into sealed blocks, then the table is dropped. Idempotent (guarded block upserts), so a crash mid-way is
finished by the next start; nothing is deleted before every day of every site was rewritten."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import polars as pl

from bv_pipeline.storage import hot_frames as hf
from bv_pipeline.storage import hot_layout as hl
from bv_pipeline.storage import hot_sql as q
from bv_pipeline.storage.hot_codec import ROW_SCHEMA

if TYPE_CHECKING:
    from bv_pipeline.resources.hot_store_base import BlockHotStore

log = logging.getLogger(__name__)
HAS_ROW_PER_SAMPLE = "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'samples'"
_OLD_DAYS = "SELECT DISTINCT ts_ms / 86400000 AS d FROM samples ORDER BY d"
_OLD_ROWS = (
    "SELECT s.point_id AS pid, s.ts_ms AS ts, s.value AS value, s.value_text AS text, p.site AS site "
    "FROM samples s JOIN points p ON p.id = s.point_id WHERE s.ts_ms >= ?1 AND s.ts_ms < ?2 "
    "ORDER BY s.point_id, s.ts_ms"
)


def migrate_row_per_sample(store: BlockHotStore) -> int:
    """Returns the samples moved (0 when there is no old table)."""
    if not store._one(HAS_ROW_PER_SAMPLE):  # checked again: another process may have finished it
        return 0
    days = [int(r["d"]) for r in store._one(_OLD_DAYS)]
    log.warning(
        "hot tier: upgrading a row-per-sample database in place (%d days): samples move into hour blocks, "
        "then the old 'samples' table is dropped",
        len(days),
    )
    moved = 0
    sealed: dict[str, int] = {}
    for d in days:
        start = d * hl.DAY_MS
        for hour in range(24):  # an hour per read keeps every D1 result small
            h0 = start + hour * hl.HOUR_MS
            rows = store._one(_OLD_ROWS, [h0, h0 + hl.HOUR_MS])
            if not rows:
                continue
            frame = pl.DataFrame(rows, schema={**ROW_SCHEMA, "site": pl.String()}, orient="row")
            for (site,), part in frame.group_by("site"):
                stmts: list[q.Statement] = []
                for day, blocks in hf.build_blocks(part.drop("site")).items():
                    stmts.append(q.Statement(hl.create_block_table(str(site), day)))
                    stmts.extend(hl.upsert_blocks_statements(str(site), day, blocks))
                store._run_grouped(stmts)
                sealed[str(site)] = h0 + hl.HOUR_MS
            moved += len(rows)
    # Moved hours are sealed blocks: mark them so, as sealing would have (readers use block summaries below it).
    store._run([q.Statement(hl.SET_SEALED, [site, end]) for site, end in sealed.items()])
    store._one("DROP TABLE samples")
    store._forget_tables()
    log.warning("hot tier: upgrade done, %d samples moved into hour blocks", moved)
    return moved
