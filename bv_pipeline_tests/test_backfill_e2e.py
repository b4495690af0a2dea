"""End to end: a partition backfill launched through GraphQL exactly as the Dagster UI does it.

The code location is loaded the way `dagster dev` loads it (a gRPC code server from `workspace.yaml`'s module),
on embedded defaults pointed at a temporary data directory. The backfill daemon and the queued-run coordinator
are ticked in-process; every partition's object must equal the simulator's truth.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.test_utils import (
    create_test_daemon_workspace_context,
    instance_for_test,
    wait_for_runs_to_finish,
)
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.backfill import execute_backfill_iteration
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster_graphql.client.query import LAUNCH_PARTITION_BACKFILL_MUTATION
from dagster_graphql.test.utils import execute_dagster_graphql

from bv_pipeline.partitions import site_day_key
from bv_pipeline.simulator import AceSimulator, SimulatorConfig
from bv_pipeline.storage import cold_keys, parquet_layout, rollups
from bv_pipeline.storage.samples import day_bounds_ms
from bv_pipeline_tests.stack import assert_same_samples

ROOT = Path(__file__).resolve().parent.parent
SITES = ("site-a", "site-b")
DAYS = (dt.date(2025, 6, 1), dt.date(2025, 6, 2))
POINTS = 15

BACKFILL_STATUS = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  ... on PartitionBackfill { status numPartitions } ... on PythonError { message } } }
"""


@pytest.mark.slow
def test_ui_backfill_of_cold_tier_through_graphql(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The code server is a subprocess: configure it through the environment, as an operator would.
    for var in ("ACE_API_BASE", "ACE_API_KEY", "CLOUDFLARE_ACCOUNT_ID", "R2_BUCKET"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BV_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BV_SITES", ",".join(SITES))
    monkeypatch.setenv("BV_SIM_POINTS", str(POINTS))
    monkeypatch.setenv("BV_SIM_SEED", "42")

    with instance_for_test() as instance:
        instance.add_dynamic_partitions("sites", list(SITES))
        target = ModuleTarget(
            module_name="bv_pipeline.definitions",
            attribute="defs",
            working_directory=str(ROOT),
            location_name="bv_pipeline",
        )
        with create_test_daemon_workspace_context(target, instance) as workspace:
            keys = [str(site_day_key(s, d)) for s in SITES for d in DAYS]
            launched = execute_dagster_graphql(
                workspace.create_request_context(),
                LAUNCH_PARTITION_BACKFILL_MUTATION,
                {
                    "backfillParams": {
                        "partitionNames": keys,
                        "assetSelection": [{"path": ["cold_timeseries"]}, {"path": ["cold_rollups"]}],
                        "title": "history",
                    }
                },
            )
            payload = launched.data["launchPartitionBackfill"]
            assert payload["__typename"] == "LaunchBackfillSuccess", payload
            backfill_id = payload["backfillId"]

            queue = QueuedRunCoordinatorDaemon(interval_seconds=1)
            for _ in range(40):
                list(execute_backfill_iteration(workspace, logging.getLogger("backfill")))
                list(queue.run_iteration(workspace))
                wait_for_runs_to_finish(instance, timeout=300)
                if instance.get_backfill(backfill_id).status != BulkActionStatus.REQUESTED:
                    break
            status = execute_dagster_graphql(
                workspace.create_request_context(), BACKFILL_STATUS, {"id": backfill_id}
            ).data["partitionBackfillOrError"]
            assert status == {"status": "COMPLETED_SUCCESS", "numPartitions": len(keys)}

            runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
            assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
            mats = instance.fetch_materializations(dg.AssetKey("cold_timeseries"), limit=100).records
            assert sorted(str(m.partition_key) for m in mats) == sorted(keys)

    truth = AceSimulator(SimulatorConfig(sites=SITES, points=POINTS, seed=42))
    cold_root = tmp_path / "data" / "cold"
    for site in SITES:
        for day in DAYS:
            start, end = day_bounds_ms(day)
            obj = (cold_root / cold_keys.samples_key(site, day)).read_bytes()
            assert_same_samples(parquet_layout.decode_day(obj), truth.truth(site, start, end))
            rollup = rollups.decode_rollup((cold_root / cold_keys.rollup_key(site, day)).read_bytes())
            assert int(sum(rollup["count"].to_pylist())) > 0
    # History never passed through the hot tier.
    assert not (tmp_path / "data" / "hot.sqlite3").exists() or _hot_rows(tmp_path) == 0


def _hot_rows(tmp_path: Path) -> int:
    import sqlite3

    with sqlite3.connect(tmp_path / "data" / "hot.sqlite3") as conn:
        blocks = conn.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'hb%'").fetchone()[0]
        staged = conn.execute("SELECT count(*) FROM hot_staging").fetchone()[0]
        return int(blocks) + int(staged)
