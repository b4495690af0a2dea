"""Alert sensors. Run failures react to run events; the other conditions are polled every 2 minutes.

Condition sensors keep their open incidents in their cursor (``AlertState``). Dagster stores a sensor's cursor
with the tick in its own storage (SQLite or Postgres), so it survives daemon restarts and deploys. A transition
is applied to the cursor only after its message was delivered, and the sensor never raises after delivering:
a webhook outage delays messages, a daemon crash between sending and storing the tick repeats at most one
message, nothing is lost. Run-failure incidents live on the runs themselves (``alerts.runs``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg

from bv_pipeline.alerts import conditions
from bv_pipeline.alerts.delivery import AlertDeliveryError
from bv_pipeline.alerts.hot_size import hot_db_size
from bv_pipeline.alerts.model import Alert, AlertState, transitions
from bv_pipeline.alerts.runs import FIRED, failure_notice, mark, mark_resolved, recovery_notice
from bv_pipeline.partitions import SITES_PARTITION_NAME
from bv_pipeline.resources.alerting import AlertingResource
from bv_pipeline.resources.clock import ClockResource
from bv_pipeline.resources.hot_store import HotStoreResource

CHECK_INTERVAL_S = 120
# The staleness check asks the hot tier about every site (on D1, billed API requests against the account's
# 1,200 per 5 minutes); its threshold is an hour by default, so once per sync interval is often enough.
STALENESS_CHECK_INTERVAL_S = 300


@dataclass(frozen=True)
class Inputs:
    instance: dg.DagsterInstance
    alerting: AlertingResource
    hot_store: HotStoreResource
    now_ms: int
    state: AlertState
    configured_sites: tuple[str, ...]  # BV_SITES: the sites the sync keeps fresh

    @property
    def registered_sites(self) -> list[str]:
        return self.instance.get_dynamic_partitions(SITES_PARTITION_NAME)


Evaluate = Callable[[Inputs], list[Alert]]


def _condition_sensor(
    name: str,
    kind: str,
    description: str,
    evaluate: Evaluate,
    sites: tuple[str, ...],
    interval_s: int = CHECK_INTERVAL_S,
) -> dg.SensorDefinition:
    @dg.sensor(
        name=name,
        minimum_interval_seconds=interval_s,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=description,
    )
    def _sensor(
        context: dg.SensorEvaluationContext,
        alerting: AlertingResource,
        hot_store: HotStoreResource,
        clock: ClockResource,
    ) -> dg.SensorResult:
        state = AlertState.from_json(context.cursor)
        now_ms = clock.now_ms()
        firing = evaluate(Inputs(context.instance, alerting, hot_store, now_ms, state, sites))
        undelivered = []
        for notice in transitions(state, firing, {kind}, now_ms):
            try:
                alerting.deliver(notice, context.log)
            except AlertDeliveryError as exc:
                context.log.error(str(exc))
                undelivered.append(notice.alert.incident_id)
                continue
            state.apply(notice)
        open_now = sorted(i for i, (_, a) in state.open.items() if a.kind == kind)
        summary = f"open incidents: {', '.join(open_now) or 'none'}"
        if undelivered:
            summary += f"; delivery failed for {', '.join(undelivered)} (retried next tick)"
        return dg.SensorResult(cursor=state.to_json(), skip_reason=summary)

    return _sensor


def _stale(i: Inputs) -> list[Alert]:
    return conditions.stale_sites(
        i.hot_store.get_store(), i.configured_sites, i.now_ms, i.alerting.stale_minutes
    )


def _size(i: Inputs) -> list[Alert]:
    size, what = hot_db_size(i.hot_store)
    return conditions.oversized_hot_db(size, i.alerting.hot_db_max_mb, what)


def _archive(i: Inputs) -> list[Alert]:
    open_keys = i.state.open_keys(conditions.ARCHIVE_UNVERIFIED)
    return conditions.unverified_archives(
        i.instance,
        i.hot_store.get_store(),
        i.registered_sites,
        i.now_ms,
        i.alerting.archive_due_hours,
        open_keys,
    )


def _backfills(i: Inputs) -> list[Alert]:
    return conditions.failed_backfills(i.instance, i.now_ms, i.state.open_keys(conditions.BACKFILL_FAILED))


def _ace_auth(i: Inputs) -> list[Alert]:
    return conditions.ace_auth_failures(i.instance, i.now_ms, i.alerting.ace_auth_failures)


def build_condition_alert_sensors(sites: tuple[str, ...]) -> list[dg.SensorDefinition]:
    return [
        _condition_sensor(
            "hot_staleness_alert_sensor",
            conditions.HOT_STALE,
            "Alert when a site's newest hot sample is older than BV_ALERT_STALE_MINUTES; recover when fresh.",
            _stale,
            sites,
            STALENESS_CHECK_INTERVAL_S,
        ),
        _condition_sensor(
            "hot_db_size_alert_sensor",
            conditions.HOT_DB_SIZE,
            "Alert when the hot database is larger than BV_ALERT_HOT_DB_MB.",
            _size,
            sites,
        ),
        _condition_sensor(
            "archive_verification_alert_sensor",
            conditions.ARCHIVE_UNVERIFIED,
            "Alert when a synced day's cold object is not verified BV_ALERT_ARCHIVE_GRACE_HOURS after the nightly archive.",
            _archive,
            sites,
        ),
        _condition_sensor(
            "backfill_alert_sensor",
            conditions.BACKFILL_FAILED,
            "Alert when a backfill has failed partitions; recover when later runs covered all of them.",
            _backfills,
            sites,
        ),
        _condition_sensor(
            "ace_auth_alert_sensor",
            conditions.ACE_AUTH,
            "Alert when ACE answered 401/403 to the last BV_ALERT_ACE_AUTH_FAILURES runs of a site.",
            _ace_auth,
            sites,
        ),
    ]


def build_run_alert_sensors() -> list[dg.SensorDefinition]:
    @dg.run_failure_sensor(
        name="run_failure_alert_sensor",
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="One message when a job starts failing for a partition (not per failed run).",
    )
    def run_failure_alert_sensor(
        context: dg.RunFailureSensorContext, alerting: AlertingResource, clock: ClockResource
    ) -> None:
        notice = failure_notice(context.instance, context.dagster_run, clock.now_ms())
        if notice is not None:
            alerting.deliver(notice, context.log)  # raises on failure: no tag, the next failure retries
            mark(context.instance, context.dagster_run, FIRED)

    @dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        name="run_recovery_alert_sensor",
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="One message when a job succeeds again after a reported failure.",
    )
    def run_recovery_alert_sensor(
        context: dg.RunStatusSensorContext, alerting: AlertingResource, clock: ClockResource
    ) -> None:
        notice = recovery_notice(context.instance, context.dagster_run, clock.now_ms())
        if notice is not None:
            alerting.deliver(notice, context.log)
            mark_resolved(context.instance, context.dagster_run, notice)

    return [run_failure_alert_sensor, run_recovery_alert_sensor]
