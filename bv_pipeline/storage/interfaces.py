"""Contracts between the tiers. Backends implement these; Dagster code, the read API and tests use only these.

Pure typing module: no I/O, no Dagster.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # annotations only: the API's supervisor process reads settings without loading Arrow
    import pyarrow as pa


@dataclass(frozen=True)
class PointMeta:
    """One configured ACE point with the metadata the hot tier keeps."""

    name: str
    kind: str | None = (
        None  # temperature | position | binary | setpoint | meter | analog | enum | None (unknown)
    )
    unit: str | None = None
    marker_tags: tuple[str, ...] = ()
    kv_tags: dict[str, str] = field(default_factory=dict)
    collect_interval_s: int | None = None


@dataclass
class UpsertStats:
    rows: int = 0  # sample rows sent to the store (after de-duplication)
    new_points: int = 0  # points created because samples named them
    statements: int = 0  # SQL statements executed
    requests: int = 0  # backend API requests (D1 REST calls; 0 for SQLite)
    new_rows: int = 0  # samples the store did not already hold with the same value (what it wrote)


@dataclass(frozen=True)
class RollupState:
    """The verified hourly rollup of a site-day, and which raw content (checksum) it was built from."""

    key: str
    rows: int
    bytes: int
    checksum: str  # the rollup object's own content checksum
    source_checksum: (
        str  # the raw day object's checksum it was computed from: current iff it equals the entry's
    )
    verified_ms: int


@dataclass(frozen=True)
class ManifestEntry:
    """One verified cold object: a site-day that exists in cold storage and was read back successfully."""

    site: str
    day: dt.date
    key: str
    rows: int
    bytes: int
    checksum: str  # content checksum written into the Parquet key-value metadata
    schema_version: int
    verified_ms: int
    source: str  # "hot" | "ace"
    hot_deleted_ms: int | None = None  # set when retention removed the day's rows from the hot tier
    rollup: RollupState | None = None  # None: no verified rollup (readers aggregate the raw object)

    @property
    def rollup_current(self) -> bool:
        """The day's rollup exists and was built from exactly the raw content this entry names."""
        return self.rollup is not None and self.rollup.source_checksum == self.checksum


@dataclass(frozen=True)
class WindowStats:
    """Aggregate facts about a site's stored samples in [start, end), answered by one query."""

    rows: int
    future_rows: int  # rows at or after the ``future_from_ms`` instant asked about
    max_ts: int | None


@runtime_checkable
class HotStore(Protocol):
    """The hot tier (SQLite or D1). Every write is idempotent: replaying any call changes nothing."""

    backend: str  # "sqlite" | "d1"

    def ensure_schema(self) -> None: ...
    def ping(self) -> None: ...  # raises when unreachable
    def upsert_points(self, site: str, points: Sequence[PointMeta]) -> int: ...  # returns new points
    def point_ids(self, site: str) -> dict[str, int]: ...
    def list_points(self, site: str) -> list[PointMeta]: ...
    def list_sites(self) -> list[str]: ...
    def upsert_samples(self, site: str, samples: pa.Table) -> UpsertStats: ...  # SAMPLE_SCHEMA
    def read_samples(
        self, site: str, points: Sequence[str] | None, start_ms: int, end_ms: int
    ) -> pa.Table: ...  # SAMPLE_SCHEMA sorted by (point, ts_ms); [start_ms, end_ms)
    def count_samples(self, site: str, start_ms: int, end_ms: int) -> int: ...
    def max_ts(self, site: str) -> int | None: ...
    def delete_range(self, site: str, start_ms: int, end_ms: int) -> int: ...
    def get_watermark(self, site: str) -> int | None: ...
    def set_watermark(self, site: str, ts_ms: int) -> None: ...  # never moves backwards
    # The archive manifest's hot-side cache: the record is in object storage (``resources.manifest_store``);
    # these mirror it (without rollup state) and are refilled by ``bv-pipeline rebuild-cache``.
    def manifest_get(self, site: str, day: dt.date) -> ManifestEntry | None: ...
    def manifest_put(self, entry: ManifestEntry) -> None: ...
    def manifest_list(self, site: str, start: dt.date, end: dt.date) -> list[ManifestEntry]: ...  # inclusive
    # Per-(site, day) sync progress: wall-clock ms of the last successful fetch of that day; only moves forward.
    def get_sync_as_of(self, site: str, day: dt.date) -> int | None: ...
    def set_sync_as_of(self, site: str, day: dt.date, as_of_ms: int) -> None: ...
    def list_sync_as_of(self, site: str, start: dt.date, end: dt.date) -> dict[dt.date, int]: ...  # inclusive
    def record_sync(
        self, site: str, day: dt.date, as_of_ms: int, watermark_ms: int
    ) -> None: ...  # one request
    def window_stats(self, site: str, start_ms: int, end_ms: int, future_from_ms: int) -> WindowStats: ...
    def min_ts(self, site: str) -> int | None: ...
    def max_ts_between(self, site: str, start_ms: int, end_ms: int) -> int | None: ...  # [start, end)
    # Per (point, UTC hour) of whole hours in [start, end): point, hour_ms, samples, count/sum/min/max of the
    # finite numeric values (a polars DataFrame shaped like the cold tier's hourly rollups).
    def read_hourly(self, site: str, points: Sequence[str], start_ms: int, end_ms: int) -> Any: ...
    # Seal the site's open hours ending at or before ``before_ms`` into blocks; returns hours sealed.
    def seal(self, site: str, before_ms: int) -> int: ...
    @property
    def requests_made(self) -> int: ...  # cumulative backend API requests (D1); 0 for SQLite


class PreconditionFailed(RuntimeError):
    """A conditional write lost: the object exists (create-only) or no longer has the expected ETag (HTTP 412)."""


@dataclass(frozen=True)
class Versioned:
    """An object's bytes and the ETag naming that exact version."""

    data: bytes
    etag: str


@runtime_checkable
class ObjectStore(Protocol):
    """The cold tier's object storage (R2 via S3, or a local directory with the same keys).

    ``get_versioned``/``put_if`` are the compare-and-swap primitive every commit point uses: ``put_if`` with
    ``if_match=None`` creates only when the key is absent (``If-None-Match: *``), otherwise it replaces only the
    version whose ETag is ``if_match`` (``If-Match``); a lost race raises ``PreconditionFailed``.
    """

    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...  # raises KeyError when absent
    def get_range(self, key: str, start: int, end: int) -> bytes: ...  # bytes [start, end)
    def size(self, key: str) -> int | None: ...  # None when absent
    def delete(self, key: str) -> None: ...
    def list(self, prefix: str) -> list[str]: ...
    def get_versioned(self, key: str, if_none_match: str | None = None) -> Versioned | None: ...
    # ^ raises KeyError when absent; None when the stored ETag equals ``if_none_match`` (HTTP 304)
    def put_if(self, key: str, data: bytes, *, if_match: str | None) -> str: ...  # returns the new ETag
    def list_etags(self, prefix: str) -> dict[str, str]: ...  # key -> ETag of every object under prefix
