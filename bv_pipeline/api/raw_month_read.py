"""Read side of the compacted monthly raw samples (``storage.raw_month``) for ``TimeseriesReader``.

For the raw cold days of a query, per month: read the site-month's ``index.json`` (cached for a few seconds),
keep the days whose recorded checksum equals the archive manifest's current checksum, pick the parts and row
groups holding the wanted points (footers cached by part key: parts are immutable), fetch just those row groups
with concurrent ranged GETs, decode, and keep the rows inside each covered day's window. Every day not served
here (month not compacted, day re-archived since, a part gone) is left to the day objects, so the answer is the
same either way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from bv_pipeline.api.cache import ByteLRU
from bv_pipeline.api.cold_read import ColdObjectMissing
from bv_pipeline.api.compacted_read import Fetcher, IndexCache, fetch_groups
from bv_pipeline.storage import cold_keys, raw_month
from bv_pipeline.storage.interfaces import ObjectStore
from bv_pipeline.storage.parquet_layout import ColdVerificationError
from bv_pipeline.storage.raw_month import MonthIndex
from bv_pipeline.storage.rollup_year import PartInfo
from bv_pipeline.storage.samples import MS_PER_DAY

_EPOCH = dt.date(1970, 1, 1)


@dataclass
class CompactedSamplesRead:
    tables: list[pa.Table]  # SAMPLE_SCHEMA, sorted by (point, ts_ms) within each table
    days: set[dt.date]  # days these tables answer completely for the wanted points
    parts_read: int = 0


class CompactedSamples:
    """Index cache + selective part reads. Thread-safe; one per ``TimeseriesReader``."""

    def __init__(
        self,
        cold: ObjectStore,
        pool: ThreadPoolExecutor,
        footer_cache: ByteLRU,
        *,
        index_ttl_s: float = 30.0,
        max_gap: int = 16 * 1024,
    ) -> None:
        self.cold = cold
        self._pool = pool
        self._footers = footer_cache
        self._max_gap = max_gap
        self._indexes: IndexCache[MonthIndex] = IndexCache(index_ttl_s)

    def index(self, site: str, month: dt.date) -> MonthIndex | None:
        """The published index (None: none, or unreadable), re-read at most every ``index_ttl_s`` seconds."""

        def load() -> MonthIndex | None:
            try:
                return MonthIndex.from_json(self.cold.get(cold_keys.samples_month_index_key(site, month)))
            except (KeyError, ColdVerificationError):
                return None

        return self._indexes.get((site, month), load)

    def forget(self, site: str, month: dt.date) -> None:
        self._indexes.forget((site, month))

    def read(
        self,
        site: str,
        points: Sequence[str],
        windows: Mapping[dt.date, tuple[int, int]],
        checksums: Mapping[dt.date, str],
        fetcher: Fetcher,
    ) -> CompactedSamplesRead:
        """Rows of ``points`` in each day's [start, end) window (``windows``) from the compacted objects, for the
        days whose compacted copy is current. Months are read concurrently."""
        out = CompactedSamplesRead(tables=[], days=set())
        months: dict[dt.date, list[dt.date]] = {}
        for day in windows:
            months.setdefault(raw_month.month_of(day), []).append(day)
        wanted = sorted(set(points))
        plans: list[tuple[dt.date, MonthIndex, dict[dt.date, tuple[int, int]], list[PartInfo]]] = []
        ordered = sorted(months.items())
        # Indexes of all months concurrently: a year is 13 small GETs, one round trip rather than 13.
        indexes = list(self._pool.map(lambda m: self.index(site, m[0]), ordered))
        for (month, days), index in zip(ordered, indexes, strict=True):
            if index is None:
                continue
            covered = [d for d in days if d in checksums and index.days.get(d) == checksums[d]]
            if covered:
                plans.append((month, index, {d: windows[d] for d in covered}, index.parts_for(wanted)))
        if not plans:
            return out
        try:
            tables = self._read_parts(wanted, [(w, parts) for _, _, w, parts in plans], fetcher)
        except ColdObjectMissing:
            # A part was garbage-collected under a stale cached index: re-read the indexes next time and let the
            # day objects answer now.
            for month, *_ in plans:
                self.forget(site, month)
            return out
        for (_, _, w, parts), table in zip(plans, tables, strict=True):
            out.days.update(w)
            out.parts_read += len(parts)
            if table is not None and table.num_rows:
                out.tables.append(table)
        return out

    def _read_parts(
        self,
        points: list[str],
        months: list[tuple[Mapping[dt.date, tuple[int, int]], list[PartInfo]]],
        fetcher: Fetcher,
    ) -> list[pa.Table | None]:
        """Per month, its rows of ``points`` clipped to its day windows. Two rounds of concurrent GETs for all
        months together (uncached footers, then row groups), so a year costs two round trips, not 24."""
        parts = [p for _, ps in months for p in ps]
        plans = fetch_groups(
            self._pool,
            parts,
            points,
            raw_month.SAMPLE_COLUMNS,
            fetcher,
            self._footers,
            "month-footer",
            self._max_gap,
        )
        out: list[pa.Table | None] = []
        i = 0
        for windows, ps in months:
            tables = [raw_month.read_groups(*plans[j], points) for j in range(i, i + len(ps)) if plans[j][2]]
            i += len(ps)
            tables = [t for t in tables if t.num_rows]
            out.append(_clip(pa.concat_tables(tables), windows) if tables else None)
        return out


def _clip(table: pa.Table, windows: Mapping[dt.date, tuple[int, int]]) -> pa.Table:
    """Rows whose UTC day is a key of ``windows`` and whose ts_ms lies in that day's [start, end)."""
    ts = table["ts_ms"].combine_chunks().to_numpy()
    day_numbers = np.array(sorted((d - _EPOCH).days for d in windows), dtype=np.int64)
    lo = np.array([windows[_EPOCH + dt.timedelta(days=int(n))][0] for n in day_numbers], dtype=np.int64)
    hi = np.array([windows[_EPOCH + dt.timedelta(days=int(n))][1] for n in day_numbers], dtype=np.int64)
    row_day = ts // MS_PER_DAY
    pos = np.clip(np.searchsorted(day_numbers, row_day), 0, len(day_numbers) - 1)
    keep = (day_numbers[pos] == row_day) & (ts >= lo[pos]) & (ts < hi[pos])
    if keep.all():
        return table
    return table.filter(pa.array(keep))
