"""ace_sync_sensor: run requests, run keys, cursor, site registration, catch-up and in-flight skipping."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
from dagster._core.test_utils import create_run_for_test

from bv_pipeline.partitions import site_day_key
from bv_pipeline.sensors import INCREMENTAL_RUN_CONFIG, SYNC_TAG
from bv_pipeline_tests.stack import Stack

DAY = dt.date(2026, 3, 10)


def _tick(stack: Stack, instance: dg.DagsterInstance) -> dg.SensorResult:
    defs = stack.defs()
    sensor = defs.get_sensor_def("ace_sync_sensor")
    ctx = dg.build_sensor_context(instance=instance, resources=stack.resources(), definitions=defs)
    result = sensor(ctx)
    assert isinstance(result, dg.SensorResult)
    return result


def test_sensor_is_on_by_default_every_five_minutes(tmp_path: Path) -> None:
    sensor = Stack(tmp_path).defs().get_sensor_def("ace_sync_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 300


def test_first_tick_registers_sites_and_requests_today_only(tmp_path: Path) -> None:
    stack = Stack(tmp_path, sites=("site-a", "site-b"))
    stack.set_now(dt.datetime(2026, 3, 10, 8, 2, tzinfo=dt.UTC))
    with dg.instance_for_test() as instance:
        result = _tick(stack, instance)
    [add] = result.dynamic_partitions_requests or []
    assert list(add.partition_keys) == ["site-a", "site-b"]
    keys = [r.partition_key for r in result.run_requests or []]
    assert keys == [site_day_key("site-a", DAY), site_day_key("site-b", DAY)]
    for r in result.run_requests or []:
        assert r.run_config == INCREMENTAL_RUN_CONFIG
        assert r.run_key is not None and r.run_key.endswith(str(stack.now_ms // 300_000))
    cursor = json.loads(result.cursor or "{}")
    assert cursor["last_tick_ms"] == stack.now_ms and cursor["requested"] == [
        "site-a|2026-03-10",
        "site-b|2026-03-10",
    ]


def test_same_slot_gives_same_run_keys_next_slot_new_ones(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    stack.set_now(dt.datetime(2026, 3, 10, 8, 2, tzinfo=dt.UTC))
    with dg.instance_for_test() as instance:
        a = [r.run_key for r in _tick(stack, instance).run_requests or []]
        stack.advance(minutes=1)
        b = [r.run_key for r in _tick(stack, instance).run_requests or []]
        stack.advance(minutes=5)
        c = [r.run_key for r in _tick(stack, instance).run_requests or []]
    assert a == b and a != c


def test_just_after_midnight_yesterday_is_requested_too(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    with dg.instance_for_test() as instance:
        stack.set_now(dt.datetime(2026, 3, 10, 23, 57, tzinfo=dt.UTC))
        stack.run("hot_sync_job", "demo", DAY, instance, mode="incremental")
        stack.advance(minutes=6)  # 00:03
        keys = [r.partition_key for r in _tick(stack, instance).run_requests or []]
        assert keys == [site_day_key("demo", DAY), site_day_key("demo", DAY + dt.timedelta(days=1))]
        # Once yesterday was synced after midnight + lookback, only today remains.
        stack.advance(minutes=10)
        stack.run("hot_sync_job", "demo", DAY, instance, mode="incremental")
        keys = [r.partition_key for r in _tick(stack, instance).run_requests or []]
        assert keys == [site_day_key("demo", DAY + dt.timedelta(days=1))]


def test_site_day_still_in_flight_is_skipped(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    stack.set_now(dt.datetime(2026, 3, 10, 8, 2, tzinfo=dt.UTC))
    with dg.instance_for_test() as instance:
        create_run_for_test(
            instance,
            job_name="hot_sync_job",
            status=dg.DagsterRunStatus.STARTED,
            tags={SYNC_TAG: "demo|2026-03-10"},
        )
        result = _tick(stack, instance)
    assert not result.run_requests
    assert "demo|2026-03-10" in (result.skip_reason.skip_message if result.skip_reason else "")
