"""``TimeseriesReaderResource``: the read engine as a Dagster resource, for assets and jobs that read samples.

Kept apart from ``reader``: the API's worker processes import the engine but not Dagster (~30 MiB each).
"""

import dagster as dg
from pydantic import PrivateAttr

from bv_pipeline.api.reader import TimeseriesReader
from bv_pipeline.resources.cold_store import ColdStoreResource
from bv_pipeline.resources.hot_store import HotStoreResource


class TimeseriesReaderResource(dg.ConfigurableResource):
    """Dagster resource wrapping ``TimeseriesReader`` over the configured hot and cold store resources."""

    hot_store: HotStoreResource
    cold_store: ColdStoreResource
    max_workers: int = 16  # cold days read at once (ranged GETs in flight)
    cache_mib: int = 256

    _reader: TimeseriesReader | None = PrivateAttr(default=None)

    def get_reader(self) -> TimeseriesReader:
        if self._reader is None:
            self._reader = TimeseriesReader(
                self.hot_store.get_store(),
                self.cold_store.get_store(),
                max_workers=self.max_workers,
                cache_bytes=self.cache_mib * 1024 * 1024,
            )
        return self._reader

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
