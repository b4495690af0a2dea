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
        "R2_BUCKET": "b",
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
    assert s.use_d1 and s.use_r2 and s.r2_bucket == "b"
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
