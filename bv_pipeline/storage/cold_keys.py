"""Object keys of the cold tier.

Hive-style, one object per site per UTC day:

- samples: ``timeseries/site=<site>/date=<YYYY-MM-DD>/part-0.parquet``
- hourly rollups: ``rollups/1h/site=<site>/date=<YYYY-MM-DD>/part-0.parquet``

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
PART_NAME = "part-0.parquet"

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
