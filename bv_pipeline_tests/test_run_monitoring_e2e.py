"""End to end under the real daemon: live-sync runs killed mid-step (kill -9) are failed, their sites are synced
again by the next ticks with exact data, and no live run holds an ``ace_api`` pool slot.

Two sites and ``BV_SYNC_SITES_PER_RUN=1``, so two live runs (one process each: in-process executor) hang in ACE;
both workers are killed. Until run monitoring marks them failed, the sensor leaves their sites out (in flight).
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import dagster as dg
import pytest

from bv_pipeline.partitions import SiteDay
from bv_pipeline.simulator import AceSimulator, SimulatorConfig
from bv_pipeline_tests.daemon import (
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

SITES = ("site-a", "site-b")
WORKER_PID = re.compile(r"Started process for run \(pid: (\d+)\)")


def _sync_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(job_name="live_sync_job")))


def _worker_pids(instance: dg.DagsterInstance, run_id: str) -> list[int]:
    """The run worker's pid (the only process of an in-process-executor run), from the run's own event log."""
    pids = []
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        match = WORKER_PID.search(event.message or "") if event is not None else None
        if match:
            pids.append(int(match.group(1)))
    return pids


def _slot_holders(instance: dg.DagsterInstance) -> set[str]:
    info = instance.event_log_storage.get_concurrency_info("ace_api")
    return {slot.run_id for slot in info.claimed_slots}


@pytest.mark.slow
def test_killed_live_sync_runs_are_failed_and_their_sites_synced_again(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    config = write_instance_yaml(
        home,
        # The shipped settings, with the intervals shortened so the test waits seconds, not minutes.
        {"run_monitoring": {"poll_interval_seconds": 1, "free_slots_after_run_end_seconds": 1}},
    )
    assert config["run_monitoring"]["enabled"] is True
    assert config["concurrency"]["pools"]["default_limit"] == 2

    simulator = AceSimulator(SimulatorConfig(sites=SITES, points=4, seed=11))
    gate = Gate()
    with gated_ace_server(simulator, gate) as ace_url:
        env = pipeline_env(
            home,
            ACE_API_BASE=ace_url,
            ACE_API_KEY="test-key",
            BV_SITES=",".join(SITES),
            BV_DATA_DIR=str(tmp_path / "data"),
            BV_SYNC_INTERVAL_SECONDS="5",
            BV_SYNC_SITES_PER_RUN="1",
        )
        # Storage is created here first: a daemon creating it at the same moment could race on its schema.
        with open_instance(home) as instance, running_daemon(home, env):
            # Both live runs are mid-step, waiting on ACE; live sync is in no pool, so no slot is claimed.
            wait_for(lambda: all(gate.waiting.get(s) for s in SITES), "both syncs to call ACE", home=home)
            stuck = {r.run_id: r for r in _sync_runs(instance)}
            assert len(stuck) == 2 and _slot_holders(instance) == set()
            assert sorted(r.tags["bv/site"] for r in stuck.values()) == sorted(SITES)
            for run_id in stuck:
                pids = wait_for(
                    lambda r=run_id: _pids_if_complete(instance, r), "worker pids", timeout=60, home=home
                )
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)

            def failed() -> bool:
                runs = [instance.get_run_by_id(r) for r in stuck]
                return all(r is not None and r.status == dg.DagsterRunStatus.FAILURE for r in runs)

            wait_for(failed, "the killed runs to be marked failed", home=home)

            gate.open()

            def synced() -> set[SiteDay] | None:
                later = [
                    r
                    for r in _sync_runs(instance)
                    if r.run_id not in stuck and r.status == dg.DagsterRunStatus.SUCCESS
                ]
                site_days = synced_site_days(instance, later)
                return site_days if {sd.site for sd in site_days} == set(SITES) else None

            site_days = wait_for(synced, "a successful sync of every site after the kill", home=home)
            assert _slot_holders(instance) == set()

    assert_synced_exactly(tmp_path / "data", simulator, site_days)


def _pids_if_complete(instance: dg.DagsterInstance, run_id: str) -> list[int] | None:
    pids = _worker_pids(instance, run_id)
    return pids if len(pids) == 1 else None
