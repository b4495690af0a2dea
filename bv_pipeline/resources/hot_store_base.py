"""``BlockHotStore``: the hot-tier logic both backends share (layout in ``bv_pipeline.storage.hot_layout``).

A backend supplies only ``_run`` (statements executed atomically: one SQLite transaction, one D1 batch request),
``_batch_limits`` and ``requests_made``; planning, merging and the protocol methods live here, so SQLite and D1
run the same SQL in the same order. Writes spread over several atomic units are ordered so that a crash
between any two leaves a state that reads correctly and that the next call completes (tests/test_hot_crash).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np

from bv_pipeline.resources.hot_store_core import Rows
from bv_pipeline.resources.hot_store_reads import BlockReads
from bv_pipeline.resources.hot_store_rows import (
    manifest_from_row,
    manifest_params,
    now_ms,
    point_from_row,
    point_param_rows,
)
from bv_pipeline.resources.hot_store_writes import BlockWrites
from bv_pipeline.storage import hot_sql as q
from bv_pipeline.storage.interfaces import ManifestEntry, PointMeta

__all__ = ["BlockHotStore", "Rows"]


class BlockHotStore(BlockWrites, BlockReads):
    # -- schema -----------------------------------------------------------------------------------------------

    def ensure_schema(self) -> None:
        from bv_pipeline.resources.hot_store_migrate import HAS_ROW_PER_SAMPLE, migrate_row_per_sample

        *_, old = self._run([*(q.Statement(ddl) for ddl in q.SCHEMA_DDL), q.Statement(HAS_ROW_PER_SAMPLE)])
        if old:
            migrate_row_per_sample(self)

    def ping(self) -> None:
        self._one("SELECT 1 AS ok")

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
