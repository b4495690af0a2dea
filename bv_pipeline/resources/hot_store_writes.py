"""Writes of the block layout: sample upserts (staging or blocks), sealing, deletion (mixed into
``BlockHotStore``). Units of work run in order so a crash between any two leaves a state that reads correctly
and that the next call completes."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pyarrow as pa

from bv_pipeline.resources.hot_store_core import StoreCore
from bv_pipeline.resources.hot_store_rows import (
    prepare,
)
from bv_pipeline.storage import hot_frames as hf
from bv_pipeline.storage import hot_layout as hl
from bv_pipeline.storage import hot_sql as q
from bv_pipeline.storage.hot_codec import ROW_SCHEMA
from bv_pipeline.storage.interfaces import UpsertStats


class BlockWrites(StoreCore):
    # -- writing ------------------------------------------------------------------------------------------------

    def upsert_samples(self, site: str, samples: pa.Table) -> UpsertStats:
        if samples.num_rows == 0:
            return UpsertStats()
        before = self.requests_made
        table, names, codes = prepare(samples)
        lookup, new_points = self._resolve_ids(site, names)
        incoming = pl.DataFrame(
            {
                "pid": lookup[codes],
                "ts": table["ts_ms"].to_numpy(),
                "value": pl.Series(table["value"].combine_chunks()),
                "text": pl.Series(table["value_text"].combine_chunks()),
            },
            schema=ROW_SCHEMA,
        )
        lo, hi = int(incoming["ts"].min()), int(incoming["ts"].max()) + 1  # type: ignore[arg-type]
        pids = sorted(set(incoming["pid"].to_list()))
        layers, staged_hours, sealed = self._read_layers(site, pids, lo, hi)
        new = hf.not_stored(incoming, hf.merge_last(layers))
        stats = UpsertStats(rows=table.num_rows, new_points=new_points, new_rows=new.height)
        if new.height:
            hour = pl.col("ts") - pl.col("ts") % hl.HOUR_MS
            to_blocks = (hour + hl.HOUR_MS <= sealed) & ~hour.is_in(sorted(staged_hours))
            direct, staged = new.filter(to_blocks), new.filter(~to_blocks)
            if direct.height:
                stats.statements += self._write_blocks(site, direct, layers[0])
            if staged.height:
                stmts = hl.insert_staging_statements(site, hf.staging_payloads(staged))
                self._run_grouped(stmts)
                stats.statements += len(stmts)
                # Hours already sealed that had staging rows left (a crash mid-seal): seal them again now.
                hours = {t - t % hl.HOUR_MS for t in staged["ts"].to_list()}
                for h in sorted(x for x in hours if x + hl.HOUR_MS <= sealed):
                    self._seal_hour(site, h)
        stats.requests = self.requests_made - before
        return stats

    def _write_blocks(self, site: str, new: pl.DataFrame, stored: pl.DataFrame) -> int:
        """Merge new rows into the blocks of their (point, hour)s and upsert those blocks (guarded)."""
        hour = pl.col("ts") - pl.col("ts") % hl.HOUR_MS
        touched = new.select("pid", hour.alias("h")).unique()
        base = stored.with_columns(hour.alias("h")).join(touched, on=["pid", "h"], how="semi").drop("h")
        blocks = hf.build_blocks(hf.merge_last([base, new]))
        stmts: list[q.Statement] = []
        for day, rows in sorted(blocks.items()):
            stmts.append(q.Statement(hl.create_block_table(site, day)))
            stmts.extend(hl.upsert_blocks_statements(site, day, rows))
        new_days = set(blocks) - set(self.site_days(site))
        self._run_grouped(stmts)
        self._forget_tables()
        if new_days:
            self.refresh_view(site)
        return len(stmts)

    def seal(self, site: str, before_ms: int) -> int:
        """Seal every staged hour of ``site`` that ends at or before ``before_ms``; returns hours sealed."""
        cutoff = before_ms - before_ms % hl.HOUR_MS
        state, staged = self._run(
            [q.Statement(hl.GET_SEALED, [site]), q.Statement(hl.STAGING_HOURS, [site, cutoff])]
        )
        hours = [int(r["hour_ms"]) for r in staged if int(r["hour_ms"]) + hl.HOUR_MS <= cutoff]
        for h in hours:
            self._seal_hour(site, h)
        if cutoff > (int(state[0]["sealed_ms"]) if state else 0):
            self._one(hl.SET_SEALED, [site, cutoff])
        return len(hours)

    def _seal_hour(self, site: str, hour_ms: int) -> None:
        staged = self._one(hl.STAGING_OF_RANGE, [site, hour_ms, hour_ms + hl.HOUR_MS])
        if not staged:
            return
        layers = [hf.decode_staged([r["block"]]) for r in staged]
        pids = sorted(set(pl.concat(layers)["pid"].to_list()))
        existing = self._fetch(self._block_statements(site, pids, hour_ms, hour_ms + hl.HOUR_MS))
        blocks = hf.decode_block_rows([r for rs in existing for r in rs])
        merged = hf.merge_last([blocks, *layers])
        stmts: list[q.Statement] = []
        for day, rows in sorted(hf.build_blocks(merged).items()):
            stmts.append(q.Statement(hl.create_block_table(site, day)))
            stmts.extend(hl.upsert_blocks_statements(site, day, rows))
        # Last: delete the staging rows that were read, so a crash before this leaves them to be sealed again.
        stmts.append(hl.delete_staging_statement([int(r["id"]) for r in staged]))
        # With it, atomically: the hour counts as sealed, so blocks never exist beyond ``sealed_ms`` without the
        # hour's staging rows (readers use summaries only below ``sealed_ms``).
        stmts.append(q.Statement(hl.SET_SEALED, [site, hour_ms + hl.HOUR_MS]))
        new_days = {hl.day_of(hour_ms)} - set(self.site_days(site))
        self._run_grouped(stmts)
        self._forget_tables()
        if new_days:
            self.refresh_view(site)

    def delete_range(self, site: str, start_ms: int, end_ms: int) -> int:
        """Whole days: ``DROP TABLE`` (0 rows written on D1). Partial days: their hours are rewritten."""
        deleted = 0
        staged = self._one(hl.STAGING_OF_RANGE, [site, start_ms - start_ms % hl.HOUR_MS, end_ms])
        if staged:
            # Rare (retention of a day whose hours were never sealed): seal first, then drop like any day.
            for h in sorted({int(r["hour_ms"]) for r in staged}):
                self._seal_hour(site, h)
        self._forget_tables()
        for day in self._days_in(site, start_ms, end_ms):
            d0, d1 = hl.day_start_ms(day), hl.day_start_ms(day) + hl.DAY_MS
            if start_ms <= d0 and d1 <= end_ms:
                deleted += int(self._one(hl.day_totals_sql(site, day), [0, 23])[0]["n"] or 0)
                self._one(hl.drop_block_table(site, day))
            else:
                deleted += self._delete_part(site, day, max(start_ms, d0), min(end_ms, d1))
        self._forget_tables()
        self.refresh_view(site)
        return deleted

    def _delete_part(self, site: str, day: dt.date, start_ms: int, end_ms: int) -> int:
        h0, h1 = start_ms - start_ms % hl.HOUR_MS, end_ms + (-end_ms) % hl.HOUR_MS
        pids = sorted(self.point_ids(site).values())
        rows = self.read_rows(site, pids, h0, h1)
        keep = rows.filter((pl.col("ts") < start_ms) | (pl.col("ts") >= end_ms))
        # Rewrite the touched blocks first (guarded upserts), then delete only blocks left empty: a crash in
        # between leaves rows of the range (deleted again next time), never loses a kept one.
        table = hl.quote_ident(hl.block_table(site, day))
        hour = pl.col("ts") - pl.col("ts") % hl.HOUR_MS
        key = pl.col("pid") * hl.KEY_HOURS + (hour % hl.DAY_MS) // hl.HOUR_MS
        old_keys = set(rows.select(key.alias("k"))["k"].to_list())
        kept_keys = set(keep.select(key.alias("k"))["k"].to_list())
        stmts: list[q.Statement] = []
        for d, blocks in hf.build_blocks(keep).items():
            stmts.extend(hl.upsert_blocks_statements(site, d, blocks))
        empty = sorted(old_keys - kept_keys)
        for i in range(0, len(empty), 5_000):
            keys = ",".join(str(k) for k in empty[i : i + 5_000])
            stmts.append(q.Statement(f"DELETE FROM {table} WHERE key IN ({keys})"))
        self._run_grouped(stmts)
        return rows.height - keep.height
