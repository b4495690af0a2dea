"""Settings read from the environment, validated once at start-up.

Every variable is documented in the README. A variable that is set but invalid raises ``ConfigError`` naming the
variable; unset variables fall back to the embedded defaults (simulated ACE, SQLite, local cold directory).
Nothing here runs at import time: callers call ``Settings.from_env()``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

SITE_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

D1_VARS = ("CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_TOKEN", "D1_DATABASE_ID")
R2_VARS = ("R2_ENDPOINT_URL", "R2_BUCKET", "R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY")


class ConfigError(ValueError):
    """A configuration variable is set to a value we cannot use."""


def validate_site_name(name: str, *, variable: str = "site") -> str:
    if not SITE_SLUG.fullmatch(name):
        raise ConfigError(
            f"{variable}: site name {name!r} is not a slug (lowercase letters, digits, '-' and '_', "
            "starting with a letter or digit, at most 63 characters)"
        )
    return name


def _int(
    env: Mapping[str, str], name: str, default: int, *, minimum: int = 1, maximum: int | None = None
) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigError(f"{name}={raw!r} must be {bound}")
    return value


def _url(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    parsed = urlparse(raw)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{name}={raw!r} is not an http(s) URL")
    return raw.rstrip("/")


def _all_or_none(env: Mapping[str, str], names: tuple[str, ...], what: str) -> bool:
    present = [n for n in names if env.get(n, "").strip()]
    if present and len(present) != len(names):
        missing = [n for n in names if n not in present]
        raise ConfigError(
            f"{what} is half configured: {', '.join(present)} set but {', '.join(missing)} missing"
        )
    return bool(present)


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
    ace_requests_per_minute: int = 600
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
    extra: dict[str, str] = field(default_factory=dict)
    automation: AutomationSettings = field(default_factory=lambda: AutomationSettings())

    @property
    def hot_db_path(self) -> Path:
        return self.data_dir / "hot.sqlite3"

    @property
    def cold_dir(self) -> Path:
        return self.data_dir / "cold"

    @property
    def simulated(self) -> bool:
        return self.ace_api_base is None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        ace_base = _url(env, "ACE_API_BASE")
        ace_key = env.get("ACE_API_KEY", "").strip()
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

        hot_databases = env.get("BV_HOT_DATABASES", "").strip() or "single"
        hot_site_groups = env.get("BV_HOT_SITE_GROUPS", "").strip()
        try:
            from bv_pipeline.resources.hot_store_routing import HotDatabases

            HotDatabases.parse(hot_databases, hot_site_groups)
        except ValueError as exc:
            raise ConfigError(f"BV_HOT_DATABASES / BV_HOT_SITE_GROUPS: {exc}") from None
        # Per-site D1 databases are looked up by name or created, so no database id is configured.
        d1_vars = D1_VARS if hot_databases == "single" else tuple(v for v in D1_VARS if v != "D1_DATABASE_ID")
        use_d1 = _all_or_none(env, d1_vars, "D1")
        use_r2 = _all_or_none(env, R2_VARS, "R2")
        if use_r2:
            _url(env, "R2_ENDPOINT_URL")

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

        return cls(
            ace_api_base=ace_base,
            ace_api_key_set=bool(ace_key),
            sites=sites,
            data_dir=Path(env.get("BV_DATA_DIR", "").strip() or ".bv_data"),
            hot_storage_days=_int(env, "HOT_STORAGE_DAYS", 20, maximum=3650),
            start_date=start,
            sync_lookback_minutes=_int(env, "BV_SYNC_LOOKBACK_MINUTES", 10, minimum=0, maximum=24 * 60),
            sync_chunk_minutes=_int(env, "BV_SYNC_CHUNK_MINUTES", 60, minimum=5, maximum=24 * 60),
            ace_requests_per_minute=_int(env, "ACE_REQUESTS_PER_MINUTE", 600, maximum=100_000),
            sim_points=_int(env, "BV_SIM_POINTS", 300, maximum=100_000),
            sim_seed=_int(env, "BV_SIM_SEED", 42, minimum=0),
            use_d1=use_d1,
            use_r2=use_r2,
            d1_base_url_set=bool(_url(env, "CLOUDFLARE_BASE_URL")),
            r2_bucket=env.get("R2_BUCKET", "").strip() or None,
            hot_databases=hot_databases,
            hot_site_groups=hot_site_groups,
            api_tokens=tokens,
            allowed_origins=origins,
            automation=AutomationSettings.from_env(env),
        )


# -- Automation: when Dagster does things, and how long it keeps its own run history ---------------------------


def _utc_time(env: Mapping[str, str], name: str, default: dt.time) -> dt.time:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not re.fullmatch(r"\d{2}:\d{2}", raw):
        raise ConfigError(f"{name}={raw!r} is not a UTC time of day like 02:00")
    try:
        return dt.time.fromisoformat(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid UTC time of day (00:00 to 23:59)") from None


@dataclass(frozen=True)
class AutomationSettings:
    sync_interval_seconds: int = 300
    archive_time_utc: dt.time = dt.time(2, 0)
    compaction_time_utc: dt.time = dt.time(3, 30)
    run_retention_time_utc: dt.time = dt.time(4, 30)
    run_retention_days: int = 7
    failed_run_retention_days: int = 30

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AutomationSettings:
        settings = cls(
            sync_interval_seconds=_int(env, "BV_SYNC_INTERVAL_SECONDS", 300, minimum=5, maximum=3600),
            archive_time_utc=_utc_time(env, "BV_ARCHIVE_TIME", dt.time(2, 0)),
            compaction_time_utc=_utc_time(env, "BV_COMPACTION_TIME", dt.time(3, 30)),
            run_retention_time_utc=_utc_time(env, "BV_RUN_RETENTION_TIME", dt.time(4, 30)),
            run_retention_days=_int(env, "BV_RUN_RETENTION_DAYS", 7, minimum=1, maximum=3650),
            failed_run_retention_days=_int(env, "BV_FAILED_RUN_RETENTION_DAYS", 30, minimum=1, maximum=3650),
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
