"""Run-failure incidents, kept on the runs themselves.

An incident is a streak of failed runs of one job for one partition (for a hot_sync_job run or the nightly
archive: a site-day; for the live sync: one shard of the configured sites, tag ``bv/live-sync``). The failed run whose message was delivered gets the tag ``bv/alert=fired``; a later failure
finds it (a run query by tag, however long the streak) and sends nothing unless a run succeeded in between; the
first success after it sends one recovery message and gets ``bv/alert=resolved``.

Dagster's run storage is the durable state: it survives daemon restarts and is shared by the failure and the
success sensor. A message that could not be delivered leaves no tag, so the next failure (or success) of the key
sends it. Runs Dagster will retry (``dagster/will_retry``) and backfill runs (the backfill alert reports those)
open no incident.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.storage.tags import BACKFILL_ID_TAG, PARTITION_NAME_TAG, WILL_RETRY_TAG

from bv_pipeline.alerts.model import Alert, Notice
from bv_pipeline.ops.live_sync import LIVE_SYNC_TAG

ALERT_TAG = "bv/alert"
FIRED = "fired"
RESOLVED = "resolved"
RUN_FAILURE = "run_failure"
STREAK_LOOKBACK = 50  # previous runs examined to count a streak (message detail only)
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]


def _series_tag(run: dg.DagsterRun) -> tuple[str, str] | None:
    """The tag that makes runs of a job one series: the partition, or a live-sync run's shard (``1/3``)."""
    for key in (PARTITION_NAME_TAG, LIVE_SYNC_TAG):
        if run.tags.get(key):
            return key, run.tags[key]
    return None


def _series_label(run: dg.DagsterRun) -> str:
    series = _series_tag(run)
    if series is None:
        return "partition (none)"
    return f"partition {series[1]}" if series[0] == PARTITION_NAME_TAG else f"sites shard {series[1]}"


def incident_key(run: dg.DagsterRun) -> str:
    series = _series_tag(run)
    return f"{run.job_name}|{series[1] if series else '-'}"


def run_error_text(instance: dg.DagsterInstance, run_id: str, limit: int = 2000) -> str:
    """The step failures' error messages and causes, joined (where ``AceError`` texts end up)."""
    parts: list[str] = []
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        error = event.step_failure_data.error if event is not None else None
        while error is not None:
            parts.append(error.message.strip())
            error = error.cause
    if not parts:
        for entry in instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE):
            parts.append(entry.message or "")
    return " | ".join(p for p in parts if p)[:limit]


def _created(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dt.datetime:
    record = instance.get_run_record_by_id(run.run_id)
    return record.create_timestamp if record is not None else dt.datetime.now(dt.UTC)


def _same_key(
    run: dg.DagsterRun,
    *,
    tags: dict[str, str | list[str]] | None = None,
    statuses: list[dg.DagsterRunStatus] | None = None,
    created_after: dt.datetime | None = None,
    created_before: dt.datetime | None = None,
) -> dg.RunsFilter:
    """Runs of the same job and partition, narrowed by the other filters."""
    all_tags: dict[str, str | list[str]] = dict(tags or {})
    series = _series_tag(run)
    if series:
        all_tags[series[0]] = series[1]
    return dg.RunsFilter(
        job_name=run.job_name,
        tags=all_tags or None,
        statuses=statuses,
        created_after=created_after,
        created_before=created_before,
    )


def _last_announced(
    instance: dg.DagsterInstance, run: dg.DagsterRun, before: dt.datetime
) -> dg.RunRecord | None:
    """The newest earlier run of the key tagged ``fired`` or ``resolved`` (found by tag, however long ago)."""
    records = instance.get_run_records(
        filters=_same_key(run, tags={ALERT_TAG: [FIRED, RESOLVED]}, created_before=before), limit=1
    )
    return records[0] if records else None


def _failures_since_success(instance: dg.DagsterInstance, run: dg.DagsterRun, before: dt.datetime) -> int:
    """Failed runs of the key just before ``before`` (counted up to ``STREAK_LOOKBACK``; detail only)."""
    count = 0
    for r in instance.get_run_records(
        filters=_same_key(run, statuses=FINISHED, created_before=before), limit=STREAK_LOOKBACK
    ):
        if r.dagster_run.status == dg.DagsterRunStatus.SUCCESS:
            break
        if r.dagster_run.run_id != run.run_id:
            count += 1
    return count


def _ms(value: dt.datetime | None, default_ms: int) -> int:
    return default_ms if value is None else int(value.timestamp() * 1000)


def failure_notice(instance: dg.DagsterInstance, run: dg.DagsterRun, now_ms: int) -> Notice | None:
    """The firing notice for a failed run, or None when it opens no new incident: Dagster will retry it, it is
    a backfill run, or the incident was announced and no run of the key has succeeded since."""
    if run.tags.get(WILL_RETRY_TAG, "").lower() == "true" or BACKFILL_ID_TAG in run.tags:
        return None
    created = _created(instance, run)
    last = _last_announced(instance, run, created)
    if last is not None and last.dagster_run.tags.get(ALERT_TAG) == FIRED:
        succeeded_since = instance.get_run_records(
            filters=_same_key(
                run,
                statuses=[dg.DagsterRunStatus.SUCCESS],
                created_after=last.create_timestamp,
                created_before=created,
            ),
            limit=1,
        )
        if not succeeded_since:
            return None
    earlier = _failures_since_success(instance, run, created)
    alert = Alert(
        RUN_FAILURE,
        incident_key(run),
        f"{run.job_name} failed for {_series_label(run)}",
        {
            "run_id": run.run_id,
            "failed_runs_in_a_row": earlier + 1,
            "error": run_error_text(instance, run.run_id, limit=500) or "(no error recorded)",
        },
    )
    return Notice("firing", alert, _ms(created, now_ms), now_ms)


def recovery_notice(instance: dg.DagsterInstance, run: dg.DagsterRun, now_ms: int) -> Notice | None:
    """The resolved notice for a successful run when the key's last announcement was a failure.

    A success whose recovery message could not be delivered carries no tag, so the next success sends it.
    """
    created = _created(instance, run)
    last = _last_announced(instance, run, created)
    if last is None or last.dagster_run.tags.get(ALERT_TAG) != FIRED:
        return None
    failed_after = instance.get_runs_count(
        _same_key(
            run,
            statuses=[dg.DagsterRunStatus.FAILURE],
            created_after=last.create_timestamp,
            created_before=created,
        )
    )
    alert = Alert(
        RUN_FAILURE,
        incident_key(run),
        f"{run.job_name} succeeded again for {_series_label(run)}",
        {
            "run_id": run.run_id,
            "failed_run_id": last.dagster_run.run_id,
            "failed_runs_before": 1 + failed_after,
        },
    )
    return Notice("resolved", alert, _ms(last.create_timestamp, now_ms), now_ms)


def mark(instance: dg.DagsterInstance, run: dg.DagsterRun, value: str) -> None:
    instance.add_run_tags(run.run_id, {ALERT_TAG: value})


def mark_resolved(instance: dg.DagsterInstance, success: dg.DagsterRun, notice: Notice) -> None:
    """Tag the success and re-tag the announced failure: the incident stays closed even after run retention
    deleted the success (failures are kept longer than successes)."""
    mark(instance, success, RESOLVED)
    instance.add_run_tags(str(notice.alert.details["failed_run_id"]), {ALERT_TAG: RESOLVED})
