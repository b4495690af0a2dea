"""Settling pass and partition correction: re-read a closed day from ACE and make the stores hold what ACE serves.

Why: the live sync re-reads only ``BV_SYNC_LOOKBACK_MINUTES`` before its progress point, so a sample that reaches
ACE later than that after its timestamp is never fetched by it. ``settle_site_day`` re-reads the whole day
(through the same rate-limited client and the ``ace_api`` concurrency pool as every other ACE call) and merges the
(point, ts) keys the stores lack:

- into the hot tier (``upsert_samples``) while the hot tier still holds the day, then, if the day was archived
  already, re-archives it so cold holds them too (archival merges, so nothing archived is lost);
- straight into the cold object (merge, upload, read-back verification, manifest commit) once retention retired
  the hot copy.

It runs before nightly archival and again ``BV_SETTLE_DELAY_HOURS`` after the day closed (default 26 h), so
samples up to 24 h late end up stored. ACE does not say when a sample arrived, so lateness is reported as the age
of each late sample when this pass found it (``now - ts``), an upper bound; the lookback is its lower bound.

``correct_site_day`` replaces a day with exactly what ACE serves now (not a merge), verify-then-commit.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa

from bv_pipeline.logic.archive import ArchiveError, ArchiveResult, archive_site_day, manifest_for
from bv_pipeline.storage import parquet_layout
from bv_pipeline.storage.samples import SAMPLE_SCHEMA, day_bounds_ms

if TYPE_CHECKING:
    from bv_pipeline.resources.ace import AceClient
    from bv_pipeline.storage.interfaces import HotStore, ObjectStore

MS_PER_MINUTE = 60_000


@dataclass
class SettleResult:
    site: str
    day: dt.date
    target: str  # "hot" | "hot+cold" | "cold" | "none" (nothing stored yet: archival will fetch the day)
    fetched: int = 0  # distinct samples ACE serves for the day now
    late_samples: int = 0  # of those, (point, ts) keys the stores lacked, now stored
    max_age_minutes: float = 0.0  # oldest late sample's age when found (an upper bound of its lateness)
    late_by_age: dict[str, int] = field(default_factory=dict)  # "<=15m", "<=1h", "<=6h", "<=24h", ">24h"
    ace_requests: int = 0
    rearchived: bool = False


_AGE_BUCKETS = ((15, "<=15m"), (60, "<=1h"), (360, "<=6h"), (1440, "<=24h"))


def _age_histogram(ages_min: pl.Series) -> dict[str, int]:
    out: dict[str, int] = {}
    remaining = ages_min
    for limit, label in _AGE_BUCKETS:
        n = int((remaining <= limit).sum())
        if n:
            out[label] = n
        remaining = remaining.filter(remaining > limit)
    if remaining.len():
        out[">24h"] = remaining.len()
    return out


def _missing(fetched: pa.Table, stored: pa.Table) -> pa.Table:
    """Rows of ``fetched`` whose (point, ts_ms) ``stored`` lacks."""
    f = pl.from_arrow(fetched)
    s = pl.from_arrow(stored.select(["point", "ts_ms"]))
    assert isinstance(f, pl.DataFrame) and isinstance(s, pl.DataFrame)
    return f.join(s, on=["point", "ts_ms"], how="anti").to_arrow().cast(SAMPLE_SCHEMA)


def settle_site_day(
    hot: HotStore, cold: ObjectStore, ace: AceClient, site: str, day: dt.date, *, now_ms: int | None = None
) -> SettleResult:
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    manifest = manifest_for(hot, cold)
    start_ms, end_ms = day_bounds_ms(day)
    entry = manifest.get(site, day)
    retired = entry is not None and entry.hot_deleted_ms is not None
    in_hot = not retired and hot.max_ts_between(site, start_ms, end_ms) is not None
    result = SettleResult(site=site, day=day, target="none")
    if not in_hot and entry is None:
        return result  # nothing stored yet (a backfill): the day's archival reads ACE itself, once
    fetched, stats = ace.fetch_samples(site, start_ms, end_ms, raw=True)
    result.fetched, result.ace_requests = fetched.num_rows, stats.requests
    if in_hot:
        result.target = "hot" if entry is None else "hot+cold"
        stored = hot.read_samples(site, None, start_ms, end_ms)
    else:
        assert entry is not None
        result.target = "cold"
        stored = parquet_layout.decode_day(cold.get(entry.key))
    late = _missing(fetched, stored)
    del stored
    result.late_samples = late.num_rows
    if late.num_rows:
        ages = (now_ms - pl.from_arrow(late["ts_ms"])) / MS_PER_MINUTE  # type: ignore[operator]
        result.max_age_minutes = round(float(ages.max()), 1)  # type: ignore[arg-type]
        result.late_by_age = _age_histogram(ages)
        if in_hot:
            hot.upsert_samples(site, late)
            if entry is not None:  # archived already: bring cold up to date from the now complete hot day
                archive_site_day(hot, cold, ace, site, day, now_ms=now_ms, manifest=manifest)
                result.rearchived = True
        else:
            archive_site_day(hot, cold, ace, site, day, now_ms=now_ms, manifest=manifest, from_ace=fetched)
            result.rearchived = True
    return result


@dataclass
class CorrectionResult:
    site: str
    day: dt.date
    rows_before: int
    rows_after: int
    checksum_before: str | None
    checksum_after: str
    hot_replaced: bool
    ace_requests: int
    archive: ArchiveResult


def correct_site_day(
    hot: HotStore, cold: ObjectStore, ace: AceClient, site: str, day: dt.date, *, now_ms: int | None = None
) -> CorrectionResult:
    """Replace the archived day with exactly what ACE serves now: fetch, write, read back and verify, commit the
    manifest (the archive's own verify-then-commit), and only then replace the hot copy if hot still holds the
    day. An empty answer from ACE is refused (it would erase the day)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    manifest = manifest_for(hot, cold)
    start_ms, end_ms = day_bounds_ms(day)
    fetched, stats = ace.fetch_samples(site, start_ms, end_ms, raw=True)
    if fetched.num_rows == 0:
        raise ArchiveError(
            f"{site} {day}: ACE serves no samples for this day; refusing to replace it with nothing"
        )
    before = manifest.get(site, day)
    r = archive_site_day(
        hot, cold, ace, site, day, now_ms=now_ms, manifest=manifest, replace_existing=True, from_ace=fetched
    )
    r.ace_requests = stats.requests
    hot_replaced = False
    if not (before and before.hot_deleted_ms) and hot.max_ts_between(site, start_ms, end_ms) is not None:
        hot.delete_range(site, start_ms, end_ms)
        hot.upsert_samples(site, fetched)
        hot_replaced = True
    return CorrectionResult(
        site=site,
        day=day,
        rows_before=before.rows if before else 0,
        rows_after=r.rows,
        checksum_before=before.checksum if before else None,
        checksum_after=r.checksum,
        hot_replaced=hot_replaced,
        ace_requests=stats.requests,
        archive=r,
    )
