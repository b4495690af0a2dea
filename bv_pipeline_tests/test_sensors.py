"""ace_sync_sensor: one live_sync_job run request per tick for all sites, sharding, run keys, cursor, site
registration, in-flight skipping, and no hot-store request at all (on D1 each would be billed)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
from dagster._core.test_utils import create_run_for_test

from bv_pipeline.config import AutomationSettings, Settings
from bv_pipeline.ops.live_sync import LIVE_SYNC_JOB, LIVE_SYNC_TAG
from bv_pipeline.resources.hot_store import D1HotStoreResource
from bv_pipeline.sensors import live_sync_run_config
from bv_pipeline_tests.fakes.d1_server import FakeD1
from bv_pipeline_tests.stack import Stack

SITES = ("site-a", "site-b", "site-c", "site-d", "site-e")


def _tick(stack: Stack, instance: dg.DagsterInstance) -> dg.SensorResult:
    defs = stack.defs()
    sensor = defs.get_sensor_def("ace_sync_sensor")
    ctx = dg.build_sensor_context(instance=instance, resources=stack.resources(), definitions=defs)
    result = sensor(ctx)
    assert isinstance(result, dg.SensorResult)
    return result


def _sites(request: dg.RunRequest) -> list[str]:
    return request.run_config["ops"]["live_sync"]["config"]["sites"]


def test_sensor_is_on_by_default_every_five_minutes(tmp_path: Path) -> None:
    sensor = Stack(tmp_path).defs().get_sensor_def("ace_sync_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 300
    assert sensor.job_name == LIVE_SYNC_JOB


def test_first_tick_registers_sites_and_requests_one_run_for_all(tmp_path: Path) -> None:
    stack = Stack(tmp_path, sites=SITES)
    stack.set_now(dt.datetime(2026, 3, 10, 8, 2, tzinfo=dt.UTC))
    with dg.instance_for_test() as instance:
        result = _tick(stack, instance)
    [add] = result.dynamic_partitions_requests or []
    assert list(add.partition_keys) == list(SITES)
    [request] = result.run_requests or []
    assert _sites(request) == list(SITES)
    assert request.partition_key is None
    assert request.run_key == f"live-sync|{stack.now_ms // 300_000}|0"
    assert request.tags == {LIVE_SYNC_TAG: "1/1"}
    cursor = json.loads(result.cursor or "{}")
    assert cursor["last_tick_ms"] == stack.now_ms and cursor["sites"] == len(SITES) and cursor["runs"] == 1


def test_sites_are_split_into_runs_of_bv_sync_sites_per_run(tmp_path: Path) -> None:
    stack = Stack(tmp_path, sites=SITES)
    stack.settings = Settings(
        sites=SITES, data_dir=tmp_path, automation=AutomationSettings(sync_sites_per_run=2)
    )
    stack.set_now(dt.datetime(2026, 3, 10, 8, 2, tzinfo=dt.UTC))
    with dg.instance_for_test() as instance:
        requests = _tick(stack, instance).run_requests or []
    assert [_sites(r) for r in requests] == [["site-a", "site-b"], ["site-c", "site-d"], ["site-e"]]
    assert len({r.run_key for r in requests}) == 3
    assert [r.tags[LIVE_SYNC_TAG] for r in requests] == ["1/3", "2/3", "3/3"]
    assert requests[2].tags["bv/site"] == "site-e"  # a one-site run names its site

    # A shard keeps its sites whatever else is in flight (its runs are one series for the run-failure alert).
    with dg.instance_for_test() as instance:
        create_run_for_test(
            instance,
            job_name=LIVE_SYNC_JOB,
            status=dg.DagsterRunStatus.STARTED,
            run_config=live_sync_run_config(["site-a", "site-b"]),
        )
        requests = _tick(stack, instance).run_requests or []
    assert [(_sites(r), r.tags[LIVE_SYNC_TAG]) for r in requests] == [
        (["site-c", "site-d"], "2/3"),
        (["site-e"], "3/3"),
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


def test_sites_of_in_flight_live_runs_are_left_out(tmp_path: Path) -> None:
    stack = Stack(tmp_path, sites=SITES)
    stack.set_now(dt.datetime(2026, 3, 10, 8, 2, tzinfo=dt.UTC))
    with dg.instance_for_test() as instance:
        for status, sites in (
            (dg.DagsterRunStatus.STARTED, ["site-a", "site-b"]),
            (dg.DagsterRunStatus.NOT_STARTED, ["site-d"]),
            (dg.DagsterRunStatus.SUCCESS, ["site-c", "site-e"]),  # finished: its sites are due again
            (dg.DagsterRunStatus.FAILURE, ["site-c"]),
        ):
            create_run_for_test(
                instance, job_name=LIVE_SYNC_JOB, status=status, run_config=live_sync_run_config(sites)
            )
        [request] = _tick(stack, instance).run_requests or []
        assert _sites(request) == ["site-c", "site-e"]

        create_run_for_test(
            instance,
            job_name=LIVE_SYNC_JOB,
            status=dg.DagsterRunStatus.STARTING,
            run_config=live_sync_run_config(["site-c", "site-e"]),
        )
        result = _tick(stack, instance)
    assert not result.run_requests
    assert result.skip_reason is not None and "site-a, site-b, site-c, site-d, site-e" in (
        result.skip_reason.skip_message or ""
    )
    assert json.loads(result.cursor or "{}")["skipped_in_flight"] == list(SITES)


def test_a_tick_makes_no_hot_store_request(tmp_path: Path, fake_d1: FakeD1) -> None:
    hot = D1HotStoreResource(
        account_id=fake_d1.account_id,
        database_id=fake_d1.database_id,
        api_token=fake_d1.token,
        base_url=fake_d1.base_url,
    )
    stack = Stack(tmp_path, sites=SITES, hot_resource=hot)
    stack.set_now(dt.datetime(2026, 3, 10, 8, 2, tzinfo=dt.UTC))
    hot.get_store()  # the schema exists, as after the first run
    before = fake_d1.totals().requests
    with dg.instance_for_test() as instance:
        for _ in range(3):
            assert _tick(stack, instance).run_requests
            stack.advance(minutes=5)
    assert fake_d1.totals().requests == before
