"""Per-site hot databases: ``RoutedHotStore`` sends each call to the database of the call's site.

Why: D1 caps a database at 10 GB (and has one writer, and a 30 s query limit, per database); a database per site
(or per group of sites) keeps each one far below that, and the account's included rows and storage are shared
anyway, so it costs nothing extra. ``HotDatabases`` says which database a site uses: ``single`` (one database for
everything, the default), or ``per-site`` with optional named groups of sites sharing one database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bv_pipeline.storage.interfaces import HotStore, ManifestEntry

SINGLE_GROUP = "default"


@dataclass(frozen=True)
class HotDatabases:
    mode: str = "single"  # "single" | "per-site"
    groups: Mapping[str, str] = field(default_factory=dict)  # site -> group name (per-site mode only)

    def group_of(self, site: str) -> str:
        if self.mode == "single":
            return SINGLE_GROUP
        return self.groups.get(site, site)

    @classmethod
    def parse(cls, mode: str, groups_spec: str = "") -> HotDatabases:
        """``groups_spec``: ``group:site,site;group2:site`` (sites not named get a database of their own)."""
        mode = mode.strip() or "single"
        if mode not in ("single", "per-site"):
            raise ValueError(f"hot databases mode must be 'single' or 'per-site', not {mode!r}")
        groups: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in groups_spec.split(";"))):
            name, sep, sites = part.partition(":")
            name = name.strip()
            if not sep or not name or not sites.strip():
                raise ValueError(f"site group {part!r} is not 'group:site,site'")
            for site in filter(None, (s.strip() for s in sites.split(","))):
                if site in groups and groups[site] != name:
                    raise ValueError(f"site {site!r} is in two groups ({groups[site]!r}, {name!r})")
                groups[site] = name
        if groups and mode == "single":
            raise ValueError("site groups need the per-site mode")
        return cls(mode, groups)


class RoutedHotStore:
    """A ``HotStore`` over one store per database. Stores are opened (schema ensured) on first use."""

    def __init__(
        self,
        databases: HotDatabases,
        open_store: Callable[[str], HotStore],
        known_groups: Callable[[], list[str]],
        backend: str,
    ) -> None:
        self.databases = databases
        self.backend = backend
        self._open_store = open_store
        self._known_groups = known_groups
        self._stores: dict[str, HotStore] = {}
        self._guard = threading.Lock()

    def store_for(self, site: str) -> HotStore:
        return self._group(self.databases.group_of(site))

    def _group(self, group: str) -> HotStore:
        with self._guard:
            store = self._stores.get(group)
            if store is None:
                store = self._open_store(group)
                store.ensure_schema()
                self._stores[group] = store
            return store

    def ensure_schema(self) -> None:
        for group in self._known_groups():
            self._group(group)

    def ping(self) -> None:
        with self._guard:
            stores = list(self._stores.values())
        for store in stores:
            store.ping()

    def list_sites(self) -> list[str]:
        sites: set[str] = set()
        for group in self._known_groups():
            sites.update(self._group(group).list_sites())
        return sorted(sites)

    def manifest_put(self, entry: ManifestEntry) -> None:
        self.store_for(entry.site).manifest_put(entry)

    @property
    def requests_made(self) -> int:
        with self._guard:
            return sum(s.requests_made for s in self._stores.values())

    def close(self) -> None:
        with self._guard:
            stores, self._stores = list(self._stores.values()), {}
        for store in stores:
            close = getattr(store, "close", None)
            if close is not None:
                close()


def _by_site(name: str) -> Callable[..., Any]:
    def method(self: RoutedHotStore, site: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.store_for(site), name)(site, *args, **kwargs)

    method.__name__ = name
    method.__doc__ = f"``{name}`` on the database of ``site``."
    return method


_SITE_METHODS = (
    "upsert_points",
    "point_ids",
    "list_points",
    "upsert_samples",
    "read_samples",
    "read_frame",
    "read_hourly",
    "count_samples",
    "max_ts",
    "delete_range",
    "get_watermark",
    "set_watermark",
    "manifest_get",
    "manifest_list",
    "get_sync_as_of",
    "set_sync_as_of",
    "list_sync_as_of",
    "record_sync",
    "window_stats",
    "min_ts",
    "max_ts_between",
    "seal",
)
for _name in _SITE_METHODS:
    setattr(RoutedHotStore, _name, _by_site(_name))
