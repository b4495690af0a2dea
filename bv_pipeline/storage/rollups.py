"""Hourly rollups of one site-day, stored next to the raw day files under ``rollups/1h/``.

Rollups answer "many points x many days at 1 h" queries (the anchors' Q2) from 24 rows per point-day instead of
1,440 raw samples.

What is aggregated: ``count``, ``sum``, ``avg``, ``min`` and ``max`` cover the *finite numeric* values of the
hour only. Non-numeric samples (``value_text``), nulls, NaN and +/-inf are not aggregated, because one inf or NaN
would poison every statistic of the hour; ``samples`` counts every row of the hour so a reader can still see that
data (e.g. an enum point) exists. An hour with samples but no finite value has ``count`` 0 and null
``sum``/``avg``/``min``/``max``.

Besides the ``bv.*`` keys of every cold object, a rollup records ``bv.source_checksum``: the content checksum of
the raw day object it was computed from (the manifest's checksum). Compaction into the yearly object
(``rollup_year``) uses it to prove a daily rollup is current, i.e. not left over from before a re-archival.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bv_pipeline.config import validate_site_name
from bv_pipeline.storage.parquet_layout import (
    KIND_ROLLUP_1H,
    SCHEMA_VERSION,
    ZSTD_LEVEL,
    DayFileInfo,
    _metadata,
    _parquet_file,
    _table_checksum,
    read_footer,
)
from bv_pipeline.storage.samples import day_bounds_ms

MS_PER_HOUR = 3_600_000

ROLLUP_SCHEMA = pa.schema(
    [
        pa.field("point", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("hour_ms", pa.int64(), nullable=False),
        pa.field("samples", pa.int64(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
        pa.field("sum", pa.float64()),
        pa.field("avg", pa.float64()),
        pa.field("min", pa.float64()),
        pa.field("max", pa.float64()),
    ]
)


def hourly_rollup(samples: pa.Table) -> pa.Table:
    """Per (point, UTC hour) statistics of SAMPLE_SCHEMA samples, as ROLLUP_SCHEMA sorted by (point, hour_ms)."""
    if samples.num_rows == 0:
        return ROLLUP_SCHEMA.empty_table()
    df = pl.from_arrow(samples.select(["point", "ts_ms", "value"]))
    assert isinstance(df, pl.DataFrame)
    finite = pl.col("value").is_finite().fill_null(False)
    v = pl.col("value").filter(finite)
    out = (
        df.lazy()
        .with_columns(hour_ms=pl.col("ts_ms") - pl.col("ts_ms").mod(MS_PER_HOUR))  # floor, also before 1970
        .group_by("point", "hour_ms")
        .agg(
            samples=pl.len().cast(pl.Int64),
            count=finite.sum().cast(pl.Int64),
            sum=v.sum(),
            avg=v.mean(),
            min=v.min(),
            max=v.max(),
        )
        # polars sums an empty group to 0; an hour without finite values has no sum
        .with_columns(sum=pl.when(pl.col("count") > 0).then(pl.col("sum")))
        .sort("point", "hour_ms")
        .collect()
    )
    table = out.to_arrow()
    return pa.table(
        {
            "point": table["point"].cast(pa.string()).combine_chunks().dictionary_encode(),
            **{f.name: table[f.name].cast(f.type) for f in list(ROLLUP_SCHEMA)[1:]},
        },
        schema=ROLLUP_SCHEMA,
    )


def rollup_checksum(rollup: pa.Table) -> str:
    """Encoding-independent checksum of a rollup table in (point, hour_ms) order."""
    return _table_checksum(rollup.select(ROLLUP_SCHEMA.names), b"bv-rollup-1h-v1\0")


SOURCE_CHECKSUM_KEY = "bv.source_checksum"


def encode_rollup_day(
    site: str, day: dt.date, rollup: pa.Table, *, source: str = "hot", source_checksum: str | None = None
) -> tuple[bytes, DayFileInfo]:
    """Encode one site-day of hourly rollups (ROLLUP_SCHEMA). Raises ValueError for hours outside the day.

    ``source_checksum`` is the content checksum of the raw day object the rollup was computed from.
    """
    validate_site_name(site)
    table = rollup.select(ROLLUP_SCHEMA.names).cast(ROLLUP_SCHEMA)
    start_ms, end_ms = day_bounds_ms(day)
    if table.num_rows:
        df = pl.from_arrow(table.select(["point", "hour_ms"]))
        assert isinstance(df, pl.DataFrame)
        hours = df["hour_ms"]
        if hours.min() < start_ms or hours.max() >= end_ms or (hours % MS_PER_HOUR != 0).any():  # type: ignore[operator]
            raise ValueError(f"rollup hours must be whole UTC hours inside {day.isoformat()}")
        if df.select(pl.struct("point", "hour_ms").is_duplicated().any()).item():
            raise ValueError("rollup has duplicate (point, hour_ms) rows")
        # Arrow cannot sort a dictionary column directly: sort on its string values.
        keys = pa.table({"point": table["point"].cast(pa.string()), "hour_ms": table["hour_ms"]})
        table = table.take(
            pc.sort_indices(keys, sort_keys=[("point", "ascending"), ("hour_ms", "ascending")])
        )
    info = DayFileInfo(
        site=site,
        day=day,
        rows=table.num_rows,
        bytes=0,
        checksum=rollup_checksum(table),
        schema_version=SCHEMA_VERSION,
        point_count=int(pc.count_distinct(table["point"].cast(pa.string())).as_py()),
        source=source,
        kind=KIND_ROLLUP_1H,
    )
    sink = io.BytesIO()
    metadata = _metadata(info)
    if source_checksum is not None:
        metadata[SOURCE_CHECKSUM_KEY] = source_checksum
    pq.write_table(
        table.replace_schema_metadata(metadata),
        sink,
        compression="zstd",
        compression_level=ZSTD_LEVEL,
        use_dictionary=["point"],
        column_encoding={
            "hour_ms": "DELTA_BINARY_PACKED",
            **{c: "BYTE_STREAM_SPLIT" for c in ("sum", "avg", "min", "max")},
        },
        write_statistics=True,
    )
    data = sink.getvalue()
    return data, dataclasses.replace(info, bytes=len(data))


def decode_rollup(data: bytes) -> pa.Table:
    """Read a rollup object back to ROLLUP_SCHEMA, sorted by (point, hour_ms)."""
    table = _parquet_file(data).read(columns=ROLLUP_SCHEMA.names)
    return table.cast(ROLLUP_SCHEMA).replace_schema_metadata(None)


def rollup_source_checksum(data_or_tail: bytes) -> str | None:
    """``bv.source_checksum`` of a rollup object (whole, or a tail holding the footer); None when not recorded."""
    kv = read_footer(data_or_tail).metadata or {}
    value = kv.get(SOURCE_CHECKSUM_KEY.encode())
    return value.decode() if value else None
