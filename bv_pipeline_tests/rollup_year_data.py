"""Cold days with verified manifest entries and current daily rollups, for the yearly-rollup tests.

Each day is written the way the pipeline writes it: ``encode_day`` for the raw object, the manifest entry with its
checksum, then ``build_rollup_day`` (the real logic, which records the raw checksum in the rollup).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from bv_pipeline.logic.archive import build_rollup_day
from bv_pipeline.storage import cold_keys, parquet_layout
from bv_pipeline.storage.interfaces import HotStore, ManifestEntry, ObjectStore
from bv_pipeline.storage.samples import SAMPLE_SCHEMA, day_bounds_ms
from bv_pipeline_tests.test_api._data import day_samples

SITE = "yr_site"
POINTS = [
    "Building1.Elec.Main.kWh",
    "Building1.HVAC.AHU-1.OccMode",
    "Building1.HVAC.AHU-1.SupplyTemp",
    "Building1.HVAC.AHU-2.SupplyTemp",
    "Bldg1/VAV-707/DaTemp",
]


def put_day(
    hot: HotStore,
    cold: ObjectStore,
    day: dt.date,
    *,
    offset: float = 0.0,
    points: list[str] | None = None,
    deleted: bool = True,
    site: str = SITE,
    rollup: bool = True,
) -> pl.DataFrame:
    """Archive one day (raw object + manifest, and its daily rollup unless ``rollup`` is False)."""
    df = day_samples(day, points or POINTS, offset=offset)
    data, info = parquet_layout.encode_day(site, day, df.to_arrow().cast(SAMPLE_SCHEMA), source="ace")
    key = cold_keys.samples_key(site, day)
    cold.put(key, data)
    verified = day_bounds_ms(day)[1] + 3_600_000
    hot.manifest_put(
        ManifestEntry(
            site=site,
            day=day,
            key=key,
            rows=info.rows,
            bytes=info.bytes,
            checksum=info.checksum,
            schema_version=info.schema_version,
            verified_ms=verified,
            source="ace",
            hot_deleted_ms=verified + 1 if deleted else None,
        )
    )
    if rollup:
        build_rollup_day(cold, site, day)
    return df
