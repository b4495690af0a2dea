"""Sync one site-day from ACE into the hot tier.

The window a sync fetches is derived from the hot store's own per-day sync state, never from a sensor cursor:
a failed or skipped run therefore loses nothing, and the next run starts where the last *successful* chunk
ended, minus a lookback that re-reads recent minutes so late-arriving samples are picked up.

Per (site, day) the store keeps ``as_of_ms``: the wall-clock time of the last successful fetch of that day. A day
is *closed* once a fetch ran at or after ``day_end + lookback`` (every late sample inside the lookback has had its
chance). Keeping this per day, not per site, makes concurrent or out-of-order runs for different days safe.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from bv_pipeline.storage.samples import count_non_numeric, count_nulls, day_bounds_ms

if TYPE_CHECKING:
    from bv_pipeline.resources.ace import AceClient
    from bv_pipeline.storage.interfaces import HotStore, WindowStats

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
FUTURE_SKEW_MS = 120_000  # clock skew tolerated before a sample counts as "from the future"


class SyncMode(StrEnum):
    INCREMENTAL = "incremental"  # from the day's sync state minus the lookback (what the sensor requests)
    FULL_DAY = "full_day"  # the whole day again (manual materialisation / backfill); idempotent


@dataclass
class SyncResult:
    site: str
    day: dt.date
    mode: SyncMode
    window_start_ms: int | None = None
    window_end_ms: int | None = None
    chunks: int = 0
    rows_upserted: int = 0
    rows_new: int = 0  # samples the hot tier did not hold yet (a repeated sync: 0)
    hours_sealed: int = 0
    new_points: int = 0
    non_numeric: int = 0
    nulls: int = 0
    duplicates: int = 0
    ace_requests: int = 0
    ace_pages: int = 0
    ace_retries: int = 0
    cursor_repairs: int = 0
    hot_requests: int = 0
    max_sample_ts_ms: int | None = None
    as_of_ms: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> bool:
        return self.chunks == 0


def sync_window(
    day: dt.date, mode: SyncMode, last_as_of_ms: int | None, now_ms: int, lookback_ms: int
) -> tuple[int, int] | None:
    """The [start, end) window to fetch for ``day`` at ``now_ms``; None when there is nothing to fetch yet."""
    day_start, day_end = day_bounds_ms(day)
    end = min(day_end, now_ms)
    if mode is SyncMode.FULL_DAY or last_as_of_ms is None:
        start = day_start
    else:
        start = max(day_start, min(last_as_of_ms, day_end) - lookback_ms)
    return (start, end) if start < end else None


def is_day_closed(day: dt.date, as_of_ms: int | None, lookback_ms: int) -> bool:
    _, day_end = day_bounds_ms(day)
    return as_of_ms is not None and as_of_ms >= day_end + lookback_ms


def sync_site_day(
    ace: AceClient,
    hot: HotStore,
    site: str,
    day: dt.date,
    *,
    now_ms: int,
    mode: SyncMode = SyncMode.INCREMENTAL,
    lookback_minutes: int = 10,
    chunk_minutes: int = 60,
    log: logging.Logger | None = None,
    on_chunk: Callable[[SyncResult], None] | None = None,
    as_of_by_day: Mapping[dt.date, int] | None = None,
) -> SyncResult:
    """Fetch the day's pending window in bounded chunks, upserting each and recording progress after each one.

    A crash mid-way keeps every completed chunk and its progress; the rerun resumes from there. ``as_of_by_day``:
    the site's sync state if the caller has just read it (``list_sync_as_of``), which saves one hot-store request.
    """
    log = log or logging.getLogger(__name__)
    result = SyncResult(site=site, day=day, mode=mode)
    requests_before = hot.requests_made
    lookback_ms = lookback_minutes * MINUTE_MS
    if mode is not SyncMode.INCREMENTAL:
        last_as_of = None
    elif as_of_by_day is not None:
        last_as_of = as_of_by_day.get(day)
    else:
        last_as_of = hot.get_sync_as_of(site, day)
    window = sync_window(day, mode, last_as_of, now_ms, lookback_ms)
    if window is None:
        result.notes.append("nothing to fetch: the day is in the future or already synced up to now")
        result.hot_requests = hot.requests_made - requests_before
        return result
    start, end = window
    result.window_start_ms, result.window_end_ms = start, end

    # Point metadata (kind, unit, tags) changes rarely and costs D1 requests and row writes: refresh it on a full-day
    # sync, on a day's first sync and once an hour; a point that appears in between is created by its samples and
    # triggers an immediate refresh below.
    if mode is SyncMode.FULL_DAY or last_as_of is None or last_as_of // HOUR_MS != now_ms // HOUR_MS:
        result.new_points += hot.upsert_points(site, ace.list_points(site))
        metadata_synced = True
    else:
        metadata_synced = False

    chunk_ms = chunk_minutes * MINUTE_MS
    chunk_start = start
    while chunk_start < end:
        chunk_end = min(end, chunk_start + chunk_ms)
        table, stats = ace.fetch_samples(site, chunk_start, chunk_end, raw=True)
        upsert = hot.upsert_samples(site, table)
        result.chunks += 1
        result.rows_upserted += upsert.rows
        result.rows_new += upsert.new_rows
        result.new_points += upsert.new_points
        result.non_numeric += count_non_numeric(table)
        result.nulls += count_nulls(table)
        result.duplicates += stats.duplicates
        result.ace_requests += stats.requests
        result.ace_pages += stats.pages
        result.ace_retries += stats.retries
        result.cursor_repairs += stats.cursor_repairs
        if table.num_rows:
            batch_max = int(table["ts_ms"].to_numpy().max())
            result.max_sample_ts_ms = max(result.max_sample_ts_ms or batch_max, batch_max)
        # Progress is the fetch end, recorded as "synced as of" that instant: samples later than it were not
        # visible yet and are re-read by the next run's lookback.
        as_of = now_ms if chunk_end == end else chunk_end
        hot.record_sync(site, day, as_of, chunk_end)
        # Hours whose lookback has passed will not be re-fetched by incremental syncs: seal them into blocks.
        result.hours_sealed += hot.seal(site, as_of - lookback_ms)
        if upsert.new_points and not metadata_synced:
            result.new_points += hot.upsert_points(site, ace.list_points(site))
            metadata_synced = True
        result.as_of_ms = as_of
        log.info(
            "synced %s %s [%s, %s): %d rows (%d requests)",
            site,
            day,
            _iso(chunk_start),
            _iso(chunk_end),
            upsert.rows,
            stats.requests,
        )
        if on_chunk is not None:
            on_chunk(result)
        chunk_start = chunk_end
    result.hot_requests = hot.requests_made - requests_before
    return result


def _iso(ts_ms: int) -> str:
    return dt.datetime.fromtimestamp(ts_ms / 1000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def days_to_sync(
    today: dt.date,
    as_of_by_day: dict[dt.date, int],
    *,
    lookback_ms: int,
    max_catchup_days: int,
    has_any_state: bool,
) -> list[dt.date]:
    """Which days of a site the sensor should sync now, oldest first.

    Today always; earlier days (at most ``max_catchup_days`` back) that were synced at some point but are not
    closed yet, e.g. yesterday just after midnight or every day of a downtime. A site never synced before starts
    with today only: history is loaded by partition backfills, straight to cold.
    """
    days = [today]
    if not has_any_state:
        return days
    known = sorted(as_of_by_day)
    if not known:
        return days
    first = max(known[0], today - dt.timedelta(days=max_catchup_days))
    day = first
    while day < today:
        if not is_day_closed(day, as_of_by_day.get(day), lookback_ms):
            days.append(day)
        day += dt.timedelta(days=1)
    return sorted(days)


def check_stats(hot: HotStore, r: SyncResult, now_ms: int) -> WindowStats | None:
    """What the ``hot_timeseries`` checks are computed from: one aggregate query over the synced window plus the
    rest of the day (so samples "from the future" are seen too). None when nothing was synced."""
    if r.window_start_ms is None or r.window_end_ms is None:
        return None
    _, day_end = day_bounds_ms(r.day)
    return hot.window_stats(r.site, r.window_start_ms, day_end, now_ms + FUTURE_SKEW_MS)
