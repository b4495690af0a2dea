"""Read side of the compacted yearly hourly rollups (``storage.rollup_year``) for ``TimeseriesReader``.

For the whole cold days of a 1h/1d query, per year: read the site-year's ``index.json`` (cached for a few
seconds), keep the days whose recorded source checksum equals the archive manifest's current checksum, pick the
parts and row groups holding the wanted points (footers cached by part key: parts are immutable), fetch just the
needed column chunks with concurrent ranged GETs, decode. Every day not served here (not compacted yet,
re-archived since, or a part that vanished) is left to the daily rollups or raw data, so the answer is the same
either way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from bv_pipeline.api.cache import ByteLRU
from bv_pipeline.api.cold_read import ColdObjectMissing
from bv_pipeline.api.compacted_read import Fetcher, IndexCache, fetch_groups
from bv_pipeline.storage import cold_keys, rollup_year
from bv_pipeline.storage.interfaces import ObjectStore
from bv_pipeline.storage.parquet_layout import ColdVerificationError
from bv_pipeline.storage.rollup_year import YearIndex

_EPOCH = dt.date(1970, 1, 1)


@dataclass
class CompactedRead:
    frames: list[pl.DataFrame]  # (point, hour_ms, count, sum, min, max), point as String
    days: set[dt.date]  # days these frames answer completely for their points
    parts_read: int = 0


class CompactedRollups:
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
        self._indexes: IndexCache[YearIndex] = IndexCache(index_ttl_s)

    def index(self, site: str, year: int) -> YearIndex | None:
        """The published index (None: none, or unreadable), re-read at most every ``index_ttl_s`` seconds."""

        def load() -> YearIndex | None:
            try:
                return YearIndex.from_json(self.cold.get(cold_keys.rollup_year_index_key(site, year)))
            except (KeyError, ColdVerificationError):
                return None

        return self._indexes.get((site, year), load)

    def forget(self, site: str, year: int) -> None:
        self._indexes.forget((site, year))

    def read(
        self,
        site: str,
        wanted: Mapping[dt.date, Sequence[str]],
        checksums: Mapping[dt.date, str],
        fetcher: Fetcher,
    ) -> CompactedRead:
        """Rollup rows of ``wanted`` (day -> points; whole days) from the compacted objects, where current."""
        out = CompactedRead(frames=[], days=set())
        years: dict[int, list[dt.date]] = {}
        for day in wanted:
            years.setdefault(day.year, []).append(day)
        for year, days in sorted(years.items()):
            index = self.index(site, year)
            if index is None:
                continue
            covered = [d for d in days if d in checksums and index.days.get(d) == checksums[d]]
            if not covered:
                continue
            try:
                frame, parts = self._read_year(index, {d: wanted[d] for d in covered}, fetcher)
            except (KeyError, ColdObjectMissing):
                # A part was garbage-collected under a stale cached index: re-read the index next time and let
                # the daily rollups answer now.
                self.forget(site, year)
                continue
            out.days.update(covered)
            out.parts_read += parts
            if frame.height:
                out.frames.append(frame)
        return out

    def _read_year(
        self, index: YearIndex, wanted: Mapping[dt.date, Sequence[str]], fetcher: Fetcher
    ) -> tuple[pl.DataFrame, int]:
        point_sets = {tuple(sorted(set(p))) for p in wanted.values()}
        points = sorted({p for ps in point_sets for p in ps})
        parts = index.parts_for(points)
        if not parts:
            return pl.DataFrame(), 0
        plans = fetch_groups(
            self._pool,
            parts,
            points,
            rollup_year.QUERY_COLUMNS,
            fetcher,
            self._footers,
            "year-footer",
            self._max_gap,
        )
        tables = [rollup_year.read_groups(src, f, g, points) for src, f, g in plans if g]
        tables = [t for t in tables if t.num_rows]
        if not tables:
            return pl.DataFrame(), len(parts)
        table = pa.concat_tables(tables)
        table = table.set_column(0, "point", table["point"].cast(pa.string()))
        # Keep only the covered days (the object may hold more, e.g. a partial window or re-archived days).
        day_numbers = np.array(sorted((d - _EPOCH).days for d in wanted), dtype=np.int64)
        keep = np.isin(rollup_year.days_of(table), day_numbers)
        frame = pl.from_arrow(table.filter(pa.array(keep)))
        assert isinstance(frame, pl.DataFrame)
        frame = frame.with_columns(pl.col("count").cast(pl.Int64))
        if len(point_sets) > 1:
            # Days want different points (hot days missing some): keep exactly the wanted (day, point) pairs.
            pairs = pl.DataFrame(
                [((d - _EPOCH).days, p) for d, ps in wanted.items() for p in ps],
                schema={"day": pl.Int64, "point": pl.String},
                orient="row",
            )
            frame = (
                frame.with_columns(day=pl.col("hour_ms") // 86_400_000)
                .join(pairs, on=["day", "point"], how="semi")
                .drop("day")
            )
        return frame, len(parts)
