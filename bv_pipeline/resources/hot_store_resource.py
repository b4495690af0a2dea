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

from bv_pipeline.storage.interfaces import HotStore


class HotStoreResource(dg.ConfigurableResource):
    """Base: caches one ``HotStore`` per resource instance."""

    _store: HotStore | None = PrivateAttr(default=None)
    _store_guard: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def get_store(self) -> HotStore:
        with self._store_guard:
            if self._store is None:
                store = self._build()
                store.ensure_schema()
                self._store = store
            return self._store

    @abstractmethod
    def _build(self) -> HotStore: ...


class SqliteHotStoreResource(HotStoreResource):
    """The hot tier in a local SQLite file (default path: ``Settings.from_env().hot_db_path``)."""

    sqlite_path: str | None = None

    def _build(self) -> HotStore:
        from bv_pipeline.resources.hot_store_sqlite import SqliteHotStore

        if self.sqlite_path:
            return SqliteHotStore(Path(self.sqlite_path))
        from bv_pipeline.config import Settings

        return SqliteHotStore(Settings.from_env().hot_db_path)


class D1HotStoreResource(HotStoreResource):
    """The hot tier in Cloudflare D1 over REST."""

    account_id: str
    database_id: str
    api_token: str
    base_url: str | None = None

    def _build(self) -> HotStore:
        from bv_pipeline.resources.hot_store_d1 import D1HotStore

        return D1HotStore(self.account_id, self.database_id, self.api_token, base_url=self.base_url or None)
