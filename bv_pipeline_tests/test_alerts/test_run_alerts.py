"""Alerts from real failed runs: the real AceClient against the simulator fails with ACE's 403 for a site it
does not serve. One message per failure streak, one recovery message, retried runs and backfill runs excluded,
ACE 401/403 streaks per site, backfills with failed partitions.

The runs come from a small probe job named like the sync job (``hot_sync_job``) rather than the real one: that
asset's RetryPolicy waits 15+30+60 s before a run fails for good, and the alert logic depends only on the job
name, run status, tags and the failure's error text.
"""

# No "from __future__ import annotations": Dagster resolves the op's Config annotation at definition time.

import time
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.storage.tags import BACKFILL_ID_TAG, PARTITION_NAME_TAG, WILL_RETRY_TAG

from bv_pipeline.alerts.runs import ALERT_TAG
from bv_pipeline.alerts.sensors import build_run_alert_sensors
from bv_pipeline.assets.hot import HOT_TIMESERIES
from bv_pipeline.jobs import HOT_SYNC_JOB
from bv_pipeline.ops.live_sync import LIVE_SYNC_JOB, LIVE_SYNC_TAG
from bv_pipeline.resources.ace import AceClient
from bv_pipeline.resources.alerting import AlertingResource
from bv_pipeline.resources.clock import ClockResource
from bv_pipeline.sensors import live_sync_run_config
from bv_pipeline.simulator import IN_PROCESS_BASE_URL, AceSimulator, SimulatorConfig
from bv_pipeline_tests.fakes.webhook_receiver import WebhookReceiver
from bv_pipeline_tests.stack import Stack

NOW_MS = 1_773_130_000_000  # 2026-03-10T08:06:40Z
PARTITION = "2026-03-10|ghost"
SIM = AceSimulator(
    SimulatorConfig(sites=("demo",), points=3, api_key="right-key"), clock=lambda: NOW_MS / 1000
)


class ProbeConfig(dg.Config):
    site: str
    api_key: str = "right-key"


@dg.op
def probe_ace(config: ProbeConfig) -> int:
    client = AceClient(
        IN_PROCESS_BASE_URL, config.api_key, transport=SIM.transport(), sleep=lambda _s: None, max_attempts=3
    )
    try:
        table, _ = client.fetch_samples(config.site, NOW_MS - 600_000, NOW_MS)
    finally:
        client.close()
    return table.num_rows


@dg.job(name=HOT_SYNC_JOB)
def ace_probe_job() -> None:
    probe_ace()


def probe(
    instance: dg.DagsterInstance, serve: bool, api_key: str = "right-key", **tags: str
) -> dg.ExecuteInProcessResult:
    """A run for site "ghost" that fails with ACE 403 unless ``serve`` (then ACE answers, for "demo"); a wrong
    ``api_key`` fails it with the real API's HTTP 500 for invalid keys."""
    config = {"site": "demo" if serve else "ghost", "api_key": api_key}
    return ace_probe_job.execute_in_process(
        run_config={"ops": {"probe_ace": {"config": config}}},
        instance=instance,
        tags={PARTITION_NAME_TAG: PARTITION, "bv/site": "ghost", **tags},
        raise_on_error=False,
    )


class RunSensors:
    def __init__(self, instance: dg.DagsterInstance, url: str) -> None:
        self.instance = instance
        self.resources: dict[str, Any] = {
            "alerting": AlertingResource(webhook_url=url, delivery_backoff_s=0.0),
            "clock": ClockResource(fixed_now_ms=NOW_MS),
        }
        self.sensors = build_run_alert_sensors()
        self.cursors: list[str | None] = [None, None]
        self.tick()  # a run status sensor's first tick only records where the event log ends

    def tick(self) -> None:
        for i, sensor in enumerate(self.sensors):
            ctx = dg.build_sensor_context(
                instance=self.instance, cursor=self.cursors[i], resources=self.resources
            )
            data = sensor.evaluate_tick(ctx)
            assert data.cursor is not None
            self.cursors[i] = data.cursor


def messages(receiver: WebhookReceiver) -> list[tuple[str, str]]:
    return [(b["status"], b["incident_id"]) for b in receiver.take()]


def test_failure_streak_is_one_message_and_success_one_recovery(receiver: WebhookReceiver) -> None:
    incident = f"run_failure:hot_sync_job|{PARTITION}"
    with dg.instance_for_test() as instance:
        sensors = RunSensors(instance, receiver.url)
        first = probe(instance, serve=False)
        assert not first.success
        sensors.tick()
        [body] = receiver.take()
        assert (body["status"], body["incident_id"]) == ("firing", incident)
        assert "HTTP 403" in body["details"]["error"] and body["details"]["failed_runs_in_a_row"] == 1
        assert instance.get_run_by_id(first.run_id).tags[ALERT_TAG] == "fired"  # type: ignore[union-attr]
        for _ in range(2):
            probe(instance, serve=False)
            sensors.tick()
        assert messages(receiver) == []
        assert probe(instance, serve=True).success
        sensors.tick()
        [body] = receiver.take()
        assert (body["status"], body["incident_id"]) == ("resolved", incident)
        assert body["details"]["failed_runs_before"] == 3
        assert body["details"]["failed_run_id"] == first.run_id
        probe(instance, serve=True)
        sensors.tick()
        assert messages(receiver) == []
        # Run retention deletes successes before failures: the announced failure itself says "resolved".
        for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS])):
            instance.delete_run(record.dagster_run.run_id)
        assert instance.get_run_by_id(first.run_id).tags[ALERT_TAG] == "resolved"  # type: ignore[union-attr]
        probe(instance, serve=True)
        sensors.tick()
        assert messages(receiver) == []
        # A new streak is a new incident.
        probe(instance, serve=False)
        sensors.tick()
        assert messages(receiver) == [("firing", incident)]


def test_retried_and_backfill_runs_open_no_incident(receiver: WebhookReceiver) -> None:
    with dg.instance_for_test() as instance:
        sensors = RunSensors(instance, receiver.url)
        probe(instance, serve=False, **{WILL_RETRY_TAG: "true"})
        probe(instance, serve=False, **{BACKFILL_ID_TAG: "bf-1"})
        sensors.tick()
        assert messages(receiver) == []
        # The retry that fails for good reports it (the retried run carried no "fired" tag).
        probe(instance, serve=False)
        sensors.tick()
        assert [s for s, _ in messages(receiver)] == ["firing"]


def test_undelivered_failure_is_sent_with_the_next_failure(receiver: WebhookReceiver) -> None:
    with dg.instance_for_test() as instance:
        sensors = RunSensors(instance, receiver.url)
        sensors.resources["alerting"] = AlertingResource(
            webhook_url=receiver.url, delivery_backoff_s=0.0, delivery_attempts=1
        )
        receiver.fail_next = [503]
        probe(instance, serve=False)
        sensors.tick()
        assert receiver.requests == 1 and messages(receiver) == []
        probe(instance, serve=False)
        sensors.tick()
        [body] = receiver.take()
        assert body["status"] == "firing" and body["details"]["failed_runs_in_a_row"] == 2


def test_undelivered_recovery_is_sent_with_the_next_success(receiver: WebhookReceiver) -> None:
    with dg.instance_for_test() as instance:
        sensors = RunSensors(instance, receiver.url)
        sensors.resources["alerting"] = AlertingResource(
            webhook_url=receiver.url, delivery_backoff_s=0.0, delivery_attempts=1
        )
        probe(instance, serve=False)
        sensors.tick()
        assert [s for s, _ in messages(receiver)] == ["firing"]
        receiver.fail_next = [503]
        probe(instance, serve=True)
        sensors.tick()
        assert messages(receiver) == []
        probe(instance, serve=True)
        sensors.tick()
        [body] = receiver.take()
        assert body["status"] == "resolved" and body["details"]["failed_runs_before"] == 1
        probe(instance, serve=True)
        sensors.tick()
        assert messages(receiver) == []


def _condition_tick(
    stack: Stack, instance: dg.DagsterInstance, name: str, url: str, cursor: str | None
) -> str | None:
    defs = stack.defs()
    resources = {**stack.resources(), "alerting": AlertingResource(webhook_url=url, delivery_backoff_s=0.0)}
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources, definitions=defs)
    result = defs.get_sensor_def(name)(ctx)
    assert isinstance(result, dg.SensorResult)
    return result.cursor


def test_ace_auth_streak_per_site(tmp_path: Path, receiver: WebhookReceiver) -> None:
    stack = Stack(tmp_path, sites=("ghost",), points=3)
    stack.now_ms = NOW_MS

    def tick(cursor: str | None) -> str | None:
        return _condition_tick(stack, instance, "ace_auth_alert_sensor", receiver.url, cursor)

    with dg.instance_for_test() as instance:
        cursor = None
        for _ in range(2):
            probe(instance, serve=False)
            cursor = tick(cursor)
        assert messages(receiver) == []  # 2 < BV_ALERT_ACE_AUTH_FAILURES (3)
        probe(instance, serve=False)
        cursor = tick(cursor)
        cursor = tick(cursor)
        [body] = receiver.take()
        assert (body["status"], body["incident_id"]) == ("firing", "ace_auth:ghost")
        assert body["details"]["endpoint"] == "GET /sites/ghost/timeseries/paginated"
        probe(instance, serve=True)
        cursor = tick(cursor)
        assert messages(receiver) == [("resolved", "ace_auth:ghost")]
        # A revoked key: the real API answers HTTP 500 "An unhandled exception occurred." (retried, then hinted).
        for _ in range(3):
            assert not probe(instance, serve=True, api_key="revoked-key").success
        cursor = tick(cursor)
        [body] = receiver.take()
        assert (body["status"], body["incident_id"]) == ("firing", "ace_auth:ghost")
        assert "HTTP 500 (invalid key)" in body["summary"]


def test_backfill_with_failed_partitions_until_reexecuted(tmp_path: Path, receiver: WebhookReceiver) -> None:
    stack = Stack(tmp_path, sites=("ghost",), points=3)
    stack.now_ms = NOW_MS + 60_000

    def tick(cursor: str | None) -> str | None:
        return _condition_tick(stack, instance, "backfill_alert_sensor", receiver.url, cursor)

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("sites", ["ghost"])
        backfill = PartitionBackfill.from_asset_partitions(
            backfill_id="bf-ghost",
            asset_graph=stack.defs().resolve_asset_graph(),
            partition_names=[PARTITION],
            asset_selection=[HOT_TIMESERIES],
            backfill_timestamp=time.time(),
            tags={},
            dynamic_partitions_store=instance,
            all_partitions=False,
            title=None,
            description=None,
            run_config=None,
        )
        instance.add_backfill(backfill.with_status(BulkActionStatus.COMPLETED_FAILED))
        cursor = tick(None)
        assert messages(receiver) == []  # no failed run yet
        probe(instance, serve=False, **{BACKFILL_ID_TAG: "bf-ghost"})
        cursor = tick(cursor)
        cursor = tick(cursor)
        [body] = receiver.take()
        assert (body["status"], body["incident_id"]) == ("firing", "backfill_failed:bf-ghost")
        assert body["details"]["failed_partitions"] == "1" and PARTITION in body["summary"]
        probe(instance, serve=True)  # the partition re-executed successfully
        cursor = tick(cursor)
        assert messages(receiver) == [("resolved", "backfill_failed:bf-ghost")]


def test_ace_auth_streak_per_site_from_multi_site_live_runs(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """Real live_sync_job runs of two sites: ACE stops serving site-b (403 on its timeseries) while site-a keeps
    working. Each run fails (site-b), but only site-b's streak fires; site-a's successes inside the same runs
    count as successes."""
    stack = Stack(tmp_path, sites=("site-a", "site-b"), points=3)
    stack.now_ms = NOW_MS
    run_config = live_sync_run_config(["site-a", "site-b"])

    def tick(cursor: str | None) -> str | None:
        return _condition_tick(stack, instance, "ace_auth_alert_sensor", receiver.url, cursor)

    def live_run() -> dg.ExecuteInProcessResult:
        job = stack.defs().resolve_job_def(LIVE_SYNC_JOB)
        return job.execute_in_process(instance=instance, run_config=run_config, raise_on_error=False)

    with dg.instance_for_test() as instance:
        assert live_run().success  # both sites' points are known now; metadata is refreshed hourly
        stack.serve_only(("site-a",))  # the account loses access to site-b
        cursor = None
        for _ in range(3):
            stack.advance(minutes=5)
            assert not live_run().success
            cursor = tick(cursor)
        cursor = tick(cursor)
        [body] = receiver.take()
        assert (body["status"], body["incident_id"]) == ("firing", "ace_auth:site-b")
        assert body["details"]["endpoint"] == "GET /sites/site-b/timeseries/paginated"


def test_live_sync_incidents_are_per_shard(tmp_path: Path, receiver: WebhookReceiver) -> None:
    """Real live_sync_job runs of two shards: shard 1 keeps failing (a site ACE does not serve), shard 2 keeps
    succeeding. Shard 2's successes must not resolve shard 1's incident."""
    stack = Stack(tmp_path, sites=("site-a", "site-b"), points=3)
    stack.now_ms = NOW_MS

    def live_run(shard: str, sites: list[str]) -> dg.ExecuteInProcessResult:
        job = stack.defs().resolve_job_def(LIVE_SYNC_JOB)
        return job.execute_in_process(
            instance=instance,
            run_config=live_sync_run_config(sites),
            tags={LIVE_SYNC_TAG: shard},
            raise_on_error=False,
        )

    with dg.instance_for_test() as instance:
        sensors = RunSensors(instance, receiver.url)
        assert not live_run("1/2", ["site-a", "ghost"]).success
        assert live_run("2/2", ["site-b"]).success
        sensors.tick()
        [body] = receiver.take()
        assert (body["status"], body["incident_id"]) == ("firing", "run_failure:live_sync_job|1/2")
        assert "ghost" in body["details"]["error"] and "site-a" not in body["details"]["error"]
        assert not live_run("1/2", ["site-a", "ghost"]).success
        assert live_run("2/2", ["site-b"]).success
        sensors.tick()
        assert messages(receiver) == []  # still one incident, not resolved by the other shard
        assert live_run("1/2", ["site-a"]).success
        sensors.tick()
        assert messages(receiver) == [("resolved", "run_failure:live_sync_job|1/2")]
