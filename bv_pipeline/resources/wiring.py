"""Build the resource set from validated ``Settings``: embedded defaults unless a backend is fully configured.

Secrets are passed as ``EnvVar`` so they are resolved at run time, never baked into the definitions.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from bv_pipeline.config import Settings
from bv_pipeline.resources.ace_resource import AceResource
from bv_pipeline.resources.alerting import AlertingResource
from bv_pipeline.resources.clock import ClockResource
from bv_pipeline.resources.cold_store import ColdStoreResource
from bv_pipeline.resources.hot_store import D1HotStoreResource, HotStoreResource, SqliteHotStoreResource
from bv_pipeline.resources.policy import PolicyResource


def build_resources(settings: Settings) -> dict[str, Any]:
    # One ACE budget for every process: PostgreSQL when several boxes share it, else a SQLite file on this box.
    # The URL may carry a password, so it is resolved at run time like the other credentials.
    ace_rate: dict[str, Any] = {
        "requests_per_minute": settings.ace_requests_per_minute,
        "batch_share": settings.ace_batch_share,
        "rate_limit_url": dg.EnvVar("BV_ACE_RATE_LIMIT_URL") if settings.ace_rate_limit_url_set else None,
        "rate_limit_path": str(settings.ace_rate_limit_path.resolve()),
    }
    if settings.simulated:
        ace = AceResource(
            base_url=None,
            api_key=None,
            sim_sites=list(settings.sites),
            sim_points=settings.sim_points,
            sim_seed=settings.sim_seed,
            **ace_rate,
        )
    else:
        ace = AceResource(base_url=dg.EnvVar("ACE_API_BASE"), api_key=dg.EnvVar("ACE_API_KEY"), **ace_rate)
    hot: HotStoreResource
    if settings.use_d1:
        hot = D1HotStoreResource(
            account_id=dg.EnvVar("CLOUDFLARE_ACCOUNT_ID"),
            database_id=dg.EnvVar("D1_DATABASE_ID") if settings.hot_databases == "single" else None,
            api_token=dg.EnvVar("CLOUDFLARE_API_TOKEN"),
            base_url=dg.EnvVar("CLOUDFLARE_BASE_URL") if settings.d1_base_url_set else None,
            databases=settings.hot_databases,
            site_groups=settings.hot_site_groups,
        )
    else:
        hot = SqliteHotStoreResource(
            sqlite_path=str(settings.hot_db_path.resolve()),
            databases=settings.hot_databases,
            site_groups=settings.hot_site_groups,
        )
    if settings.use_r2:
        cold = ColdStoreResource(
            r2_endpoint_url=dg.EnvVar("R2_ENDPOINT_URL"),
            r2_bucket=dg.EnvVar("R2_BUCKET"),
            r2_access_key_id=dg.EnvVar("R2_ACCESS_KEY_ID"),
            r2_secret_access_key=dg.EnvVar("R2_SECRET_ACCESS_KEY"),
        )
    else:
        cold = ColdStoreResource(local_dir=str(settings.cold_dir.resolve()))
    policy = PolicyResource(
        hot_storage_days=settings.hot_storage_days,
        sync_lookback_minutes=settings.sync_lookback_minutes,
        sync_chunk_minutes=settings.sync_chunk_minutes,
        max_catchup_days=settings.hot_storage_days,
        sync_workers=settings.automation.sync_workers,
        live_site_budget_seconds=settings.automation.sync_interval_seconds,
        settle_delay_hours=settings.settle_delay_hours,
        settle_warn_late_samples=settings.settle_warn_late_samples,
    )
    return {
        "ace": ace,
        "hot_store": hot,
        "cold_store": cold,
        "clock": ClockResource(),
        "policy": policy,
        "alerting": build_alerting_resource(settings),
    }


def build_alerting_resource(settings: Settings) -> AlertingResource:
    return AlertingResource(
        # A Slack webhook URL is a secret: resolved at run time, like the other credentials.
        webhook_url=dg.EnvVar("BV_ALERT_WEBHOOK_URL") if settings.alert_webhook_url else None,
        message_format=settings.alert_format,
        stale_minutes=settings.alert_stale_minutes,
        hot_db_max_mb=settings.alert_hot_db_mb,
        archive_due_hours=_archive_due_hours(settings),
        ace_auth_failures=settings.alert_ace_auth_failures,
    )


def _archive_due_hours(settings: Settings) -> float:
    """Hours after day D's end: its nightly archive runs on D+1 at BV_ARCHIVE_TIME and is due a grace later."""
    t = settings.automation.archive_time_utc
    return t.hour + t.minute / 60 + settings.alert_archive_grace_hours
