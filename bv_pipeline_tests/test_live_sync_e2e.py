"""End to end under the real daemon (issue 14): the live sync starts on time while a large backfill is queued.

A backfill of 40 ``cold_timeseries`` partitions (two history-only sites x 20 days) is launched through GraphQL as
the UI does; ACE holds every request for those sites, so the backfill's two running runs hang holding both backfill
run slots and both ``ace_api`` pool slots, and the other 38 stay queued. The live site's next sensor tick must
still leave the queue and succeed, with exact data, while all of that is still queued or running: live sync has
its own run slots (``bv/live-sync``), dequeue priority, and is in no pool. Before, its step waited for the pool
until the backfill finished.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.storage.tags import BACKFILL_ID_TAG
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.workspace.load_target import ModuleTarget
from dagster_graphql.client.query import LAUNCH_PARTITION_BACKFILL_MUTATION
from dagster_graphql.test.utils import execute_dagster_graphql

from bv_pipeline.partitions import site_day_key
from bv_pipeline.simulator import AceSimulator, SimulatorConfig
from bv_pipeline_tests.daemon import (
    ROOT,
    Gate,
    assert_synced_exactly,
    gated_ace_server,
    open_instance,
    pipeline_env,
    running_daemon,
    synced_site_days,
    wait_for,
    write_instance_yaml,
)

LIVE = "live-a"
HISTORY = ("hist-a", "hist-b")
DAYS = [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(20)]


def _backfill_runs(instance: dg.DagsterInstance, backfill_id: str) -> list[dg.RunRecord]:
    return list(instance.get_run_records(filters=dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill_id})))


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_live_sync_starts_and_succeeds_while_a_backfill_is_queued(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "dagster_home"
    config = write_instance_yaml(home)  # the shipped run queue, lanes and pools, unchanged
    assert config["concurrency"]["pools"]["default_limit"] == 2

    simulator = AceSimulator(SimulatorConfig(sites=(LIVE, *HISTORY), points=4, seed=3))
    gate = Gate(only=HISTORY)
    with gated_ace_server(simulator, gate) as ace_url:
        env = pipeline_env(
            home,
            ACE_API_BASE=ace_url,
            ACE_API_KEY="test-key",
            BV_SITES=LIVE,
            BV_DATA_DIR=str(tmp_path / "data"),
            BV_START_DATE="2025-12-01",
            BV_SYNC_INTERVAL_SECONDS="5",
        )
        for name, value in env.items():  # this process loads the same code location to launch the backfill
            monkeypatch.setenv(name, value)
        with open_instance(home) as instance:
            # History-only sites: partitions to backfill, not synced live (not in BV_SITES).
            instance.add_dynamic_partitions("sites", [LIVE, *HISTORY])
            with running_daemon(home, env):
                target = ModuleTarget(
                    module_name="bv_pipeline.definitions",
                    attribute="defs",
                    working_directory=str(ROOT),
                    location_name="bv_pipeline",
                )
                keys = [str(site_day_key(s, d)) for s in HISTORY for d in DAYS]
                with create_test_daemon_workspace_context(target, instance) as workspace:
                    launched = execute_dagster_graphql(
                        workspace.create_request_context(),
                        LAUNCH_PARTITION_BACKFILL_MUTATION,
                        {
                            "backfillParams": {
                                "partitionNames": keys,
                                "assetSelection": [{"path": ["cold_timeseries"]}],
                                "title": "history",
                            }
                        },
                    )
                payload = launched.data["launchPartitionBackfill"]
                assert payload["__typename"] == "LaunchBackfillSuccess", payload
                backfill_id = payload["backfillId"]

                def backfill_blocking() -> list[dg.RunRecord] | None:
                    runs = _backfill_runs(instance, backfill_id)
                    started = [r for r in runs if r.dagster_run.status == dg.DagsterRunStatus.STARTED]
                    queued = [r for r in runs if r.dagster_run.status == dg.DagsterRunStatus.QUEUED]
                    stuck = sum(gate.waiting.get(s, 0) > 0 for s in HISTORY)
                    return runs if len(started) == 2 and len(queued) >= 10 and stuck else None

                wait_for(backfill_blocking, "the backfill to fill its slots and queue the rest", home=home)
                since = dt.datetime.now(dt.UTC)
                time.sleep(0.01)

                def next_live_run() -> dg.RunRecord | None:
                    records = instance.get_run_records(
                        filters=dg.RunsFilter(
                            job_name="live_sync_job",
                            statuses=[dg.DagsterRunStatus.SUCCESS],
                            created_after=since,
                        ),
                        limit=1,
                    )
                    return records[0] if records else None

                live = wait_for(
                    next_live_run, "a live sync created after the backfill to succeed", timeout=180, home=home
                )
                backfill = _backfill_runs(instance, backfill_id)
                status = instance.get_backfill(backfill_id).status

            # When the live run had succeeded, the backfill was still open and every one of its runs created before
            # the live run was still blocked: two holding the slots, the rest queued (passed by the live run).
            assert status == BulkActionStatus.REQUESTED
            assert live.start_time is not None and live.start_time >= since.timestamp()
            before = [r for r in backfill if r.create_timestamp < live.create_timestamp]
            statuses = [r.dagster_run.status for r in before]
            assert len(before) >= 12
            assert statuses.count(dg.DagsterRunStatus.STARTED) == 2
            assert statuses.count(dg.DagsterRunStatus.QUEUED) == len(before) - 2
            assert all(r.end_time is None for r in backfill)
            # The live run synced today for its site, exactly, and recorded it on the hot_timeseries partition.
            site_days = synced_site_days(instance, [live.dagster_run])
            assert {sd.site for sd in site_days} == {LIVE}

    assert_synced_exactly(tmp_path / "data", simulator, site_days)
