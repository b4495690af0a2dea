"""Cold days with verified manifest entries and current daily rollups, for the yearly-rollup tests.

Each day is written the way the pipeline writes it: the raw object and its verified manifest entry
(``put_cold_day``), then ``build_rollup_day`` (the real logic, which records the raw checksum in the rollup).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from bv_pipeline.logic.archive import build_rollup_day
from bv_pipeline.storage.interfaces import HotStore, ObjectStore
from bv_pipeline_tests.test_api._data import day_samples, put_cold_day

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
    put_cold_day(hot, cold, day, df, deleted=deleted, source="ace", site=site, rollup=False)
    if rollup:
        build_rollup_day(cold, site, day, hot=hot)
    return df
