"""Query planning: which tier answers each UTC day (and point) of a query, decided from what the stores hold.

1. A day whose manifest entry has ``hot_deleted_ms`` set is read from cold (retention removed it from hot).
2. Every other day is read from hot.
3. A hot-routed day that has a verified manifest entry but no hot rows for some requested point (history
   backfilled straight to cold, or hot rows pruned before the manifest said so) is read from cold for those
   points. A day missed by archival is still in hot, so it is answered from hot however old it is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import polars as pl

from bv_pipeline.api.aggregate import ROLLUP_INTERVALS
from bv_pipeline.storage.interfaces import ManifestEntry
from bv_pipeline.storage.samples import MS_PER_DAY, day_bounds_ms, ms_to_date

Source = Literal["hot", "cold", "split"]


@dataclass
class ColdTask:
    """One cold day to read: which points, which part of the day, and the object version to expect."""

    day: dt.date
    points: list[str]
    start_ms: int
    end_ms: int
    use_rollup: bool
    size: int = 0  # object size from the manifest; 0: unknown, ask the store
    checksum: str = ""  # the manifest's content checksum: the object version cached bytes are keyed by


def utc_days(start_ms: int, end_ms: int) -> list[dt.date]:
    """UTC days overlapping [start_ms, end_ms)."""
    if end_ms <= start_ms:
        return []
    first, last = ms_to_date(start_ms), ms_to_date(end_ms - 1)
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def day_runs(days: Sequence[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Group sorted days into contiguous (first, last) runs so hot reads are few range scans."""
    out: list[tuple[dt.date, dt.date]] = []
    for d in days:
        if out and (d - out[-1][1]).days == 1:
            out[-1] = (out[-1][0], d)
        else:
            out.append((d, d))
    return out


def route_days(
    days: Sequence[dt.date], manifest: dict[dt.date, ManifestEntry]
) -> tuple[list[dt.date], list[dt.date]]:
    """(hot days, cold days): cold when retention removed the day from hot (rules 1 and 2)."""
    cold = [d for d in days if (m := manifest.get(d)) is not None and m.hot_deleted_ms is not None]
    cold_set = set(cold)
    return [d for d in days if d not in cold_set], cold


def hot_gaps(
    points: list[str], hot_days: list[dt.date], manifest: dict[dt.date, ManifestEntry], hot: pl.DataFrame
) -> dict[dt.date, list[str]]:
    """Points of verified (archived) hot days that hot does not hold: they are read from cold (rule 3)."""
    verified_hot_days = [d for d in hot_days if d in manifest]
    if not verified_hot_days:
        return {}
    present: dict[dt.date, set[str]] = {}
    if hot.height:
        pairs = hot.select("point", (pl.col("ts_ms") // MS_PER_DAY).alias("day")).unique()
        epoch = dt.date(1970, 1, 1)
        for point, day_no in pairs.iter_rows():
            present.setdefault(epoch + dt.timedelta(days=day_no), set()).add(point)
    gaps: dict[dt.date, list[str]] = {}
    for d in verified_hot_days:
        missing = [p for p in points if p not in present.get(d, set())]
        if missing:
            gaps[d] = missing
    return gaps


def cold_tasks(
    wanted: dict[dt.date, list[str]],
    manifest: dict[dt.date, ManifestEntry],
    start_ms: int,
    end_ms: int,
    interval: str | None,
) -> list[ColdTask]:
    """One task per wanted cold day, clipped to the window, in day order."""
    tasks: list[ColdTask] = []
    for d in sorted(wanted):
        lo, hi = day_bounds_ms(d)
        whole_day = start_ms <= lo and hi <= end_ms
        tasks.append(
            ColdTask(
                day=d,
                points=wanted[d],
                start_ms=max(lo, start_ms),
                end_ms=min(hi, end_ms),
                # Rollups hold whole hours of whole days, so only fully covered days can use them, and only
                # a rollup built from the day's current raw object (else the raw day is aggregated).
                use_rollup=interval in ROLLUP_INTERVALS and whole_day and manifest[d].rollup_current,
                size=manifest[d].bytes,
                checksum=manifest[d].checksum,
            )
        )
    return tasks


def query_source(n_hot: int, n_cold: int, hot_days: list[dt.date], cold_days: list[dt.date]) -> Source:
    """Which tier answered; with no samples, where the plan would have read from."""
    if n_hot and n_cold:
        return "split"
    if n_hot:
        return "hot"
    if n_cold:
        return "cold"
    if hot_days and cold_days:
        return "split"
    return "cold" if cold_days else "hot"
