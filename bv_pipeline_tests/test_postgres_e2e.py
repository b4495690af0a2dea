"""The production profile end to end on a real PostgreSQL: ``deploy/dagster.yaml`` as shipped (storage from the
``DAGSTER_PG_*`` variables), the real daemon, the sensor's syncs and a partition backfill launched through GraphQL.

Fails (never skips) without PostgreSQL server binaries: CI installs them.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.workspace.load_target import ModuleTarget
from dagster_graphql.client.query import LAUNCH_PARTITION_BACKFILL_MUTATION
from dagster_graphql.test.utils import execute_dagster_graphql

from bv_pipeline.partitions import SiteDay, site_day_key
from bv_pipeline.simulator import AceSimulator, SimulatorConfig
from bv_pipeline.storage import cold_keys, parquet_layout
from bv_pipeline.storage.samples import day_bounds_ms
from bv_pipeline_tests.daemon import (
    ROOT,
    assert_synced_exactly,
    open_instance,
    pipeline_env,
    running_daemon,
    synced_site_days,
    wait_for,
    write_instance_yaml,
)
from bv_pipeline_tests.fixtures.postgres import PostgresServer
from bv_pipeline_tests.stack import assert_same_samples

SITES = ("site-a", "site-b")
DAYS = (dt.date(2025, 6, 1), dt.date(2025, 6, 2), dt.date(2025, 6, 3))
POINTS = 6
SEED = 5


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_production_profile_on_postgres(
    tmp_path: Path, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "dagster_home"
    config = write_instance_yaml(home, source=ROOT / "deploy" / "dagster.yaml")
    assert "postgres" in config["storage"]
    data = tmp_path / "data"
    env = pipeline_env(
        home,
        BV_SITES=",".join(SITES),
        BV_DATA_DIR=str(data),
        BV_SIM_POINTS=str(POINTS),
        BV_SIM_SEED=str(SEED),
        # The sensor's first tick comes at daemon start; a long interval keeps later syncs from competing with
        # the backfill for the test machine's cores.
        BV_SYNC_INTERVAL_SECONDS="3600",
        **postgres_server.env(),
    )
    for name, value in env.items():  # this process opens the same instance and loads the same code location
        monkeypatch.setenv(name, value)

    with open_instance(home) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        with running_daemon(home, env):
            # The sensor's first tick registers the sites and launches one live-sync run for all of them.
            def synced() -> set[SiteDay] | None:
                runs = instance.get_runs(
                    filters=dg.RunsFilter(job_name="live_sync_job", statuses=[dg.DagsterRunStatus.SUCCESS])
                )
                site_days = synced_site_days(instance, runs)
                return site_days if {sd.site for sd in site_days} == set(SITES) else None

            site_days = wait_for(synced, "a successful sync of every site", home=home)
            simulator = AceSimulator(SimulatorConfig(sites=SITES, points=POINTS, seed=SEED))
            assert_synced_exactly(data, simulator, site_days)

            keys = [str(site_day_key(SITES[0], d)) for d in DAYS]
            target = ModuleTarget(
                module_name="bv_pipeline.definitions",
                attribute="defs",
                working_directory=str(ROOT),
                location_name="bv_pipeline",
            )
            with create_test_daemon_workspace_context(target, instance) as workspace:
                launched = execute_dagster_graphql(
                    workspace.create_request_context(),
                    LAUNCH_PARTITION_BACKFILL_MUTATION,
                    {
                        "backfillParams": {
                            "partitionNames": keys,
                            "assetSelection": [{"path": ["cold_timeseries"]}, {"path": ["cold_rollups"]}],
                            "title": "history on postgres",
                        }
                    },
                )
            payload = launched.data["launchPartitionBackfill"]
            assert payload["__typename"] == "LaunchBackfillSuccess", payload
            backfill_id = payload["backfillId"]
            logging.getLogger(__name__).info("backfill %s launched", backfill_id)

            # The daemon's backfill loop submits the runs, its queue launches them, its monitor closes the backfill.
            status = wait_for(
                lambda: (s := instance.get_backfill(backfill_id).status) != BulkActionStatus.REQUESTED and s,
                "the backfill to finish",
                timeout=420,
                home=home,
            )
            assert status == BulkActionStatus.COMPLETED_SUCCESS
            runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
            assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
            mats = instance.fetch_materializations(dg.AssetKey("cold_timeseries"), limit=100).records
            assert sorted(str(m.partition_key) for m in mats) == sorted(keys)

    for day in DAYS:
        start, end = day_bounds_ms(day)
        obj = (data / "cold" / cold_keys.samples_key(SITES[0], day)).read_bytes()
        assert_same_samples(parquet_layout.decode_day(obj), simulator.truth(SITES[0], start, end))
