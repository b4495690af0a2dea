"""Content-keyed cache of query answers over fully archived windows.

A window whose every day is archived and gone from the hot tier is answered from immutable cold objects only, and
the manifest's checksum of each day names the object version read. Keyed by those checksums plus every query
parameter, an answer never goes stale: a re-archived day has a new checksum, so its windows miss and are read
again (the old entries age out of the LRU). Windows touching any hot day are never cached: hot days change with
every sync. Aggregates of whole days come from hourly rollups, which are derived from the raw object the checksum
names; a rollup rewritten for the same raw day (same checksum) is picked up once its answers are evicted.

Windows that also touch hot days (a chart of the last 30 days: 20 hot, 10 archived) cannot be cached whole, but
their archived part can: ``get_cold``/``put_cold`` keep what the cold tier returned for the window's archived
days, keyed by each day's raw checksum and size, its rollup's checksum, the points and the clipped range, so only
the hot part is read again. Both kinds share one byte budget.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

import polars as pl

from bv_pipeline.api.cache import ByteLRU
from bv_pipeline.storage.interfaces import ManifestEntry

if TYPE_CHECKING:
    from bv_pipeline.api.day_plan import ColdTask
    from bv_pipeline.api.reader import QueryResult

_ENTRY_OVERHEAD = 4096  # the result's lists, dataclass and empty frame, beyond the IPC bytes


class AnswerCache:
    """Byte-bounded LRU of ``QueryResult``s keyed by content. Thread-safe; ``max_bytes`` 0 disables it."""

    def __init__(self, max_bytes: int) -> None:
        self.lru = ByteLRU(max_bytes)

    @property
    def enabled(self) -> bool:
        return self.lru.max_bytes > 0

    @staticmethod
    def key(
        site: str,
        points: Sequence[str],
        start_ms: int,
        end_ms: int,
        params: tuple[object, ...],
        days: Sequence[dt.date],
        manifest: dict[dt.date, ManifestEntry],
    ) -> Hashable:
        versions = tuple((d.toordinal(), manifest[d].checksum, manifest[d].bytes) for d in days)
        return (site, tuple(points), start_ms, end_ms, params, versions)

    def get(self, key: Hashable) -> QueryResult | None:
        if not self.enabled:
            return None
        hit: tuple[QueryResult, bytes] | None = self.lru.get(key)
        if hit is None:
            return None
        shell, ipc = hit
        return dataclasses.replace(shell, frame=pl.read_ipc_stream(io.BytesIO(ipc)), answer_cached=True)

    def put(self, key: Hashable, result: QueryResult) -> None:
        """Store a compact copy: a downsampled frame may still reference the full decoded buffers it was cut from
        (measured: ~5 MB held per 2,000-row answer), so the cache holds the frame as Arrow IPC bytes, whose size
        is exactly what the bound counts."""
        if not self.enabled:
            return
        ipc = _ipc(result.frame)
        shell = dataclasses.replace(result, frame=result.frame.clear())
        self.lru.put(key, (shell, ipc), cost=len(ipc) + _ENTRY_OVERHEAD)

    # ---- the archived part of windows that also touch hot days ----------------------------------------------

    @staticmethod
    def cold_key(site: str, tasks: Sequence[ColdTask], manifest: dict[dt.date, ManifestEntry]) -> Hashable:
        """Everything the cold tier's answer for ``tasks`` depends on: per day the points, the clipped range,
        raw or rollup, the raw object's checksum and size, and the rollup object's checksum."""
        parts = []
        for t in tasks:
            rollup = manifest[t.day].rollup
            parts.append(
                (
                    t.day.toordinal(),
                    tuple(t.points),
                    t.start_ms,
                    t.end_ms,
                    t.use_rollup,
                    t.checksum,
                    t.size,
                    rollup.checksum if rollup is not None else None,
                )
            )
        return ("cold-part", site, tuple(parts))

    def get_cold(self, key: Hashable) -> ColdPart | None:
        if not self.enabled:
            return None
        hit: tuple[list[bytes], list[bytes], int, frozenset[dt.date]] | None = self.lru.get(key)
        if hit is None:
            return None
        raw, rolled, rollup_days, compacted_days = hit
        return ColdPart(
            [pl.read_ipc_stream(io.BytesIO(b)) for b in raw],
            [pl.read_ipc_stream(io.BytesIO(b)) for b in rolled],
            rollup_days,
            set(compacted_days),
        )

    def put_cold(self, key: Hashable, part: ColdPart) -> None:
        """Stored as Arrow IPC bytes, like answers: a frame cut from a larger decoded row group would otherwise keep
        that whole buffer alive, and the bound counts exactly the bytes held."""
        if not self.enabled:
            return
        raw, rolled = [_ipc(f) for f in part.raw], [_ipc(f) for f in part.rollups]
        value = (raw, rolled, part.rollup_days, frozenset(part.compacted_days))
        cost = sum(map(len, raw)) + sum(map(len, rolled)) + _ENTRY_OVERHEAD
        self.lru.put(key, value, cost=cost)


@dataclasses.dataclass
class ColdPart:
    """What the cold tier returned for a query's archived days, and what its read counter recorded about them."""

    raw: list[pl.DataFrame]
    rollups: list[pl.DataFrame]
    rollup_days: int
    compacted_days: set[dt.date]


def _ipc(frame: pl.DataFrame) -> bytes:
    """Arrow IPC stream bytes: the stream reader is ~5x cheaper than the file reader (no footer, no scan)."""
    sink = io.BytesIO()
    frame.write_ipc_stream(sink)
    return sink.getvalue()
