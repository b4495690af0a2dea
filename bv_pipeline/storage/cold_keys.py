"""Object keys of the cold tier.

Hive-style, one object per site per UTC day:

- samples: ``timeseries/site=<site>/date=<YYYY-MM-DD>/part-0.parquet``
- hourly rollups: ``rollups/1h/site=<site>/date=<YYYY-MM-DD>/part-0.parquet``

plus the compacted per-site-year hourly rollups (``storage/rollup_year.py``):

- ``rollups/1h-year/site=<site>/year=<YYYY>/index.json``: the commit point, rewritten on each publish;
- ``rollups/1h-year/site=<site>/year=<YYYY>/gen=<generation>/part-<NNNN>.parquet``: immutable data parts of one
  generation (a new generation prefix per compaction, so a cached footer or byte range can never go stale).

Keys are only ever built from a validated site slug and a ``date``, never from raw user input, so a key cannot
traverse out of a local root or collide with another site. ``validate_object_key`` is the generic guard the
object stores apply to every key they touch.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal

from bv_pipeline.config import ConfigError, validate_site_name

SAMPLES_PREFIX = "timeseries"
ROLLUP_1H_PREFIX = "rollups/1h"
ROLLUP_1H_YEAR_PREFIX = "rollups/1h-year"
SAMPLES_MONTH_PREFIX = "timeseries-month"
PART_NAME = "part-0.parquet"
YEAR_INDEX_NAME = "index.json"
# A generation names one compaction's parts: UTC creation time (so stale ones can be aged out) + random suffix.
_GENERATION = re.compile(r"^(?P<ts>\d{8}T\d{6}Z)-[0-9a-f]{8}$")

KeyKind = Literal["samples", "rollup_1h"]

_PREFIXES: dict[KeyKind, str] = {"samples": SAMPLES_PREFIX, "rollup_1h": ROLLUP_1H_PREFIX}
_DAY_KEY = re.compile(
    r"^(?P<prefix>timeseries|rollups/1h)/site=(?P<site>[^/]+)/date=(?P<date>\d{4}-\d{2}-\d{2})/part-0\.parquet$"
)
# One path segment: no leading dot, so "." / ".." and hidden temp files (".tmp-*") can never be keys.
_SEGMENT = re.compile(r"^[A-Za-z0-9_=-][A-Za-z0-9._=-]*$")
MAX_KEY_BYTES = 1024  # R2 / S3 limit


class ColdKeyError(ValueError):
    """A key or key component is not one the cold tier accepts."""


@dataclass(frozen=True)
class ParsedKey:
    kind: KeyKind
    site: str
    day: dt.date


def _site(site: str) -> str:
    try:
        return validate_site_name(site)
    except ConfigError as exc:
        raise ColdKeyError(str(exc)) from None


def _day(day: dt.date) -> dt.date:
    # datetime is a date subclass; its time part would silently vanish from the key, so refuse it.
    if not isinstance(day, dt.date) or isinstance(day, dt.datetime):
        raise ColdKeyError(f"day must be a datetime.date, got {type(day).__name__}")
    return day


def site_prefix(site: str, kind: KeyKind = "samples") -> str:
    """Prefix of every object of one site and kind, ending in '/', for listing."""
    return f"{_PREFIXES[kind]}/site={_site(site)}/"


def day_key(site: str, day: dt.date, kind: KeyKind = "samples") -> str:
    return f"{site_prefix(site, kind)}date={_day(day).isoformat()}/{PART_NAME}"


def samples_key(site: str, day: dt.date) -> str:
    return day_key(site, day, "samples")


def rollup_key(site: str, day: dt.date) -> str:
    return day_key(site, day, "rollup_1h")


def _year(year: int) -> int:
    if isinstance(year, bool) or not isinstance(year, int) or not 1970 <= year <= 9999:
        raise ColdKeyError(f"year must be an int in 1970..9999, got {year!r}")
    return year


def rollup_year_site_prefix(site: str) -> str:
    """Prefix of every compacted hourly-rollup object of one site, ending in '/'."""
    return f"{ROLLUP_1H_YEAR_PREFIX}/site={_site(site)}/"


def rollup_year_prefix(site: str, year: int) -> str:
    """Prefix of every object of one site-year's compacted hourly rollups, ending in '/'."""
    return f"{rollup_year_site_prefix(site)}year={_year(year):04d}/"


def year_of_index_key(key: str) -> int | None:
    """The year a compacted-rollup index key names, or None for any other key."""
    m = re.fullmatch(r"rollups/1h-year/site=[^/]+/year=(\d{4})/index\.json", key)
    return int(m[1]) if m else None


def rollup_year_index_key(site: str, year: int) -> str:
    return rollup_year_prefix(site, year) + YEAR_INDEX_NAME


def validate_generation(generation: str) -> str:
    if not isinstance(generation, str) or not _GENERATION.fullmatch(generation):
        raise ColdKeyError(f"not a compaction generation: {generation!r}")
    return generation


def generation_time(generation: str) -> dt.datetime:
    """UTC creation time encoded in a generation name."""
    ts = _GENERATION.fullmatch(validate_generation(generation))
    assert ts is not None
    return dt.datetime.strptime(ts["ts"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)


def rollup_year_generation_prefix(site: str, year: int, generation: str) -> str:
    return f"{rollup_year_prefix(site, year)}gen={validate_generation(generation)}/"


def rollup_year_part_key(site: str, year: int, generation: str, part: int) -> str:
    if isinstance(part, bool) or not isinstance(part, int) or not 0 <= part <= 9999:
        raise ColdKeyError(f"part number must be an int in 0..9999, got {part!r}")
    return f"{rollup_year_generation_prefix(site, year, generation)}part-{part:04d}.parquet"


def generation_of_part_key(key: str) -> str | None:
    """The generation a compacted-rollup part key belongs to, or None for any other key."""
    m = re.fullmatch(r"rollups/1h-year/site=[^/]+/year=\d{4}/gen=([^/]+)/part-\d{4}\.parquet", key)
    return m[1] if m and _GENERATION.fullmatch(m[1]) else None


def _month(month: dt.date) -> dt.date:
    if not isinstance(month, dt.date) or isinstance(month, dt.datetime) or month.day != 1:
        raise ColdKeyError(f"month must be the date of a month's first day, got {month!r}")
    _year(month.year)
    return month


def samples_month_site_prefix(site: str) -> str:
    """Prefix of every compacted raw-sample object of one site, ending in '/'."""
    return f"{SAMPLES_MONTH_PREFIX}/site={_site(site)}/"


def samples_month_prefix(site: str, month: dt.date) -> str:
    """Prefix of every object of one site-month's compacted raw samples, ending in '/'."""
    return f"{samples_month_site_prefix(site)}month={_month(month):%Y-%m}/"


def samples_month_index_key(site: str, month: dt.date) -> str:
    return samples_month_prefix(site, month) + YEAR_INDEX_NAME


def month_of_index_key(key: str) -> dt.date | None:
    """The month (its first day) a compacted-samples index key names, or None for any other key."""
    m = re.fullmatch(r"timeseries-month/site=[^/]+/month=(\d{4})-(\d{2})/index\.json", key)
    if not m or not 1 <= int(m[2]) <= 12:
        return None
    return dt.date(int(m[1]), int(m[2]), 1)


def samples_month_part_key(site: str, month: dt.date, generation: str, part: int) -> str:
    if isinstance(part, bool) or not isinstance(part, int) or not 0 <= part <= 9999:
        raise ColdKeyError(f"part number must be an int in 0..9999, got {part!r}")
    return f"{samples_month_prefix(site, month)}gen={validate_generation(generation)}/part-{part:04d}.parquet"


def generation_of_month_part_key(key: str) -> str | None:
    """The generation a compacted-samples part key belongs to, or None for any other key."""
    m = re.fullmatch(r"timeseries-month/site=[^/]+/month=\d{4}-\d{2}/gen=([^/]+)/part-\d{4}\.parquet", key)
    return m[1] if m and _GENERATION.fullmatch(m[1]) else None


def parse_key(key: str) -> ParsedKey:
    """Inverse of ``day_key``: the kind, site and day a cold key names. Raises ColdKeyError otherwise."""
    m = _DAY_KEY.fullmatch(key)
    if m is None:
        raise ColdKeyError(f"not a cold-tier day key: {key!r}")
    try:
        day = dt.date.fromisoformat(m["date"])
    except ValueError:
        raise ColdKeyError(f"bad date in cold key {key!r}") from None
    kind: KeyKind = "samples" if m["prefix"] == SAMPLES_PREFIX else "rollup_1h"
    return ParsedKey(kind=kind, site=_site(m["site"]), day=day)


def validate_object_key(key: str) -> str:
    """Generic key guard for object stores: relative, '/'-separated, conservative characters, no '.'/'..'."""
    if not isinstance(key, str) or not key:
        raise ColdKeyError("object key must be a non-empty string")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise ColdKeyError(f"object key longer than {MAX_KEY_BYTES} bytes")
    for segment in key.split("/"):
        if not _SEGMENT.fullmatch(segment):
            raise ColdKeyError(f"object key {key!r} has an invalid segment {segment!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: empty, or a key whose last segment may be partial or empty (``a/b/`` or ``a/b/da``)."""
    if prefix == "":
        return prefix
    head, _, last = prefix.rpartition("/")
    if head:
        validate_object_key(head)
    if last:
        validate_object_key(last)
    return prefix
