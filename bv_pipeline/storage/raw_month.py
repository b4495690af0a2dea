"""Compacted raw samples: a site-month in which each point's month is one row group, fetchable alone.

Why: one point over a year read from the daily objects costs 365 ranged GETs (one row group of each day
object). Object stores answer a GET in milliseconds at best, and an S3 emulator such as moto serves one at a
time, so the GET count, not decoding, sets the time of long raw queries. Here a point's month is contiguous: a
year of one point is ~12 footer GETs (cached afterwards: parts are immutable) plus ~12 row-group GETs.

The daily objects stay the canonical cold tier (one Parquet file per site per day); this is a derived copy for
reads, published only after verification, and used by the reader day by day only while the archive manifest
still names the checksum each day was compacted from. It costs about as much storage again as the raw days.

Layout (keys in ``cold_keys``), the same scheme as the yearly rollups (``storage.rollup_year``):

- ``timeseries-month/site=<site>/month=<YYYY-MM>/index.json`` is the commit point (``MonthIndex``): the
  generation, the days included (each with the manifest checksum and row count of the day object it was read
  from), and the parts with their point ranges, row counts, sizes and content checksums.
- ``.../gen=<generation>/part-<NNNN>.parquet`` hold the rows: SAMPLE_SCHEMA columns sorted by (point, ts_ms),
  ZSTD, ``ts_ms`` DELTA_BINARY_PACKED and ``value`` dictionary-encoded as in the day objects. Row groups hold
  whole points, at least ``MIN_GROUP_ROWS`` rows (a full point-month of 1-minute samples is 43,200 rows, so
  one point per group; sparse points share a group). Parts are cut at about ``PART_TARGET_BYTES`` so a ranged
  GET never costs O(a month of a site) on an emulator that copies the whole object per request.
- Each part's key-value metadata repeats the day list, row count, checksum and schema version: a part is
  self-describing and verifiable without the index.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bv_pipeline.config import validate_site_name
from bv_pipeline.storage import cold_keys
from bv_pipeline.storage.parquet_layout import (
    ZSTD_LEVEL,
    ColdVerificationError,
    content_checksum,
    read_footer,
)
from bv_pipeline.storage.rollup_year import PartFooter, PartInfo, RangeFile, group_bounds
from bv_pipeline.storage.samples import MS_PER_DAY, SAMPLE_SCHEMA

KIND_SAMPLES_MONTH = "samples_month"
MONTH_SCHEMA_VERSION = 1
MIN_GROUP_ROWS = 32_768
PART_TARGET_BYTES = 8 * 1024 * 1024
SAMPLE_COLUMNS = SAMPLE_SCHEMA.names
_MONTH_OFFSET_BITS = 32  # a month is < 2.7e9 ms < 2**32, so (rank, ts - month start) packs into one int64 key


def month_of(day: dt.date) -> dt.date:
    return day.replace(day=1)


def month_days(month: dt.date) -> tuple[dt.date, dt.date]:
    """First and last day of the month that starts at ``month``."""
    nxt = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return month, nxt - dt.timedelta(days=1)


def month_bounds_ms(month: dt.date) -> tuple[int, int]:
    first, last = month_days(month)
    epoch = dt.date(1970, 1, 1)
    return (first - epoch).days * MS_PER_DAY, ((last - epoch).days + 1) * MS_PER_DAY


# ---------------------------------------------------------------------------------------------- index


@dataclass(frozen=True)
class MonthIndex:
    """What one published generation of a site-month holds. ``days`` maps each included day to the checksum of
    the day object it was read from; a reader uses a day only while the manifest still names that checksum."""

    site: str
    month: dt.date
    generation: str
    days: dict[dt.date, str]
    day_rows: dict[dt.date, int]
    parts: tuple[PartInfo, ...]
    rows: int
    checksum: str
    created_ms: int
    schema_version: int = MONTH_SCHEMA_VERSION

    def to_json(self) -> bytes:
        doc = {
            "kind": KIND_SAMPLES_MONTH,
            "schema_version": self.schema_version,
            "site": self.site,
            "month": f"{self.month:%Y-%m}",
            "generation": self.generation,
            "created_ms": self.created_ms,
            "rows": self.rows,
            "checksum": self.checksum,
            "days": {
                d.isoformat(): {"checksum": c, "rows": self.day_rows[d]} for d, c in sorted(self.days.items())
            },
            "parts": [dataclasses.asdict(p) for p in self.parts],
        }
        return json.dumps(doc, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> MonthIndex:
        try:
            doc = json.loads(data)
            if doc["kind"] != KIND_SAMPLES_MONTH:
                raise ValueError(f"kind {doc['kind']!r}")
            days = {dt.date.fromisoformat(d): v for d, v in doc["days"].items()}
            index = cls(
                site=validate_site_name(doc["site"]),
                month=dt.date.fromisoformat(doc["month"] + "-01"),
                generation=cold_keys.validate_generation(doc["generation"]),
                days={d: str(v["checksum"]) for d, v in days.items()},
                day_rows={d: int(v["rows"]) for d, v in days.items()},
                parts=tuple(PartInfo(**p) for p in doc["parts"]),
                rows=int(doc["rows"]),
                checksum=str(doc["checksum"]),
                created_ms=int(doc["created_ms"]),
                schema_version=int(doc["schema_version"]),
            )
        # AttributeError: valid JSON of the wrong shape (e.g. a list where an object belongs).
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ColdVerificationError(f"unreadable monthly samples index: {exc!r}") from exc
        if index.schema_version != MONTH_SCHEMA_VERSION:
            raise ColdVerificationError(f"monthly samples index schema version {index.schema_version}")
        if index.rows != sum(index.day_rows.values()) or index.rows != sum(p.rows for p in index.parts):
            raise ColdVerificationError("monthly samples index: day, part and total row counts disagree")
        return index

    def parts_for(self, points: Sequence[str]) -> list[PartInfo]:
        """Parts whose point range can hold one of the sorted ``points``."""
        out = []
        for p in self.parts:
            i = bisect.bisect_left(points, p.first_point)
            if i < len(points) and points[i] <= p.last_point:
                out.append(p)
        return out


def combined_checksum(parts: Iterable[PartInfo]) -> str:
    """Checksum of a generation's content: over its part checksums in order (each covers its rows)."""
    h = hashlib.blake2b(digest_size=20)
    h.update(b"bv-samples-month-v1\0")
    for p in parts:
        h.update(p.checksum.encode() + b"\0")
    return "blake2b:" + h.hexdigest()


# ---------------------------------------------------------------------------------------------- merge


def merge_days(month: dt.date, days: Sequence[pa.Table]) -> tuple[pa.Table, np.ndarray]:
    """Day tables (SAMPLE_SCHEMA columns; ``point`` string or dictionary; each day's rows inside the month) into
    one table sorted by (point, ts_ms) with ``point`` as plain strings, plus each row's point rank (int64).

    Raises ValueError when a row lies outside the month or a (point, ts_ms) pair repeats.
    """
    days = [d for d in days if d.num_rows]
    if not days:
        return SAMPLE_SCHEMA.empty_table(), np.empty(0, np.int64)
    start, end = month_bounds_ms(month)
    chunks = []
    for t in days:
        for c in t["point"].chunks:
            chunks.append(c if pa.types.is_dictionary(c.type) else pc.dictionary_encode(c))
    names = pa.array(
        sorted({n for c in chunks for n in c.dictionary.cast(pa.string()).to_pylist()}), pa.string()
    )
    # Each chunk's dictionary maps onto the sorted names once; rows only gather integers.
    ranks = np.concatenate(
        [
            pc.index_in(c.dictionary.cast(pa.string()), value_set=names)
            .to_numpy()
            .astype(np.int64)[c.indices.to_numpy(zero_copy_only=False)]
            for c in chunks
        ]
    )
    ts = np.concatenate([t["ts_ms"].combine_chunks().to_numpy() for t in days])
    if len(ts) and (ts.min() < start or ts.max() >= end):
        raise ValueError(f"samples fall outside the month {month:%Y-%m}")
    key = (ranks << _MONTH_OFFSET_BITS) | (ts - start)
    order = pl.Series(key).arg_sort().to_numpy().astype(np.int64, copy=False)
    sorted_key = key[order]
    if len(sorted_key) > 1 and not bool(np.all(sorted_key[1:] > sorted_key[:-1])):
        raise ValueError("samples repeat a (point, ts_ms) pair across the month's days")
    take = pa.array(order)
    sorted_ranks = sorted_key >> _MONTH_OFFSET_BITS
    columns = {
        "point": names.take(pa.array(sorted_ranks)),
        "ts_ms": pa.array((sorted_key & ((1 << _MONTH_OFFSET_BITS) - 1)) + start, pa.int64()),
    }
    for name in ("value", "value_text"):
        arr = pa.chunked_array([c for t in days for c in t[name].cast(SAMPLE_SCHEMA.field(name).type).chunks])
        columns[name] = arr.combine_chunks().take(take)
    return pa.table(columns, schema=SAMPLE_SCHEMA), sorted_ranks


# ---------------------------------------------------------------------------------------------- encode


def _part_metadata(
    site: str,
    month: dt.date,
    generation: str,
    part: int,
    rows: int,
    checksum: str,
    days: dict[dt.date, str],
) -> dict[str, str]:
    return {
        "bv.kind": KIND_SAMPLES_MONTH,
        "bv.site": site,
        "bv.month": f"{month:%Y-%m}",
        "bv.generation": generation,
        "bv.part": str(part),
        "bv.rows": str(rows),
        "bv.checksum": checksum,
        "bv.schema_version": str(MONTH_SCHEMA_VERSION),
        "bv.days": json.dumps({d.isoformat(): c for d, c in sorted(days.items())}, separators=(",", ":")),
    }


def encode_month_parts(
    site: str,
    month: dt.date,
    generation: str,
    table: pa.Table,
    ranks: np.ndarray,
    days: dict[dt.date, str],
    *,
    first_part: int = 0,
    part_target_bytes: int = PART_TARGET_BYTES,
    min_group_rows: int = MIN_GROUP_ROWS,
) -> Iterable[tuple[bytes, PartInfo]]:
    """Encode a ``merge_days`` table into parts numbered from ``first_part``, yielding each as soon as it is
    complete. Row groups never split a point; a part is closed once it reaches ``part_target_bytes``."""
    validate_site_name(site)
    groups = group_bounds(ranks, min_group_rows)
    part = first_part
    i = 0
    while i < len(groups):
        sink = io.BytesIO()
        part_start = groups[i][0]
        with pq.ParquetWriter(
            sink,
            SAMPLE_SCHEMA,
            compression="zstd",
            compression_level=ZSTD_LEVEL,
            use_dictionary=["point", "value", "value_text"],
            column_encoding={"ts_ms": "DELTA_BINARY_PACKED"},
            write_statistics=["point", "ts_ms"],
            store_schema=False,
        ) as writer:
            while i < len(groups):
                g0, g1 = groups[i]
                writer.write_table(table.slice(g0, g1 - g0), row_group_size=g1 - g0)
                i += 1
                if sink.tell() >= part_target_bytes:
                    break
            part_end = groups[i - 1][1]
            rows = table.slice(part_start, part_end - part_start)
            checksum = content_checksum(rows)
            writer.add_key_value_metadata(
                _part_metadata(site, month, generation, part, rows.num_rows, checksum, days)
            )
        data = sink.getvalue()
        yield (
            data,
            PartInfo(
                key=cold_keys.samples_month_part_key(site, month, generation, part),
                rows=rows.num_rows,
                bytes=len(data),
                checksum=checksum,
                first_point=str(rows["point"][0].as_py()),
                last_point=str(rows["point"][rows.num_rows - 1].as_py()),
            ),
        )
        part += 1


# ---------------------------------------------------------------------------------------------- decode / verify


def part_metadata(data_or_tail: bytes) -> dict[str, str]:
    """The ``bv.*`` key-value metadata of a part (whole object or a tail holding its footer)."""
    kv = read_footer(data_or_tail).metadata or {}
    return {k.decode(): v.decode() for k, v in kv.items() if k.startswith(b"bv.")}


def decode_part(data: bytes) -> pa.Table:
    try:
        pf = pq.ParquetFile(pa.BufferReader(data))
        return pf.read(columns=SAMPLE_COLUMNS, use_threads=True).cast(SAMPLE_SCHEMA)
    except (pa.ArrowException, OSError) as exc:
        raise ColdVerificationError(f"unreadable monthly samples part: {exc}") from exc


def verify_part(data: bytes, expected: PartInfo, days: dict[dt.date, str]) -> int:
    """Prove a part holds what its PartInfo says: size, metadata, and the content checksum recomputed from the
    decoded rows. Returns the row count. Raises ColdVerificationError."""
    if len(data) != expected.bytes:
        raise ColdVerificationError(f"{expected.key}: {len(data)} bytes, expected {expected.bytes}")
    meta = part_metadata(data)
    if meta.get("bv.kind") != KIND_SAMPLES_MONTH or meta.get("bv.checksum") != expected.checksum:
        raise ColdVerificationError(f"{expected.key}: metadata does not match the index")
    listed = {dt.date.fromisoformat(d): c for d, c in json.loads(meta.get("bv.days", "{}")).items()}
    if listed != days:
        raise ColdVerificationError(f"{expected.key}: day list does not match the index")
    table = decode_part(data)
    if table.num_rows != expected.rows or content_checksum(table) != expected.checksum:
        raise ColdVerificationError(f"{expected.key}: content does not match its checksum")
    return table.num_rows


# ---------------------------------------------------------------------------------------------- selective read


def read_groups(
    source: RangeFile, footer: PartFooter, groups: Sequence[int], points: Sequence[str]
) -> pa.Table:
    """SAMPLE_SCHEMA rows of the sorted ``points`` from ``groups`` of a part, ``point`` as plain strings."""
    pf = pq.ParquetFile(source, metadata=footer.meta, pre_buffer=False, read_dictionary=["point"])
    table = pf.read_row_groups(groups, columns=SAMPLE_COLUMNS, use_threads=False)
    if table.num_rows and any(footer.first[g] != footer.last[g] for g in groups):
        # A group may hold several sparse points: keep only the wanted ones.
        mask = pc.is_in(table["point"].cast(pa.string()), value_set=pa.array(list(points), pa.string()))
        table = table.filter(mask)
    return table.cast(SAMPLE_SCHEMA)
