"""The archive manifest as objects beside the data: one small JSON document per site-month (pure, no I/O).

``manifest/site=<site>/month=<YYYY-MM>/manifest.json`` lists every verified day object of the month: key, rows,
bytes, content checksum, schema version, verification time, source, whether the hot copy was retired, and the
day's verified hourly rollup with the raw checksum it was built from. It is the cold tier's system of record:
readers, compactions and retention trust a day object only as this document describes it, and the hot tier's
``archive_manifest`` table is only a cache of it (rebuilt by ``bv-pipeline rebuild-cache``).

Why per site-month: a month is at most 31 entries (about 15 KB), so a rewrite is cheap and a year-long query
revalidates 12-13 small objects (conditional GETs) rather than listing or fetching 365; writers of different
months never contend; and it lines up with the monthly compacted samples. Compaction state is not duplicated here:
each compacted set's ``index.json`` records the day checksums it holds and is compared with this document.

Format: see docs/cold-format.md. Unknown top-level or per-day fields are rejected, so a newer writer's document
is never half-understood by an older reader (``format_version`` says which one wrote it).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bv_pipeline.storage import cold_keys
from bv_pipeline.storage.interfaces import ManifestEntry, RollupState
from bv_pipeline.storage.parquet_layout import ColdVerificationError

MANIFEST_PREFIX = "manifest"
MANIFEST_NAME = "manifest.json"
FORMAT = "bv-archive-manifest"
FORMAT_VERSION = 1
_KEY = re.compile(r"^manifest/site=(?P<site>[^/]+)/month=(?P<y>\d{4})-(?P<m>\d{2})/manifest\.json$")
_ENTRY_FIELDS = (
    "key",
    "rows",
    "bytes",
    "checksum",
    "schema_version",
    "verified_ms",
    "source",
    "hot_deleted_ms",
    "rollup",
)
_ROLLUP_FIELDS = ("key", "rows", "bytes", "checksum", "source_checksum", "verified_ms")


def month_of(day: dt.date) -> dt.date:
    return day.replace(day=1)


def site_prefix(site: str) -> str:
    """Prefix of every manifest object of one site, ending in '/' (the site is validated like every key's)."""
    cold_keys.site_prefix(site)
    return f"{MANIFEST_PREFIX}/site={site}/"


def manifest_key(site: str, month: dt.date) -> str:
    month = month_of(month)
    return f"{site_prefix(site)}month={month:%Y-%m}/{MANIFEST_NAME}"


def parse_manifest_key(key: str) -> tuple[str, dt.date] | None:
    """(site, month) a manifest key names, None for any other key."""
    m = _KEY.fullmatch(key)
    if m is None or not 1 <= int(m["m"]) <= 12:
        return None
    return m["site"], dt.date(int(m["y"]), int(m["m"]), 1)


@dataclass(frozen=True)
class ManifestMonth:
    """One site-month's verified days."""

    site: str
    month: dt.date  # first day of the month
    days: Mapping[dt.date, ManifestEntry] = field(default_factory=dict)

    def with_day(self, entry: ManifestEntry | None, day: dt.date) -> ManifestMonth:
        """A copy with ``day`` set to ``entry`` (None removes it)."""
        days = dict(self.days)
        if entry is None:
            days.pop(day, None)
        else:
            days[day] = entry
        return ManifestMonth(self.site, self.month, days)

    def to_json(self) -> bytes:
        doc = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "site": self.site,
            "month": f"{self.month:%Y-%m}",
            "days": {d.isoformat(): _entry_doc(e) for d, e in sorted(self.days.items())},
        }
        return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes, *, site: str, month: dt.date) -> ManifestMonth:
        """Parse and validate; the document must name ``site`` and ``month`` (its own key)."""
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise ValueError("not an archive manifest")
            if doc.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"unsupported format_version {doc.get('format_version')!r}")
            if set(doc) != {"format", "format_version", "site", "month", "days"}:
                raise ValueError(f"unexpected fields {sorted(set(doc))}")
            if doc["site"] != site or doc["month"] != f"{month:%Y-%m}":
                raise ValueError(f"names {doc['site']}/{doc['month']}, expected {site}/{month:%Y-%m}")
            days = {}
            for day_s, e in doc["days"].items():
                day = dt.date.fromisoformat(day_s)
                if month_of(day) != month:
                    raise ValueError(f"day {day_s} is outside month {month:%Y-%m}")
                days[day] = _entry_from_doc(site, day, e)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ColdVerificationError(f"archive manifest {site}/{month:%Y-%m} is invalid: {exc}") from exc
        return cls(site, month, days)


def _entry_doc(e: ManifestEntry) -> dict[str, Any]:
    r = e.rollup
    return {
        "key": e.key,
        "rows": e.rows,
        "bytes": e.bytes,
        "checksum": e.checksum,
        "schema_version": e.schema_version,
        "verified_ms": e.verified_ms,
        "source": e.source,
        "hot_deleted_ms": e.hot_deleted_ms,
        "rollup": None
        if r is None
        else {
            "key": r.key,
            "rows": r.rows,
            "bytes": r.bytes,
            "checksum": r.checksum,
            "source_checksum": r.source_checksum,
            "verified_ms": r.verified_ms,
        },
    }


def _int(v: object, name: str, *, optional: bool = False) -> int | None:
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    return v


def _str(v: object, name: str) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"{name} must be a non-empty string, got {v!r}")
    return v


def _entry_from_doc(site: str, day: dt.date, e: Any) -> ManifestEntry:
    if not isinstance(e, dict) or set(e) != set(_ENTRY_FIELDS):
        raise ValueError(f"day {day}: fields must be exactly {list(_ENTRY_FIELDS)}")
    key = _str(e["key"], "key")
    if key != cold_keys.samples_key(site, day):
        raise ValueError(f"day {day}: key {key!r} is not the day's object")
    rollup = None
    if e["rollup"] is not None:
        r = e["rollup"]
        if not isinstance(r, dict) or set(r) != set(_ROLLUP_FIELDS):
            raise ValueError(f"day {day}: rollup fields must be exactly {list(_ROLLUP_FIELDS)}")
        if r["key"] != cold_keys.rollup_key(site, day):
            raise ValueError(f"day {day}: rollup key {r['key']!r} is not the day's rollup")
        rollup = RollupState(
            key=r["key"],
            rows=_int(r["rows"], "rollup.rows") or 0,
            bytes=_int(r["bytes"], "rollup.bytes") or 0,
            checksum=_str(r["checksum"], "rollup.checksum"),
            source_checksum=_str(r["source_checksum"], "rollup.source_checksum"),
            verified_ms=_int(r["verified_ms"], "rollup.verified_ms") or 0,
        )
    return ManifestEntry(
        site=site,
        day=day,
        key=key,
        rows=_int(e["rows"], "rows") or 0,
        bytes=_int(e["bytes"], "bytes") or 0,
        checksum=_str(e["checksum"], "checksum"),
        schema_version=_int(e["schema_version"], "schema_version") or 0,
        verified_ms=_int(e["verified_ms"], "verified_ms") or 0,
        source=_str(e["source"], "source"),
        hot_deleted_ms=_int(e["hot_deleted_ms"], "hot_deleted_ms", optional=True),
        rollup=rollup,
    )
