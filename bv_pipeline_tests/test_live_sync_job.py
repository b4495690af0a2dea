"""live_sync_job through Dagster (execute_in_process) with the real resources: the simulator over httpx, SQLite,
a pinned clock. Each synced site-day is a ``hot_timeseries`` partition materialisation with its three checks in
the instance; a failing site fails the run only after every other site's events are recorded."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from bv_pipeline.assets.hot_events import HOT_CHECK_NAMES, HOT_TIMESERIES
from bv_pipeline.ops.live_sync import LIVE_SYNC_JOB
from bv_pipeline.partitions import site_day_key
from bv_pipeline.sensors import live_sync_run_config
from bv_pipeline.storage.samples import day_bounds_ms
from bv_pipeline_tests.stack import Stack, assert_same_samples

DAY = dt.date(2026, 3, 10)
SITES = ("site-a", "site-b", "site-c")
GONE = "site-gone"  # not a site of the ACE account: the simulator answers 404 for its points, as the real API does


def _run(stack: Stack, instance: dg.DagsterInstance, sites: list[str]) -> dg.ExecuteInProcessResult:
    return (
        stack.defs()
        .resolve_job_def(LIVE_SYNC_JOB)
        .execute_in_process(instance=instance, run_config=live_sync_run_config(sites), raise_on_error=False)
    )


def _latest(instance: dg.DagsterInstance, partition: str) -> dg.EventLogRecord:
    [record] = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=HOT_TIMESERIES, asset_partitions=[partition]), limit=1
    ).records
    return record


def _partitions(instance: dg.DagsterInstance) -> set[str]:
    return set(instance.get_materialized_partitions(HOT_TIMESERIES))


def test_one_run_materialises_every_site_day_with_checks(tmp_path: Path) -> None:
    stack = Stack(tmp_path, sites=SITES, points=6)
    stack.set_now(dt.datetime(2026, 3, 10, 8, 2, tzinfo=dt.UTC))
    with dg.instance_for_test() as instance:
        result = _run(stack, instance, list(SITES))
        assert result.success
        wanted = {str(site_day_key(s, DAY)) for s in SITES}
        assert _partitions(instance) == wanted
        for site in SITES:
            partition = str(site_day_key(site, DAY))
            event = _latest(instance, partition)
            assert event.run_id == result.run_id
            md = event.asset_materialization.metadata  # type: ignore[union-attr]
            start, _ = day_bounds_ms(DAY)
            assert md["rows_upserted"].value == stack.truth(site, start, stack.now_ms).num_rows
            assert (
                md["mode"].value == "incremental" and "hot_api_requests" not in md
            )  # 3 threads share the store
            assert_same_samples(
                stack.hot_rows(site, start, stack.now_ms), stack.truth(site, start, stack.now_ms)
            )
        evaluations = result.get_asset_check_evaluations()
        assert sorted((e.partition, e.check_name, e.passed) for e in evaluations) == sorted(
            (p, name, True) for p in wanted for name in HOT_CHECK_NAMES
        )
        # The checks' execution history (what the UI shows per check and partition) has them too.
        for name in HOT_CHECK_NAMES:
            history = instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(HOT_TIMESERIES, name), limit=10
            )
            assert sorted(r.partition for r in history) == sorted(wanted)
            assert {r.run_id for r in history} == {result.run_id}
            assert {r.status for r in history} == {AssetCheckExecutionRecordStatus.SUCCEEDED}
        # The site registry (dynamic partitions) knows every site the run synced.
        assert set(instance.get_dynamic_partitions("sites")) == set(SITES)


def test_a_failing_site_fails_the_run_after_the_others_are_recorded(tmp_path: Path) -> None:
    stack = Stack(tmp_path, sites=SITES, points=4)
    stack.set_now(dt.datetime(2026, 3, 10, 8, 2, tzinfo=dt.UTC))
    with dg.instance_for_test() as instance:
        result = _run(stack, instance, ["site-a", GONE, "site-b", "site-c"])
        assert not result.success
        assert _partitions(instance) == {str(site_day_key(s, DAY)) for s in SITES}

        records = instance.all_logs(result.run_id)  # in storage order
        kinds = [r.dagster_event_type for r in records]
        materialised = [i for i, k in enumerate(kinds) if k == DagsterEventType.ASSET_MATERIALIZATION]
        checked = [i for i, k in enumerate(kinds) if k == DagsterEventType.ASSET_CHECK_EVALUATION]
        [failed_at] = [i for i, k in enumerate(kinds) if k == DagsterEventType.STEP_FAILURE]
        assert len(materialised) == 3 and len(checked) == 9
        assert failed_at > max(materialised + checked)
        error = records[failed_at].dagster_event.step_failure_data.error  # type: ignore[union-attr]
        assert error is not None
        message = error.message
        assert "1 of 4 sites failed" in message and GONE in message and "HTTP 404" in message
        logged = [r.user_message for r in records if r.user_message.startswith(("site-", GONE))]
        assert len(logged) == 4  # one line per site

        # The failed site is due again; the next run (ACE still refusing it) keeps the others flowing.
        stack.advance(minutes=5)
        again = _run(stack, instance, ["site-a", GONE])
        assert not again.success
        assert _latest(instance, str(site_day_key("site-a", DAY))).run_id == again.run_id
