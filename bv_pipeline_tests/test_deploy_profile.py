"""The shipped Dagster configuration: the production profile differs from the single-machine one only in storage,
both validate against Dagster's instance schema, and ``bv-pipeline run`` never overwrites an operator's file."""

from __future__ import annotations

from pathlib import Path

import yaml
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config_schema

from bv_pipeline.runner import prepare_dagster_home

ROOT = Path(__file__).resolve().parent.parent


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_production_profile_is_the_local_one_plus_postgres_storage() -> None:
    local, prod = _load(ROOT / "dagster.yaml"), _load(ROOT / "deploy" / "dagster.yaml")
    assert {k: v for k, v in prod.items() if k != "storage"} == local
    db = prod["storage"]["postgres"]["postgres_db"]
    assert db["scheme"] == "postgresql+psycopg2"  # a bare postgresql:// means psycopg 3 under SQLAlchemy 2.1
    assert {v["env"] for k, v in db.items() if isinstance(v, dict)} == {
        "DAGSTER_PG_USERNAME",
        "DAGSTER_PG_PASSWORD",
        "DAGSTER_PG_HOST",
        "DAGSTER_PG_DB",
        "DAGSTER_PG_PORT",
    }
    env_example = (ROOT / "deploy" / "bv-pipeline.env.example").read_text()
    for name in ("DAGSTER_HOME", *(v["env"] for v in db.values() if isinstance(v, dict))):
        assert f"\n{name}=" in env_example


def test_both_profiles_validate_and_monitor_runs() -> None:
    for path in (ROOT / "dagster.yaml", ROOT / "deploy" / "dagster.yaml"):
        config = _load(path)
        result = validate_config(dagster_instance_config_schema(), config)
        assert result.success, (path, [e.message for e in result.errors or []])
        monitoring = config["run_monitoring"]
        assert monitoring["enabled"] is True and monitoring["free_slots_after_run_end_seconds"] > 0


def test_live_sync_keeps_run_slots_whatever_else_is_queued() -> None:
    runs = _load(ROOT / "dagster.yaml")["concurrency"]["runs"]
    limits = {(lim["key"], str(lim.get("value"))): lim["limit"] for lim in runs["tag_concurrency_limits"]}
    others = (
        limits[("dagster/backfill", "None")] + limits[("bv/lane", "batch")] + limits[("bv/export", "None")]
    )
    live = limits[("bv/live-sync", "None")]
    assert live >= 1 and others + live <= runs["max_concurrent_runs"]


def test_run_installs_dagster_yaml_only_when_absent(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _, note = prepare_dagster_home(home)
    assert (home / "dagster.yaml").read_bytes() == (ROOT / "dagster.yaml").read_bytes()
    assert note.startswith("installed")

    edited = (ROOT / "dagster.yaml").read_text() + "\n# operator edit\n"
    (home / "dagster.yaml").write_text(edited)
    _, note = prepare_dagster_home(home)
    assert (home / "dagster.yaml").read_text() == edited
    assert "NOT copied" in note
