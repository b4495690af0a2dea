"""nightly_archive_schedule: 02:00 UTC, yesterday for every registered site."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg

from bv_pipeline.partitions import site_day_key
from bv_pipeline_tests.stack import Stack


def test_nightly_schedule_archives_yesterday_for_every_site(tmp_path: Path) -> None:
    defs = Stack(tmp_path).defs()
    schedule = defs.get_schedule_def("nightly_archive_schedule")
    assert schedule.cron_schedule == "0 2 * * *" and schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "nightly_archive_job"
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("sites", ["site-b", "site-a"])
        ctx = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=dt.datetime(2026, 3, 10, 2, 0, tzinfo=dt.UTC),
            repository_def=defs.get_repository_def(),
        )
        requests = schedule.evaluate_tick(ctx).run_requests or []
    assert [r.partition_key for r in requests] == [
        site_day_key("site-a", dt.date(2026, 3, 9)),
        site_day_key("site-b", dt.date(2026, 3, 9)),
    ]
    assert len({r.run_key for r in requests}) == 2


def test_nightly_schedule_skips_when_no_site_is_registered(tmp_path: Path) -> None:
    defs = Stack(tmp_path).defs()
    schedule = defs.get_schedule_def("nightly_archive_schedule")
    with dg.instance_for_test() as instance:
        ctx = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=dt.datetime(2026, 3, 10, 2, 0, tzinfo=dt.UTC),
            repository_def=defs.get_repository_def(),
        )
        data = schedule.evaluate_tick(ctx)
    assert not data.run_requests and data.skip_message


def test_rollup_compaction_runs_after_archival_for_every_site_with_the_site_tag(tmp_path: Path) -> None:
    # Definitions are resolved inside the instance context: Dagster keeps a process-global reference to the
    # last test instance, and resolving after it closed fails ("undefined DagsterInstance weakref").
    with dg.instance_for_test() as instance:
        defs = Stack(tmp_path).defs()
        schedule = defs.get_schedule_def("rollup_compaction_schedule")
        assert schedule.cron_schedule == "30 3 * * *" and schedule.execution_timezone == "UTC"
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
        assert schedule.job_name == "rollup_compaction_job"
        instance.add_dynamic_partitions("sites", ["site-b", "site-a"])
        ctx = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=dt.datetime(2026, 3, 10, 3, 30, tzinfo=dt.UTC),
            repository_def=defs.get_repository_def(),
        )
        requests = schedule.evaluate_tick(ctx).run_requests or []
    assert [r.partition_key for r in requests] == ["site-a", "site-b"]
    # One compaction per site at a time: dagster.yaml limits this tag per unique value.
    assert [r.tags["bv/rollup-compaction"] for r in requests] == ["site-a", "site-b"]
    assert len({r.run_key for r in requests}) == 2


def test_dagster_yaml_limits_compaction_runs_per_site() -> None:
    import yaml

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "dagster.yaml").read_text())
    limits = config["concurrency"]["runs"]["tag_concurrency_limits"]
    assert {"key": "bv/rollup-compaction", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits


def test_settle_schedule_settles_each_day_once_after_the_delay(tmp_path: Path) -> None:
    with dg.instance_for_test() as instance:
        defs = Stack(tmp_path).defs()  # BV_SETTLE_DELAY_HOURS default: 26
        schedule = defs.get_schedule_def("settle_schedule")
        assert schedule.cron_schedule == "20 * * * *" and schedule.job_name == "settle_job"
        instance.add_dynamic_partitions("sites", ["site-a"])
        keys = []
        for hour in range(48):  # two days of hourly ticks
            tick = dt.datetime(2026, 3, 10, 0, 20, tzinfo=dt.UTC) + dt.timedelta(hours=hour)
            ctx = dg.build_schedule_context(
                instance=instance, scheduled_execution_time=tick, repository_def=defs.get_repository_def()
            )
            keys += [
                (tick, r.partition_key, r.run_key) for r in schedule.evaluate_tick(ctx).run_requests or []
            ]
    # Day D ends at D+1 00:00; 26 h later is D+2 02:00: from the 02:20 tick of 10 March on, 8 March is due, and
    # every tick until the next day's is due repeats it under one run key (Dagster launches a run key once).
    by_run_key: dict[str, list[dt.datetime]] = {}
    for tick, key, run_key in keys:
        by_run_key.setdefault(run_key, []).append(tick)
        assert key == site_day_key("site-a", dt.date.fromisoformat(run_key.rsplit("|", 1)[1]))
    assert sorted(by_run_key) == [f"settle|site-a|2026-03-0{d}" for d in (7, 8, 9)]
    assert by_run_key["settle|site-a|2026-03-08"][0] == dt.datetime(2026, 3, 10, 2, 20, tzinfo=dt.UTC)
    assert len(by_run_key["settle|site-a|2026-03-08"]) == 24
