"""A small two-tier data set for the read API tests, written with the real stores and encoders.

Ten UTC days from 2025-03-01 (D0..D9), 5-minute cadence, five points:

- D0-D3: archived and deleted from hot (manifest ``hot_deleted_ms`` set): cold only, with hourly rollups.
- D4: archived but still in hot (manifest verified, not deleted). The cold copy has *different* values (+1000)
  so tests can see that hot wins, and it holds one extra point (``EXTRA``) that hot lacks for that day, which
  must come from cold.
- D5: missed by archival: hot only, no manifest entry.
- D6: backfilled straight to cold: verified manifest entry, no hot rows at all.
- D7-D9: hot only.

``truth`` is the answer every raw query must reproduce.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from bv_pipeline.resources.cold_store import LocalObjectStore
from bv_pipeline.resources.hot_store import SqliteHotStore
from bv_pipeline.resources.manifest_store import ManifestStore
from bv_pipeline.storage import cold_keys, parquet_layout, rollups
from bv_pipeline.storage.interfaces import HotStore, ManifestEntry, ObjectStore, PointMeta, RollupState
from bv_pipeline.storage.samples import SAMPLE_SCHEMA, day_bounds_ms

SITE = "test_site"
D0 = dt.date(2025, 3, 1)
DAYS = [D0 + dt.timedelta(days=i) for i in range(10)]
CADENCE_MS = 300_000
TEMP = "Building1.HVAC.AHU-1.SupplyTemp"
DAMPER = "Bldg1/VAV-707/DaTemp"
METER = "Building1.Elec.Main.kWh"
MODE = "Building1.HVAC.AHU-1.OccMode"  # enum point: text values
EXTRA = "Building1.HVAC.AHU-2.SupplyTemp"  # on D4 only in the cold copy
POINTS = [TEMP, DAMPER, METER, MODE, EXTRA]
COLD_DELETED = DAYS[0:4]
OVERLAP = DAYS[4]
MISSED = DAYS[5]
BACKFILLED = DAYS[6]
HOT_ONLY = DAYS[7:10]


@dataclass
class Dataset:
    root: Path
    hot: SqliteHotStore
    cold: LocalObjectStore
    truth: pl.DataFrame  # point, ts_ms, value, value_text; what a raw query over everything must return

    def day_truth(self, day: dt.date) -> pl.DataFrame:
        lo, hi = day_bounds_ms(day)
        return self.truth.filter((pl.col("ts_ms") >= lo) & (pl.col("ts_ms") < hi))


def day_samples(day: dt.date, points: list[str], *, offset: float = 0.0) -> pl.DataFrame:
    """Deterministic samples of one day: diurnal temperature, stepped damper, monotonic meter, enum mode."""
    lo, hi = day_bounds_ms(day)
    ts = np.arange(lo, hi, CADENCE_MS, dtype=np.int64)
    rng = np.random.default_rng(day.toordinal())
    frames = []
    for i, p in enumerate(points):
        phase = (ts % 86_400_000) / 86_400_000 * 2 * np.pi
        keep = rng.random(len(ts)) > 0.02  # ~2 % gaps, as real polling has
        t = ts[keep]
        n = len(t)
        text: list[str | None] = [None] * n
        if p == MODE:
            value = np.full(n, np.nan)
            text = ["occupied" if (x // 3_600_000) % 24 in range(7, 19) else "unoccupied" for x in t]
        elif p == METER:
            value = np.round(1000 + day.toordinal() * 10 + np.cumsum(rng.random(n)), 2)
        elif p == DAMPER:
            value = np.round(rng.integers(0, 101, n).astype(float), 1)
        else:
            value = np.round(20 + 3 * np.sin(phase[keep]) + rng.normal(0, 0.3, n) + i, 2)
        value = value + offset
        frames.append(
            pl.DataFrame(
                {
                    "point": [p] * n,
                    "ts_ms": t,
                    "value": [None if np.isnan(v) else float(v) for v in value],
                    "value_text": text,
                },
                schema={"point": pl.String, "ts_ms": pl.Int64, "value": pl.Float64, "value_text": pl.String},
            )
        )
    return pl.concat(frames).sort("point", "ts_ms")


def _arrow(df: pl.DataFrame) -> pa.Table:
    return df.to_arrow().cast(SAMPLE_SCHEMA)


def put_cold_day(
    hot: HotStore,
    cold: ObjectStore,
    day: dt.date,
    df: pl.DataFrame,
    *,
    deleted: bool,
    source: str,
    site: str = SITE,
    rollup: bool = True,
) -> int:
    """Write a day object and (unless ``rollup`` is False) its rollup, which records the object's checksum as the
    pipeline's does, then record the verified manifest entry. Returns the object size."""
    data, info = parquet_layout.encode_day(site, day, _arrow(df), source=source)
    key = cold_keys.samples_key(site, day)
    cold.put(key, data)
    verified = day_bounds_ms(day)[1] + 3_600_000
    state = None
    if rollup:
        rdata, rinfo = rollups.encode_rollup_day(
            site, day, rollups.hourly_rollup(_arrow(df)), source=source, source_checksum=info.checksum
        )
        cold.put(cold_keys.rollup_key(site, day), rdata)
        state = RollupState(
            key=cold_keys.rollup_key(site, day),
            rows=rinfo.rows,
            bytes=rinfo.bytes,
            checksum=rinfo.checksum,
            source_checksum=info.checksum,
            verified_ms=verified,
        )
    ManifestStore(cold, mirror=hot).put(
        ManifestEntry(
            site=site,
            day=day,
            key=key,
            rows=info.rows,
            bytes=info.bytes,
            checksum=info.checksum,
            schema_version=info.schema_version,
            verified_ms=verified,
            source=source,
            hot_deleted_ms=verified + 1 if deleted else None,
            rollup=state,
        )
    )
    return info.bytes


def build(root: Path) -> Dataset:
    hot = SqliteHotStore(root / "hot.sqlite3")
    hot.ensure_schema()
    cold = LocalObjectStore(root / "cold")
    kinds = {
        TEMP: ("temperature", "degF"),
        DAMPER: ("position", "%"),
        METER: ("meter", "kWh"),
        MODE: ("enum", None),
    }
    hot.upsert_points(
        SITE,
        [
            PointMeta(
                name=p,
                kind=kinds.get(p, ("temperature", "degF"))[0],
                unit=kinds.get(p, ("temperature", "degF"))[1],
                marker_tags=("ahu",) if "AHU" in p else (),
                collect_interval_s=CADENCE_MS // 1000,
            )
            for p in POINTS
        ],
    )
    base = [TEMP, DAMPER, METER, MODE]
    truth: list[pl.DataFrame] = []
    for day in COLD_DELETED:
        df = day_samples(day, base)
        put_cold_day(hot, cold, day, df, deleted=True, source="hot")
        truth.append(df)
    # D4: hot copy (wins) plus a differing cold copy that also holds EXTRA.
    hot_d4 = day_samples(OVERLAP, base)
    hot.upsert_samples(SITE, _arrow(hot_d4))
    cold_d4 = pl.concat([day_samples(OVERLAP, base, offset=1000.0), day_samples(OVERLAP, [EXTRA])]).sort(
        "point", "ts_ms"
    )
    put_cold_day(hot, cold, OVERLAP, cold_d4, deleted=False, source="hot")
    truth += [hot_d4, cold_d4.filter(pl.col("point") == EXTRA)]
    for day in [MISSED, *HOT_ONLY]:
        df = day_samples(day, base)
        hot.upsert_samples(SITE, _arrow(df))
        truth.append(df)
    # Sealed blocks up to noon of the last hot day; its afternoon stays in staging: reads see both layouts.
    last = max(OVERLAP, MISSED, *HOT_ONLY)
    hot.seal(SITE, int(dt.datetime(last.year, last.month, last.day, 12, tzinfo=dt.UTC).timestamp() * 1000))
    df = day_samples(BACKFILLED, base)
    put_cold_day(hot, cold, BACKFILLED, df, deleted=False, source="ace")
    truth.append(df)
    # A second site so discovery lists more than one.
    hot.upsert_points("other_site", [PointMeta(name="Other.Point")])
    return Dataset(root=root, hot=hot, cold=cold, truth=pl.concat(truth).sort("point", "ts_ms"))
