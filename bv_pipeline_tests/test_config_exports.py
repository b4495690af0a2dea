"""Export settings: defaults, validation naming the variable, and `bv-pipeline run` pointing the API at Dagster."""

from __future__ import annotations

import pytest

from bv_pipeline.api.web.config import ApiConfig
from bv_pipeline.config import ConfigError, Settings
from bv_pipeline.runner import point_exports_at_webserver


def test_defaults_work_with_bv_pipeline_run() -> None:
    s = Settings.from_env({})
    assert s.dagster_graphql_url == "http://127.0.0.1:3000/graphql"  # `bv-pipeline run`'s webserver
    assert (s.export_ttl_hours, s.export_max_active_per_token, s.export_max_samples) == (168, 2, 100_000_000)
    env: dict[str, str] = {}
    point_exports_at_webserver(env, "0.0.0.0", 3100)
    assert env == {"BV_DAGSTER_GRAPHQL_URL": "http://0.0.0.0:3100/graphql"}
    explicit = {"BV_DAGSTER_GRAPHQL_URL": "https://dagster.example.com/graphql"}
    point_exports_at_webserver(explicit, "127.0.0.1", 3000)
    assert explicit["BV_DAGSTER_GRAPHQL_URL"] == "https://dagster.example.com/graphql"


def test_settings_reach_the_api_config() -> None:
    s = Settings.from_env(
        {
            "BV_DAGSTER_GRAPHQL_URL": "http://dagster:3000/graphql",
            "BV_EXPORT_TTL_HOURS": "24",
            "BV_EXPORT_MAX_ACTIVE_PER_TOKEN": "5",
            "BV_EXPORT_MAX_SAMPLES": "1000000",
        }
    )
    cfg = ApiConfig.from_settings(s)
    assert cfg.dagster_graphql_url == "http://dagster:3000/graphql"
    assert (cfg.export_ttl_hours, cfg.export_max_active_per_token, cfg.export_max_samples) == (
        24,
        5,
        1_000_000,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BV_DAGSTER_GRAPHQL_URL", "localhost:3000"),
        ("BV_EXPORT_TTL_HOURS", "0"),
        ("BV_EXPORT_TTL_HOURS", "a week"),
        ("BV_EXPORT_MAX_ACTIVE_PER_TOKEN", "-1"),
        ("BV_EXPORT_MAX_SAMPLES", "1e9"),
    ],
)
def test_invalid_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})
