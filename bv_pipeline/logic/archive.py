"""Archive one site-day to cold storage, and apply hot-tier retention.

Archival: take the day from the hot tier when it holds it, else straight from ACE (history never passes through
the hot tier); merge with an object already in cold (so late samples that reached the hot tier after an earlier
archival are added, and nothing archived before is lost); upload; **verify by reading the object back** (row
count and content checksum); only then record it in the manifest.

Retention: a hot day is deleted only when it is older than the hot window AND the manifest holds a verified object
AND a fresh read of that object contains every (point, ts) the hot tier holds for the day. The manifest is marked
``hot_deleted_ms`` *before* the delete so readers switch that day to cold first; a crash mid-delete leaves rows
that the next retention run verifies and deletes again. Any failed condition re-archives the day first.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa

from bv_pipeline.storage import cold_keys, parquet_layout, rollups
from bv_pipeline.storage.interfaces import ManifestEntry
from bv_pipeline.storage.samples import SAMPLE_SCHEMA, day_bounds_ms, ms_to_date

if TYPE_CHECKING:
    from bv_pipeline.resources.ace import AceClient
    from bv_pipeline.storage.interfaces import HotStore, ObjectStore

log = logging.getLogger(__name__)


class ArchiveError(RuntimeError):
    """Archival could not produce a verified object; nothing was deleted."""


@dataclass
class ArchiveResult:
    site: str
    day: dt.date
    key: str
    source: str  # "hot" | "ace"
    rows: int
    bytes: int
    checksum: str
    merged_from_existing: int = 0  # rows that were only in the previous object
    source_rows: int = 0  # rows read from the source (hot or ACE) for this archival
    duplicates_in_source: int = 0
    ace_requests: int = 0
    phase_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def bytes_per_sample(self) -> float:
        return self.bytes / self.rows if self.rows else 0.0


def _merge(new: pa.Table, old: pa.Table) -> tuple[pa.Table, int]:
    """Union of both on (point, ts_ms); the new (source) rows win. Returns (merged, rows only in old)."""
    if old.num_rows == 0:
        return new, 0
    new_df = pl.from_arrow(new)
    old_df = pl.from_arrow(old)
    assert isinstance(new_df, pl.DataFrame) and isinstance(old_df, pl.DataFrame)
    only_old = old_df.join(new_df.select("point", "ts_ms"), on=["point", "ts_ms"], how="anti")
    merged = pl.concat([new_df, only_old], how="vertical")
    return merged.to_arrow().cast(SAMPLE_SCHEMA), only_old.height


def archive_site_day(
    hot: HotStore,
    cold: ObjectStore,
    ace: AceClient | None,
    site: str,
    day: dt.date,
    *,
    now_ms: int | None = None,
) -> ArchiveResult:
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    start_ms, end_ms = day_bounds_ms(day)
    key = cold_keys.samples_key(site, day)
    phases: dict[str, float] = {}

    t = time.perf_counter()
    entry = hot.manifest_get(site, day)
    # "Any hot row?" as per-point index seeks (max_ts_between): a full COUNT walks all 6.5 M rows of a day.
    in_hot = not (entry and entry.hot_deleted_ms) and hot.max_ts_between(site, start_ms, end_ms) is not None
    ace_requests = 0
    duplicates = 0
    if in_hot:
        source = "hot"
        samples = hot.read_samples(site, None, start_ms, end_ms)
    else:
        if ace is None:
            raise ArchiveError(
                f"{site} {day}: the hot tier holds no rows for this day and no ACE client was given"
            )
        source = "ace"
        samples, stats = ace.fetch_samples(site, start_ms, end_ms, raw=True)
        ace_requests, duplicates = stats.requests, stats.duplicates
    phases["read_source"] = time.perf_counter() - t

    t = time.perf_counter()
    existing_size = cold.size(key)
    old = (
        parquet_layout.decode_day(cold.get(key)) if existing_size is not None else SAMPLE_SCHEMA.empty_table()
    )
    merged, only_old = _merge(samples, old)
    phases["merge_existing"] = time.perf_counter() - t

    if merged.num_rows == 0:
        raise ArchiveError(
            f"{site} {day}: no samples in the hot tier, in ACE or in an existing object; nothing to archive"
        )

    t = time.perf_counter()
    data, info = parquet_layout.encode_day(site, day, merged, source=source)
    phases["encode"] = time.perf_counter() - t

    t = time.perf_counter()
    cold.put(key, data)
    phases["upload"] = time.perf_counter() - t

    t = time.perf_counter()
    readback = cold.get(key)
    try:
        parquet_layout.verify_object(readback, info)
    except Exception as exc:
        raise ArchiveError(f"{site} {day}: object {key} failed verification after upload: {exc}") from exc
    phases["verify"] = time.perf_counter() - t

    hot.manifest_put(
        ManifestEntry(
            site=site,
            day=day,
            key=key,
            rows=info.rows,
            bytes=len(data),
            checksum=info.checksum,
            schema_version=info.schema_version,
            verified_ms=now_ms,
            source=source,
            hot_deleted_ms=entry.hot_deleted_ms if entry else None,
        )
    )
    return ArchiveResult(
        site=site,
        day=day,
        key=key,
        source=source,
        rows=info.rows,
        bytes=len(data),
        checksum=info.checksum,
        merged_from_existing=only_old,
        source_rows=samples.num_rows,
        duplicates_in_source=duplicates,
        ace_requests=ace_requests,
        phase_seconds=phases,
    )


@dataclass
class RetentionResult:
    site: str
    cutoff_day: dt.date  # days strictly before this are outside the hot window
    deleted_days: list[dt.date] = field(default_factory=list)
    rows_deleted: int = 0
    rearchived_days: list[dt.date] = field(default_factory=list)
    kept_days: dict[str, str] = field(default_factory=dict)  # day -> why it was kept


def hot_covered_by_cold(hot_day: pa.Table, cold_day: pa.Table) -> int:
    """How many hot (point, ts) keys are missing from the cold object (0 means fully covered)."""
    if hot_day.num_rows == 0:
        return 0
    h = pl.from_arrow(hot_day.select(["point", "ts_ms"]))
    c = pl.from_arrow(cold_day.select(["point", "ts_ms"]))
    assert isinstance(h, pl.DataFrame) and isinstance(c, pl.DataFrame)
    return h.join(c, on=["point", "ts_ms"], how="anti").height


def apply_retention(
    hot: HotStore,
    cold: ObjectStore,
    ace: AceClient | None,
    site: str,
    *,
    today: dt.date,
    hot_days: int,
    now_ms: int | None = None,
) -> RetentionResult:
    """Delete hot days older than the window, each only after proving cold holds every one of its rows."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    cutoff = today - dt.timedelta(days=hot_days)
    result = RetentionResult(site=site, cutoff_day=cutoff)
    cutoff_ms, _ = day_bounds_ms(cutoff)
    oldest = hot.min_ts(site)
    if oldest is None or oldest >= cutoff_ms:
        return result
    day = ms_to_date(oldest)
    while day < cutoff:
        start_ms, end_ms = day_bounds_ms(day)
        hot_rows = hot.count_samples(site, start_ms, end_ms)
        if hot_rows:
            _retire_day(hot, cold, ace, site, day, hot_rows, now_ms, result)
        day += dt.timedelta(days=1)
    return result


def _retire_day(
    hot: HotStore,
    cold: ObjectStore,
    ace: AceClient | None,
    site: str,
    day: dt.date,
    hot_rows: int,
    now_ms: int,
    result: RetentionResult,
) -> None:
    start_ms, end_ms = day_bounds_ms(day)

    def rearchive() -> ManifestEntry:
        archive_site_day(hot, cold, ace, site, day, now_ms=now_ms)
        result.rearchived_days.append(day)
        fresh = hot.manifest_get(site, day)
        assert fresh is not None
        return fresh

    def missing_from(e: ManifestEntry) -> int:
        cold_day = parquet_layout.decode_day(cold.get(e.key))
        return hot_covered_by_cold(hot.read_samples(site, None, start_ms, end_ms), cold_day)

    entry = hot.manifest_get(site, day)
    if entry is None or entry.rows < hot_rows or cold.size(entry.key) is None:
        # Not archived, archived before more rows arrived, or the object vanished: archive again first.
        entry = rearchive()
    missing = missing_from(entry)
    if missing:
        # Cold lacks rows the hot tier has (e.g. an object replaced out of band): re-archive and check again.
        entry = rearchive()
        missing = missing_from(entry)
        if missing:
            result.kept_days[day.isoformat()] = f"{missing} hot rows still absent from {entry.key}"
            return
    # Readers switch this day to cold before any row disappears from hot.
    hot.manifest_put(_with_deleted(entry, now_ms))
    result.rows_deleted += hot.delete_range(site, start_ms, end_ms)
    result.deleted_days.append(day)


def _with_deleted(entry: ManifestEntry, now_ms: int) -> ManifestEntry:
    from dataclasses import replace

    return replace(entry, hot_deleted_ms=entry.hot_deleted_ms or now_ms)


@dataclass
class RollupResult:
    key: str
    rows: int
    bytes: int
    points: int


def build_rollup_day(cold: ObjectStore, site: str, day: dt.date) -> RollupResult:
    """Hourly rollup of the day's verified cold object, uploaded and read back before it counts."""
    samples_key = cold_keys.samples_key(site, day)
    if cold.size(samples_key) is None:
        raise ArchiveError(
            f"{site} {day}: no cold object at {samples_key}; materialise cold_timeseries first"
        )
    raw = cold.get(samples_key)
    rollup = rollups.hourly_rollup(parquet_layout.decode_day(raw))
    # Record which raw content this rollup came from, so yearly compaction can tell a current rollup from one
    # left over from before a re-archival.
    source_checksum = parquet_layout.read_info(raw).checksum
    data, info = rollups.encode_rollup_day(site, day, rollup, source="cold", source_checksum=source_checksum)
    key = cold_keys.rollup_key(site, day)
    cold.put(key, data)
    back = rollups.decode_rollup(cold.get(key))
    if back.num_rows != info.rows or rollups.rollup_checksum(back) != info.checksum:
        raise ArchiveError(f"{site} {day}: rollup object {key} failed verification after upload")
    return RollupResult(key=key, rows=info.rows, bytes=len(data), points=info.point_count)
