"""Automation settings: sync cadence, nightly times and run retention, validated with the variable named."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from bv_pipeline.config import AutomationSettings, ConfigError, Settings
from bv_pipeline.definitions import build_definitions
from bv_pipeline.resources.wiring import build_resources


def test_defaults() -> None:
    auto = Settings.from_env({}).automation
    assert auto == AutomationSettings()
    assert auto.sync_interval_seconds == 300
    assert (auto.run_retention_days, auto.failed_run_retention_days) == (7, 30)
    assert AutomationSettings.cron(auto.archive_time_utc) == "0 2 * * *"
    assert AutomationSettings.cron(auto.compaction_time_utc) == "30 3 * * *"


def test_settings_reach_the_sensor_and_schedules(tmp_path: Path) -> None:
    env = {
        "BV_SYNC_INTERVAL_SECONDS": "120",
        "BV_ARCHIVE_TIME": "01:15",
        "BV_COMPACTION_TIME": "05:00",
        "BV_RUN_RETENTION_TIME": "06:45",
    }
    defs = build_definitions(Settings.from_env({**env, "BV_DATA_DIR": str(tmp_path)}))
    assert defs.get_sensor_def("ace_sync_sensor").minimum_interval_seconds == 120
    assert defs.get_schedule_def("nightly_archive_schedule").cron_schedule == "15 1 * * *"
    assert defs.get_schedule_def("rollup_compaction_schedule").cron_schedule == "0 5 * * *"
    assert defs.get_schedule_def("dagster_run_retention_schedule").cron_schedule == "45 6 * * *"


def test_live_sync_settings_reach_the_run_and_the_sensor(tmp_path: Path) -> None:
    env = {"BV_SYNC_WORKERS": "7", "BV_SYNC_SITES_PER_RUN": "25", "BV_SYNC_INTERVAL_SECONDS": "120"}
    settings = Settings.from_env({**env, "BV_DATA_DIR": str(tmp_path)})
    assert (settings.automation.sync_workers, settings.automation.sync_sites_per_run) == (7, 25)
    policy = build_resources(settings)["policy"]
    assert (policy.sync_workers, policy.live_site_budget_seconds) == (7, 120)
    sensor = build_definitions(settings).get_sensor_def("ace_sync_sensor")
    assert "25 configured sites" in (sensor.description or "")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"BV_SYNC_INTERVAL_SECONDS": "1"}, "BV_SYNC_INTERVAL_SECONDS"),
        ({"BV_SYNC_INTERVAL_SECONDS": "5m"}, "BV_SYNC_INTERVAL_SECONDS"),
        ({"BV_ARCHIVE_TIME": "2am"}, "BV_ARCHIVE_TIME"),
        ({"BV_ARCHIVE_TIME": "24:00"}, "BV_ARCHIVE_TIME"),
        ({"BV_COMPACTION_TIME": "2:00"}, "BV_COMPACTION_TIME"),
        ({"BV_COMPACTION_TIME": "02:00"}, "BV_COMPACTION_TIME"),  # same as the archive
        ({"BV_RUN_RETENTION_TIME": "04:60"}, "BV_RUN_RETENTION_TIME"),
        ({"BV_RUN_RETENTION_DAYS": "0"}, "BV_RUN_RETENTION_DAYS"),
        ({"BV_RUN_RETENTION_DAYS": "90"}, "BV_FAILED_RUN_RETENTION_DAYS"),  # failures kept at least as long
        ({"BV_FAILED_RUN_RETENTION_DAYS": "x"}, "BV_FAILED_RUN_RETENTION_DAYS"),
        ({"BV_SYNC_WORKERS": "0"}, "BV_SYNC_WORKERS"),
        ({"BV_SYNC_WORKERS": "four"}, "BV_SYNC_WORKERS"),
        ({"BV_SYNC_SITES_PER_RUN": "0"}, "BV_SYNC_SITES_PER_RUN"),
        ({"BV_SYNC_SITES_PER_RUN": "20000"}, "BV_SYNC_SITES_PER_RUN"),
    ],
)
def test_invalid_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


def test_times_parse() -> None:
    assert Settings.from_env({"BV_ARCHIVE_TIME": "23:59"}).automation.archive_time_utc == dt.time(23, 59)
