"""The alert sensors are part of the code location, on by default, and the webhook comes from Settings."""

from __future__ import annotations

import dagster as dg

from bv_pipeline.config import Settings
from bv_pipeline.definitions import build_definitions
from bv_pipeline.resources.wiring import build_resources

ALERT_SENSORS = {
    "run_failure_alert_sensor",
    "run_recovery_alert_sensor",
    "hot_staleness_alert_sensor",
    "hot_db_size_alert_sensor",
    "archive_verification_alert_sensor",
    "backfill_alert_sensor",
    "ace_auth_alert_sensor",
}


def test_alert_sensors_are_defined_and_running_by_default() -> None:
    defs = build_definitions(Settings())
    dg.Definitions.validate_loadable(defs)
    sensors = {s.name: s for s in defs.sensors or []}
    assert sensors.keys() >= ALERT_SENSORS
    for name in ALERT_SENSORS:
        assert sensors[name].default_status == dg.DefaultSensorStatus.RUNNING, name


def test_alerting_resource_from_settings() -> None:
    quiet = build_resources(Settings())["alerting"]
    assert quiet.webhook_url is None and quiet.sender() is None
    settings = Settings.from_env(
        {"BV_ALERT_WEBHOOK_URL": "https://alerts.example.com/hook", "BV_ALERT_STALE_MINUTES": "30"}
    )
    alerting = build_resources(settings)["alerting"]
    # The URL is a secret: an EnvVar resolved at run time, not a string baked into the definitions.
    assert (
        isinstance(alerting.webhook_url, dg.EnvVar)
        and alerting.webhook_url.env_var_name == "BV_ALERT_WEBHOOK_URL"
    )
    assert alerting.stale_minutes == 30
