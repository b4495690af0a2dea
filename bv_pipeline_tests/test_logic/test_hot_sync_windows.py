"""Pure window and catch-up rules of the hot sync."""

from __future__ import annotations

import datetime as dt

from bv_pipeline.logic.hot_sync import SyncMode, days_to_sync, is_day_closed, sync_window
from bv_pipeline.storage.samples import day_bounds_ms

DAY = dt.date(2026, 3, 10)
START, END = day_bounds_ms(DAY)
MIN = 60_000
LOOKBACK = 10 * MIN


def test_first_sync_of_a_day_starts_at_midnight() -> None:
    assert sync_window(DAY, SyncMode.INCREMENTAL, None, START + 90 * MIN, LOOKBACK) == (
        START,
        START + 90 * MIN,
    )


def test_incremental_window_starts_at_progress_minus_lookback() -> None:
    as_of = START + 60 * MIN
    assert sync_window(DAY, SyncMode.INCREMENTAL, as_of, as_of + 5 * MIN, LOOKBACK) == (
        as_of - LOOKBACK,
        as_of + 5 * MIN,
    )


def test_lookback_never_reaches_into_the_previous_day() -> None:
    assert sync_window(DAY, SyncMode.INCREMENTAL, START + 2 * MIN, START + 7 * MIN, LOOKBACK) == (
        START,
        START + 7 * MIN,
    )


def test_window_is_clipped_to_the_day_after_midnight() -> None:
    # Progress at 23:58, run at 00:07 next day: fetch 23:48 .. 24:00 only.
    as_of = END - 2 * MIN
    assert sync_window(DAY, SyncMode.INCREMENTAL, as_of, END + 7 * MIN, LOOKBACK) == (as_of - LOOKBACK, END)


def test_a_closed_day_still_rereads_only_its_last_lookback() -> None:
    assert sync_window(DAY, SyncMode.INCREMENTAL, END + LOOKBACK, END + 20 * MIN, LOOKBACK) == (
        END - LOOKBACK,
        END,
    )


def test_full_day_mode_ignores_progress() -> None:
    assert sync_window(DAY, SyncMode.FULL_DAY, END + LOOKBACK, END + 20 * MIN, LOOKBACK) == (START, END)


def test_future_day_has_nothing_to_fetch() -> None:
    assert sync_window(DAY, SyncMode.INCREMENTAL, None, START - 1, LOOKBACK) is None


def test_day_closes_only_after_the_lookback_past_midnight() -> None:
    assert not is_day_closed(DAY, None, LOOKBACK)
    assert not is_day_closed(DAY, END, LOOKBACK)
    assert not is_day_closed(DAY, END + LOOKBACK - 1, LOOKBACK)
    assert is_day_closed(DAY, END + LOOKBACK, LOOKBACK)


def test_new_site_syncs_today_only() -> None:
    assert days_to_sync(DAY, {}, lookback_ms=LOOKBACK, max_catchup_days=20, has_any_state=False) == [DAY]


def test_just_after_midnight_yesterday_is_synced_too() -> None:
    yesterday = DAY - dt.timedelta(days=1)
    state = {yesterday: START - 2 * MIN}  # last synced at 23:58
    assert days_to_sync(DAY, state, lookback_ms=LOOKBACK, max_catchup_days=20, has_any_state=True) == [
        yesterday,
        DAY,
    ]


def test_closed_yesterday_is_not_synced_again() -> None:
    yesterday = DAY - dt.timedelta(days=1)
    state = {yesterday: START + LOOKBACK, DAY: START + 30 * MIN}
    assert days_to_sync(DAY, state, lookback_ms=LOOKBACK, max_catchup_days=20, has_any_state=True) == [DAY]


def test_downtime_over_several_days_catches_up_every_day_bounded() -> None:
    last = DAY - dt.timedelta(days=4)
    state = {last: day_bounds_ms(last)[0] + 12 * 60 * MIN}  # stopped at noon four days ago
    days = days_to_sync(DAY, state, lookback_ms=LOOKBACK, max_catchup_days=20, has_any_state=True)
    assert days == [DAY - dt.timedelta(days=n) for n in (4, 3, 2, 1, 0)]
    bounded = days_to_sync(DAY, state, lookback_ms=LOOKBACK, max_catchup_days=2, has_any_state=True)
    assert bounded == [DAY - dt.timedelta(days=n) for n in (2, 1, 0)]
