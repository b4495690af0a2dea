"""Dagster resources for the hot tier: one class per backend over a shared abstract base.

``SqliteHotStoreResource`` (embedded default) and ``D1HotStoreResource`` build their store once per resource
instance and ensure its schema once; assets, sensors and the read API annotate ``HotStoreResource`` and get
whichever backend the wiring (``bv_pipeline.resources.wiring``) configured.
"""
# No "from __future__ import annotations": Dagster resolves resource field annotations at definition time.

import threading
from abc import abstractmethod
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from bv_pipeline.resources.hot_store_routing import HotDatabases, RoutedHotStore
from bv_pipeline.storage.interfaces import HotStore

SQLITE_GROUP_PREFIX = "hot-"


class HotStoreResource(dg.ConfigurableResource):
    """Base: caches one ``HotStore`` per resource instance. ``databases`` ``single`` (default) keeps every site
    in one database; ``per-site`` gives each site (or each group of ``site_groups``, ``group:site,site;...``)
    a database of its own, created or looked up by the backend."""

    databases: str = "single"
    site_groups: str = ""

    _store: HotStore | None = PrivateAttr(default=None)
    _store_guard: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def get_store(self) -> HotStore:
        with self._store_guard:
            if self._store is None:
                layout = HotDatabases.parse(self.databases, self.site_groups)
                store: HotStore
                if layout.mode == "single":
                    store = self._build()
                else:
                    store = RoutedHotStore(layout, self._open_group, self._known_groups, self._backend())  # type: ignore[assignment]
                store.ensure_schema()
                self._store = store
            return self._store

    @abstractmethod
    def _build(self) -> HotStore: ...

    @abstractmethod
    def _open_group(self, group: str) -> HotStore:
        """The store of one per-site database (``group`` is a site or a group name)."""

    @abstractmethod
    def _known_groups(self) -> list[str]:
        """Groups that have a database already."""

    @abstractmethod
    def _backend(self) -> str: ...


class SqliteHotStoreResource(HotStoreResource):
    """The hot tier in a local SQLite file (default path: ``Settings.from_env().hot_db_path``)."""

    sqlite_path: str | None = None

    def _build(self) -> HotStore:
        from bv_pipeline.resources.hot_store_sqlite import SqliteHotStore

        if self.sqlite_path:
            return SqliteHotStore(Path(self.sqlite_path))
        from bv_pipeline.config import Settings

        return SqliteHotStore(Settings.from_env().hot_db_path)

    def _group_dir(self) -> Path:
        if self.sqlite_path:
            return Path(self.sqlite_path).parent
        from bv_pipeline.config import Settings

        return Settings.from_env().hot_db_path.parent

    def _open_group(self, group: str) -> HotStore:
        from bv_pipeline.resources.hot_store_sqlite import SqliteHotStore

        return SqliteHotStore(self._group_dir() / f"{SQLITE_GROUP_PREFIX}{group}.sqlite3")

    def _known_groups(self) -> list[str]:
        files = sorted(self._group_dir().glob(f"{SQLITE_GROUP_PREFIX}*.sqlite3"))
        return [f.name[len(SQLITE_GROUP_PREFIX) : -len(".sqlite3")] for f in files]

    def _backend(self) -> str:
        return "sqlite"


class D1HotStoreResource(HotStoreResource):
    """The hot tier in Cloudflare D1 over REST. ``single``: the database ``database_id``. ``per-site``: the
    database named ``database_prefix + group``, looked up by name or created."""

    account_id: str
    api_token: str
    database_id: str | None = None
    base_url: str | None = None
    database_prefix: str = "bv-hot-"

    def _build(self) -> HotStore:
        from bv_pipeline.resources.hot_store_d1 import D1HotStore

        if not self.database_id:
            raise ValueError("D1HotStoreResource: database_id is required with databases='single'")
        return D1HotStore(self.account_id, self.database_id, self.api_token, base_url=self.base_url or None)

    def _open_group(self, group: str) -> HotStore:
        from bv_pipeline.resources.hot_store_d1 import D1HotStore, find_or_create_database

        with D1HotStore(self.account_id, "-", self.api_token, base_url=self.base_url or None) as admin:
            db_id = find_or_create_database(admin.client, self.account_id, self.database_prefix + group)
        return D1HotStore(self.account_id, db_id, self.api_token, base_url=self.base_url or None)

    def _known_groups(self) -> list[str]:
        from bv_pipeline.resources.hot_store_d1 import D1HotStore, list_databases

        with D1HotStore(self.account_id, "-", self.api_token, base_url=self.base_url or None) as admin:
            names = list_databases(admin.client, self.account_id, self.database_prefix)
        return sorted(n[len(self.database_prefix) :] for n in names)

    def _backend(self) -> str:
        return "d1"
