"""``dagster_run_retention_job`` and its daily schedule: Dagster's own storage does not grow without bound.

Deletes sync runs (``live_sync_job`` and ``hot_sync_job``; and this job's own runs) older than ``BV_RUN_RETENTION_DAYS``, failed ones after
``BV_FAILED_RUN_RETENTION_DAYS``, with their events and compute logs (``logic/run_retention.py``). Sensor and
schedule tick history is pruned by Dagster itself (``retention:`` in dagster.yaml).
"""

# No `from __future__ import annotations`: Dagster resolves the op's config annotation at definition time.
import datetime as dt

import dagster as dg

from bv_pipeline.config import AutomationSettings
from bv_pipeline.jobs import HOT_SYNC_JOB
from bv_pipeline.logic.run_retention import RunRetentionPolicy, prune_runs
from bv_pipeline.ops.live_sync import LIVE_SYNC_JOB
from bv_pipeline.run_lanes import BATCH_TAGS

RUN_RETENTION_JOB = "dagster_run_retention_job"


class RunRetentionConfig(dg.Config):
    keep_days: int
    keep_failed_days: int


def build_run_retention(auto: AutomationSettings) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    @dg.op(name="prune_dagster_runs")
    def prune_dagster_runs(context: dg.OpExecutionContext, config: RunRetentionConfig) -> dg.Output[int]:
        policy = RunRetentionPolicy(
            keep_days=config.keep_days,
            keep_failed_days=config.keep_failed_days,
            job_names=(LIVE_SYNC_JOB, HOT_SYNC_JOB, RUN_RETENTION_JOB),
        )
        result = prune_runs(context.instance, policy, dt.datetime.now(dt.UTC))
        context.log.info(
            "deleted %d runs (%d failed) older than %d days (failed: %d days)",
            result.runs_deleted,
            result.failed_runs_deleted,
            policy.keep_days,
            policy.keep_failed_days,
        )
        return dg.Output(
            result.runs_deleted,
            metadata={"runs_deleted": result.runs_deleted, "failed_runs_deleted": result.failed_runs_deleted},
        )

    defaults = {"keep_days": auto.run_retention_days, "keep_failed_days": auto.failed_run_retention_days}

    @dg.job(
        name=RUN_RETENTION_JOB,
        tags=BATCH_TAGS,
        config={"ops": {"prune_dagster_runs": {"config": defaults}}},
        description="Delete old sync runs (events, compute logs) from Dagster's own storage.",
    )
    def run_retention_job() -> None:
        prune_dagster_runs()

    schedule = dg.ScheduleDefinition(
        name="dagster_run_retention_schedule",
        job=run_retention_job,
        cron_schedule=AutomationSettings.cron(auto.run_retention_time_utc),
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Daily: delete sync runs older than {auto.run_retention_days} days "
            f"(failed: {auto.failed_run_retention_days} days)."
        ),
    )
    return run_retention_job, schedule
