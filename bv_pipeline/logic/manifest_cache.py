"""Rebuild the hot tier's caches of the cold tier from object storage (the system of record).

- The ``archive_manifest`` table only mirrors the manifest documents in object storage; nothing decides anything
  from it. After losing or damaging it (a deleted table, a new D1 database, a restore), this refills it,
  idempotently; reads stay exact meanwhile because readers use the object-storage manifest directly.
- The site and point catalogue (which the read API checks queries against) normally comes from ACE through the
  sync. When the hot tier does not know a site that has archived days (the hot database was lost), the points
  named by one archived day object per month are registered again (names only, from the ``point`` column; the
  next sync restores their metadata), so archived days are queryable at once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bv_pipeline.storage.interfaces import PointMeta

if TYPE_CHECKING:
    from bv_pipeline.resources.manifest_store import ManifestStore
    from bv_pipeline.storage.interfaces import HotStore


@dataclass
class CacheRebuild:
    site: str
    months: int  # manifest documents read
    entries: int  # day entries in object storage
    written: int  # hot cache rows that were missing or differed, now rewritten
    points_added: int = 0  # catalogue points the hot tier lacked, registered from archived day objects


def rebuild_hot_cache(
    hot: HotStore, manifest: ManifestStore, sites: list[str] | None = None
) -> list[CacheRebuild]:
    """Make the hot cache hold exactly the object-storage entries of ``sites`` (default: every site that has a
    manifest). Rows are compared first, so a healthy cache costs reads only."""
    out = []
    for site in sites if sites is not None else manifest.sites():
        months = manifest.months(site)
        entries = manifest.list_all(site)
        cached = {}
        if entries:
            cached = {e.day: e for e in hot.manifest_list(site, entries[0].day, entries[-1].day)}
        written = 0
        for e in entries:
            # The hot table has no rollup columns: compare what it can hold.
            if cached.get(e.day) != replace(e, rollup=None):
                hot.manifest_put(e)
                written += 1
        added = 0
        if entries and site not in hot.list_sites():
            # The catalogue is gone with the hot database: one day object per month names its points (a point
            # archived only on other days comes back with the next sync of ACE's configured points).
            latest = {e.day.replace(day=1): e.key for e in entries}
            added = _restore_points(hot, manifest, site, sorted(latest.values()))
        out.append(
            CacheRebuild(
                site=site, months=len(months), entries=len(entries), written=written, points_added=added
            )
        )
    return out


def _restore_points(hot: HotStore, manifest: ManifestStore, site: str, keys: list[str]) -> int:
    """Register the site and the points the given day objects name (names only; metadata comes from ACE)."""
    names: set[str] = set()
    for key in keys:
        data = manifest.cold.get(key)
        column = pq.ParquetFile(pa.BufferReader(data)).read(columns=["point"])["point"]
        names.update(pc.unique(column.cast(pa.string())).to_pylist())
    hot.upsert_points(site, [PointMeta(name=n) for n in sorted(names)])
    return len(names)
