"""Archive one site-day to cold storage, and apply hot-tier retention.

Archival: take the day from the hot tier when it holds it, else straight from ACE (history never passes through
the hot tier); merge with an object already in cold (so late samples that reached the hot tier after an earlier
archival are added, and nothing archived before is lost); upload; **verify by reading the object back** (row
count and content checksum); build the day's hourly rollup from the verified object, upload and verify it; only
then commit both in the archive manifest (object storage, ``resources.manifest_store``) with one conditional write.
So a day's rollup always follows its raw object: a manifest entry never names a raw checksum without either the
rollup built from it or no rollup at all (readers then aggregate the raw day).

Retention: a hot day is deleted only when it is older than the hot window AND the manifest holds a verified object
AND a fresh read of that object contains every (point, ts) the hot tier holds for the day. The manifest is marked
``hot_deleted_ms`` *before* the delete so readers switch that day to cold first; a crash mid-delete leaves rows
that the next retention run verifies and deletes again. Any failed condition re-archives the day first.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa

from bv_pipeline.resources.manifest_store import ManifestStore
from bv_pipeline.storage import cold_keys, parquet_layout, rollups
from bv_pipeline.storage.interfaces import ManifestEntry, RollupState
from bv_pipeline.storage.samples import SAMPLE_SCHEMA, day_bounds_ms, ms_to_date

if TYPE_CHECKING:
    from collections.abc import Callable

    from bv_pipeline.resources.ace import AceClient
    from bv_pipeline.storage.interfaces import HotStore, ObjectStore

log = logging.getLogger(__name__)


class ArchiveError(RuntimeError):
    """Archival could not produce a verified object; nothing was deleted."""


class ArchiveConflict(ArchiveError):
    """Another writer committed a different object for the day while this run worked: retry the run."""


def manifest_for(hot: HotStore | None, cold: ObjectStore) -> ManifestStore:
    """The archive manifest in ``cold``, mirroring commits into the hot tier's cache table when given."""
    return ManifestStore(cold, mirror=hot)


def _expect_checksum(expected: str | None, what: str) -> Callable[[ManifestEntry | None], None]:
    def check(current: ManifestEntry | None) -> None:
        found = current.checksum if current else None
        if found != expected:
            raise ArchiveConflict(f"{what}: the manifest now names {found}, this run started from {expected}")

    return check


@dataclass
class ArchiveResult:
    site: str
    day: dt.date
    key: str
    source: str  # "hot" | "ace"
    rows: int
    bytes: int
    checksum: str
    rollup_rows: int = 0
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
    manifest: ManifestStore | None = None,
    replace_existing: bool = False,
    from_ace: pa.Table | None = None,
) -> ArchiveResult:
    """Archive the day (see the module docstring).

    ``from_ace``: samples the caller already fetched from ACE for the whole day (the settling pass), used as the
    source instead of reading hot or ACE again. ``replace_existing`` (a correction): write exactly what the source
    serves now instead of merging it with the existing object.
    """
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    manifest = manifest or manifest_for(hot, cold)
    start_ms, end_ms = day_bounds_ms(day)
    key = cold_keys.samples_key(site, day)
    phases: dict[str, float] = {}

    t = time.perf_counter()
    entry = manifest.get(site, day)
    # "Any hot row?" as per-point index seeks (max_ts_between): a full COUNT walks all 6.5 M rows of a day.
    in_hot = (
        from_ace is None
        and not (entry and entry.hot_deleted_ms)
        and hot.max_ts_between(site, start_ms, end_ms) is not None
    )
    ace_requests = 0
    duplicates = 0
    if from_ace is not None:
        source, samples = "ace", from_ace
    elif in_hot:
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
    existing_size = None if replace_existing else cold.size(key)
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

    t = time.perf_counter()
    rollup = _write_rollup(cold, site, day, parquet_layout.decode_day(readback), info.checksum, now_ms)
    phases["rollup"] = time.perf_counter() - t

    t = time.perf_counter()
    check = _expect_checksum(entry.checksum if entry else None, f"{site} {day}")

    def commit(current: ManifestEntry | None) -> ManifestEntry:
        check(current)
        return ManifestEntry(
            site=site,
            day=day,
            key=key,
            rows=info.rows,
            bytes=len(data),
            checksum=info.checksum,
            schema_version=info.schema_version,
            verified_ms=now_ms,
            source=source,
            hot_deleted_ms=current.hot_deleted_ms if current else None,
            rollup=rollup,
        )

    manifest.update(site, day, commit)
    phases["commit"] = time.perf_counter() - t
    return ArchiveResult(
        site=site,
        day=day,
        key=key,
        source=source,
        rows=info.rows,
        bytes=len(data),
        checksum=info.checksum,
        rollup_rows=rollup.rows,
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
    manifest = manifest_for(hot, cold)
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
            _retire_day(hot, cold, manifest, ace, site, day, hot_rows, now_ms, result)
        day += dt.timedelta(days=1)
    return result


def _retire_day(
    hot: HotStore,
    cold: ObjectStore,
    manifest: ManifestStore,
    ace: AceClient | None,
    site: str,
    day: dt.date,
    hot_rows: int,
    now_ms: int,
    result: RetentionResult,
) -> None:
    start_ms, end_ms = day_bounds_ms(day)

    def rearchive() -> ManifestEntry:
        archive_site_day(hot, cold, ace, site, day, now_ms=now_ms, manifest=manifest)
        result.rearchived_days.append(day)
        fresh = manifest.get(site, day)
        assert fresh is not None
        return fresh

    def missing_from(e: ManifestEntry) -> int:
        cold_day = parquet_layout.decode_day(cold.get(e.key))
        return hot_covered_by_cold(hot.read_samples(site, None, start_ms, end_ms), cold_day)

    entry = manifest.get(site, day)
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
    # Readers switch this day to cold before any row disappears from hot. The mark is a conditional write that
    # applies only to the object just verified: if another run re-archived the day meanwhile, keep the hot rows.
    check = _expect_checksum(entry.checksum, f"{site} {day}")

    def mark_deleted(current: ManifestEntry | None) -> ManifestEntry:
        check(current)
        assert current is not None
        return replace(current, hot_deleted_ms=current.hot_deleted_ms or now_ms)

    try:
        manifest.update(site, day, mark_deleted)
    except ArchiveConflict as exc:
        result.kept_days[day.isoformat()] = str(exc)
        return
    result.rows_deleted += hot.delete_range(site, start_ms, end_ms)
    result.deleted_days.append(day)


@dataclass
class RollupResult:
    key: str
    rows: int
    bytes: int
    points: int | None  # None: not rebuilt, so not counted
    rebuilt: bool = True  # False: the manifest already named a rollup of the current raw object


def _write_rollup(
    cold: ObjectStore, site: str, day: dt.date, samples: pa.Table, source_checksum: str, now_ms: int
) -> RollupState:
    """Hourly rollup of ``samples`` (the verified raw object with checksum ``source_checksum``), uploaded and read
    back before it counts. The object records ``source_checksum`` too, so it is self-describing."""
    rollup = rollups.hourly_rollup(samples)
    data, info = rollups.encode_rollup_day(site, day, rollup, source="cold", source_checksum=source_checksum)
    key = cold_keys.rollup_key(site, day)
    cold.put(key, data)
    back = cold.get(key)
    decoded = rollups.decode_rollup(back)
    if (
        decoded.num_rows != info.rows
        or rollups.rollup_checksum(decoded) != info.checksum
        or rollups.rollup_source_checksum(back) != source_checksum
    ):
        raise ArchiveError(f"{site} {day}: rollup object {key} failed verification after upload")
    return RollupState(
        key=key,
        rows=info.rows,
        bytes=len(data),
        checksum=info.checksum,
        source_checksum=source_checksum,
        verified_ms=now_ms,
    )


def build_rollup_day(
    cold: ObjectStore,
    site: str,
    day: dt.date,
    *,
    hot: HotStore | None = None,
    now_ms: int | None = None,
    force: bool = False,
) -> RollupResult:
    """Make the day's hourly rollup current: rebuild it from the verified cold object unless the manifest already
    names a rollup of exactly that object (``force`` rebuilds anyway), then commit its state in the manifest."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    manifest = manifest_for(hot, cold)
    entry = manifest.get(site, day)
    if entry is None:
        raise ArchiveError(
            f"{site} {day}: no verified cold object in the archive manifest; materialise cold_timeseries first"
        )
    if (
        entry.rollup is not None
        and entry.rollup_current
        and not force
        and cold.size(entry.rollup.key) is not None
    ):
        r = entry.rollup
        return RollupResult(key=r.key, rows=r.rows, bytes=r.bytes, points=None, rebuilt=False)
    raw = cold.get(entry.key)
    info = parquet_layout.read_info(raw)
    if info.checksum != entry.checksum:
        raise ArchiveConflict(
            f"{site} {day}: {entry.key} does not hold the checksum the manifest names; retry"
        )
    parquet_layout.verify_object(raw, info)
    samples = parquet_layout.decode_day(raw)
    state = _write_rollup(cold, site, day, samples, entry.checksum, now_ms)
    check = _expect_checksum(entry.checksum, f"{site} {day}")

    def commit(current: ManifestEntry | None) -> ManifestEntry:
        check(current)
        assert current is not None
        return replace(current, rollup=state)

    manifest.update(site, day, commit)
    points = len(set(samples["point"].to_pylist()))
    return RollupResult(key=state.key, rows=state.rows, bytes=state.bytes, points=points)
