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

import dataclasses
import datetime as dt
import hashlib
import io
import itertools
import json
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bv_pipeline.config import validate_site_name
from bv_pipeline.storage import cold_keys, parquet_layout
from bv_pipeline.storage.compacted_parts import (
    PartFooter,
    PartInfo,
    RangeFile,
    group_bounds,
    part_metadata,
    parts_for,
)
from bv_pipeline.storage.compacted_parts import combined_checksum as _combined_checksum
from bv_pipeline.storage.parquet_layout import ZSTD_LEVEL, ColdVerificationError
from bv_pipeline.storage.samples import MS_PER_DAY, SAMPLE_SCHEMA

KIND_SAMPLES_MONTH = "samples_month"
MONTH_SCHEMA_VERSION = 1
MIN_GROUP_ROWS = 32_768
PART_TARGET_BYTES = 8 * 1024 * 1024
SAMPLE_COLUMNS = SAMPLE_SCHEMA.names


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
    the day object it was read from; a reader uses a day only while the manifest still names that checksum.
    ``skipped`` maps each day left out (its object did not match the manifest) to the manifest entry's version
    (checksum and verification time) then, so the month is not rebuilt every night for the same bad day, only
    once the day is archived again."""

    site: str
    month: dt.date
    generation: str
    days: dict[dt.date, str]
    day_rows: dict[dt.date, int]
    parts: tuple[PartInfo, ...]
    rows: int
    checksum: str
    created_ms: int
    skipped: dict[dt.date, str] = dataclasses.field(default_factory=dict)
    schema_version: int = MONTH_SCHEMA_VERSION

    def to_json(self) -> bytes:
        doc = {
            "kind": KIND_SAMPLES_MONTH,
            "skipped": {d.isoformat(): c for d, c in sorted(self.skipped.items())},
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
                skipped={dt.date.fromisoformat(d): str(c) for d, c in doc.get("skipped", {}).items()},
                schema_version=int(doc["schema_version"]),
            )
        # AttributeError: valid JSON of the wrong shape (e.g. a list where an object belongs).
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ColdVerificationError(f"unreadable monthly samples index: {exc!r}") from exc
        if index.schema_version != MONTH_SCHEMA_VERSION:
            raise ColdVerificationError(f"monthly samples index schema version {index.schema_version}")
        if index.rows != sum(index.day_rows.values()) or index.rows != sum(p.rows for p in index.parts):
            raise ColdVerificationError("monthly samples index: day, part and total row counts disagree")
        # Readers GET what the index names: only this generation's parts, never another object of the bucket.
        prefix = f"{cold_keys.samples_month_prefix(index.site, index.month)}gen={index.generation}/"
        for p in index.parts:
            if (
                not p.key.startswith(prefix)
                or cold_keys.generation_of_month_part_key(p.key) != index.generation
            ):
                raise ColdVerificationError(f"monthly samples index names a foreign part key {p.key!r}")
        return index

    def parts_for(self, points: Sequence[str]) -> list[PartInfo]:
        """Parts whose point range can hold one of the sorted ``points``."""
        return parts_for(self.parts, points)


def combined_checksum(parts: Iterable[PartInfo]) -> str:
    """Checksum of a generation's content: over its part checksums in order (each covers its rows)."""
    return _combined_checksum(parts, b"bv-samples-month-v1\0")


# ---------------------------------------------------------------------------------------------- checksum


def _runs(names: pa.Array, indices: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Run-length form of a point column given as dictionary ``names`` and per-row ``indices``."""
    if len(indices) == 0:
        return [], np.empty(0, np.int64)
    starts = np.concatenate([[0], np.flatnonzero(indices[1:] != indices[:-1]) + 1])
    lengths = np.diff(np.concatenate([starts, [len(indices)]])).astype(np.int64)
    return names.take(pa.array(indices[starts])).cast(pa.string()).to_pylist(), lengths


def part_checksum(
    run_names: Sequence[str], run_lengths: np.ndarray, ts: np.ndarray, value: pa.Array, value_text: pa.Array
) -> str:
    """Content checksum of a part: its points as runs (name, row count), then ts_ms, value and value_text.

    Encoding-independent like ``parquet_layout.content_checksum``, but the point column (one name repeated per
    row, ~35 B) is hashed as runs: hashing it row by row was most of the cost of compacting a month.
    """
    h = hashlib.blake2b(digest_size=20)
    h.update(b"bv-samples-month-part-v1\0")
    h.update(struct.pack("<qq", len(ts), len(run_names)))
    h.update("\0".join(run_names).encode() + b"\0")
    h.update(np.asarray(run_lengths, dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(ts, dtype="<i8").tobytes())
    parquet_layout.hash_numbers(h, value)
    parquet_layout.hash_strings(h, value_text)
    return "blake2b:" + h.hexdigest()


def _check_order(run_names: Sequence[str], run_lengths: np.ndarray, ts: np.ndarray) -> None:
    """Runs name each point once, in sorted order, and ts_ms strictly increases within every run."""
    if any(a >= b for a, b in itertools.pairwise(run_names)):
        raise ColdVerificationError("points are not sorted, or one is split into several runs")
    if len(ts) > 1:
        step = np.diff(ts) > 0
        boundaries = np.cumsum(run_lengths)[:-1] - 1  # the last row of every run but the last
        step[boundaries] = True
        if not step.all():
            raise ColdVerificationError("ts_ms does not strictly increase within a point")


# ---------------------------------------------------------------------------------------------- merge


@dataclass
class MergedRows:
    """A chunk of a month's points, rows sorted by (point, ts_ms), the point column kept as ranks into ``names``
    (materialising ~35 B of name per row cost more than writing the rows)."""

    names: pa.Array  # sorted distinct names
    ranks: np.ndarray  # int64 per row, non-decreasing
    ts: np.ndarray  # int64 per row
    value: pa.Array  # float64
    value_text: pa.Array  # string

    @classmethod
    def empty(cls) -> MergedRows:
        none = np.empty(0, np.int64)
        return cls(
            pa.array([], pa.string()), none, none, pa.array([], pa.float64()), pa.array([], pa.string())
        )

    @property
    def num_rows(self) -> int:
        return len(self.ts)

    def table(self, start: int, end: int) -> pa.Table:
        """Rows [start, end) as a SAMPLE_SCHEMA table with plain string names."""
        return pa.table(
            {
                "point": self.names.take(pa.array(self.ranks[start:end])),
                "ts_ms": pa.array(self.ts[start:end], pa.int64()),
                "value": self.value.slice(start, end - start),
                "value_text": self.value_text.slice(start, end - start),
            },
            schema=SAMPLE_SCHEMA,
        )

    def checksum(self, start: int, end: int) -> str:
        names, lengths = _runs(self.names, self.ranks[start:end])
        return part_checksum(
            names,
            lengths,
            self.ts[start:end],
            self.value.slice(start, end - start),
            self.value_text.slice(start, end - start),
        )


def merge_days(month: dt.date, days: Sequence[pa.Table]) -> MergedRows:
    """Day tables (SAMPLE_SCHEMA columns; ``point`` string or dictionary; rows inside the month), one per day,
    merged into (point, ts_ms) order.

    No global sort: with the days in time order and each sorted by (point, ts_ms), as day objects are, a point's
    rows in the month are its day runs one after another, so every row's destination follows from per-day point
    counts (O(rows), vectorised). Tables are put in time order first, and a table not sorted by point is sorted
    on its own. The result is then checked to be strictly ordered, so a repeated (point, ts_ms) or days whose
    times interleave raise ValueError rather than produce a wrong object; so do rows outside the month.
    """
    days = [d for d in days if d.num_rows]
    if not days:
        return MergedRows.empty()
    start, end = month_bounds_ms(month)
    ts_days = [t["ts_ms"].combine_chunks().to_numpy() for t in days]
    if any(ts.min() < start or ts.max() >= end for ts in ts_days):
        raise ValueError(f"samples fall outside the month {month:%Y-%m}")
    by_time = sorted(range(len(days)), key=lambda k: int(ts_days[k].min()))
    days, ts_days = [days[k] for k in by_time], [ts_days[k] for k in by_time]
    per_day_chunks = []
    for t in days:
        per_day_chunks.append(
            [c if pa.types.is_dictionary(c.type) else pc.dictionary_encode(c) for c in t["point"].chunks]
        )
    names = pa.array(
        sorted({n for cs in per_day_chunks for c in cs for n in c.dictionary.cast(pa.string()).to_pylist()}),
        pa.string(),
    )
    n_names = len(names)
    day_ranks = [
        np.concatenate(
            [
                pc.index_in(c.dictionary.cast(pa.string()), value_set=names)
                .to_numpy()
                .astype(np.int64)[c.indices.to_numpy(zero_copy_only=False)]
                for c in cs
            ]
        )
        for cs in per_day_chunks
    ]
    # The destination formula needs each day's rows grouped by point in rank order: sort a day that is not.
    perms: list[np.ndarray | None] = []
    for k, (r, ts) in enumerate(zip(day_ranks, ts_days, strict=True)):
        if len(r) > 1 and not bool(np.all(r[1:] >= r[:-1])):
            perm = pl.Series((r << 32) | (ts - start)).arg_sort().to_numpy().astype(np.int64, copy=False)
            day_ranks[k] = r[perm]
            perms.append(perm)
        else:
            perms.append(None)
    counts = np.stack([np.bincount(r, minlength=n_names) for r in day_ranks])  # (days, names)
    point_start = np.concatenate([[0], np.cumsum(counts.sum(axis=0))[:-1]])  # first output row of each point
    before = np.cumsum(counts, axis=0) - counts  # rows of each point in earlier days
    total = int(counts.sum())
    order = np.empty(total, np.int64)  # order[dest] = source row (days concatenated)
    offset = 0
    for k, r in enumerate(day_ranks):
        run_start = np.concatenate([[0], np.cumsum(counts[k])[:-1]])  # the day's first row of each point
        dest = (point_start + before[k] - run_start)[r] + np.arange(len(r), dtype=np.int64)
        perm = perms[k]
        order[dest] = offset + (perm if perm is not None else np.arange(len(r), dtype=np.int64))
        offset += len(r)
    ranks = np.repeat(np.arange(n_names, dtype=np.int64), counts.sum(axis=0))
    ts = np.concatenate(ts_days)[order]
    if total > 1:
        same_point = ranks[1:] == ranks[:-1]
        if not bool(np.all(ts[1:][same_point] > ts[:-1][same_point])):
            raise ValueError(
                "day rows are not strictly ordered by (point, ts_ms): unsorted input or a repeat"
            )
    take = pa.array(order)
    value = (
        pa.chunked_array([c for t in days for c in t["value"].chunks], pa.float64())
        .combine_chunks()
        .take(take)
    )
    text = pa.chunked_array([c for t in days for c in t["value_text"].cast(pa.string()).chunks], pa.string())
    # Text values are rare (enum points): an all-null column needs no gather.
    value_text = (
        pa.nulls(total, pa.string()) if text.null_count == total else text.combine_chunks().take(take)
    )
    return MergedRows(names, ranks, ts, value, value_text)


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
    rows: MergedRows,
    days: dict[dt.date, str],
    *,
    first_part: int = 0,
    part_target_bytes: int = PART_TARGET_BYTES,
    min_group_rows: int = MIN_GROUP_ROWS,
) -> Iterable[tuple[bytes, PartInfo]]:
    """Encode ``merge_days`` rows into parts numbered from ``first_part``, yielding each as soon as it is
    complete. Row groups never split a point; a part is closed once it reaches ``part_target_bytes``."""
    validate_site_name(site)
    groups = group_bounds(rows.ranks, min_group_rows)
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
                writer.write_table(rows.table(g0, g1), row_group_size=g1 - g0)
                i += 1
                if sink.tell() >= part_target_bytes:
                    break
            part_end = groups[i - 1][1]
            checksum = rows.checksum(part_start, part_end)
            writer.add_key_value_metadata(
                _part_metadata(site, month, generation, part, part_end - part_start, checksum, days)
            )
        data = sink.getvalue()
        yield (
            data,
            PartInfo(
                key=cold_keys.samples_month_part_key(site, month, generation, part),
                rows=part_end - part_start,
                bytes=len(data),
                checksum=checksum,
                first_point=str(rows.names[int(rows.ranks[part_start])].as_py()),
                last_point=str(rows.names[int(rows.ranks[part_end - 1])].as_py()),
            ),
        )
        part += 1


# ---------------------------------------------------------------------------------------------- decode / verify


def _read_part(data: bytes) -> pa.Table:
    try:
        pf = pq.ParquetFile(pa.BufferReader(data), read_dictionary=["point"])
        return pf.read(columns=SAMPLE_COLUMNS, use_threads=True)
    except (pa.ArrowException, OSError) as exc:
        raise ColdVerificationError(f"unreadable monthly samples part: {exc}") from exc


def decode_part(data: bytes) -> pa.Table:
    """A part's rows as SAMPLE_SCHEMA (plain string names), sorted by (point, ts_ms)."""
    return _read_part(data).cast(SAMPLE_SCHEMA)


def _decoded_runs(table: pa.Table) -> tuple[list[str], np.ndarray]:
    run_names: list[str] = []
    run_lengths: list[np.ndarray] = []
    for chunk in table["point"].chunks:
        names, lengths = _runs(chunk.dictionary, chunk.indices.to_numpy(zero_copy_only=False))
        if run_names and names and run_names[-1] == names[0]:  # a run continuing across chunks
            run_lengths[-1] = np.concatenate([run_lengths[-1][:-1], [run_lengths[-1][-1] + lengths[0]]])
            names, lengths = names[1:], lengths[1:]
        run_names += names
        run_lengths.append(lengths)
    return run_names, (np.concatenate(run_lengths) if run_lengths else np.empty(0, np.int64))


def _same_floats(a: pa.Array, b: pa.Array) -> bool:
    """Bit-for-bit equality including validity (NaN payloads and -0.0 must survive too)."""
    if a.null_count != b.null_count:
        return False
    if a.null_count and not pc.all(pc.equal(pc.is_valid(a), pc.is_valid(b))).as_py():
        return False
    if a.null_count:
        a, b = pc.fill_null(a, 0.0), pc.fill_null(b, 0.0)
    va = a.to_numpy(zero_copy_only=False).view(np.int64)
    vb = b.to_numpy(zero_copy_only=False).view(np.int64)
    return bool(np.array_equal(va, vb))


def verify_part(
    data: bytes,
    expected: PartInfo,
    days: dict[dt.date, str],
    *,
    source: tuple[MergedRows, int, int] | None = None,
) -> int:
    """Prove a part holds what its PartInfo says: size, metadata, (point, ts_ms) order, and its rows. Returns the
    row count. Raises ColdVerificationError.

    With ``source`` (the rows [start, end) of the merged rows it was written from, whose checksum the part
    records) the decoded rows are compared with those column by column; otherwise the content checksum is
    recomputed from the decoded rows. Both prove the same thing; the comparison is several times cheaper.
    """
    if len(data) != expected.bytes:
        raise ColdVerificationError(f"{expected.key}: {len(data)} bytes, expected {expected.bytes}")
    meta = part_metadata(data)
    if meta.get("bv.kind") != KIND_SAMPLES_MONTH or meta.get("bv.checksum") != expected.checksum:
        raise ColdVerificationError(f"{expected.key}: metadata does not match the index")
    listed = {dt.date.fromisoformat(d): c for d, c in json.loads(meta.get("bv.days", "{}")).items()}
    if listed != days:
        raise ColdVerificationError(f"{expected.key}: day list does not match the index")
    table = _read_part(data)
    if table.num_rows != expected.rows:
        raise ColdVerificationError(f"{expected.key}: {table.num_rows} rows, expected {expected.rows}")
    try:
        run_names, run_lengths = _decoded_runs(table)
    except (UnicodeDecodeError, pa.ArrowException) as exc:  # e.g. a damaged name that is not UTF-8
        raise ColdVerificationError(f"{expected.key}: unreadable point names: {exc}") from exc
    ts = table["ts_ms"].combine_chunks().to_numpy()
    _check_order(run_names, run_lengths, ts)
    value = table["value"].combine_chunks()
    value_text = table["value_text"].combine_chunks().cast(pa.string())
    if source is None:
        ok = part_checksum(run_names, run_lengths, ts, value, value_text) == expected.checksum
    else:
        rows, start, end = source
        names, lengths = _runs(rows.names, rows.ranks[start:end])
        ok = (
            end - start == table.num_rows
            and names == run_names
            and np.array_equal(lengths, run_lengths)
            and np.array_equal(rows.ts[start:end], ts)
            and _same_floats(rows.value.slice(start, end - start), value)
            and rows.value_text.slice(start, end - start).equals(value_text)
        )
    if not ok:
        raise ColdVerificationError(f"{expected.key}: content does not match what was written")
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
