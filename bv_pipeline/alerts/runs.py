"""Run-failure incidents, kept on the runs themselves.

An incident is a streak of failed runs of one job for one partition (for the sync: a site's day; for the nightly
archive: a site-day). The first failed run of a streak whose message was delivered gets the tag
``bv/alert=fired``; a later failure in the same streak finds it and sends nothing; the first success after the
streak sends one recovery message. Dagster's run storage is the durable state: it survives daemon restarts, is
shared by the failure and the success sensor, and a failure whose message could not be delivered leaves no tag,
so the next failure of the streak tries again. Runs Dagster will retry (``dagster/will_retry``) and backfill runs
(the backfill alert reports those) open no incident.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.storage.tags import BACKFILL_ID_TAG, PARTITION_NAME_TAG, WILL_RETRY_TAG

from bv_pipeline.alerts.model import Alert, Notice

ALERT_TAG = "bv/alert"
FIRED = "fired"
RESOLVED = "resolved"
RUN_FAILURE = "run_failure"
STREAK_LOOKBACK = 50  # previous runs of the same job and partition examined per decision
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]


def incident_key(run: dg.DagsterRun) -> str:
    partition = run.tags.get(PARTITION_NAME_TAG) or "-"
    return f"{run.job_name}|{partition}"


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


def _failure_streak(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[dg.RunRecord]:
    """Finished runs of the same job and partition created before ``run``, newest first, up to a success."""
    record = instance.get_run_record_by_id(run.run_id)
    created = record.create_timestamp if record is not None else dt.datetime.now(dt.UTC)
    partition = run.tags.get(PARTITION_NAME_TAG)
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            job_name=run.job_name,
            statuses=FINISHED,
            tags={PARTITION_NAME_TAG: partition} if partition else None,
            created_before=created,
        ),
        limit=STREAK_LOOKBACK,
    )
    streak = []
    for r in records:
        if r.dagster_run.run_id == run.run_id:
            continue
        if r.dagster_run.status == dg.DagsterRunStatus.SUCCESS:
            break
        streak.append(r)
    return streak


def _ms(value: dt.datetime | float | None, default_ms: int) -> int:
    if value is None:
        return default_ms
    if isinstance(value, dt.datetime):
        return int(value.timestamp() * 1000)
    return int(value * 1000)


def failure_notice(instance: dg.DagsterInstance, run: dg.DagsterRun, now_ms: int) -> Notice | None:
    """The firing notice for a failed run, or None when it opens no new incident."""
    if run.tags.get(WILL_RETRY_TAG, "").lower() == "true" or BACKFILL_ID_TAG in run.tags:
        return None
    streak = _failure_streak(instance, run)
    if any(r.dagster_run.tags.get(ALERT_TAG) == FIRED for r in streak):
        return None
    record = instance.get_run_record_by_id(run.run_id)
    first = streak[-1] if streak else record
    since = _ms(first.create_timestamp if first is not None else None, now_ms)
    alert = Alert(
        RUN_FAILURE,
        incident_key(run),
        f"{run.job_name} failed for partition {run.tags.get(PARTITION_NAME_TAG) or '(none)'}",
        {
            "run_id": run.run_id,
            "failed_runs_in_a_row": len(streak) + 1,
            "error": run_error_text(instance, run.run_id, limit=500) or "(no error recorded)",
        },
    )
    return Notice("firing", alert, since, now_ms)


def recovery_notice(instance: dg.DagsterInstance, run: dg.DagsterRun, now_ms: int) -> Notice | None:
    """The resolved notice for a successful run that ends a streak whose failure was reported."""
    streak = _failure_streak(instance, run)
    fired = [r for r in streak if r.dagster_run.tags.get(ALERT_TAG) == FIRED]
    if not fired:
        return None
    since = _ms(streak[-1].create_timestamp, now_ms)
    alert = Alert(
        RUN_FAILURE,
        incident_key(run),
        f"{run.job_name} succeeded again for partition {run.tags.get(PARTITION_NAME_TAG) or '(none)'}",
        {"run_id": run.run_id, "failed_runs_before": len(streak)},
    )
    return Notice("resolved", alert, since, now_ms)


def mark(instance: dg.DagsterInstance, run: dg.DagsterRun, value: str) -> None:
    instance.add_run_tags(run.run_id, {ALERT_TAG: value})
