"""``BlockHotStore``: the hot-tier logic both backends share (layout in ``bv_pipeline.storage.hot_layout``).

A backend supplies only ``_run`` (statements executed atomically: one SQLite transaction, one D1 batch request),
``_batch_limits`` and ``requests_made``; planning, merging and the protocol methods live here, so SQLite and D1
run the same SQL in the same order. Writes spread over several atomic units are ordered so that a crash
between any two leaves a state that reads correctly and that the next call completes (tests/test_hot_crash).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from bv_pipeline.resources.hot_store_rows import (
    manifest_from_row,
    manifest_params,
    now_ms,
    point_from_row,
    point_param_rows,
    prepare,
)
from bv_pipeline.storage import hot_frames as hf
from bv_pipeline.storage import hot_layout as hl
from bv_pipeline.storage import hot_sql as q
from bv_pipeline.storage.hot_codec import ROW_SCHEMA
from bv_pipeline.storage.interfaces import ManifestEntry, PointMeta, UpsertStats, WindowStats
from bv_pipeline.storage.samples import SAMPLE_SCHEMA, empty_samples

log = logging.getLogger(__name__)
Rows = list[dict[str, Any]]


class BlockHotStore(ABC):
    backend: str
    read_points_per_statement = 200  # bounds a block read's result (200 points x 24 blocks, a few MB)
    table_cache_s = 2.0

    def __init__(self) -> None:
        self._ids: dict[str, dict[str, int]] = {}
        self._tables: tuple[float, set[str]] | None = None
        self._tables_guard = threading.Lock()

    # -- backend primitives ---------------------------------------------------------------------------------

    @abstractmethod
    def _run(self, statements: Sequence[q.Statement]) -> list[Rows]:
        """Execute atomically; one result-row list per statement."""

    @abstractmethod
    def _batch_limits(self) -> tuple[int, int]:
        """(max body bytes, max rows) of one atomic unit."""

    @property
    @abstractmethod
    def requests_made(self) -> int: ...

    @abstractmethod
    def close(self) -> None: ...

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        return self._run([q.Statement(sql, list(params))])[0]

    def _run_grouped(self, statements: Sequence[q.Statement]) -> int:
        """Run in as few atomic units as the limits allow, in order; returns the units run."""
        body, rows = self._batch_limits()
        groups = list(q.group_requests(statements, max_body_bytes=body, max_rows=rows))
        for g in groups:
            self._run(g)
        return len(groups)

    # -- schema -----------------------------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        from bv_pipeline.resources.hot_store_migrate import HAS_ROW_PER_SAMPLE, migrate_row_per_sample

        *_, old = self._run([*(q.Statement(ddl) for ddl in q.SCHEMA_DDL), q.Statement(HAS_ROW_PER_SAMPLE)])
        if old:
            migrate_row_per_sample(self)

    def ping(self) -> None:
        self._one("SELECT 1 AS ok")

    def block_tables(self, *, fresh: bool = False) -> set[str]:
        with self._tables_guard:
            cached = self._tables
            if not fresh and cached is not None and time.monotonic() - cached[0] < self.table_cache_s:
                return cached[1]
        names = {r["name"] for r in self._one(hl.LIST_BLOCK_TABLES)}
        with self._tables_guard:
            self._tables = (time.monotonic(), names)
        return names

    def _forget_tables(self) -> None:
        with self._tables_guard:
            self._tables = None

    def refresh_view(self, site: str) -> None:
        """Recreate the operators' ``"samples_<site>"`` view over the site's current day tables and staging."""
        self._forget_tables()
        self._run(hl.view_statements(site, self.site_days(site)))

    def site_days(self, site: str) -> list[dt.date]:
        out = []
        for name in self.block_tables():
            parsed = hl.parse_block_table(name)
            if parsed and parsed[0] == site:
                out.append(parsed[1])
        return sorted(out)

    # -- sites, points, state ---------------------------------------------------------------------------------

    def upsert_points(self, site: str, points: Sequence[PointMeta]) -> int:
        now = now_ms()
        stmts = q.upsert_points_statements(site, now, point_param_rows(points))
        head = [q.Statement(q.ENSURE_SITE, [site, now]), q.Statement(q.COUNT_POINTS, [site])]
        tail = [q.Statement(q.COUNT_POINTS, [site]), q.Statement(q.POINT_IDS, [site])]
        body, _ = self._batch_limits()
        groups = list(q.group_requests(stmts, max_body_bytes=body, max_rows=1)) or [[]]
        groups[0] = head + groups[0]
        groups[-1] = groups[-1] + tail
        before = after = 0
        for i, group in enumerate(groups):
            res = self._run(group)
            if i == 0:
                before = int(res[1][0]["n"])
            if i == len(groups) - 1:
                after = int(res[-2][0]["n"])
                self._ids[site] = {r["name"]: int(r["id"]) for r in res[-1]}
        return after - before

    def point_ids(self, site: str) -> dict[str, int]:
        ids = {r["name"]: int(r["id"]) for r in self._one(q.POINT_IDS, [site])}
        self._ids[site] = dict(ids)
        return ids

    def list_points(self, site: str) -> list[PointMeta]:
        cols = ("name", "kind", "unit", "marker_tags", "kv_tags", "collect_interval_s")
        return [point_from_row([r[c] for c in cols]) for r in self._one(q.LIST_POINTS, [site])]

    def list_sites(self) -> list[str]:
        return [r["name"] for r in self._one(q.LIST_SITES)]

    def _resolve_ids(self, site: str, names: list[str]) -> tuple[np.ndarray, int]:
        cache = self._ids.setdefault(site, {})
        missing = [n for n in names if n not in cache]
        new_points = 0
        if missing:
            now = now_ms()
            inserts = q.insert_bare_points_statements(site, now, missing)
            body, _ = self._batch_limits()
            groups = list(q.group_requests(inserts, max_body_bytes=body, max_rows=1))
            groups[0] = [
                q.Statement(q.ENSURE_SITE, [site, now]),
                q.Statement(q.COUNT_POINTS, [site]),
                *groups[0],
            ]
            groups[-1] = [*groups[-1], q.Statement(q.COUNT_POINTS, [site]), q.Statement(q.POINT_IDS, [site])]
            before = after = 0
            for i, group in enumerate(groups):
                res = self._run(group)
                if i == 0:
                    before = int(res[1][0]["n"])
                if i == len(groups) - 1:
                    after = int(res[-2][0]["n"])
                    cache.update((r["name"], int(r["id"])) for r in res[-1])
            new_points = after - before
        return np.fromiter((cache[n] for n in names), dtype=np.int64, count=len(names)), new_points

    def get_watermark(self, site: str) -> int | None:
        rows = self._one(q.GET_WATERMARK, [site])
        return None if not rows or rows[0]["watermark_ms"] is None else int(rows[0]["watermark_ms"])

    def set_watermark(self, site: str, ts_ms: int) -> None:
        self._one(q.SET_WATERMARK, [site, now_ms(), int(ts_ms)])

    def manifest_get(self, site: str, day: dt.date) -> ManifestEntry | None:
        rows = self._one(q.MANIFEST_GET, [site, day.isoformat()])
        return manifest_from_row([rows[0][c] for c in q.MANIFEST_COLUMNS]) if rows else None

    def manifest_put(self, entry: ManifestEntry) -> None:
        self._one(q.MANIFEST_PUT, manifest_params(entry))

    def manifest_list(self, site: str, start: dt.date, end: dt.date) -> list[ManifestEntry]:
        rows = self._one(q.MANIFEST_LIST, [site, start.isoformat(), end.isoformat()])
        return [manifest_from_row([r[c] for c in q.MANIFEST_COLUMNS]) for r in rows]

    def get_sync_as_of(self, site: str, day: dt.date) -> int | None:
        rows = self._one(q.GET_SYNC_AS_OF, [site, day.isoformat()])
        return int(rows[0]["as_of_ms"]) if rows else None

    def set_sync_as_of(self, site: str, day: dt.date, as_of_ms: int) -> None:
        self._one(q.SET_SYNC_AS_OF, [site, day.isoformat(), int(as_of_ms)])

    def list_sync_as_of(self, site: str, start: dt.date, end: dt.date) -> dict[dt.date, int]:
        rows = self._one(q.LIST_SYNC_AS_OF, [site, start.isoformat(), end.isoformat()])
        return {dt.date.fromisoformat(r["day"]): int(r["as_of_ms"]) for r in rows}

    def record_sync(self, site: str, day: dt.date, as_of_ms: int, watermark_ms: int) -> None:
        self._run(
            [
                q.Statement(q.SET_SYNC_AS_OF, [site, day.isoformat(), int(as_of_ms)]),
                q.Statement(q.SET_WATERMARK, [site, now_ms(), int(watermark_ms)]),
            ]
        )

    def sealed_ms(self, site: str) -> int:
        rows = self._one(hl.GET_SEALED, [site])
        return int(rows[0]["sealed_ms"]) if rows else 0

    # -- reading rows -------------------------------------------------------------------------------------------

    def _days_in(self, site: str, start_ms: int, end_ms: int) -> list[dt.date]:
        """The site's block-table days overlapping [start, end)."""
        return [
            d
            for d in self.site_days(site)
            if hl.day_start_ms(d) < end_ms and start_ms < hl.day_start_ms(d) + hl.DAY_MS
        ]

    def _block_statements(
        self, site: str, pids: Sequence[int], start_ms: int, end_ms: int, *, summaries: bool = False
    ) -> list[q.Statement]:
        out: list[q.Statement] = []
        if start_ms >= end_ms or not pids:
            return out
        step = self.read_points_per_statement
        for day in self._days_in(site, start_ms, end_ms):
            d0 = hl.day_start_ms(day)
            h0 = max(0, (start_ms - d0) // hl.HOUR_MS)
            h1 = min(23, (end_ms - 1 - d0) // hl.HOUR_MS)
            sql = hl.read_summaries_sql(site, day) if summaries else hl.read_blocks_sql(site, day)
            for i in range(0, len(pids), step):
                out.append(q.Statement(sql, [_json_ints(pids[i : i + step]), int(h0), int(h1)]))
        return out

    def _fetch(self, statements: list[q.Statement]) -> list[Rows]:
        """Read statements, a few per atomic unit so no response carries too much; retried once if a table
        listed a moment ago was dropped meanwhile (retention in another process)."""
        out: list[Rows] = []
        for i in range(0, len(statements), 8):
            out.extend(self._run(statements[i : i + 8]))
        return out

    def _read_layers(
        self, site: str, pids: Sequence[int], start_ms: int, end_ms: int, *, for_write: bool = False
    ) -> tuple[list[pl.DataFrame], list[int], int]:
        """([blocks, staging payloads in id order], staged hours, sealed_ms) overlapping the range, unclipped.
        Staging rows and the seal state come in one request; a writer reads blocks only below the sealed
        instant (later hours have none)."""
        h0 = start_ms - start_ms % hl.HOUR_MS
        state, staged = self._run(
            [q.Statement(hl.GET_SEALED, [site]), q.Statement(hl.STAGING_OF_RANGE, [site, h0, end_ms])]
        )
        sealed = int(state[0]["sealed_ms"]) if state else 0
        b_end = min(end_ms, sealed) if for_write else end_ms
        for attempt in range(2):
            try:
                blocks = self._fetch(self._block_statements(site, pids, start_ms, b_end))
                break
            except Exception as exc:  # a concurrently dropped table: list again and retry once
                if attempt or "no such table" not in str(exc):
                    raise
                self._forget_tables()
        layers = [hf.decode_block_rows([r for rs in blocks for r in rs])]
        layers.extend(hf.decode_staged([r["block"]]) for r in staged)
        return layers, sorted({int(r["hour_ms"]) for r in staged}), sealed

    def read_rows(self, site: str, pids: Sequence[int], start_ms: int, end_ms: int) -> pl.DataFrame:
        layers, _, _ = self._read_layers(site, pids, start_ms, end_ms)
        merged = hf.merge_last(layers)
        return hf.clip(merged, start_ms, end_ms, set(pids))

    def read_samples(self, site: str, points: Sequence[str] | None, start_ms: int, end_ms: int) -> pa.Table:
        ids = self.point_ids(site)
        names = sorted(ids) if points is None else [p for p in dict.fromkeys(points) if p in ids]
        if not names or start_ms >= end_ms:
            return empty_samples()
        by_id = {ids[n]: n for n in names}
        rows = self.read_rows(site, sorted(by_id), start_ms, end_ms)
        return _to_samples(rows, by_id)

    def read_hourly(self, site: str, points: Sequence[str], start_ms: int, end_ms: int) -> pl.DataFrame:
        """Per (point, UTC hour) in [start, end) (whole hours): ``samples``, ``count``/``sum``/``min``/``max`` of
        the finite numeric values, shaped like the cold tier's hourly rollups. Sealed hours come from the block
        summary columns (no payload is read); hours with staging rows are decoded."""
        ids = self.point_ids(site)
        by_id = {ids[n]: n for n in dict.fromkeys(points) if n in ids}
        start_ms -= start_ms % hl.HOUR_MS
        end_ms += (-end_ms) % hl.HOUR_MS
        if not by_id or start_ms >= end_ms:
            return _empty_hourly()
        pids = sorted(by_id)
        staged = set(self._staged_hours(site, start_ms, end_ms))
        results = self._fetch(self._block_statements(site, pids, start_ms, end_ms, summaries=True))
        frames: list[pl.DataFrame] = []
        flat = [r for rs in results for r in rs]
        if flat:
            summ = pl.DataFrame(flat, orient="row").select(
                (pl.col("key") // hl.KEY_HOURS).cast(pl.Int64).alias("pid"),
                (pl.col("day_ms") + (pl.col("key") % hl.KEY_HOURS) * hl.HOUR_MS)
                .cast(pl.Int64)
                .alias("hour_ms"),
                pl.col("n").cast(pl.Int64).alias("samples"),
                pl.col("n_numeric").cast(pl.Int64).alias("count"),
                pl.col("vsum").cast(pl.Float64).alias("sum"),
                pl.col("vmin").cast(pl.Float64).alias("min"),
                pl.col("vmax").cast(pl.Float64).alias("max"),
            )
            frames.append(summ.filter(~pl.col("hour_ms").is_in(sorted(staged))))
        for h in sorted(staged):
            rows = self.read_rows(site, pids, h, h + hl.HOUR_MS)
            if rows.height:
                frames.append(
                    hf.summaries(rows).select(
                        "pid",
                        "hour_ms",
                        pl.col("n").alias("samples"),
                        pl.col("n_numeric").alias("count"),
                        pl.when(pl.col("n_numeric") > 0).then(pl.col("vsum")).alias("sum"),
                        pl.col("vmin").alias("min"),
                        pl.col("vmax").alias("max"),
                    )
                )
        if not frames:
            return _empty_hourly()
        out = pl.concat(frames)
        names = pl.DataFrame(
            {"pid": list(by_id), "point": list(by_id.values())},
            schema={"pid": pl.Int64(), "point": pl.String()},
        )
        return (
            out.join(names, on="pid").select(list(HOURLY_SCHEMA)).cast(HOURLY_SCHEMA).sort("point", "hour_ms")
        )  # type: ignore[arg-type]

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
        layers, staged_hours, sealed = self._read_layers(site, pids, lo, hi, for_write=True)
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

    def _staged_hours(self, site: str, start_ms: int, end_ms: int) -> list[int]:
        rows = self._one(hl.STAGING_HOURS, [site, end_ms])
        return [int(r["hour_ms"]) for r in rows if int(r["hour_ms"]) >= start_ms]

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
        # Last: the staging rows that were read, so a crash before this leaves them to be sealed again.
        stmts.append(hl.delete_staging_statement([int(r["id"]) for r in staged]))
        new_days = {hl.day_of(hour_ms)} - set(self.site_days(site))
        self._run_grouped(stmts)
        self._forget_tables()
        if new_days:
            self.refresh_view(site)

    # -- stats, extremes, deletion -------------------------------------------------------------------------------

    def _stats(
        self, site: str, start_ms: int, end_ms: int, cut_ms: int
    ) -> tuple[int, int, int | None, int | None]:
        """(samples in [start, end), those at or after cut, min ts, max ts): whole hours without staging rows
        from the block summaries; staged hours and hours cut by start, end or cut by decoding."""
        if start_ms >= end_ms:
            return 0, 0, None, None
        days = self._days_in(site, start_ms, end_ms)
        staged = set(self._staged_hours(site, start_ms - start_ms % hl.HOUR_MS, end_ms))
        cut_hours = {
            t - t % hl.HOUR_MS
            for t in (start_ms, end_ms, cut_ms)
            if t % hl.HOUR_MS and start_ms <= t <= end_ms
        }
        day_starts = {hl.day_start_ms(d) for d in days}
        special = {h for h in cut_hours if h in staged or h - h % hl.DAY_MS in day_starts} | staged
        n = after = 0
        lo: int | None = None
        hi: int | None = None
        for day in days:
            d0 = hl.day_start_ms(day)
            whole = [
                x
                for x in range(24)
                if start_ms <= d0 + x * hl.HOUR_MS
                and d0 + (x + 1) * hl.HOUR_MS <= end_ms
                and d0 + x * hl.HOUR_MS not in special
            ]
            # Runs split at the cut, so each run is entirely before or entirely at/after it.
            for a, b in _runs(whole, split_at=(cut_ms - d0) // hl.HOUR_MS):
                r = self._one(hl.day_totals_sql(site, day), [a, b])[0]
                cnt = int(r["n"] or 0)
                n += cnt
                if d0 + a * hl.HOUR_MS >= cut_ms:
                    after += cnt
                if cnt:
                    lo = _min(lo, int(r["first_ts"]))
                    hi = _max(hi, int(r["last_ts"]))
        if special:
            pids = sorted(self.point_ids(site).values())
            for h in sorted(special):
                rows = self.read_rows(site, pids, max(h, start_ms), min(h + hl.HOUR_MS, end_ms))
                if rows.height:
                    n += rows.height
                    after += int((rows["ts"] >= cut_ms).sum())
                    lo = _min(lo, int(rows["ts"].min()))  # type: ignore[arg-type]
                    hi = _max(hi, int(rows["ts"].max()))  # type: ignore[arg-type]
        return n, after, lo, hi

    def count_samples(self, site: str, start_ms: int, end_ms: int) -> int:
        return self._stats(site, start_ms, end_ms, end_ms)[0]

    def window_stats(self, site: str, start_ms: int, end_ms: int, future_from_ms: int) -> WindowStats:
        n, after, _, hi = self._stats(site, start_ms, end_ms, future_from_ms)
        return WindowStats(rows=n, future_rows=after, max_ts=hi)

    def max_ts_between(self, site: str, start_ms: int, end_ms: int) -> int | None:
        return self._stats(site, start_ms, end_ms, end_ms)[3]

    def _extreme(self, site: str, *, newest: bool) -> int | None:
        days = self.site_days(site)
        staged = self._one(hl.STAGING_SUMMARY, [site])
        cands: list[int] = []
        for day in reversed(days) if newest else days:
            r = self._one(hl.day_totals_sql(site, day), [0, 23])[0]
            if r["n"]:
                cands.append(int(r["last_ts"] if newest else r["first_ts"]))
                break
        cands.extend(int(r["last_ts"] if newest else r["first_ts"]) for r in staged)
        if not cands:
            return None
        return max(cands) if newest else min(cands)

    def max_ts(self, site: str) -> int | None:
        return self._extreme(site, newest=True)

    def min_ts(self, site: str) -> int | None:
        return self._extreme(site, newest=False)

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
        table = hl.quote_ident(hl.block_table(site, day))
        a, b = (h0 % hl.DAY_MS) // hl.HOUR_MS, (h1 - 1) % hl.DAY_MS // hl.HOUR_MS
        stmts = [q.Statement(f"DELETE FROM {table} WHERE (key & {hl.KEY_HOURS - 1}) BETWEEN {a} AND {b}")]
        for d, blocks in hf.build_blocks(keep).items():
            stmts.extend(hl.upsert_blocks_statements(site, d, blocks))
        self._run_grouped(stmts)
        return rows.height - keep.height


HOURLY_SCHEMA: dict[str, pl.DataType] = {
    "point": pl.String(),
    "hour_ms": pl.Int64(),
    "samples": pl.Int64(),
    "count": pl.Int64(),
    "sum": pl.Float64(),
    "min": pl.Float64(),
    "max": pl.Float64(),
}


def _empty_hourly() -> pl.DataFrame:
    return pl.DataFrame(schema=HOURLY_SCHEMA)


def _json_ints(values: Sequence[int]) -> str:
    return "[" + ",".join(str(int(v)) for v in values) + "]"


def _runs(hours: list[int], *, split_at: int | None = None) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for h in hours:
        if out and out[-1][1] == h - 1 and h != split_at:
            out[-1] = (out[-1][0], h)
        else:
            out.append((h, h))
    return out


def _min(a: int | None, b: int) -> int:
    return b if a is None else min(a, b)


def _max(a: int | None, b: int) -> int:
    return b if a is None else max(a, b)


def _to_samples(rows: pl.DataFrame, names_by_id: dict[int, str]) -> pa.Table:
    if rows.height == 0:
        return empty_samples()
    ids = np.array(sorted(names_by_id), dtype=np.int64)
    idx = np.searchsorted(ids, rows["pid"].to_numpy())
    name_arr = np.array([names_by_id[int(i)] for i in ids], dtype=object)
    table = pa.table(
        {
            "point": pa.array(name_arr[idx], pa.string()),
            "ts_ms": rows["ts"].to_arrow(),
            "value": rows["value"].to_arrow(),
            "value_text": rows["text"].to_arrow(),
        }
    ).cast(SAMPLE_SCHEMA)
    return table.sort_by([("point", "ascending"), ("ts_ms", "ascending")])
