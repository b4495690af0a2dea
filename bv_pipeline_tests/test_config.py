"""Settings: defaults, every variable parsed, invalid values named in the error."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from bv_pipeline.config import ConfigError, Settings, validate_site_name


def test_defaults_are_the_embedded_stack() -> None:
    s = Settings.from_env({})
    assert s.simulated and not s.use_d1 and not s.use_r2
    assert s.sites == ("demo",)
    assert s.data_dir == Path(".bv_data") and s.hot_db_path == Path(".bv_data/hot.sqlite3")
    assert s.hot_storage_days == 20 and s.sync_lookback_minutes == 10


def test_every_variable_is_read() -> None:
    env = {
        "ACE_API_BASE": "https://flightdeck.example/api/",
        "ACE_API_KEY": "k",
        "BV_SITES": "site-a, site_b,site-a",
        "BV_DATA_DIR": "/tmp/x",
        "HOT_STORAGE_DAYS": "7",
        "BV_START_DATE": "2024-02-01",
        "BV_SYNC_LOOKBACK_MINUTES": "15",
        "BV_SYNC_CHUNK_MINUTES": "30",
        "ACE_REQUESTS_PER_MINUTE": "120",
        "CLOUDFLARE_ACCOUNT_ID": "a",
        "CLOUDFLARE_API_TOKEN": "t",
        "D1_DATABASE_ID": "d",
        "R2_ENDPOINT_URL": "https://acct.r2.cloudflarestorage.com",
        "R2_BUCKET": "bucket-b",
        "R2_ACCESS_KEY_ID": "k",
        "R2_SECRET_ACCESS_KEY": "s",
        "BV_API_TOKENS": "0123456789abcdef,fedcba9876543210",
        "BV_ALLOWED_ORIGINS": "https://charts.example.com",
    }
    s = Settings.from_env(env)
    assert s.ace_api_base == "https://flightdeck.example/api" and not s.simulated
    assert s.sites == ("site-a", "site_b")
    assert s.hot_storage_days == 7 and s.start_date == dt.date(2024, 2, 1)
    assert s.sync_lookback_minutes == 15 and s.sync_chunk_minutes == 30 and s.ace_requests_per_minute == 120
    assert s.use_d1 and s.use_r2 and s.r2_bucket == "bucket-b"
    assert s.api_tokens == ("0123456789abcdef", "fedcba9876543210")
    assert s.allowed_origins == ("https://charts.example.com",)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"HOT_STORAGE_DAYS": "twenty"}, "HOT_STORAGE_DAYS"),
        ({"HOT_STORAGE_DAYS": "0"}, "HOT_STORAGE_DAYS"),
        ({"BV_SITES": "Site A"}, "BV_SITES"),
        ({"BV_SITES": "a|b"}, "BV_SITES"),
        ({"BV_SITES": " , "}, "BV_SITES"),
        ({"ACE_API_BASE": "flightdeck"}, "ACE_API_BASE"),
        ({"ACE_API_BASE": "https://x/api"}, "ACE_API_KEY"),
        ({"BV_START_DATE": "2024-13-01"}, "BV_START_DATE"),
        ({"R2_BUCKET": "b"}, "R2_ENDPOINT_URL"),
        ({"CLOUDFLARE_ACCOUNT_ID": "a"}, "D1_DATABASE_ID"),
        ({"BV_API_TOKENS": "short"}, "BV_API_TOKENS"),
        ({"BV_ALLOWED_ORIGINS": "charts.example.com"}, "BV_ALLOWED_ORIGINS"),
        ({"CLOUDFLARE_BASE_URL": "nope"}, "CLOUDFLARE_BASE_URL"),
    ],
)
def test_invalid_values_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        Settings.from_env(env)


@pytest.mark.parametrize("name", ["../etc", "", "UPPER", "a,b", "x" * 64, "-lead", "with space", "a/b"])
def test_site_names_must_be_slugs(name: str) -> None:
    with pytest.raises(ConfigError):
        validate_site_name(name)


# ---- validation added with alerting and check-config ---------------------------------------------------------


def test_alert_and_api_variables_are_read(tmp_path: Path) -> None:
    env = {
        "BV_ALERT_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/xyz",
        "BV_ALERT_FORMAT": "JSON",
        "BV_ALERT_STALE_MINUTES": "45",
        "BV_ALERT_HOT_DB_MB": "9000",
        "BV_ALERT_ARCHIVE_GRACE_HOURS": "3",
        "BV_ALERT_ACE_AUTH_FAILURES": "5",
        "BV_API_MAX_POINTS": "50",
        "BV_API_SAMPLE_BUDGET": "1000",
        "BV_API_RATE_PER_S": "2.5",
        "BV_API_RATE_BURST": "10",
        "BV_API_COLD_FETCH_THREADS": "32",
        "BV_API_COLD_CACHE_MIB": "0",
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    s = Settings.from_env(env)
    assert s.alert_webhook_url == "https://hooks.slack.com/services/T0/B0/xyz" and s.alert_format == "json"
    assert (s.alert_stale_minutes, s.alert_hot_db_mb, s.alert_archive_grace_hours) == (45, 9000, 3)
    assert s.alert_ace_auth_failures == 5
    assert (s.api_max_points, s.api_sample_budget, s.api_rate_per_s, s.api_rate_burst) == (50, 1000, 2.5, 10)
    assert (s.api_cold_fetch_threads, s.api_cold_cache_mib) == (32, 0)
    assert s.dagster_home == tmp_path / "dagster_home"


R2_OK = {
    "R2_ENDPOINT_URL": "https://acct.r2.cloudflarestorage.com",
    "R2_ACCESS_KEY_ID": "k",
    "R2_SECRET_ACCESS_KEY": "s",
}


@pytest.mark.parametrize(
    "bucket",
    ["ab", "My-Bucket", "under_score", "-lead", "trail-", "a..b", "192.168.1.10", "xn--abc", "x" * 64],
)
def test_r2_bucket_follows_s3_naming_rules(bucket: str) -> None:
    with pytest.raises(ConfigError, match="R2_BUCKET"):
        Settings.from_env({**R2_OK, "R2_BUCKET": bucket})


@pytest.mark.parametrize("bucket", ["ace-timeseries", "abc", "a.b-c.d1", "x" * 63])
def test_valid_bucket_names_pass(bucket: str) -> None:
    assert Settings.from_env({**R2_OK, "R2_BUCKET": bucket}).r2_bucket == bucket


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("key\n", "line break"),
        ("ke\r\ny", "line break"),
        ("kéy", "non-ASCII"),
        ("key with space", "non-ASCII, space"),
        ("\u201ckey\u201d", "non-ASCII"),
    ],
)
def test_ace_api_key_must_be_printable_ascii(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"ACE_API_KEY contains .*{message}") as exc:
        Settings.from_env({"ACE_API_BASE": "https://x/api", "ACE_API_KEY": value})
    assert value.strip() not in str(exc.value)  # a secret is never echoed


def test_r2_and_d1_secrets_are_checked_too() -> None:
    with pytest.raises(ConfigError, match="R2_SECRET_ACCESS_KEY"):
        Settings.from_env({**R2_OK, "R2_BUCKET": "bucket", "R2_SECRET_ACCESS_KEY": "s\n"})
    with pytest.raises(ConfigError, match="CLOUDFLARE_API_TOKEN"):
        Settings.from_env(
            {"CLOUDFLARE_ACCOUNT_ID": "a", "D1_DATABASE_ID": "d", "CLOUDFLARE_API_TOKEN": "tök"}
        )


def test_data_dir_must_not_be_a_file(tmp_path: Path) -> None:
    a_file = tmp_path / "hot.sqlite3"
    a_file.write_bytes(b"")
    with pytest.raises(ConfigError, match=r"BV_DATA_DIR=.*not a directory"):
        Settings.from_env({"BV_DATA_DIR": str(a_file)})
    assert Settings.from_env({"BV_DATA_DIR": str(tmp_path / "new")}).data_dir == tmp_path / "new"


def test_start_date_in_the_future() -> None:
    today = dt.date(2026, 12, 1)
    with pytest.raises(ConfigError, match="BV_START_DATE='2026-12-02' is in the future"):
        Settings.from_env({"BV_START_DATE": "2026-12-02"}, today=today)
    assert Settings.from_env({"BV_START_DATE": "2026-12-01"}, today=today).start_date == today
    with pytest.raises(ConfigError, match="BV_START_DATE"):
        Settings.from_env({"BV_START_DATE": "2999-01-01"})  # against the real clock


def test_dagster_home_must_be_absolute(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"DAGSTER_HOME='\.dagster_home' must be an absolute path"):
        Settings.from_env({"DAGSTER_HOME": ".dagster_home"})
    a_file = tmp_path / "f"
    a_file.write_bytes(b"")
    with pytest.raises(ConfigError, match="DAGSTER_HOME"):
        Settings.from_env({"DAGSTER_HOME": str(a_file)})


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"BV_ALERT_WEBHOOK_URL": "hooks.slack.com/services/x"}, "BV_ALERT_WEBHOOK_URL"),
        ({"BV_ALERT_FORMAT": "teams"}, "BV_ALERT_FORMAT"),
        ({"BV_ALERT_STALE_MINUTES": "1"}, "BV_ALERT_STALE_MINUTES"),
        ({"BV_ALERT_HOT_DB_MB": "lots"}, "BV_ALERT_HOT_DB_MB"),
        ({"BV_ALERT_ARCHIVE_GRACE_HOURS": "0"}, "BV_ALERT_ARCHIVE_GRACE_HOURS"),
        ({"BV_ALERT_ACE_AUTH_FAILURES": "0"}, "BV_ALERT_ACE_AUTH_FAILURES"),
        ({"BV_API_MAX_POINTS": "0"}, "BV_API_MAX_POINTS"),
        ({"BV_API_SAMPLE_BUDGET": "many"}, "BV_API_SAMPLE_BUDGET"),
        ({"BV_API_RATE_PER_S": "nan"}, "BV_API_RATE_PER_S"),
        ({"BV_API_RATE_BURST": "-1"}, "BV_API_RATE_BURST"),
        ({"BV_API_COLD_FETCH_THREADS": "257"}, "BV_API_COLD_FETCH_THREADS"),
        ({"BV_API_COLD_CACHE_MIB": "-5"}, "BV_API_COLD_CACHE_MIB"),
    ],
)
def test_alert_and_api_values_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BV_API_RATE_PER_S", "fast"),
        ("BV_API_COLD_CACHE_MIB", "-1"),
        ("BV_ALERT_WEBHOOK_URL", "slack"),
        ("DAGSTER_HOME", "relative/home"),
        ("PROMETHEUS_MULTIPROC_DIR", "/nonexistent/metrics"),
    ],
)
def test_check_config_checks_what_run_and_serve_api_read(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bv_pipeline.runner import check_config_main

    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exc:
        check_config_main([])
    assert exc.value.code == 2
    assert f"configuration error: {name}" in capsys.readouterr().err


def test_check_config_prints_api_and_alert_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from bv_pipeline.runner import check_config_main

    monkeypatch.setenv("BV_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BV_ALERT_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/secret")
    monkeypatch.setenv("BV_ALERT_FORMAT", "slack")
    assert check_config_main([]) == 0
    out = capsys.readouterr().out
    assert "read API: 0 token(s), 100 points/query" in out and "alerts: webhook (slack)" in out
    assert "secret" not in out  # the webhook URL is a credential


def test_archive_alert_is_due_a_grace_period_after_the_archive_time() -> None:
    from bv_pipeline.resources.wiring import build_alerting_resource

    assert build_alerting_resource(Settings.from_env({})).archive_due_hours == 2 + 4
    late = Settings.from_env({"BV_ARCHIVE_TIME": "23:30", "BV_ALERT_ARCHIVE_GRACE_HOURS": "2"})
    assert build_alerting_resource(late).archive_due_hours == 23.5 + 2
