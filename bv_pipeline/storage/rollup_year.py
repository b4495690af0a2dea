"""Compacted hourly rollups: a whole site-year in which each point's year is contiguous and fetchable alone.

Why: a chart of a few points over a year at 1 h would otherwise read 365 daily rollup objects (~110k rows each
at 4,583 points) and decode nearly all of them. Here a point's year is one row group, so the same query costs one
ranged GET per point.

Layout (keys in ``cold_keys``):

- ``rollups/1h-year/site=<site>/year=<YYYY>/index.json`` is the commit point (``YearIndex``): the generation,
  the days included (each with the checksum of the raw day object its rollup was derived from, as the archive
  manifest records it), the parts with their point ranges, row counts, sizes and content checksums.
- ``.../gen=<generation>/part-<NNNN>.parquet`` hold the rows: ROLLUP_SCHEMA columns, sorted by (point, hour_ms),
  ZSTD. Parts are immutable (each compaction writes a new generation), so readers can cache footers and byte
  ranges by key forever.

Measured choices (4,583 points x 365 days, 40 M rows; figures in the README):

- Row groups hold whole points and at least ``MIN_GROUP_ROWS`` (one point-year of hours) rows, i.e. one point
  per group for a full year and several per group early in a year. One point per group fetched and decoded the
  fewest bytes per query (50 points: ~19 ms decode vs 30 ms at 2 points and 54 ms at 4 per group) for a footer
  of ~620 B per point (2.8 MB per site-year, parsed once and cached). Statistics are kept only for ``point`` and
  ``hour_ms`` (the columns row groups are selected by) to keep footers small.
- Parts are cut at about ``PART_TARGET_BYTES``. A site-year is 0.4-0.9 GB; one object that size would make every
  ranged GET cost O(object size) on S3 emulators such as moto (which reads the whole object per request), and a
  single multi-GB PUT has to be held in memory. With ~8 MB parts a query touches ~40 parts but still makes about
  one GET per point, and compaction writes and verifies part by part.
- Each part also carries the day list, row count, checksum and schema version in its key-value metadata, so a
  part is self-describing and verifiable without the index.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bv_pipeline.config import validate_site_name
from bv_pipeline.storage import cold_keys
from bv_pipeline.storage.compacted_parts import (
    PartFooter,
    PartInfo,
    RangeFile,
    fetch_footer_tail,
    group_bounds,
    part_metadata,
    parts_for,
)
from bv_pipeline.storage.compacted_parts import combined_checksum as _combined_checksum
from bv_pipeline.storage.parquet_layout import (
    ZSTD_LEVEL,
    ColdVerificationError,
)
from bv_pipeline.storage.rollups import MS_PER_HOUR, ROLLUP_SCHEMA, rollup_checksum

KIND_ROLLUP_1H_YEAR = "rollup_1h_year"
YEAR_SCHEMA_VERSION = 1
MIN_GROUP_ROWS = 8_760
PART_TARGET_BYTES = 8 * 1024 * 1024
ROLLUP_COLUMNS = ROLLUP_SCHEMA.names
# What a 1h/1d aggregate needs: ``samples`` and ``avg`` are never fetched by the read API.
QUERY_COLUMNS = ["point", "hour_ms", "count", "sum", "min", "max"]

# Parts are written with plain string names: from an Arrow dictionary the Parquet writer would store the whole
# site's dictionary (4,583 names) in every row group.
# Columns are ordered so those a query reads (QUERY_COLUMNS) form a contiguous prefix of every row group: one
# ranged GET per group, no bytes of ``samples``/``avg`` fetched.
PART_SCHEMA = pa.schema(
    [
        pa.field("point", pa.string(), nullable=False),
        *[ROLLUP_SCHEMA.field(c) for c in QUERY_COLUMNS[1:]],
        ROLLUP_SCHEMA.field("samples"),
        ROLLUP_SCHEMA.field("avg"),
    ]
)


# ---------------------------------------------------------------------------------------------- index


@dataclass(frozen=True)
class YearIndex:
    """What one published generation of a site-year holds. ``days`` maps each included day to the checksum of
    the raw day object its rollup was derived from; a reader trusts a day only while the manifest agrees."""

    site: str
    year: int
    generation: str
    days: dict[dt.date, str]
    parts: tuple[PartInfo, ...]
    rows: int
    checksum: str
    created_ms: int
    schema_version: int = YEAR_SCHEMA_VERSION

    def to_json(self) -> bytes:
        doc = {
            "kind": KIND_ROLLUP_1H_YEAR,
            "schema_version": self.schema_version,
            "site": self.site,
            "year": self.year,
            "generation": self.generation,
            "created_ms": self.created_ms,
            "rows": self.rows,
            "checksum": self.checksum,
            "days": {d.isoformat(): c for d, c in sorted(self.days.items())},
            "parts": [dataclasses.asdict(p) for p in self.parts],
        }
        return json.dumps(doc, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> YearIndex:
        try:
            doc = json.loads(data)
            if doc["kind"] != KIND_ROLLUP_1H_YEAR:
                raise ValueError(f"kind {doc['kind']!r}")
            index = cls(
                site=validate_site_name(doc["site"]),
                year=int(doc["year"]),
                generation=cold_keys.validate_generation(doc["generation"]),
                days={dt.date.fromisoformat(d): str(c) for d, c in doc["days"].items()},
                parts=tuple(PartInfo(**p) for p in doc["parts"]),
                rows=int(doc["rows"]),
                checksum=str(doc["checksum"]),
                created_ms=int(doc["created_ms"]),
                schema_version=int(doc["schema_version"]),
            )
        # AttributeError: valid JSON of the wrong shape (e.g. a list where an object belongs).
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ColdVerificationError(f"unreadable yearly rollup index: {exc!r}") from exc
        if index.schema_version != YEAR_SCHEMA_VERSION:
            raise ColdVerificationError(f"yearly rollup index schema version {index.schema_version}")
        # Readers GET what the index names: only this generation's parts, never another object of the bucket.
        prefix = cold_keys.rollup_year_generation_prefix(index.site, index.year, index.generation)
        for p in index.parts:
            if not p.key.startswith(prefix) or cold_keys.generation_of_part_key(p.key) != index.generation:
                raise ColdVerificationError(f"yearly rollup index names a foreign part key {p.key!r}")
        return index

    def parts_for(self, points: Sequence[str]) -> list[PartInfo]:
        """Parts whose point range can hold one of the sorted ``points``."""
        return parts_for(self.parts, points)


def combined_checksum(parts: Iterable[PartInfo]) -> str:
    """Checksum of a generation's content: over its part checksums in order (each covers its rows)."""
    return _combined_checksum(parts, b"bv-rollup-1h-year-v1\0")


__all__ = ["PartFooter", "PartInfo", "RangeFile", "fetch_footer_tail", "group_bounds", "part_metadata"]


# ---------------------------------------------------------------------------------------------- sorting


def _dictionary_chunks(column: pa.ChunkedArray) -> list[pa.DictionaryArray]:
    out = []
    for chunk in column.chunks:
        out.append(chunk if pa.types.is_dictionary(chunk.type) else pc.dictionary_encode(chunk))
    return out


def sort_year(tables: Sequence[pa.Table]) -> pa.Table:
    """Concatenate rollup tables (ROLLUP_SCHEMA columns, point as string or dictionary) into one table sorted
    by (point, hour_ms), ``point`` a dictionary whose values are the sorted distinct names (so index = rank).

    Raises ValueError when a (point, hour_ms) pair repeats: callers drop replaced days before merging.
    """
    tables = [t.select(ROLLUP_COLUMNS) for t in tables if t.num_rows]
    if not tables:
        return ROLLUP_SCHEMA.empty_table()
    chunks = [c for t in tables for c in _dictionary_chunks(t["point"])]
    names = pa.array(
        sorted({n for c in chunks for n in c.dictionary.cast(pa.string()).to_pylist()}), pa.string()
    )
    # Map every chunk's dictionary onto the global sorted names, then its indices onto ranks: no string work
    # per row, which matters at 40 M rows.
    ranks = np.concatenate(
        [
            pc.index_in(c.dictionary.cast(pa.string()), value_set=names)
            .to_numpy()
            .astype(np.int64)[c.indices.to_numpy(zero_copy_only=False)]
            for c in chunks
        ]
    )
    hours = np.concatenate([t["hour_ms"].combine_chunks().to_numpy() for t in tables]) // MS_PER_HOUR
    key = (ranks << 32) | (hours - hours.min())
    order = pl.Series(key).arg_sort().to_numpy().astype(np.int64, copy=False)
    sorted_key = key[order]
    if len(sorted_key) > 1 and (sorted_key[1:] == sorted_key[:-1]).any():
        raise ValueError("rollup rows repeat a (point, hour_ms): drop replaced days before merging")
    take = pa.array(order)
    columns: dict[str, Any] = {
        "point": pa.DictionaryArray.from_arrays(pa.array(ranks[order], pa.int32()), names),
    }
    for field in list(ROLLUP_SCHEMA)[1:]:
        chunks_of = [c for t in tables for c in t[field.name].cast(field.type).chunks]
        arr = pa.chunked_array(chunks_of, type=field.type).combine_chunks()
        columns[field.name] = arr.take(take)
    return pa.table(columns)


def days_of(table: pa.Table) -> np.ndarray:
    """Epoch day number of every row (UTC)."""
    return table["hour_ms"].combine_chunks().to_numpy() // 86_400_000


def drop_days(table: pa.Table, days: Iterable[dt.date]) -> pa.Table:
    """Rows of ``table`` whose UTC day is not in ``days``."""
    drop = {(d - dt.date(1970, 1, 1)).days for d in days}
    if not drop or table.num_rows == 0:
        return table
    keep = ~np.isin(days_of(table), np.array(sorted(drop), dtype=np.int64))
    return table.filter(pa.array(keep))


# ---------------------------------------------------------------------------------------------- encode


def _part_metadata(
    site: str, year: int, generation: str, part: int, rows: int, checksum: str, days: dict[dt.date, str]
) -> dict[str, str]:
    return {
        "bv.kind": KIND_ROLLUP_1H_YEAR,
        "bv.site": site,
        "bv.year": str(year),
        "bv.generation": generation,
        "bv.part": str(part),
        "bv.rows": str(rows),
        "bv.checksum": checksum,
        "bv.schema_version": str(YEAR_SCHEMA_VERSION),
        "bv.days": json.dumps({d.isoformat(): c for d, c in sorted(days.items())}, separators=(",", ":")),
    }


def _plain(table: pa.Table) -> pa.Table:
    return (
        table.set_column(0, "point", table["point"].cast(pa.string()))
        .select(PART_SCHEMA.names)
        .cast(PART_SCHEMA)
    )


def encode_year_parts(
    site: str,
    year: int,
    generation: str,
    table: pa.Table,
    days: dict[dt.date, str],
    *,
    part_target_bytes: int = PART_TARGET_BYTES,
    min_group_rows: int = MIN_GROUP_ROWS,
) -> Iterable[tuple[bytes, PartInfo]]:
    """Encode a ``sort_year`` table into parts, yielding each as soon as it is complete (bounded memory).

    Every row must lie in ``year`` (UTC). Row groups never split a point; a part is closed once it reaches
    ``part_target_bytes``.
    """
    validate_site_name(site)
    if table.num_rows:
        hours = table["hour_ms"].combine_chunks()
        lo, hi = pc.min_max(hours).values()
        start = int(dt.datetime(year, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
        end = int(dt.datetime(year + 1, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
        if lo.as_py() < start or hi.as_py() >= end:
            raise ValueError(f"rollup rows fall outside the year {year}")
    ranks = table["point"].combine_chunks().indices.to_numpy() if table.num_rows else np.empty(0, np.int64)
    groups = group_bounds(ranks, min_group_rows)
    part = 0
    i = 0
    while i < len(groups):
        sink = io.BytesIO()
        part_start = groups[i][0]
        with pq.ParquetWriter(
            sink,
            PART_SCHEMA,
            compression="zstd",
            compression_level=ZSTD_LEVEL,
            use_dictionary=["point", "samples", "count"],
            column_encoding={
                "hour_ms": "DELTA_BINARY_PACKED",
                **{c: "BYTE_STREAM_SPLIT" for c in ("sum", "avg", "min", "max")},
            },
            write_statistics=["point", "hour_ms"],
            store_schema=False,
        ) as writer:
            while i < len(groups):
                g0, g1 = groups[i]
                writer.write_table(_plain(table.slice(g0, g1 - g0)), row_group_size=g1 - g0)
                i += 1
                if sink.tell() >= part_target_bytes:
                    break
            part_end = groups[i - 1][1]
            rows = table.slice(part_start, part_end - part_start)
            checksum = rollup_checksum(rows)
            writer.add_key_value_metadata(
                _part_metadata(site, year, generation, part, rows.num_rows, checksum, days)
            )
        data = sink.getvalue()
        point = rows["point"]
        yield (
            data,
            PartInfo(
                key=cold_keys.rollup_year_part_key(site, year, generation, part),
                rows=rows.num_rows,
                bytes=len(data),
                checksum=checksum,
                first_point=str(point[0].as_py()),
                last_point=str(point[rows.num_rows - 1].as_py()),
            ),
        )
        part += 1


# ---------------------------------------------------------------------------------------------- decode / verify


def part_days(meta: dict[str, str]) -> dict[dt.date, str]:
    return {dt.date.fromisoformat(d): c for d, c in json.loads(meta.get("bv.days", "{}")).items()}


def decode_part(data: bytes) -> pa.Table:
    """A part's rows as ROLLUP_SCHEMA columns, ``point`` dictionary-encoded, sorted by (point, hour_ms)."""
    try:
        pf = pq.ParquetFile(pa.BufferReader(data), read_dictionary=["point"])
        return (
            pf.read(columns=ROLLUP_COLUMNS, use_threads=True)
            .select(ROLLUP_COLUMNS)
            .replace_schema_metadata(None)
        )
    except (pa.ArrowException, OSError) as exc:
        raise ColdVerificationError(f"unreadable yearly rollup part: {exc}") from exc


def verify_part(data: bytes, expected: PartInfo, days: dict[dt.date, str]) -> pa.Table:
    """Prove a part holds what its PartInfo says: size, metadata, row count and recomputed content checksum.

    Returns the decoded rows. Raises ColdVerificationError.
    """
    if len(data) != expected.bytes:
        raise ColdVerificationError(f"{expected.key}: {len(data)} bytes, expected {expected.bytes}")
    meta = part_metadata(data)
    if meta.get("bv.kind") != KIND_ROLLUP_1H_YEAR or meta.get("bv.checksum") != expected.checksum:
        raise ColdVerificationError(f"{expected.key}: metadata does not match the index")
    if part_days(meta) != days:
        raise ColdVerificationError(f"{expected.key}: day list does not match the index")
    table = decode_part(data)
    if table.num_rows != expected.rows or rollup_checksum(table) != expected.checksum:
        raise ColdVerificationError(f"{expected.key}: content does not match its checksum")
    return table


# ---------------------------------------------------------------------------------------------- selective read


def read_groups(
    source: RangeFile, footer: PartFooter, groups: Sequence[int], points: Sequence[str]
) -> pa.Table:
    """QUERY_COLUMNS of ``points`` from ``groups`` of a part, ``point`` as a dictionary (filtered on indices)."""
    pf = pq.ParquetFile(source, metadata=footer.meta, pre_buffer=False, read_dictionary=["point"])
    table = pf.read_row_groups(groups, columns=QUERY_COLUMNS, use_threads=False)
    if table.num_rows == 0:
        return table
    # A group may hold several points (early in a year): keep only the wanted ones.
    if any(footer.first[g] != footer.last[g] for g in groups):
        mask = pc.is_in(table["point"].cast(pa.string()), value_set=pa.array(list(points), pa.string()))
        table = table.filter(mask)
    return table
