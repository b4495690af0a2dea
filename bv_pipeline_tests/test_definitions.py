"""The code location loads, with the asset graph, jobs and automation the README promises."""

from __future__ import annotations

import dagster as dg
import pytest

from bv_pipeline.config import Settings
from bv_pipeline.definitions import build_definitions, defs


def test_default_definitions_load_and_validate(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for var in ("ACE_API_BASE", "BV_SITES", "CLOUDFLARE_ACCOUNT_ID", "R2_BUCKET"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BV_DATA_DIR", str(tmp_path))
    loaded = defs()
    dg.Definitions.validate_loadable(loaded)
    keys = {k.to_user_string() for k in loaded.resolve_all_asset_keys()}
    assert keys == {
        "ace_timeseries",
        "hot_timeseries",
        "cold_timeseries",
        "cold_rollups",
        "hot_retention",
        "cold_rollups_yearly",
        "cold_samples_monthly",
        "cold_settled",
    }
    assert {j.name for j in loaded.jobs or []} == {
        "live_sync_job",
        "hot_sync_job",
        "nightly_archive_job",
        "rollup_compaction_job",
        "rebuild_cache_job",
        "settle_job",
        "dagster_run_retention_job",
        "export_job",
        "export_cleanup_job",
    }
    assert {s.name for s in loaded.schedules or []} == {
        "nightly_archive_schedule",
        "rollup_compaction_schedule",
        "settle_schedule",
        "dagster_run_retention_schedule",
        "export_cleanup_schedule",
    }


def test_invalid_configuration_fails_loading_with_the_variable_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOT_STORAGE_DAYS", "soon")
    with pytest.raises(Exception, match="HOT_STORAGE_DAYS"):
        defs()


def test_ace_calls_share_the_ace_api_pool_and_retry_with_backoff() -> None:
    loaded = build_definitions(Settings())
    for key in ("hot_timeseries", "cold_timeseries", "hot_retention"):
        assert loaded.get_assets_def(key).op.pool == "ace_api", key
    for key in ("hot_timeseries", "cold_timeseries"):
        policy = loaded.get_assets_def(key).op.retry_policy
        assert policy is not None and policy.backoff == dg.Backoff.EXPONENTIAL and policy.max_retries >= 3


def test_yearly_rollups_are_per_site_and_depend_on_the_daily_rollups() -> None:
    loaded = build_definitions(Settings())
    asset = loaded.get_assets_def("cold_rollups_yearly")
    assert isinstance(asset.partitions_def, dg.DynamicPartitionsDefinition)
    assert asset.partitions_def.name == "sites"
    assert dg.AssetKey("cold_rollups") in asset.dependency_keys
    assert asset.op.pool == "rollup_compaction"
    assert [s.name for s in asset.check_specs] == ["yearly_rollups_match_manifest"]


def test_live_sync_runs_in_one_process_outside_the_ace_pool_and_batch_jobs_have_a_lane() -> None:
    loaded = build_definitions(Settings())
    live = loaded.resolve_job_def("live_sync_job")
    assert live.executor_def is dg.in_process_executor
    assert [node.definition.pool for node in live.nodes] == [None]
    assert int(live.tags["dagster/priority"]) > 0 and "bv/live-sync" in live.tags
    for job in loaded.resolve_all_job_defs():
        if job.name in ("live_sync_job", "export_job", "__ASSET_JOB"):
            continue  # export runs are limited by their bv/export tag
        assert job.tags.get("bv/lane") == "batch", job.name
