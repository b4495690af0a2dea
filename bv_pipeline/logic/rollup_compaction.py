"""Compact a site-year of daily hourly rollups into the yearly object (``storage.rollup_year``).

``compact_rollups_year`` is incremental, idempotent and crash-safe:

1. Plan from the archive manifest: a day is compactable when its manifest entry is verified and its daily rollup
   exists and records the same source checksum (so a rollup left over from before a re-archival is never
   compacted). Days already in the published generation with the same checksum are kept as they are; new days
   are added, re-archived days replace their old rows, and days whose manifest entry changed or vanished without
   a current rollup are dropped (readers then use the daily rollup or raw data for them).
2. Nothing changed: publish nothing.
3. Otherwise write a complete new generation (every part written, read back and verified), then publish it by
   replacing ``index.json``, then read the index back. A crash at any point before the index write leaves the
   previous generation published and valid; orphan parts are removed later by age.
4. Concurrent runs for one site-year are prevented by Dagster (a run-tag limit), and are harmless anyway: each
   generation is complete and self-consistent, readers trust a day only while the manifest agrees with the index,
   and a run refuses to publish when the index changed while it was working (optimistic check).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa

from bv_pipeline.logic.generations import (
    GC_GRACE_MS,
    CompactionConflict,
    check_parts,
    generations_to_keep,
    new_generation,
    publish_index,
    stored_version,
)
from bv_pipeline.logic.generations import collect_garbage as _collect_garbage
from bv_pipeline.storage import cold_keys, rollup_year, rollups
from bv_pipeline.storage.parquet_layout import ColdVerificationError
from bv_pipeline.storage.rollup_year import YearIndex

if TYPE_CHECKING:
    from bv_pipeline.resources.manifest_store import ManifestStore
    from bv_pipeline.storage.interfaces import ManifestEntry, ObjectStore, Versioned

log = logging.getLogger(__name__)
__all__ = ["GC_GRACE_MS", "CompactionConflict", "compact_rollups_year", "new_generation"]


@dataclass
class CompactionResult:
    site: str
    year: int
    status: str  # "published" | "unchanged"
    generation: str | None  # the published generation afterwards (None: nothing published yet)
    days_added: list[dt.date] = field(default_factory=list)
    days_refreshed: list[dt.date] = field(default_factory=list)
    days_dropped: list[dt.date] = field(default_factory=list)
    days_kept: int = 0
    days_skipped: dict[str, str] = field(default_factory=dict)  # day -> why it is not in the object
    days_total: int = 0
    rows: int = 0
    bytes: int = 0
    parts: int = 0
    generations_deleted: list[str] = field(default_factory=list)
    phase_seconds: dict[str, float] = field(default_factory=dict)


def year_bounds(year: int) -> tuple[dt.date, dt.date]:
    return dt.date(year, 1, 1), dt.date(year, 12, 31)


def read_index(cold: ObjectStore, site: str, year: int) -> YearIndex | None:
    """The published index of a site-year, None when none is published. Raises ColdVerificationError if corrupt."""
    try:
        data = cold.get(cold_keys.rollup_year_index_key(site, year))
    except KeyError:
        return None
    index = YearIndex.from_json(data)
    if index.site != site or index.year != year:
        raise ColdVerificationError(f"index names {index.site}/{index.year}, expected {site}/{year}")
    return index


def _index_version(cold: ObjectStore, site: str, year: int) -> Versioned | None:
    return stored_version(cold, cold_keys.rollup_year_index_key(site, year))


def _load_daily(cold: ObjectStore, site: str, entry: ManifestEntry) -> pa.Table | str:
    """The day's current rollup rows, or why it cannot be compacted."""
    try:
        data = cold.get(cold_keys.rollup_key(site, entry.day))
    except KeyError:
        return "no daily rollup yet"
    try:
        source = rollups.rollup_source_checksum(data)
        if source is None:
            return "daily rollup records no source checksum: re-materialise cold_rollups for this day"
        if source != entry.checksum:
            return "daily rollup predates the current raw object: re-materialise cold_rollups for this day"
        return rollups.decode_rollup(data)
    except ColdVerificationError as exc:
        return f"daily rollup unreadable: {exc}"


@dataclass
class _Plan:
    keep: list[dt.date] = field(default_factory=list)
    added: dict[dt.date, pa.Table] = field(default_factory=dict)
    refreshed: dict[dt.date, pa.Table] = field(default_factory=dict)
    dropped: list[dt.date] = field(default_factory=list)
    skipped: dict[dt.date, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.refreshed or self.dropped)


def _plan(
    cold: ObjectStore, site: str, manifest: dict[dt.date, ManifestEntry], old_days: dict[dt.date, str]
) -> _Plan:
    plan = _Plan()
    for day, entry in sorted(manifest.items()):
        if old_days.get(day) == entry.checksum:
            plan.keep.append(day)
            continue
        loaded = _load_daily(cold, site, entry)
        if isinstance(loaded, str):
            plan.skipped[day] = loaded
        elif day in old_days:
            plan.refreshed[day] = loaded
        else:
            plan.added[day] = loaded
    plan.dropped = sorted(d for d in old_days if d not in plan.keep and d not in plan.refreshed)
    return plan


def _read_kept(cold: ObjectStore, old: YearIndex, keep: list[dt.date]) -> list[pa.Table]:
    """The published rows of the kept days, every part verified against the index on the way."""
    drop = set(old.days) - set(keep)
    return [
        rollup_year.drop_days(rollup_year.verify_part(cold.get(p.key), p, old.days), drop) for p in old.parts
    ]


def collect_garbage(
    cold: ObjectStore,
    site: str,
    year: int,
    *,
    keep: set[str],
    now_ms: int,
    grace_ms: int = GC_GRACE_MS,
) -> list[str]:
    """Delete parts of generations not in ``keep`` that are older than ``grace_ms``. Returns the generations."""
    return _collect_garbage(
        cold,
        cold_keys.rollup_year_prefix(site, year),
        cold_keys.generation_of_part_key,
        keep=keep,
        now_ms=now_ms,
        grace_ms=grace_ms,
    )


def compact_rollups_year(
    manifest_store: ManifestStore,
    cold: ObjectStore,
    site: str,
    year: int,
    *,
    now_ms: int | None = None,
    part_target_bytes: int = rollup_year.PART_TARGET_BYTES,
    min_group_rows: int = rollup_year.MIN_GROUP_ROWS,
    gc_grace_ms: int = GC_GRACE_MS,
) -> CompactionResult:
    """Bring the site-year's compacted hourly rollups up to date with the manifest (see the module docstring)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    phases: dict[str, float] = {}
    t = time.perf_counter()
    first, last = year_bounds(year)
    manifest = {e.day: e for e in manifest_store.list(site, first, last)}
    start = _index_version(cold, site, year)
    try:
        old = read_index(cold, site, year)
    except ColdVerificationError as exc:
        log.warning("%s %s: published index unreadable (%s); rebuilding from daily rollups", site, year, exc)
        old = None
    plan = _plan(cold, site, manifest, old.days if old else {})
    phases["plan"] = time.perf_counter() - t
    result = CompactionResult(
        site=site, year=year, status="unchanged", generation=old.generation if old else None
    )

    if plan.changed or (old is None and start is not None):
        t = time.perf_counter()
        base: list[pa.Table] = []
        if old is not None and plan.keep:
            try:
                base = _read_kept(cold, old, plan.keep)
            except (KeyError, ColdVerificationError) as exc:
                # The published generation is damaged: rebuild the whole year from the daily rollups.
                log.warning(
                    "%s %s: published parts unusable (%s); rebuilding from daily rollups", site, year, exc
                )
                old = None
                plan = _plan(cold, site, manifest, {})
        table = rollup_year.sort_year([*base, *plan.added.values(), *plan.refreshed.values()])
        days = {d: manifest[d].checksum for d in [*plan.keep, *plan.added, *plan.refreshed]}
        del base
        phases["merge"] = time.perf_counter() - t

        t = time.perf_counter()
        generation = new_generation(now_ms)
        parts = []
        for data, info in rollup_year.encode_year_parts(
            site,
            year,
            generation,
            table,
            days,
            part_target_bytes=part_target_bytes,
            min_group_rows=min_group_rows,
        ):
            cold.put(info.key, data)
            # Read back before it counts: the index may only name parts proven to hold what it says.
            rollup_year.verify_part(cold.get(info.key), info, days)
            parts.append(info)
        index = YearIndex(
            site=site,
            year=year,
            generation=generation,
            days=days,
            parts=tuple(parts),
            rows=table.num_rows,
            checksum=rollup_year.combined_checksum(parts),
            created_ms=now_ms,
        )
        phases["write_verify"] = time.perf_counter() - t

        t = time.perf_counter()
        publish_index(
            cold,
            cold_keys.rollup_year_index_key(site, year),
            index.to_json(),
            expected_etag=start.etag if start else None,
            read_back=YearIndex.from_json,
            expected=index,
        )
        phases["publish"] = time.perf_counter() - t
        result.status, result.generation = "published", generation
        result.days_added, result.days_refreshed = sorted(plan.added), sorted(plan.refreshed)
        result.days_dropped = plan.dropped
        result.rows, result.bytes, result.parts = index.rows, sum(p.bytes for p in parts), len(parts)
        result.days_total = len(days)
    elif old is not None:
        result.rows, result.bytes, result.parts = old.rows, sum(p.bytes for p in old.parts), len(old.parts)
        result.days_total = len(old.days)

    result.days_kept = len(plan.keep)
    result.days_skipped = {d.isoformat(): why for d, why in plan.skipped.items()}
    t = time.perf_counter()
    keep = generations_to_keep(result.status, result.generation, old.generation if old else None)
    result.generations_deleted = collect_garbage(
        cold, site, year, keep=keep, now_ms=now_ms, grace_ms=gc_grace_ms
    )
    phases["gc"] = time.perf_counter() - t
    result.phase_seconds = phases
    return result


def years_to_compact(
    manifest_store: ManifestStore, cold: ObjectStore, site: str, *, until: dt.date
) -> list[int]:
    """Years with verified manifest entries up to ``until``, plus years that already have a published index."""
    years = {e.day.year for e in manifest_store.list(site, dt.date(1970, 1, 1), until)}
    for key in cold.list(cold_keys.rollup_year_site_prefix(site)):
        year = cold_keys.year_of_index_key(key)
        if year is not None:
            years.add(year)
    return sorted(years)


@dataclass
class YearCheck:
    """Whether a published site-year is readable and agrees with the manifest."""

    site: str
    year: int
    published: bool
    readable: bool
    problems: list[str] = field(default_factory=list)
    stale_days: list[dt.date] = field(default_factory=list)  # in the index, manifest disagrees or is absent
    missing_days: list[dt.date] = field(default_factory=list)  # verified in the manifest, not in the index


def check_year(manifest_store: ManifestStore, cold: ObjectStore, site: str, year: int) -> YearCheck:
    """Cheap structural check: index parses, every part exists with the size and footer metadata the index
    records (footer-only reads), and the index's day list against the manifest."""
    result = YearCheck(site=site, year=year, published=False, readable=True)
    try:
        index = read_index(cold, site, year)
    except ColdVerificationError as exc:
        result.readable = False
        result.problems.append(str(exc))
        return result
    manifest = {e.day: e.checksum for e in manifest_store.list(site, *year_bounds(year))}
    if index is None:
        result.missing_days = sorted(manifest)
        return result
    result.published = True
    result.problems = check_parts(cold, index.parts)
    result.readable = not result.problems
    result.stale_days = sorted(d for d, c in index.days.items() if manifest.get(d) != c)
    result.missing_days = sorted(d for d in manifest if d not in index.days)
    return result
