"""Retention of Dagster's own run history: old sync runs go with their events, compute logs and SQLite shard;
failures stay longer; other jobs' runs and runs in progress are never touched."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import dagster as dg
from dagster._core.test_utils import create_run_for_test

from bv_pipeline.jobs import HOT_SYNC_JOB, NIGHTLY_ARCHIVE_JOB
from bv_pipeline.logic.run_retention import RunRetentionPolicy, prune_runs
from bv_pipeline.ops.live_sync import LIVE_SYNC_JOB
from bv_pipeline.run_retention import RUN_RETENTION_JOB
from bv_pipeline_tests.stack import Stack

DAY = dt.date(2026, 3, 10)
POLICY = RunRetentionPolicy(keep_days=30, keep_failed_days=60, job_names=(HOT_SYNC_JOB, RUN_RETENTION_JOB))


def _run_files(instance: dg.DagsterInstance, run_id: str) -> list[Path]:
    shard = Path(instance.event_log_storage.path_for_shard(run_id))  # type: ignore[attr-defined]
    logs = Path(instance.compute_log_manager._base_dir) / run_id  # type: ignore[attr-defined]
    return [p for p in (shard, logs) if p.exists()]


def test_old_sync_runs_are_deleted_with_their_files_failures_kept_longer(tmp_path: Path) -> None:
    stack = Stack(tmp_path, points=5)
    stack.set_now(dt.datetime(2026, 3, 10, 9, 0, tzinfo=dt.UTC))
    with dg.instance_for_test() as instance:
        synced = stack.run(HOT_SYNC_JOB, "demo", DAY, instance).run_id
        failed = create_run_for_test(instance, job_name=HOT_SYNC_JOB, status=dg.DagsterRunStatus.FAILURE)
        instance.report_engine_event("worker died", failed)
        running = create_run_for_test(instance, job_name=HOT_SYNC_JOB, status=dg.DagsterRunStatus.STARTED)
        archive = create_run_for_test(
            instance, job_name=NIGHTLY_ARCHIVE_JOB, status=dg.DagsterRunStatus.SUCCESS
        )
        assert len(_run_files(instance, synced)) == 2  # its event-log shard and its compute logs
        assert instance.all_logs(synced)
        mats = instance.fetch_materializations(dg.AssetKey("hot_timeseries"), limit=10).records
        assert [m.run_id for m in mats] == [synced]
        now = dt.datetime.now(dt.UTC)

        assert prune_runs(instance, POLICY, now + dt.timedelta(days=29)).runs_deleted == 0

        result = prune_runs(instance, POLICY, now + dt.timedelta(days=31))
        assert (result.runs_deleted, result.failed_runs_deleted) == (1, 0)
        assert instance.get_run_by_id(synced) is None
        mats = instance.fetch_materializations(dg.AssetKey("hot_timeseries"), limit=10).records
        assert [m.run_id for m in mats] == []
        assert _run_files(instance, synced) == []
        assert instance.get_run_by_id(failed.run_id) is not None

        result = prune_runs(instance, POLICY, now + dt.timedelta(days=61))
        assert (result.runs_deleted, result.failed_runs_deleted) == (1, 1)
        assert instance.get_run_by_id(failed.run_id) is None
        assert not os.path.exists(instance.event_log_storage.path_for_shard(failed.run_id))  # type: ignore[attr-defined]
        # In progress, or another job (the archive's history is the cold tier's materialisations): kept.
        remaining = {r.run_id for r in instance.get_runs()}
        assert remaining == {running.run_id, archive.run_id}


def test_retention_job_runs_with_the_configured_days(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    with dg.instance_for_test() as instance:
        recent = create_run_for_test(instance, job_name=HOT_SYNC_JOB, status=dg.DagsterRunStatus.SUCCESS)
        job = stack.defs().resolve_job_def(RUN_RETENTION_JOB)
        result = job.execute_in_process(instance=instance)
        assert result.success and result.output_for_node("prune_dagster_runs") == 0
        assert instance.get_run_by_id(recent.run_id) is not None
        schedule = stack.defs().get_schedule_def("dagster_run_retention_schedule")
        assert schedule.cron_schedule == "30 4 * * *"
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_retention_job_prunes_live_sync_runs_too(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    with dg.instance_for_test() as instance:
        live = create_run_for_test(instance, job_name=LIVE_SYNC_JOB, status=dg.DagsterRunStatus.SUCCESS)
        failed_live = create_run_for_test(
            instance, job_name=LIVE_SYNC_JOB, status=dg.DagsterRunStatus.FAILURE
        )
        archive = create_run_for_test(
            instance, job_name=NIGHTLY_ARCHIVE_JOB, status=dg.DagsterRunStatus.SUCCESS
        )
        job = stack.defs().resolve_job_def(RUN_RETENTION_JOB)
        config = {"ops": {"prune_dagster_runs": {"config": {"keep_days": 0, "keep_failed_days": 0}}}}
        result = job.execute_in_process(instance=instance, run_config=config)
        assert result.success and result.output_for_node("prune_dagster_runs") == 2
        assert (
            instance.get_run_by_id(live.run_id) is None and instance.get_run_by_id(failed_live.run_id) is None
        )
        assert instance.get_run_by_id(archive.run_id) is not None
