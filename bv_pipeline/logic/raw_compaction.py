"""Compact a site-month of daily raw-sample objects into the monthly object set (``storage.raw_month``).

``compact_samples_month`` is idempotent and crash-safe:

1. Plan from the archive manifest: the month's verified days with their checksums and row counts. When the
   published index already holds exactly those, nothing is done.
2. Otherwise the month is rebuilt from its day objects. Each day object is fetched whole and must match its
   manifest entry (size, footer checksum and row count), or the day is skipped and reported (readers then keep
   using that day object, and the asset check flags it).
3. Points are processed in name-range chunks (bounded memory: about ``points_per_chunk`` point-months at a
   time plus the month's compressed day objects): the chunk's rows of every day are merged into (point, ts)
   order and written as parts. Every part is read back and its content checksum recomputed before it counts,
   and the parts must hold exactly the rows the included days hold, or nothing is published.
4. The index is then replaced (after an optimistic check that nobody published meanwhile) and read back. A crash
   at any point before that leaves the previous generation published and valid; orphan parts are removed later
   by age, like the yearly rollups'.

The day objects are never modified or deleted here: the monthly objects are a derived, verified copy for reads.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bv_pipeline.logic.generations import (
    GC_GRACE_MS,
    check_parts,
    generations_to_keep,
    new_generation,
    publish_index,
    stored_version,
)
from bv_pipeline.logic.generations import collect_garbage as _collect_garbage
from bv_pipeline.storage import cold_keys, parquet_layout, raw_month
from bv_pipeline.storage.compacted_parts import PartInfo
from bv_pipeline.storage.parquet_layout import ColdVerificationError
from bv_pipeline.storage.raw_month import MonthIndex

if TYPE_CHECKING:
    from bv_pipeline.resources.manifest_store import ManifestStore
    from bv_pipeline.storage.interfaces import ManifestEntry, ObjectStore, Versioned

log = logging.getLogger(__name__)

POINTS_PER_CHUNK = 256
_READ_COLUMNS = ["point", "ts_ms", "value", "value_text"]


@dataclass
class MonthCompactionResult:
    site: str
    month: dt.date
    status: str  # "published" | "unchanged"
    generation: str | None  # the published generation afterwards (None: nothing published yet)
    days_total: int = 0
    days_skipped: dict[str, str] = field(default_factory=dict)  # day -> why it is not in the object
    rows: int = 0
    bytes: int = 0
    parts: int = 0
    source_bytes: int = 0
    generations_deleted: list[str] = field(default_factory=list)
    phase_seconds: dict[str, float] = field(default_factory=dict)


def read_month_index(cold: ObjectStore, site: str, month: dt.date) -> MonthIndex | None:
    """The published index of a site-month, None when none is published. Raises ColdVerificationError if corrupt."""
    try:
        data = cold.get(cold_keys.samples_month_index_key(site, month))
    except KeyError:
        return None
    index = MonthIndex.from_json(data)
    if index.site != site or index.month != month:
        raise ColdVerificationError(f"index names {index.site}/{index.month}, expected {site}/{month}")
    return index


def _entry_version(entry: ManifestEntry) -> str:
    """One archival of a day: its checksum alone would not change when identical content is archived again."""
    return f"{entry.checksum}@{entry.verified_ms}"


def _index_version(cold: ObjectStore, site: str, month: dt.date) -> Versioned | None:
    return stored_version(cold, cold_keys.samples_month_index_key(site, month))


@dataclass
class _Day:
    day: dt.date
    entry: ManifestEntry
    file: pq.ParquetFile
    point_count: int
    mins: list[str]
    maxs: list[str]


def _load_day(cold: ObjectStore, site: str, entry: ManifestEntry) -> _Day | str:
    """The day object opened for reading, or why it cannot be compacted."""
    key = cold_keys.samples_key(site, entry.day)
    try:
        data = cold.get(key)
    except KeyError:
        return "day object missing from the store"
    if len(data) != entry.bytes:
        return f"day object is {len(data)} bytes, the manifest says {entry.bytes}"
    try:
        info = parquet_layout.read_info(data, size=len(data))
        if info.checksum != entry.checksum or info.rows != entry.rows:
            return "day object's checksum or row count differs from the manifest (re-archived meanwhile?)"
        pf = pq.ParquetFile(pa.BufferReader(data), read_dictionary=["point"])
        col = pf.schema_arrow.get_field_index("point")
        mins, maxs = [], []
        for g in range(pf.metadata.num_row_groups):
            stats = pf.metadata.row_group(g).column(col).statistics
            if stats is None or not stats.has_min_max:
                return "day object lacks point statistics"
            mins.append(stats.min)
            maxs.append(stats.max)
    except (ColdVerificationError, pa.ArrowException, OSError) as exc:
        return f"day object unreadable: {exc}"
    return _Day(entry.day, entry, pf, info.point_count, mins, maxs)


def _chunk_bounds(days: list[_Day], points_per_chunk: int) -> list[tuple[str, str | None]]:
    """Name ranges [lo, hi) (hi None: unbounded) covering every point, each about ``points_per_chunk`` names.

    Built from row-group statistics (a day object holds ~45 points per 64k-row group, so every k-th distinct
    group minimum is a boundary): no data is decoded to plan.
    """
    starts = sorted({m for d in days for m in d.mins})
    if not starts:
        return []
    groups = max(len(d.mins) for d in days)
    points = max(d.point_count for d in days)
    step = max(1, round(points_per_chunk * groups / max(points, 1)))
    cuts = starts[::step]
    cuts[0] = ""  # the first chunk starts below every name
    return [(lo, cuts[i + 1] if i + 1 < len(cuts) else None) for i, lo in enumerate(cuts)]


def _chunk_rows(day: _Day, lo: str, hi: str | None) -> pa.Table | None:
    """The day's rows with lo <= point < hi (SAMPLE_SCHEMA, point dictionary-encoded), None when none."""
    groups = [
        g
        for g, (a, z) in enumerate(zip(day.mins, day.maxs, strict=True))
        if z >= lo and (hi is None or a < hi)
    ]
    if not groups:
        return None
    table = day.file.read_row_groups(groups, columns=_READ_COLUMNS, use_threads=True)
    # The range test runs on each row group's small dictionary; rows only gather booleans.
    pieces = []
    for chunk in table["point"].chunks:
        keep = pc.greater_equal(chunk.dictionary, lo)
        if hi is not None:
            keep = pc.and_(keep, pc.less(chunk.dictionary, hi))
        pieces.append(keep.to_numpy(zero_copy_only=False)[chunk.indices.to_numpy(zero_copy_only=False)])
    mask = np.concatenate(pieces) if pieces else np.zeros(0, bool)
    if not mask.any():
        return None
    return table.filter(pa.array(mask))


def collect_garbage(
    cold: ObjectStore, site: str, month: dt.date, *, keep: set[str], now_ms: int, grace_ms: int = GC_GRACE_MS
) -> list[str]:
    """Delete parts of generations not in ``keep`` that are older than ``grace_ms``. Returns the generations."""
    return _collect_garbage(
        cold,
        cold_keys.samples_month_prefix(site, month),
        cold_keys.generation_of_month_part_key,
        keep=keep,
        now_ms=now_ms,
        grace_ms=grace_ms,
    )


def compact_samples_month(
    manifest_store: ManifestStore,
    cold: ObjectStore,
    site: str,
    month: dt.date,
    *,
    now_ms: int | None = None,
    part_target_bytes: int = raw_month.PART_TARGET_BYTES,
    min_group_rows: int = raw_month.MIN_GROUP_ROWS,
    points_per_chunk: int = POINTS_PER_CHUNK,
    gc_grace_ms: int = GC_GRACE_MS,
) -> MonthCompactionResult:
    """Bring the site-month's compacted raw samples up to date with the manifest (see the module docstring)."""
    month = raw_month.month_of(month)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    phases: dict[str, float] = {}
    t = time.perf_counter()
    manifest = {e.day: e for e in manifest_store.list(site, *raw_month.month_days(month))}
    start = _index_version(cold, site, month)
    try:
        old = read_month_index(cold, site, month)
    except ColdVerificationError as exc:
        log.warning("%s %s: published index unreadable (%s); rebuilding", site, f"{month:%Y-%m}", exc)
        old = None
    result = MonthCompactionResult(
        site=site, month=month, status="unchanged", generation=old.generation if old else None
    )
    wanted = {d: e.checksum for d, e in manifest.items()}
    wanted_rows = {d: e.rows for d, e in manifest.items()}
    # Days skipped last time count as handled while the manifest still names the same object: a day object that
    # does not match its manifest entry is reported, not re-read and re-written with its month every night.
    up_to_date = (
        old is not None
        and set(old.days) | set(old.skipped) == set(manifest)
        and all(old.days[d] == wanted[d] and old.day_rows[d] == wanted_rows[d] for d in old.days)
        and all(old.skipped[d] == _entry_version(manifest[d]) for d in old.skipped)
    )
    phases["plan"] = time.perf_counter() - t

    if not up_to_date and (manifest or old is not None):
        t = time.perf_counter()
        loaded: list[_Day] = []
        for day, entry in sorted(manifest.items()):
            got = _load_day(cold, site, entry)
            if isinstance(got, str):
                result.days_skipped[day.isoformat()] = got
            else:
                loaded.append(got)
                result.source_bytes += entry.bytes
        days = {d.day: d.entry.checksum for d in loaded}
        day_rows = {d.day: d.entry.rows for d in loaded}
        phases["fetch"] = time.perf_counter() - t

        t = time.perf_counter()
        generation = new_generation(now_ms)
        parts: list[PartInfo] = []
        written_rows = 0
        verify_seconds = 0.0
        for lo, hi in _chunk_bounds(loaded, points_per_chunk):
            tables = [r for d in loaded if (r := _chunk_rows(d, lo, hi)) is not None]
            merged = raw_month.merge_days(month, tables)
            del tables
            part_first_row = 0
            for data, info in raw_month.encode_month_parts(
                site,
                month,
                generation,
                merged,
                days,
                first_part=len(parts),
                part_target_bytes=part_target_bytes,
                min_group_rows=min_group_rows,
            ):
                cold.put(info.key, data)
                v = time.perf_counter()
                # Read back before it counts: the index may only name parts proven to hold what it says.
                written_rows += raw_month.verify_part(
                    cold.get(info.key),
                    info,
                    days,
                    source=(merged, part_first_row, part_first_row + info.rows),
                )
                part_first_row += info.rows
                verify_seconds += time.perf_counter() - v
                parts.append(info)
        expected_rows = sum(day_rows.values())
        if written_rows != expected_rows:
            raise ColdVerificationError(
                f"{site} {month:%Y-%m}: parts hold {written_rows} rows but the included days hold {expected_rows}"
            )
        phases["write"] = time.perf_counter() - t - verify_seconds
        phases["verify"] = verify_seconds

        t = time.perf_counter()
        index = MonthIndex(
            site=site,
            month=month,
            generation=generation,
            days=days,
            day_rows=day_rows,
            parts=tuple(parts),
            rows=written_rows,
            checksum=raw_month.combined_checksum(parts),
            created_ms=now_ms,
            skipped={
                dt.date.fromisoformat(d): _entry_version(manifest[dt.date.fromisoformat(d)])
                for d in result.days_skipped
            },
        )
        publish_index(
            cold,
            cold_keys.samples_month_index_key(site, month),
            index.to_json(),
            expected_etag=start.etag if start else None,
            read_back=MonthIndex.from_json,
            expected=index,
        )
        phases["publish"] = time.perf_counter() - t
        result.status, result.generation = "published", generation
        result.rows, result.bytes, result.parts = written_rows, sum(p.bytes for p in parts), len(parts)
        result.days_total = len(days)
    elif old is not None:
        result.rows, result.bytes, result.parts = old.rows, sum(p.bytes for p in old.parts), len(old.parts)
        result.days_total = len(old.days)
        result.days_skipped = {
            d.isoformat(): "skipped when the month was compacted; the manifest still names the same object"
            for d in old.skipped
        }

    t = time.perf_counter()
    keep = generations_to_keep(result.status, result.generation, old.generation if old else None)
    result.generations_deleted = collect_garbage(
        cold, site, month, keep=keep, now_ms=now_ms, grace_ms=gc_grace_ms
    )
    phases["gc"] = time.perf_counter() - t
    result.phase_seconds = phases
    return result


def months_to_compact(
    manifest_store: ManifestStore, cold: ObjectStore, site: str, *, today: dt.date
) -> list[dt.date]:
    """Months that ended before ``today`` and have verified manifest entries, plus months already published.

    The running month is left to the day objects: rebuilding it every night would rewrite up to a month of data
    per site per night for a few days' benefit.
    """
    this_month = raw_month.month_of(today)
    months = {
        raw_month.month_of(e.day)
        for e in manifest_store.list(site, dt.date(1970, 1, 1), this_month - dt.timedelta(days=1))
    }
    for key in cold.list(cold_keys.samples_month_site_prefix(site)):
        month = cold_keys.month_of_index_key(key)
        if month is not None:
            months.add(month)
    return sorted(months)


@dataclass
class MonthCheck:
    """Whether a published site-month is readable and agrees with the manifest."""

    site: str
    month: dt.date
    published: bool
    readable: bool
    problems: list[str] = field(default_factory=list)
    stale_days: list[dt.date] = field(default_factory=list)  # in the index, manifest disagrees or is absent
    missing_days: list[dt.date] = field(default_factory=list)  # verified in the manifest, not in the index


def check_month(manifest_store: ManifestStore, cold: ObjectStore, site: str, month: dt.date) -> MonthCheck:
    """Cheap structural check: the index parses, every part exists with the size and footer metadata the index
    records (footer-only reads), and the index's day list against the manifest."""
    result = MonthCheck(site=site, month=month, published=False, readable=True)
    try:
        index = read_month_index(cold, site, month)
    except ColdVerificationError as exc:
        result.readable = False
        result.problems.append(str(exc))
        return result
    manifest = {e.day: e.checksum for e in manifest_store.list(site, *raw_month.month_days(month))}
    if index is None:
        result.missing_days = sorted(manifest)
        return result
    result.published = True
    result.problems = check_parts(cold, index.parts)
    result.readable = not result.problems
    result.stale_days = sorted(d for d, c in index.days.items() if manifest.get(d) != c)
    result.missing_days = sorted(d for d in manifest if d not in index.days)
    return result
