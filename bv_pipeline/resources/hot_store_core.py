"""``StoreCore``: the backend primitives of the hot tier's block stores and the reads every other part builds
on (table listing, seal state, staged hours, block and staging reads merged last-write-wins)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from bv_pipeline.storage import hot_frames as hf
from bv_pipeline.storage import hot_layout as hl
from bv_pipeline.storage import hot_sql as q
from bv_pipeline.storage.hot_codec import empty_rows
from bv_pipeline.storage.samples import SAMPLE_SCHEMA, empty_samples

Rows = list[dict[str, Any]]


class StoreCore(ABC):
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

    def point_ids(self, site: str) -> dict[str, int]:
        ids = {r["name"]: int(r["id"]) for r in self._one(q.POINT_IDS, [site])}
        self._ids[site] = dict(ids)
        return ids

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
        self, site: str, pids: Sequence[int], start_ms: int, end_ms: int
    ) -> tuple[list[pl.DataFrame], list[int], int]:
        """([blocks, staging payloads in id order], staged hours, sealed_ms) overlapping the range, unclipped.
        Staging rows and the seal state come in one request; blocks are read only below the sealed instant."""
        h0 = start_ms - start_ms % hl.HOUR_MS
        state, staged = self._run(
            [q.Statement(hl.GET_SEALED, [site]), q.Statement(hl.STAGING_OF_RANGE, [site, h0, end_ms])]
        )
        sealed = int(state[0]["sealed_ms"]) if state else 0
        # Blocks exist only below the sealed instant (a seal moves it in the request that deletes the hour's
        # staging rows, so a half-done seal's blocks are still covered by those rows): no seeks above it.
        b_end = min(end_ms, sealed)
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

    def read_frame(self, site: str, points: Sequence[str], start_ms: int, end_ms: int) -> pl.DataFrame:
        """The rows ``read_samples`` returns, as a Polars frame (point, ts_ms, value, value_text) sorted by (point,
        ts_ms): the read API's form, without a round trip through Arrow and its sort (one point needs none)."""
        ids = self.point_ids(site)
        names = [p for p in dict.fromkeys(points) if p in ids]
        if not names or start_ms >= end_ms:
            return _frame(empty_rows(), {})
        by_id = {ids[n]: n for n in names}
        pids = sorted(by_id)
        layers, _, _ = self._read_layers(site, pids, start_ms, end_ms)
        live = [f for f in layers if f.height]
        in_range = (pl.col("ts") >= start_ms) & (pl.col("ts") < end_ms) & pl.col("pid").is_in(pids)
        if len(live) > 1:  # staging rows over blocks: last write wins, as read_rows merges them
            return _frame(hf.merge_last(live).lazy().filter(in_range), by_id)
        # Sealed hours only (the usual read): one query plan from the decoded blocks to the answer.
        only = live[0] if live else empty_rows()
        return _frame(only.lazy().filter(in_range).sort("pid", "ts"), by_id)

    def _staged_hours(self, site: str, start_ms: int, end_ms: int) -> list[int]:
        rows = self._one(hl.STAGING_HOURS, [site, end_ms])
        return [int(r["hour_ms"]) for r in rows if int(r["hour_ms"]) >= start_ms]


def _json_ints(values: Sequence[int]) -> str:
    return "[" + ",".join(str(int(v)) for v in values) + "]"


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


def _frame(rows: pl.DataFrame | pl.LazyFrame, names_by_id: dict[int, str]) -> pl.DataFrame:
    """Rows sorted by (pid, ts) as (point, ts_ms, value, value_text) sorted by (point, ts_ms)."""
    if len(names_by_id) <= 1:  # one point: (pid, ts) order is (point, ts_ms) order
        point = pl.lit(next(iter(names_by_id.values()), None), pl.String)
    else:
        point = pl.col("pid").replace_strict(names_by_id, return_dtype=pl.String)
    frame = rows.lazy().select(
        point.alias("point"),
        pl.col("ts").alias("ts_ms"),
        pl.col("value"),
        pl.col("text").alias("value_text"),
    )
    return (frame if len(names_by_id) <= 1 else frame.sort("point", "ts_ms")).collect()
