"""Per-day coverage of a query: which tier answered each UTC day, and which days the pipeline has not loaded.

A window with no samples is ambiguous on its own: the points may have had no data, or the pipeline may never
have synced those days. Coverage tells them apart, per UTC day of the window:

- ``hot``: read from the hot tier (the day is synced or holds rows there).
- ``cold``: read from the cold tier's day objects (archived; or verified in cold while hot has no rows).
- ``compacted``: read from the cold tier's compacted monthly (raw) or yearly (rollup) objects.
- ``split``: some points from hot, others from cold (a verified day that hot holds only partly).
- ``not_loaded``: no tier holds the day: never synced, archived or backfilled.

The HTTP layer refines ``not_loaded`` with what only it knows (``before_start``: before ``BV_START_DATE``;
``future``: after today). Routing never uses the clock, so the reader does not either.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from typing import Literal

import polars as pl

from bv_pipeline.storage.samples import MS_PER_DAY

DayState = Literal["hot", "cold", "compacted", "split", "not_loaded", "before_start", "future"]


def day_states(
    days: Iterable[dt.date],
    *,
    hot_days: Collection[dt.date],
    hot_rows_days: Collection[dt.date],
    synced_days: Collection[dt.date],
    cold_read_days: Collection[dt.date],
    compacted_days: Collection[dt.date],
    archived_days: Collection[dt.date],
) -> dict[dt.date, DayState]:
    """The state of each day from what the query planned and read.

    ``hot_days``: days routed to hot; ``hot_rows_days``: days hot returned rows for; ``synced_days``: days with
    hot sync state; ``cold_read_days``: days any cold object was read for (archived or gap); ``compacted_days``:
    those served from compacted objects; ``archived_days``: days with a verified manifest entry.
    """
    out: dict[dt.date, DayState] = {}
    for d in days:
        cold_state: DayState = "compacted" if d in compacted_days else "cold"
        if d not in hot_days:
            out[d] = cold_state
        elif d in cold_read_days:
            out[d] = "split" if d in hot_rows_days else cold_state
        elif d in hot_rows_days or d in synced_days:
            out[d] = "hot"
        else:
            out[d] = cold_state if d in archived_days else "not_loaded"
    return out


def days_with_rows(frame: pl.DataFrame) -> set[dt.date]:
    """UTC days a (point, ts_ms, ...) frame has rows for."""
    if not frame.height:
        return set()
    epoch = dt.date(1970, 1, 1)
    return {epoch + dt.timedelta(days=n) for n in (frame["ts_ms"] // MS_PER_DAY).unique().to_list()}


def refine(
    states: Mapping[dt.date, DayState], *, start_date: dt.date | None, today: dt.date
) -> dict[str, str]:
    """ISO day -> state, with ``not_loaded`` days before ``start_date`` or after ``today`` named as such."""
    out: dict[str, str] = {}
    for d, state in states.items():
        if state == "not_loaded":
            if start_date is not None and d < start_date:
                state = "before_start"
            elif d > today:
                state = "future"
        out[d.isoformat()] = state
    return out
