"""Reading one environment variable: parse it, validate it, and raise ``ConfigError`` naming the variable when it
is set but invalid. ``config.Settings`` composes these; they never read the environment themselves."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

SITE_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# S3 bucket naming rules (R2 follows them): 3-63 characters, lowercase letters, digits, '.' and '-', starting and
# ending with a letter or digit, no "..", not an IPv4 address, no reserved prefix or suffix.
S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
S3_BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
S3_BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


class ConfigError(ValueError):
    """A configuration variable is set to a value we cannot use."""


def validate_site_name(name: str, *, variable: str = "site") -> str:
    if not SITE_SLUG.fullmatch(name):
        raise ConfigError(
            f"{variable}: site name {name!r} is not a slug (lowercase letters, digits, '-' and '_', "
            "starting with a letter or digit, at most 63 characters)"
        )
    return name


def int_var(
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


def url_var(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    parsed = urlparse(raw)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{name}={raw!r} is not an http(s) URL")
    return raw.rstrip("/")


def float_var(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{name}={raw!r} must be a number >= {minimum}")
    return value


def share_var(env: Mapping[str, str], name: str, default: float) -> float:
    """A fraction in (0, 1]."""
    value = float_var(env, name, default, minimum=0.0)
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"{name}={env[name].strip()!r} must be a fraction above 0 and at most 1, e.g. 0.5")
    return value


def postgres_url_var(env: Mapping[str, str], name: str) -> bool:
    """Whether a PostgreSQL URL (libpq form, as psycopg2 takes it) is set; its value is never echoed."""
    raw = env.get(name, "").strip()
    if not raw:
        return False
    parsed = urlparse(raw)
    if parsed.scheme not in ("postgresql", "postgres") or not parsed.hostname:
        raise ConfigError(
            f"{name} is not a PostgreSQL URL like postgresql://user:password@host:5432/db "
            "(scheme postgresql:// or postgres://, no +driver suffix)"
        )
    return True


def secret_var(env: Mapping[str, str], name: str) -> str:
    """A credential sent in an HTTP header: printable ASCII only (a pasted newline or a smart quote would only
    fail later, inside a request, with an error that does not name the variable). The value is never echoed."""
    raw = env.get(name, "")
    if not raw.strip():
        return ""
    if any(c in raw for c in "\r\n"):
        raise ConfigError(f"{name} contains a line break (copied with a trailing newline?)")
    # Checked on the raw value: resources read it again through EnvVar, unstripped.
    bad = [c for c in raw if not (0x21 <= ord(c) <= 0x7E)]
    if bad:
        raise ConfigError(f"{name} contains {len(bad)} non-ASCII, space or control character(s)")
    return raw


def validate_bucket_name(name: str, *, variable: str = "R2_BUCKET") -> str:
    ok = (
        S3_BUCKET.fullmatch(name) is not None
        and ".." not in name
        and not re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name)
        and not name.startswith(S3_BUCKET_RESERVED_PREFIXES)
        and not name.endswith(S3_BUCKET_RESERVED_SUFFIXES)
    )
    if not ok:
        raise ConfigError(
            f"{variable}={name!r} is not a valid bucket name (3-63 lowercase letters, digits, '.' or '-', "
            "starting and ending with a letter or digit, not an IP address)"
        )
    return name


def data_dir_var(env: Mapping[str, str]) -> Path:
    path = Path(env.get("BV_DATA_DIR", "").strip() or ".bv_data")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"BV_DATA_DIR={str(path)!r} exists and is not a directory")
    return path


def existing_dir_var(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not Path(raw).is_dir():
        raise ConfigError(f"{name}={raw!r} is not an existing directory")
    return Path(raw)


def dagster_home_var(env: Mapping[str, str]) -> Path | None:
    raw = env.get("DAGSTER_HOME", "").strip()
    if not raw:
        return None
    path = Path(raw)
    if not path.is_absolute():
        raise ConfigError(f"DAGSTER_HOME={raw!r} must be an absolute path (Dagster refuses relative ones)")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"DAGSTER_HOME={raw!r} exists and is not a directory")
    return path


def bool_var(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (true or false)")


def all_or_none(env: Mapping[str, str], names: tuple[str, ...], what: str) -> bool:
    present = [n for n in names if env.get(n, "").strip()]
    if present and len(present) != len(names):
        missing = [n for n in names if n not in present]
        raise ConfigError(
            f"{what} is half configured: {', '.join(present)} set but {', '.join(missing)} missing"
        )
    return bool(present)


def utc_time_var(env: Mapping[str, str], name: str, default: dt.time) -> dt.time:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not re.fullmatch(r"\d{2}:\d{2}", raw):
        raise ConfigError(f"{name}={raw!r} is not a UTC time of day like 02:00")
    try:
        return dt.time.fromisoformat(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid UTC time of day (00:00 to 23:59)") from None
