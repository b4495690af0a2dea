"""The hot tier's public names, one import for callers: the stores (``SqliteHotStore``, ``D1HotStore``, both
``BlockHotStore``s) and the Dagster resources (``SqliteHotStoreResource``, ``D1HotStoreResource``, base
``HotStoreResource``). Layout: ``bv_pipeline.storage.hot_layout``."""

from bv_pipeline.resources.hot_store_base import BlockHotStore
from bv_pipeline.resources.hot_store_d1 import D1Error, D1HotStore
from bv_pipeline.resources.hot_store_resource import (
    D1HotStoreResource,
    HotStoreResource,
    SqliteHotStoreResource,
)
from bv_pipeline.resources.hot_store_sqlite import SqliteHotStore

__all__ = [
    "BlockHotStore",
    "D1Error",
    "D1HotStore",
    "D1HotStoreResource",
    "HotStoreResource",
    "SqliteHotStore",
    "SqliteHotStoreResource",
]
