"""Retention of Dagster's own run history: delete old finished runs with their events and compute logs.

A 5-minute sync makes 288 runs per site per day, each with its event log, compute logs and (on SQLite) its own
event-log file; nothing in Dagster deletes them. Only the high-volume jobs named by the caller are pruned, so the
archive and compaction history (the cold tier's materialisations) stays. Runs still queued or in progress are
never touched; failures are kept longer than successes, for post-mortems.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from dataclasses import dataclass

import dagster as dg
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

KEPT_LONGER = (dg.DagsterRunStatus.FAILURE,)
PRUNED_AFTER_KEEP_DAYS = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.CANCELED)


@dataclass(frozen=True)
class RunRetentionPolicy:
    keep_days: int
    keep_failed_days: int
    job_names: tuple[str, ...]


@dataclass
class PruneResult:
    runs_deleted: int = 0
    failed_runs_deleted: int = 0


def delete_run_completely(instance: dg.DagsterInstance, run_id: str) -> None:
    """The run, its events, its compute logs and, on SQLite, its event-log shard file."""
    instance.delete_run(run_id)
    with contextlib.suppress(NotImplementedError):  # a compute-log manager that cannot delete keeps them
        instance.compute_log_manager.delete_logs(prefix=[run_id])
    storage = instance.event_log_storage
    if isinstance(storage, SqliteEventLogStorage):
        # SQLite keeps one event-log file per run, emptied but never removed by delete_run. Forget it in this
        # process's cache too, or a later read of the run id would find a file without tables.
        storage._initialized_dbs.discard(run_id)
        shard = storage.path_for_shard(run_id)
        for path in (shard, shard + "-wal", shard + "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def prune_runs(
    instance: dg.DagsterInstance, policy: RunRetentionPolicy, now: dt.datetime, *, batch: int = 200
) -> PruneResult:
    result = PruneResult()
    for statuses, days in (
        (PRUNED_AFTER_KEEP_DAYS, policy.keep_days),
        (KEPT_LONGER, policy.keep_failed_days),
    ):
        cutoff = now - dt.timedelta(days=days)
        for job_name in policy.job_names:
            while True:
                records = instance.get_run_records(
                    filters=dg.RunsFilter(job_name=job_name, statuses=list(statuses), created_before=cutoff),
                    limit=batch,
                )
                for record in records:
                    delete_run_completely(instance, record.dagster_run.run_id)
                result.runs_deleted += len(records)
                if statuses is KEPT_LONGER:
                    result.failed_runs_deleted += len(records)
                if len(records) < batch:
                    break
    return result
