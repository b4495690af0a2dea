"""Rebuild the hot tier's cached copy of the archive manifest from object storage (the system of record).

The hot tier's ``archive_manifest`` table only mirrors the manifest documents in object storage; nothing decides
anything from it. After losing or damaging it (a deleted table, a new D1 database, a restore), this refills it,
idempotently; reads stay exact meanwhile because readers use the object-storage manifest directly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bv_pipeline.resources.manifest_store import ManifestStore
    from bv_pipeline.storage.interfaces import HotStore


@dataclass
class CacheRebuild:
    site: str
    months: int  # manifest documents read
    entries: int  # day entries in object storage
    written: int  # hot cache rows that were missing or differed, now rewritten


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
        out.append(CacheRebuild(site=site, months=len(months), entries=len(entries), written=written))
    return out
