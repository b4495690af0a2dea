"""Condition alert sensors evaluated tick by tick on a real pipeline (simulator, SQLite, local cold directory):
each incident gives exactly one message while it lasts and one recovery message, delivered to a real HTTP
receiver; open incidents live in the sensor cursor."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg

from bv_pipeline.alerts import conditions
from bv_pipeline.alerts.hot_size import hot_db_size
from bv_pipeline.assets.cold import COLD_TIMESERIES
from bv_pipeline.partitions import build_site_days, site_day_key
from bv_pipeline.resources.alerting import AlertingResource
from bv_pipeline.resources.hot_store import D1HotStoreResource
from bv_pipeline_tests.fakes.d1_server import FakeD1
from bv_pipeline_tests.fakes.webhook_receiver import WebhookReceiver
from bv_pipeline_tests.stack import Stack

DAY = dt.date(2026, 3, 10)


class Ticker:
    """Evaluates one sensor repeatedly, carrying its cursor from tick to tick like the daemon does."""

    def __init__(self, stack: Stack, instance: dg.DagsterInstance, name: str, **alerting: Any) -> None:
        self.stack, self.instance, self.name = stack, instance, name
        self.alerting = {"delivery_backoff_s": 0.0, **alerting}
        self.cursor: str | None = None

    def tick(self) -> dg.SensorResult:
        defs = self.stack.defs()
        resources = {**self.stack.resources(), "alerting": AlertingResource(**self.alerting)}
        ctx = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=resources, definitions=defs
        )
        result = defs.get_sensor_def(self.name)(ctx)
        assert isinstance(result, dg.SensorResult)
        self.cursor = result.cursor
        return result


def statuses(receiver: WebhookReceiver) -> list[tuple[str, str]]:
    return [(b["status"], b["incident_id"]) for b in receiver.take()]


def test_stale_hot_data_one_message_then_recovery(tmp_path: Path, receiver: WebhookReceiver) -> None:
    stack = Stack(tmp_path, sites=("site-a",), points=5)
    stack.set_now(dt.datetime(2026, 3, 10, 8, 2, tzinfo=dt.UTC))
    with dg.instance_for_test() as instance:
        stack.run("hot_sync_job", "site-a", DAY, instance)
        t = Ticker(stack, instance, "hot_staleness_alert_sensor", webhook_url=receiver.url, stale_minutes=60)
        t.tick()
        assert statuses(receiver) == []
        stack.advance(minutes=90)  # the sync stopped
        t.tick()
        stack.advance(minutes=10)
        result = t.tick()
        assert statuses(receiver) == [("firing", "hot_stale:site-a")]
        assert "hot_stale:site-a" in (result.skip_reason.skip_message or "")  # type: ignore[union-attr]
        stack.run("hot_sync_job", "site-a", DAY, instance)  # the sync is back
        t.tick()
        t.tick()
        assert statuses(receiver) == [("resolved", "hot_stale:site-a")]


def test_failed_delivery_is_retried_on_the_next_tick(tmp_path: Path, receiver: WebhookReceiver) -> None:
    stack = Stack(tmp_path, sites=("site-a",), points=5)
    stack.set_now(dt.datetime(2026, 3, 10, 8, 2, tzinfo=dt.UTC))
    with dg.instance_for_test() as instance:
        stack.run("hot_sync_job", "site-a", DAY, instance)
        stack.advance(hours=3)
        t = Ticker(
            stack, instance, "hot_staleness_alert_sensor", webhook_url=receiver.url, delivery_attempts=2
        )
        receiver.fail_next = [500, 502]
        t.tick()
        assert receiver.requests == 2 and statuses(receiver) == []
        t.tick()
        assert statuses(receiver) == [("firing", "hot_stale:site-a")]
        t.tick()
        assert statuses(receiver) == []


def test_hot_db_size(tmp_path: Path, receiver: WebhookReceiver) -> None:
    stack = Stack(tmp_path, sites=("site-a",), points=5)
    stack.set_now(dt.datetime(2026, 3, 10, 8, 2, tzinfo=dt.UTC))
    with dg.instance_for_test() as instance:
        stack.run("hot_sync_job", "site-a", DAY, instance)
        # The WAL holds pages not yet checkpointed into the main file: both are the database's size.
        files = [tmp_path / "hot.sqlite3", tmp_path / "hot.sqlite3-wal"]
        size = sum(f.stat().st_size for f in files if f.exists())
        assert size > 0
        t = Ticker(stack, instance, "hot_db_size_alert_sensor", webhook_url=receiver.url, hot_db_max_mb=0)
        t.tick()
        t.tick()
        [body] = receiver.take()
        assert body["status"] == "firing" and body["incident_id"] == "hot_db_size:hot"
        assert body["details"]["size_mb"] == round(size / 1_000_000, 1)
        t.alerting["hot_db_max_mb"] = 1000  # the operator raised the threshold (or the database shrank)
        t.tick()
        assert statuses(receiver) == [("resolved", "hot_db_size:hot")]


def test_unverified_archive_after_deadline_then_verified(tmp_path: Path, receiver: WebhookReceiver) -> None:
    stack = Stack(tmp_path, sites=("site-a", "site-b"), points=5)
    with dg.instance_for_test() as instance:
        stack.set_now(dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC))
        stack.run("hot_sync_job", "site-a", DAY, instance)
        instance.add_dynamic_partitions("sites", ["site-b"])  # registered, never synced: nothing to archive
        stack.set_now(dt.datetime(2026, 3, 11, 5, 30, tzinfo=dt.UTC))
        t = Ticker(stack, instance, "archive_verification_alert_sensor", webhook_url=receiver.url)
        t.tick()
        assert statuses(receiver) == []  # before the 06:00 deadline nothing is due
        stack.set_now(dt.datetime(2026, 3, 11, 6, 5, tzinfo=dt.UTC))
        t.tick()
        t.tick()
        assert statuses(receiver) == [("firing", "archive_unverified:site-a|2026-03-10")]
        # Next day: the incident of the 10th stays open (watched by its key) and the synced 11th is due too.
        stack.set_now(dt.datetime(2026, 3, 11, 12, 0, tzinfo=dt.UTC))
        stack.run("hot_sync_job", "site-a", DAY + dt.timedelta(days=1), instance)
        stack.set_now(dt.datetime(2026, 3, 12, 6, 5, tzinfo=dt.UTC))
        t.tick()
        assert statuses(receiver) == [("firing", "archive_unverified:site-a|2026-03-11")]
        stack.run("nightly_archive_job", "site-a", DAY, instance)
        t.tick()
        assert statuses(receiver) == [("resolved", "archive_unverified:site-a|2026-03-10")]


def test_archive_with_a_failed_check_did_not_verify(tmp_path: Path, receiver: WebhookReceiver) -> None:
    """A cold object whose materialisation recorded a failed ERROR check (here from a stand-in asset with the same
    key and check names: the real checks only fail on a corrupted object) counts as not verified."""
    site_days = build_site_days(dt.date(2026, 1, 1))

    @dg.asset(
        key=COLD_TIMESERIES,
        partitions_def=site_days,
        check_specs=[
            dg.AssetCheckSpec("object_readable", asset=COLD_TIMESERIES),
            dg.AssetCheckSpec("no_duplicate_samples", asset=COLD_TIMESERIES),
        ],
    )
    def corrupted_cold_object() -> dg.MaterializeResult:
        return dg.MaterializeResult(
            check_results=[
                dg.AssetCheckResult(check_name="object_readable", passed=False),
                dg.AssetCheckResult(check_name="no_duplicate_samples", passed=True),
            ]
        )

    stack = Stack(tmp_path, sites=("site-a",), points=5)
    with dg.instance_for_test() as instance:
        stack.set_now(dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC))
        stack.run("hot_sync_job", "site-a", DAY, instance)
        dg.materialize(
            [corrupted_cold_object],
            partition_key=site_day_key("site-a", DAY),
            instance=instance,
            raise_on_error=False,
        )
        stack.set_now(dt.datetime(2026, 3, 11, 6, 5, tzinfo=dt.UTC))
        t = Ticker(stack, instance, "archive_verification_alert_sensor", webhook_url=receiver.url)
        t.tick()
        [body] = receiver.take()
        assert body["incident_id"] == "archive_unverified:site-a|2026-03-10"
        assert body["summary"].endswith("failed verification checks: object_readable")
        stack.run("nightly_archive_job", "site-a", DAY, instance)  # re-archived: the real checks pass
        t.tick()
        assert statuses(receiver) == [("resolved", "archive_unverified:site-a|2026-03-10")]


def test_hot_db_size_on_d1(tmp_path: Path, fake_d1: FakeD1, receiver: WebhookReceiver) -> None:
    """D1's size comes from Cloudflare's database API (``file_size``) through the official SDK."""
    hot = D1HotStoreResource(
        account_id=fake_d1.account_id,
        database_id=fake_d1.database_id,
        api_token=fake_d1.token,
        base_url=fake_d1.base_url,
    )
    stack = Stack(tmp_path, sites=("site-a",), points=5, hot_resource=hot)
    stack.set_now(dt.datetime(2026, 3, 10, 8, 2, tzinfo=dt.UTC))
    with dg.instance_for_test() as instance:
        stack.run("hot_sync_job", "site-a", DAY, instance)
        size = fake_d1.totals(fake_d1.database_id).size_bytes
        assert size > 0
        assert hot_db_size(hot) == (size, f"D1 {fake_d1.database_id}")
        t = Ticker(stack, instance, "hot_db_size_alert_sensor", webhook_url=receiver.url, hot_db_max_mb=0)
        t.tick()
        [body] = receiver.take()
        assert body["incident_id"] == "hot_db_size:hot" and f"D1 {fake_d1.database_id}" in body["summary"]


class CountingHotStore:
    """Forwards ``list_sync_as_of`` to a real hot store and records each call (one D1 request each on D1)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, []

    def list_sync_as_of(self, site: str, start: dt.date, end: dt.date) -> dict[dt.date, int]:
        self.calls.append((site, start, end))
        return self.inner.list_sync_as_of(site, start, end)


def test_archive_check_asks_the_hot_store_only_about_days_without_a_cold_object(tmp_path: Path) -> None:
    """On D1 every hot-store question is a billed API request: the check asks Dagster's records first, and asks
    the hot tier once per site (a range over its unarchived due days), never once per day."""
    stack = Stack(tmp_path, sites=("site-a",), points=5)
    with dg.instance_for_test() as instance:
        stack.set_now(dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC))
        stack.run("hot_sync_job", "site-a", DAY, instance)
        stack.set_now(dt.datetime(2026, 3, 11, 3, 0, tzinfo=dt.UTC))
        stack.run("nightly_archive_job", "site-a", DAY, instance)
        hot = CountingHotStore(stack.resources()["hot_store"].get_store())
        now_ms = int(dt.datetime(2026, 3, 11, 6, 5, tzinfo=dt.UTC).timestamp() * 1000)
        alerts = conditions.unverified_archives(instance, hot, ["site-a"], now_ms, 6.0, set())  # type: ignore[arg-type]
        assert alerts == []
        # Due: the 10th (archived: no question), the 9th and 8th (never synced: one range question).
        assert hot.calls == [("site-a", dt.date(2026, 3, 8), dt.date(2026, 3, 9))]
        # Once every due day is archived, the check reads nothing from the hot tier.
        hot.calls.clear()
        for day in (dt.date(2026, 3, 8), dt.date(2026, 3, 9)):
            instance.report_runless_asset_event(
                dg.AssetMaterialization(COLD_TIMESERIES, partition=str(site_day_key("site-a", day)))
            )
        assert conditions.unverified_archives(instance, hot, ["site-a"], now_ms, 6.0, set()) == []  # type: ignore[arg-type]
        assert hot.calls == []
