"""hot_timeseries through Dagster (execute_in_process) against the simulator, SQLite and a pinned clock.

Every test ends by comparing the hot store with the simulator's truth sample by sample.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from bv_pipeline.logic.hot_sync import SyncMode, sync_site_day
from bv_pipeline.resources.ace import AceClient, AceError
from bv_pipeline.simulator import AceSimulator, FaultConfig, SimulatorConfig
from bv_pipeline.storage.samples import day_bounds_ms
from bv_pipeline_tests.fixtures.s3 import S3Bucket
from bv_pipeline_tests.stack import Stack, assert_same_samples, remote_backends

DAY = dt.date(2026, 3, 10)
DAY_START, DAY_END = day_bounds_ms(DAY)
SYNC = "hot_sync_job"


@pytest.fixture
def instance() -> dg.DagsterInstance:
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def d1_backend(s3_bucket: S3Bucket) -> Iterator[dict[str, Any]]:
    with remote_backends(s3_bucket) as kwargs:
        yield kwargs


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def _metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    [mat] = result.asset_materializations_for_node("hot_timeseries")
    return {k: v.value for k, v in mat.metadata.items()}


def test_sync_then_one_hour_outage_catches_up_with_no_gap(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    stack = Stack(tmp_path)
    stack.set_now(dt.datetime(2026, 3, 10, 9, 3, tzinfo=dt.UTC))
    first = stack.run(SYNC, "demo", DAY, instance, mode="incremental")
    assert _checks(first) == {
        "no_future_samples": True,
        "no_duplicate_samples": True,
        "latest_sample_fresh": True,
    }
    md = _metadata(first)
    assert md["rows_upserted"] == stack.truth("demo", DAY_START, stack.now_ms).num_rows > 0
    assert md["new_points"] == stack.points and md["mode"] == "incremental"
    assert_same_samples(
        stack.hot_rows("demo", DAY_START, DAY_END), stack.truth("demo", DAY_START, stack.now_ms)
    )

    stack.advance(hours=1, minutes=2)  # the sensor was stopped for an hour
    second = stack.run(SYNC, "demo", DAY, instance, mode="incremental")
    md2 = _metadata(second)
    assert md2["chunks"] == 2  # 62 + 10 lookback minutes, fetched in bounded 60-minute chunks
    assert_same_samples(
        stack.hot_rows("demo", DAY_START, DAY_END), stack.truth("demo", DAY_START, stack.now_ms)
    )


def test_midnight_crossing_completes_yesterday_and_starts_today(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    stack = Stack(tmp_path)
    stack.set_now(dt.datetime(2026, 3, 10, 23, 56, tzinfo=dt.UTC))
    stack.run(SYNC, "demo", DAY, instance, mode="incremental")
    stack.advance(minutes=9)  # 00:05 on the next day
    nxt = DAY + dt.timedelta(days=1)
    stack.run(SYNC, "demo", DAY, instance, mode="incremental")
    stack.run(SYNC, "demo", nxt, instance, mode="incremental")
    assert_same_samples(stack.hot_rows("demo", DAY_START, DAY_END), stack.truth("demo", DAY_START, DAY_END))
    nxt_start, _ = day_bounds_ms(nxt)
    assert_same_samples(
        stack.hot_rows("demo", nxt_start, nxt_start + 86_400_000),
        stack.truth("demo", nxt_start, stack.now_ms),
    )


def test_late_samples_inside_the_lookback_are_stored(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    stack = Stack(tmp_path, faults=FaultConfig(late_fraction=0.3, late_max_minutes=8, seed=3))
    stack.set_now(dt.datetime(2026, 3, 10, 10, 0, tzinfo=dt.UTC))
    stack.run(SYNC, "demo", DAY, instance, mode="incremental")
    first_as_of = stack.now_ms
    # Some samples before "now" were not visible yet: the truth as of now is smaller than as of later.
    later = stack.truth("demo", DAY_START, first_as_of, as_of_ms=first_as_of + 3_600_000).num_rows
    assert stack.hot_rows("demo", DAY_START, DAY_END).num_rows < later
    for _ in range(3):
        stack.advance(minutes=5)
        stack.run(SYNC, "demo", DAY, instance, mode="incremental")
    assert_same_samples(
        stack.hot_rows("demo", DAY_START, DAY_END), stack.truth("demo", DAY_START, stack.now_ms)
    )
    # Every late sample of the first window has arrived by now and was picked up by a lookback.
    assert_same_samples(
        stack.hot_rows("demo", DAY_START, first_as_of),
        stack.truth("demo", DAY_START, first_as_of, as_of_ms=first_as_of + 3_600_000),
    )


def test_every_wire_fault_ends_with_exactly_the_truth(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    faults = FaultConfig(
        rate_429=0.1,
        retry_after_s=0.0,
        rate_5xx=0.1,
        rate_truncated=0.05,
        rate_malformed=0.05,
        cursor_stall=True,
        seed=11,
    )
    stack = Stack(tmp_path, faults=faults, max_attempts=12)
    stack.set_now(dt.datetime(2026, 3, 12, 1, 0, tzinfo=dt.UTC))
    result = stack.run(SYNC, "demo", DAY, instance)  # default mode: the whole day
    md = _metadata(result)
    assert md["mode"] == "full_day" and md["ace_retries"] > 0
    injected = stack.sim.fault_counts
    assert sum(injected.values()) > 0
    assert_same_samples(stack.hot_rows("demo", DAY_START, DAY_END), stack.truth("demo", DAY_START, DAY_END))


def test_a_failed_run_loses_nothing_and_the_next_run_catches_up(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    stack = Stack(tmp_path)
    stack.set_now(dt.datetime(2026, 3, 10, 6, 0, tzinfo=dt.UTC))
    stack.run(SYNC, "demo", DAY, instance, mode="incremental")
    # A run whose ACE calls all fail (called directly: through Dagster its RetryPolicy would back off for minutes).
    broken = AceSimulator(
        SimulatorConfig(sites=("demo",), points=stack.points, seed=7, faults=FaultConfig(rate_5xx=1.0)),
        clock=lambda: stack.now_ms / 1000,
    )
    client = AceClient("http://ace-simulator/api", "k", transport=broken.transport(), sleep=lambda _s: None)
    stack.advance(minutes=5)
    before = stack.hot.get_sync_as_of("demo", DAY)
    with pytest.raises(AceError):
        sync_site_day(client, stack.hot, "demo", DAY, now_ms=stack.now_ms, mode=SyncMode.INCREMENTAL)
    assert stack.hot.get_sync_as_of("demo", DAY) == before  # no progress recorded for the failed window
    stack.advance(minutes=40)
    stack.run(SYNC, "demo", DAY, instance, mode="incremental")
    assert_same_samples(
        stack.hot_rows("demo", DAY_START, DAY_END), stack.truth("demo", DAY_START, stack.now_ms)
    )


def test_points_metadata_is_synced_and_new_points_appear(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    stack = Stack(tmp_path)
    stack.set_now(dt.datetime(2026, 3, 10, 1, 0, tzinfo=dt.UTC))
    stack.run(SYNC, "demo", DAY, instance, mode="incremental")
    stored = {p.name: p for p in stack.hot.list_points("demo")}
    served = {p.name: p for p in stack.sim.points("demo")}
    assert set(stored) == set(served)
    assert all(stored[n].kind == served[n].kind for n in served)
    assert any(p.unit for p in stored.values())
