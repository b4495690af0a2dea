"""Asynchronous exports, the pure parts: request spec, ids, object keys, status documents and chunk planning.

An export lives under ``exports/<owner>/<export id>/`` in the cold tier's object store: ``status.json`` (the
state machine below, rewritten as the run progresses), ``run.json`` (the Dagster run id, written once by the API
after launching) and ``data.csv`` or ``data.parquet`` (the result). ``owner`` is a hash of the API token that
created it, so an export id alone never finds another token's export.

States: ``queued`` (written by the API) -> ``running`` (rows so far, after each chunk) -> ``succeeded`` (rows,
bytes) or ``failed`` (reason). Pure code: no I/O.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import orjson

from bv_pipeline.storage.interfaces import PointMeta
from bv_pipeline.storage.samples import MS_PER_DAY

EXPORTS_PREFIX = "exports"
STATUS_NAME = "status.json"
RUN_NAME = "run.json"
ExportFormat = Literal["csv", "csv.gz", "parquet"]
ExportState = Literal["queued", "running", "succeeded", "failed"]
FORMATS: tuple[str, ...] = ("csv", "csv.gz", "parquet")
ACTIVE_STATES: frozenset[str] = frozenset({"queued", "running"})
TERMINAL_STATES: frozenset[str] = frozenset({"succeeded", "failed"})
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "csv.gz": "application/gzip",
    "parquet": "application/vnd.apache.parquet",
}
_EXPORT_ID = re.compile(r"^(?P<ts>\d{8}T\d{6}Z)-(?P<rand>[0-9a-f]{16})$")
_OWNER = re.compile(r"^[0-9a-f]{32}$")


class ExportError(ValueError):
    """An export id, owner or status document that is not well formed."""


@dataclass(frozen=True)
class ExportSpec:
    """What to export: ``points`` of ``site`` over [start_ms, end_ms), raw or bucketed by ``interval``."""

    site: str
    points: tuple[str, ...]
    start_ms: int
    end_ms: int  # exclusive
    interval: str | None
    format: ExportFormat

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["points"] = list(self.points)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExportSpec:
        fmt = d["format"]
        if fmt not in FORMATS:
            raise ExportError(f"unknown export format {fmt!r}")
        return cls(
            site=str(d["site"]),
            points=tuple(str(p) for p in d["points"]),
            start_ms=int(d["start_ms"]),
            end_ms=int(d["end_ms"]),
            interval=None if d.get("interval") is None else str(d["interval"]),
            format=fmt,
        )


@dataclass(frozen=True)
class ExportStatus:
    """The status document of one export (``status.json``)."""

    export_id: str
    owner: str
    state: ExportState
    spec: ExportSpec
    created_ms: int
    updated_ms: int
    expires_ms: int
    estimated_samples: int = 0
    rows: int = 0  # rows written so far (running) or in total (succeeded)
    bytes: int | None = None  # size of the result object (succeeded)
    chunks_done: int = 0
    chunks_total: int = 0
    run_id: str | None = None  # the Dagster run writing it (set by the run itself)
    error: str | None = None  # why it failed
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        d = asdict(self)
        d["spec"] = self.spec.to_dict()
        return orjson.dumps(d, option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, data: bytes) -> ExportStatus:
        try:
            d = orjson.loads(data)
            spec = ExportSpec.from_dict(d.pop("spec"))
            status = cls(spec=spec, **d)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ExportError(f"not an export status document: {exc}") from None
        if status.state not in ACTIVE_STATES | TERMINAL_STATES:
            raise ExportError(f"unknown export state {status.state!r}")
        return status

    def advance(self, now_ms: int, **changes: Any) -> ExportStatus:
        return replace(self, updated_ms=now_ms, **changes)

    @property
    def data_key(self) -> str:
        return data_key(self.owner, self.export_id, self.spec.format)

    @property
    def status_key(self) -> str:
        return status_key(self.owner, self.export_id)


# ---- ids and keys ---------------------------------------------------------------------------------------------


def new_export_id(now_ms: int, rand: str | None = None) -> str:
    """``<UTC stamp>-<16 hex>``: sorts by creation time and carries it (cleanup reads it when no status exists)."""
    stamp = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{rand if rand is not None else secrets.token_hex(8)}"


def check_export_id(export_id: str) -> str:
    if not _EXPORT_ID.fullmatch(export_id):
        raise ExportError(f"{export_id!r} is not an export id")
    return export_id


def export_created_ms(export_id: str) -> int:
    m = _EXPORT_ID.fullmatch(export_id)
    if m is None:
        raise ExportError(f"{export_id!r} is not an export id")
    stamp = dt.datetime.strptime(m["ts"], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    return int(stamp.timestamp() * 1000)


def check_owner(owner: str) -> str:
    if not _OWNER.fullmatch(owner):
        raise ExportError("an export owner is 32 lowercase hex characters")
    return owner


def owner_of(token_key: str) -> str:
    """The owner segment from the API's per-token key (a sha256 hex digest of the token)."""
    return check_owner(token_key[:32])


def owner_prefix(owner: str) -> str:
    return f"{EXPORTS_PREFIX}/{check_owner(owner)}/"


def export_prefix(owner: str, export_id: str) -> str:
    return f"{owner_prefix(owner)}{check_export_id(export_id)}/"


def status_key(owner: str, export_id: str) -> str:
    return export_prefix(owner, export_id) + STATUS_NAME


def run_key(owner: str, export_id: str) -> str:
    return export_prefix(owner, export_id) + RUN_NAME


def data_key(owner: str, export_id: str, fmt: str) -> str:
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}")
    return export_prefix(owner, export_id) + f"data.{fmt}"


def parse_export_key(key: str) -> tuple[str, str, str] | None:
    """(owner, export id, object name) of a key under ``exports/``, or None for anything else."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != EXPORTS_PREFIX:
        return None
    if not _OWNER.fullmatch(parts[1]) or not _EXPORT_ID.fullmatch(parts[2]):
        return None
    return parts[1], parts[2], parts[3]


def download_filename(status: ExportStatus) -> str:
    """A descriptive file name for Content-Disposition: site, window and the id's stamp."""
    first = dt.datetime.fromtimestamp(status.spec.start_ms / 1000, dt.UTC).strftime("%Y%m%d")
    last = dt.datetime.fromtimestamp((status.spec.end_ms - 1) / 1000, dt.UTC).strftime("%Y%m%d")
    kind = status.spec.interval or "raw"
    return f"{status.spec.site}_{first}-{last}_{kind}_{status.export_id[:16]}.{status.spec.format}"


# ---- sizing and chunk planning --------------------------------------------------------------------------------


def point_cadences(catalogue: Mapping[str, PointMeta], points: Sequence[str], default_s: int) -> list[int]:
    """Each point's collect interval in seconds, ``default_s`` where the catalogue does not know it."""
    out = []
    for p in points:
        meta = catalogue.get(p)
        out.append(meta.collect_interval_s if meta is not None and meta.collect_interval_s else default_s)
    return out


def estimate_samples(cadences_s: Sequence[int], start_ms: int, end_ms: int, interval_ms: int | None) -> int:
    """Rows an export will write: per point, the window over its cadence (or over the bucket when aggregated)."""
    span = max(0, end_ms - start_ms)
    total = 0
    for cadence in cadences_s:
        step = cadence * 1000 if interval_ms is None else max(interval_ms, cadence * 1000)
        total += math.ceil(span / step)
    return total


def plan_chunks(
    start_ms: int, end_ms: int, samples_per_day: int, chunk_samples: int
) -> list[tuple[int, int]]:
    """Consecutive [start, end) windows covering the export, each holding about ``chunk_samples`` at most.

    Chunks are whole UTC days (the first and last clipped to the window) so each reads a day object once;
    a day that alone exceeds the budget is still one chunk (a day of every point is the smallest unit read).
    """
    if end_ms <= start_ms:
        return []
    days_per_chunk = max(1, chunk_samples // max(1, samples_per_day))
    chunks = []
    lo = start_ms
    while lo < end_ms:
        day_start = lo - lo % MS_PER_DAY
        hi = min(end_ms, day_start + days_per_chunk * MS_PER_DAY)
        chunks.append((lo, hi))
        lo = hi
    return chunks
