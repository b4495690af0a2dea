"""Settings read from the environment, validated once at start-up.

Every variable is documented in the README. A variable that is set but invalid raises ``ConfigError`` naming the
variable; unset variables fall back to the embedded defaults (simulated ACE, SQLite, local cold directory).
Nothing here runs at import time: callers call ``Settings.from_env()``.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from bv_pipeline.config_values import (
    ConfigError,
    all_or_none,
    bool_var,
    dagster_home_var,
    data_dir_var,
    existing_dir_var,
    float_var,
    int_var,
    postgres_url_var,
    secret_var,
    share_var,
    url_var,
    utc_time_var,
    validate_bucket_name,
    validate_site_name,
)

D1_VARS = ("CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_TOKEN", "D1_DATABASE_ID")
R2_VARS = ("R2_ENDPOINT_URL", "R2_BUCKET", "R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY")
ALERT_FORMATS = ("auto", "slack", "json")
DEFAULT_DAGSTER_GRAPHQL_URL = "http://127.0.0.1:3000/graphql"  # what `bv-pipeline run` serves by default


def _check_shared_backends(use_d1: bool, use_r2: bool, use_shared_rate_limit: bool) -> None:
    """BV_REQUIRE_SHARED_BACKENDS: on a machine of a multi-machine deployment the embedded defaults would put the
    hot tier, the cold tier and the archive manifest on this machine's disk, where no other machine sees them
    (and retention would delete hot days "verified" only there). Refuse to start instead of falling back."""
    # ACE's shared rate limit too: its one-box store is a SQLite file under BV_DATA_DIR, which each machine
    # would keep on its own disk, so every machine would get the whole budget.
    needed = (
        ("D1 (CLOUDFLARE_*)", use_d1),
        ("R2 (R2_*)", use_r2),
        ("BV_ACE_RATE_LIMIT_URL", use_shared_rate_limit),
    )
    missing = [what for what, ok in needed if not ok]
    if missing:
        raise ConfigError(
            f"BV_REQUIRE_SHARED_BACKENDS is true but {' and '.join(missing)} not configured: this process would "
            f"keep data under BV_DATA_DIR on its own disk"
        )


@dataclass(frozen=True)
class Settings:
    ace_api_base: str | None = None
    ace_api_key_set: bool = False
    sites: tuple[str, ...] = ("demo",)
    data_dir: Path = Path(".bv_data")
    hot_storage_days: int = 20
    start_date: dt.date = dt.date(2025, 1, 1)
    sync_lookback_minutes: int = 10
    sync_chunk_minutes: int = 60
    settle_delay_hours: int = 26
    settle_warn_late_samples: int = 100
    ace_requests_per_minute: int = 600
    ace_batch_share: float = 0.5  # BV_ACE_BATCH_SHARE: the most of ACE's rate batch runs may use
    ace_rate_limit_url_set: bool = False  # BV_ACE_RATE_LIMIT_URL: PostgreSQL shared by several boxes
    sim_points: int = 300
    sim_seed: int = 42
    use_d1: bool = False
    use_r2: bool = False
    d1_base_url_set: bool = False
    r2_bucket: str | None = None
    hot_databases: str = "single"  # BV_HOT_DATABASES: single | per-site
    hot_site_groups: str = ""  # BV_HOT_SITE_GROUPS: group:site,site;group2:site (per-site only)
    api_tokens: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    dagster_home: Path | None = None  # None: bv-pipeline run uses ./.dagster_home
    # Read API limits (ApiConfig.from_settings copies them).
    api_max_points: int = 100
    api_sample_budget: int = 2_000_000
    api_rate_per_s: float = 20.0
    api_rate_burst: int = 60
    api_cold_fetch_threads: int = 16
    api_cold_cache_mib: int = 256
    # Alerting (README "Alerts and monitoring").
    alert_webhook_url: str | None = None
    alert_format: str = "auto"
    alert_stale_minutes: int = 60
    alert_hot_db_mb: int = 8000
    alert_archive_grace_hours: int = 4
    alert_ace_auth_failures: int = 3
    metrics_multiproc_dir: Path | None = None  # PROMETHEUS_MULTIPROC_DIR: read API metrics across workers
    # Asynchronous exports: the Dagster webserver's GraphQL endpoint the API launches export runs through.
    dagster_graphql_url: str = DEFAULT_DAGSTER_GRAPHQL_URL
    export_ttl_hours: int = 168
    export_max_active_per_token: int = 2
    export_max_samples: int = 100_000_000
    api_workers: int = 1  # read-API worker processes (BV_API_WORKERS; default: one per CPU core, at most 4)
    api_query_concurrency: int = 2  # queries one API process reads at once (BV_API_QUERY_CONCURRENCY)
    api_answer_cache_mib: int = 64  # answers of fully archived windows, all workers together
    require_shared_backends: bool = False  # BV_REQUIRE_SHARED_BACKENDS: refuse the local-disk defaults
    extra: dict[str, str] = field(default_factory=dict)
    automation: AutomationSettings = field(default_factory=lambda: AutomationSettings())

    @property
    def hot_db_path(self) -> Path:
        return self.data_dir / "hot.sqlite3"

    @property
    def ace_rate_limit_path(self) -> Path:
        """The SQLite file every process on this box shares ACE's rate limit through."""
        return self.data_dir / "ace-rate-limit.sqlite"

    @property
    def cold_dir(self) -> Path:
        return self.data_dir / "cold"

    @property
    def simulated(self) -> bool:
        return self.ace_api_base is None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, today: dt.date | None = None) -> Settings:
        env = os.environ if env is None else env
        ace_base = url_var(env, "ACE_API_BASE")
        ace_key = secret_var(env, "ACE_API_KEY")
        if ace_base and not ace_key:
            raise ConfigError("ACE_API_BASE is set but ACE_API_KEY is empty: the real API needs a key")

        raw_sites = env.get("BV_SITES", "").strip()
        if raw_sites:
            sites = tuple(dict.fromkeys(s.strip() for s in raw_sites.split(",") if s.strip()))
            if not sites:
                raise ConfigError("BV_SITES is set but names no site")
            for s in sites:
                validate_site_name(s, variable="BV_SITES")
        else:
            sites = ("demo",)

        raw_start = env.get("BV_START_DATE", "").strip()
        start = dt.date(2025, 1, 1)
        if raw_start:
            try:
                start = dt.date.fromisoformat(raw_start)
            except ValueError:
                raise ConfigError(f"BV_START_DATE={raw_start!r} is not a YYYY-MM-DD date") from None
            today = today or dt.datetime.now(dt.UTC).date()
            if start > today:
                raise ConfigError(f"BV_START_DATE={raw_start!r} is in the future (today is {today} UTC)")

        hot_databases = env.get("BV_HOT_DATABASES", "").strip() or "single"
        hot_site_groups = env.get("BV_HOT_SITE_GROUPS", "").strip()
        try:
            from bv_pipeline.resources.hot_store_routing import HotDatabases

            HotDatabases.parse(hot_databases, hot_site_groups)
        except ValueError as exc:
            raise ConfigError(f"BV_HOT_DATABASES / BV_HOT_SITE_GROUPS: {exc}") from None
        # Per-site D1 databases are looked up by name or created, so no database id is configured.
        d1_vars = D1_VARS if hot_databases == "single" else tuple(v for v in D1_VARS if v != "D1_DATABASE_ID")
        use_d1 = all_or_none(env, d1_vars, "D1")
        use_r2 = all_or_none(env, R2_VARS, "R2")
        if use_r2:
            url_var(env, "R2_ENDPOINT_URL")
            validate_bucket_name(env["R2_BUCKET"].strip())
            for name in ("R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY"):
                secret_var(env, name)
        if use_d1:
            secret_var(env, "CLOUDFLARE_API_TOKEN")
        require_shared = bool_var(env, "BV_REQUIRE_SHARED_BACKENDS", False)
        if require_shared:
            _check_shared_backends(use_d1, use_r2, postgres_url_var(env, "BV_ACE_RATE_LIMIT_URL"))

        tokens = tuple(t.strip() for t in env.get("BV_API_TOKENS", "").split(",") if t.strip())
        for t in tokens:
            if len(t) < 16:
                raise ConfigError("BV_API_TOKENS: every token must be at least 16 characters")
        origins = tuple(
            o.strip().rstrip("/") for o in env.get("BV_ALLOWED_ORIGINS", "").split(",") if o.strip()
        )
        for o in origins:
            if o == "*":
                continue
            p = urlparse(o)
            if p.scheme not in ("http", "https") or not p.netloc or p.path:
                raise ConfigError(
                    f"BV_ALLOWED_ORIGINS: {o!r} is not an origin like https://charts.example.com"
                )

        alert_format = env.get("BV_ALERT_FORMAT", "").strip().lower() or "auto"
        if alert_format not in ALERT_FORMATS:
            raise ConfigError(f"BV_ALERT_FORMAT={alert_format!r} must be one of {', '.join(ALERT_FORMATS)}")

        return cls(
            ace_api_base=ace_base,
            ace_api_key_set=bool(ace_key),
            sites=sites,
            data_dir=data_dir_var(env),
            hot_storage_days=int_var(env, "HOT_STORAGE_DAYS", 20, maximum=3650),
            start_date=start,
            sync_lookback_minutes=int_var(env, "BV_SYNC_LOOKBACK_MINUTES", 10, minimum=0, maximum=24 * 60),
            sync_chunk_minutes=int_var(env, "BV_SYNC_CHUNK_MINUTES", 60, minimum=5, maximum=24 * 60),
            settle_delay_hours=int_var(env, "BV_SETTLE_DELAY_HOURS", 26, minimum=1, maximum=24 * 30),
            settle_warn_late_samples=int_var(env, "BV_SETTLE_WARN_LATE_SAMPLES", 100, minimum=0),
            ace_requests_per_minute=int_var(env, "ACE_REQUESTS_PER_MINUTE", 600, maximum=100_000),
            ace_batch_share=share_var(env, "BV_ACE_BATCH_SHARE", 0.5),
            ace_rate_limit_url_set=postgres_url_var(env, "BV_ACE_RATE_LIMIT_URL"),
            sim_points=int_var(env, "BV_SIM_POINTS", 300, maximum=100_000),
            sim_seed=int_var(env, "BV_SIM_SEED", 42, minimum=0),
            use_d1=use_d1,
            use_r2=use_r2,
            d1_base_url_set=bool(url_var(env, "CLOUDFLARE_BASE_URL")),
            r2_bucket=env.get("R2_BUCKET", "").strip() or None,
            hot_databases=hot_databases,
            hot_site_groups=hot_site_groups,
            api_tokens=tokens,
            allowed_origins=origins,
            dagster_home=dagster_home_var(env),
            api_max_points=int_var(env, "BV_API_MAX_POINTS", 100),
            api_sample_budget=int_var(env, "BV_API_SAMPLE_BUDGET", 2_000_000),
            api_rate_per_s=float_var(env, "BV_API_RATE_PER_S", 20.0, minimum=0.001),
            api_rate_burst=int_var(env, "BV_API_RATE_BURST", 60),
            api_cold_fetch_threads=int_var(env, "BV_API_COLD_FETCH_THREADS", 16, maximum=256),
            # A local cold directory is read from the kernel's page cache, which every worker shares: there the
            # workers' own caches need to hold little more than parsed footers. Over R2 each miss is a GET.
            api_cold_cache_mib=int_var(
                env, "BV_API_COLD_CACHE_MIB", 256 if use_r2 else 64, minimum=0, maximum=1 << 20
            ),
            alert_webhook_url=url_var(env, "BV_ALERT_WEBHOOK_URL"),
            alert_format=alert_format,
            alert_stale_minutes=int_var(env, "BV_ALERT_STALE_MINUTES", 60, minimum=5, maximum=7 * 24 * 60),
            alert_hot_db_mb=int_var(env, "BV_ALERT_HOT_DB_MB", 8000, maximum=10_000_000),
            alert_archive_grace_hours=int_var(env, "BV_ALERT_ARCHIVE_GRACE_HOURS", 4, maximum=24),
            alert_ace_auth_failures=int_var(env, "BV_ALERT_ACE_AUTH_FAILURES", 3, maximum=100),
            metrics_multiproc_dir=existing_dir_var(env, "PROMETHEUS_MULTIPROC_DIR"),
            api_workers=int_var(env, "BV_API_WORKERS", min(os.cpu_count() or 1, 4), maximum=64),
            # Local stores keep a worker CPU-bound: two queries at once use its core, more only interleave and
            # add per-query buffers. D1 and R2 queries wait on the network, so more run at once there.
            api_query_concurrency=int_var(
                env, "BV_API_QUERY_CONCURRENCY", 4 if use_d1 or use_r2 else 2, maximum=256
            ),
            api_answer_cache_mib=int_var(env, "BV_API_ANSWER_CACHE_MIB", 64, minimum=0, maximum=1 << 20),
            automation=AutomationSettings.from_env(env),
            dagster_graphql_url=url_var(env, "BV_DAGSTER_GRAPHQL_URL") or DEFAULT_DAGSTER_GRAPHQL_URL,
            export_ttl_hours=int_var(env, "BV_EXPORT_TTL_HOURS", 168, maximum=24 * 366),
            export_max_active_per_token=int_var(env, "BV_EXPORT_MAX_ACTIVE_PER_TOKEN", 2, maximum=1000),
            export_max_samples=int_var(env, "BV_EXPORT_MAX_SAMPLES", 100_000_000, maximum=10**12),
            require_shared_backends=require_shared,
        )


# -- Automation: when Dagster does things, and how long it keeps its own run history ---------------------------


@dataclass(frozen=True)
class AutomationSettings:
    sync_interval_seconds: int = 300
    sync_workers: int = 4  # sites synced concurrently by one live-sync run
    sync_sites_per_run: int = 100  # the sensor splits the sites into live-sync runs of at most this many
    archive_time_utc: dt.time = dt.time(2, 0)
    compaction_time_utc: dt.time = dt.time(3, 30)
    run_retention_time_utc: dt.time = dt.time(4, 30)
    run_retention_days: int = 7
    failed_run_retention_days: int = 30

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AutomationSettings:
        settings = cls(
            sync_interval_seconds=int_var(env, "BV_SYNC_INTERVAL_SECONDS", 300, minimum=5, maximum=3600),
            sync_workers=int_var(env, "BV_SYNC_WORKERS", 4, minimum=1, maximum=64),
            sync_sites_per_run=int_var(env, "BV_SYNC_SITES_PER_RUN", 100, minimum=1, maximum=10_000),
            archive_time_utc=utc_time_var(env, "BV_ARCHIVE_TIME", dt.time(2, 0)),
            compaction_time_utc=utc_time_var(env, "BV_COMPACTION_TIME", dt.time(3, 30)),
            run_retention_time_utc=utc_time_var(env, "BV_RUN_RETENTION_TIME", dt.time(4, 30)),
            run_retention_days=int_var(env, "BV_RUN_RETENTION_DAYS", 7, minimum=1, maximum=3650),
            failed_run_retention_days=int_var(
                env, "BV_FAILED_RUN_RETENTION_DAYS", 30, minimum=1, maximum=3650
            ),
        )
        if settings.failed_run_retention_days < settings.run_retention_days:
            raise ConfigError(
                f"BV_FAILED_RUN_RETENTION_DAYS={settings.failed_run_retention_days} must be >= "
                f"BV_RUN_RETENTION_DAYS={settings.run_retention_days}: failures are kept at least as long"
            )
        if settings.compaction_time_utc == settings.archive_time_utc:
            raise ConfigError(
                "BV_COMPACTION_TIME must differ from BV_ARCHIVE_TIME: compaction reads what archival wrote"
            )
        return settings

    @staticmethod
    def cron(at: dt.time) -> str:
        """A daily cron expression for a UTC time of day."""
        return f"{at.minute} {at.hour} * * *"
