"""The cold tier's Parquet layout: one self-describing file per site per UTC day.

Layout (the measured best among the layouts benchmarked in ``bench/bench_cold_layout.py``):

- rows sorted by (point, ts_ms), duplicates rejected;
- ``point_id`` int32: the rank of the point name among the day's sorted distinct names (0..n-1). It is derived
  from the file alone, so every file is self-describing and stable (re-encoding the same content gives the same
  ids) without depending on the hot tier's ids, which differ between SQLite and D1 and can be rebuilt. Sorting
  by name makes ``point_id`` non-decreasing, so its row-group min/max are tight integer ranges;
- ``point`` string, dictionary-encoded per row group (about 45 names per 64k rows, so the dictionary is small);
  its min/max statistics let a reader prune row groups by name without a side table;
- ``ts_ms`` int64 DELTA_BINARY_PACKED; ``value`` float64 dictionary-encoded (RLE_DICTIONARY), ``value_text``
  string (dictionary). The anchors specified BYTE_STREAM_SPLIT for ``value`` and measured a dictionary as a tie
  (0.716 vs 0.739 B/sample); on our data the dictionary wins: 1.07 vs 1.20 B/sample on the simulator's day and
  0.68 vs 0.84 on the anchors' synthetic mix, and it decodes faster (0.9 vs 1.7 ms per row group). BACnet values
  are quantised (float32 or a sensor resolution), so a 64k-row group holds few distinct values. A row group's
  dictionary is at most 64k x 8 B = 512 KB, under the writer's 1 MB dictionary page limit, so the writer never
  falls back to PLAIN. The dictionary keeps every bit pattern (-0.0, NaN payloads): pinned by a test;
- ZSTD level 3, row groups of 65,536 rows, statistics on.

Key-value metadata: ``bv.kind``, ``bv.site``, ``bv.date``, ``bv.rows``, ``bv.schema_version``, ``bv.checksum``,
``bv.source``, ``bv.point_count``. ``bv.checksum`` is ``content_checksum`` of the canonical sorted content: a
blake2b over the column values (not the encoded bytes), so it is the same for any encoding of the same samples
and can be recomputed after reading to prove the object holds what was written.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import hashlib
import io
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bv_pipeline.config import validate_site_name
from bv_pipeline.storage.samples import SAMPLE_SCHEMA, day_bounds_ms

SCHEMA_VERSION = 1
ROW_GROUP_ROWS = 65_536
ZSTD_LEVEL = 3
KIND_SAMPLES = "samples"
KIND_ROLLUP_1H = "rollup_1h"

FILE_SCHEMA = pa.schema(
    [
        pa.field("point_id", pa.int32(), nullable=False),
        pa.field("point", pa.string(), nullable=False),
        pa.field("ts_ms", pa.int64(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("value_text", pa.string()),
    ]
)
_SAMPLE_COLUMNS = [f.name for f in SAMPLE_SCHEMA]
# Footer tail fetched speculatively by read_points: a 100-row-group footer is about 35 KB, so one GET usually
# returns the whole footer.
_TAIL_GUESS = 64 * 1024
# Column encodings of a day file; every column not listed is dictionary-encoded.
DAY_COLUMN_ENCODING = {"ts_ms": "DELTA_BINARY_PACKED"}
_TS_OFFSET_BITS = 27  # a day is 86,400,000 ms < 2**27, so (point_id, ts - day_start) packs into one int64 key


class ColdVerificationError(Exception):
    """A cold object does not hold what its metadata or the manifest says it holds."""


@dataclass(frozen=True)
class DayFileInfo:
    """What a cold day object claims about itself (from its key-value metadata) plus its size in bytes."""

    site: str
    day: dt.date
    rows: int
    bytes: int
    checksum: str
    schema_version: int
    point_count: int
    source: str = ""
    kind: str = KIND_SAMPLES


# ---------------------------------------------------------------------------------------------- checksums


def _hash_validity(h: Any, arr: pa.Array) -> None:
    if arr.null_count:
        h.update(b"V")
        h.update(np.packbits(pc.is_valid(arr).to_numpy(zero_copy_only=False)).tobytes())
    else:
        h.update(b"A")  # all valid


def hash_strings(h: Any, arr: pa.Array) -> None:
    """Hash a string column through its dictionary form (distinct values in first-seen order + indices).

    Equal sequences give equal bytes whatever the input chunking, offsets or dictionary-ness, and hashing the
    indices (4 B/row) is far cheaper than the raw strings (about 35 B/row for point names).
    """
    if arr.type != pa.string():
        arr = arr.cast(pa.string())
    _hash_validity(h, arr)
    # Valid entries only: with the validity bitmap hashed above this stays injective, and a mostly-null
    # value_text column costs next to nothing.
    enc = pc.dictionary_encode(arr.drop_null() if arr.null_count else arr)
    names = enc.dictionary
    h.update(struct.pack("<q", len(names)))
    h.update(pc.binary_length(names).to_numpy(zero_copy_only=False).astype("<i8").tobytes())
    offsets = np.frombuffer(names.buffers()[1], dtype="<i4")[names.offset : names.offset + len(names) + 1]
    data = names.buffers()[2]
    if data is not None and len(offsets):
        h.update(memoryview(data)[int(offsets[0]) : int(offsets[-1])])
    h.update(enc.indices.cast(pa.int32()).to_numpy(zero_copy_only=False).astype("<i4", copy=False).tobytes())


def hash_numbers(h: Any, arr: pa.Array) -> None:
    _hash_validity(h, arr)
    values = (pc.fill_null(arr, 0) if arr.null_count else arr).to_numpy(zero_copy_only=False)
    if values.dtype.kind == "f":
        nan = np.isnan(values)
        if nan.any():  # NaN payload bits are not content: canonicalise them
            values = np.where(nan, np.nan, values)
        values = values.astype("<f8", copy=False)
    else:
        values = values.astype("<i8", copy=False)
    h.update(values.tobytes())


def _table_checksum(table: pa.Table, tag: bytes) -> str:
    h = hashlib.blake2b(digest_size=20)
    h.update(tag)
    h.update(struct.pack("<q", table.num_rows))
    for field in table.schema:
        arr = table.column(field.name).combine_chunks()
        h.update(field.name.encode() + b"\0")
        t = arr.type.value_type if pa.types.is_dictionary(arr.type) else arr.type
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
            hash_strings(h, arr)
        else:
            hash_numbers(h, arr)
    return "blake2b:" + h.hexdigest()


def _is_sorted_unique(point: pa.ChunkedArray | pa.Array, ts: pa.ChunkedArray | pa.Array) -> bool:
    """True when rows are strictly increasing by (point, ts_ms): sorted and free of duplicates."""
    n = len(point)
    if n < 2:
        return True
    p = point.combine_chunks() if isinstance(point, pa.ChunkedArray) else point
    t = ts.combine_chunks() if isinstance(ts, pa.ChunkedArray) else ts
    p0, p1, t0, t1 = p.slice(0, n - 1), p.slice(1), t.slice(0, n - 1), t.slice(1)
    ok = pc.or_(pc.less(p0, p1), pc.and_(pc.equal(p0, p1), pc.less(t0, t1)))
    return bool(pc.all(ok).as_py())


def _canonical(samples: pa.Table) -> pa.Table:
    """SAMPLE_SCHEMA columns with plain string types, sorted by (point, ts_ms)."""
    table = samples.select(_SAMPLE_COLUMNS)
    if table.schema != SAMPLE_SCHEMA:
        table = table.cast(SAMPLE_SCHEMA)
    if not _is_sorted_unique(table["point"], table["ts_ms"]):
        table = table.sort_by([("point", "ascending"), ("ts_ms", "ascending")])
    return table


def content_checksum(samples: pa.Table) -> str:
    """Encoding-independent checksum of samples (SAMPLE_SCHEMA columns, any order, any string encoding)."""
    return _table_checksum(_canonical(samples), b"bv-samples-v1\0")


# ---------------------------------------------------------------------------------------------- encode


def _prepare_day(day: dt.date, samples: pa.Table) -> tuple[pa.Table, int]:
    """Validate, sort and add point_id. Returns (FILE_SCHEMA table, distinct point count)."""
    missing = [c for c in _SAMPLE_COLUMNS if c not in samples.column_names]
    if missing:
        raise ValueError(f"samples lack columns {missing}")
    table = samples.select(_SAMPLE_COLUMNS).cast(SAMPLE_SCHEMA)
    if table.num_rows == 0:
        return FILE_SCHEMA.empty_table(), 0
    if table["point"].null_count or table["ts_ms"].null_count:
        raise ValueError("samples have null point or ts_ms")
    start_ms, end_ms = day_bounds_ms(day)
    ts = table["ts_ms"].combine_chunks().to_numpy()
    lo, hi = int(ts.min()), int(ts.max())
    if lo < start_ms or hi >= end_ms:
        raise ValueError(
            f"samples fall outside {day.isoformat()} (UTC): ts_ms range [{lo}, {hi}] vs [{start_ms}, {end_ms})"
        )
    # Sort via one int64 key (rank << 27 | ms into day): a numpy argsort on integers is several times faster
    # than a multi-column sort with a string column.
    enc = pc.dictionary_encode(table["point"].combine_chunks())
    names = enc.dictionary
    name_order = pc.sort_indices(names).to_numpy()
    rank = np.empty(len(names), dtype=np.int64)
    rank[name_order] = np.arange(len(names), dtype=np.int64)
    point_id = rank[enc.indices.to_numpy()]
    key = (point_id << _TS_OFFSET_BITS) | (ts - start_ms)
    if len(key) < 2 or bool(np.all(key[1:] > key[:-1])):
        # Already sorted by (point, ts) and unique, as whole-day hot reads and ACE fetches arrive: skip the
        # argsort and the gathers (about a second of a 6.5 M-row archival).
        order: np.ndarray | None = None
        sorted_key = key
    else:
        # polars' multi-threaded radix arg_sort is ~2.5x faster than numpy's on 6.5 M int64 keys.
        order = pl.Series(key).arg_sort().to_numpy().astype(np.int64, copy=False)
        sorted_key = key[order]
        dup = np.flatnonzero(sorted_key[1:] == sorted_key[:-1])
        if len(dup):
            i = int(order[dup[0]])
            raise ValueError(
                f"{len(dup)} duplicate (point, ts_ms) rows, e.g. ({table['point'][i].as_py()!r}, {int(ts[i])}): "
                "de-duplicate before encoding"
            )
    sorted_pid = (sorted_key >> _TS_OFFSET_BITS).astype(np.int32)
    if order is None:
        point, value, value_text = (table[c].combine_chunks() for c in ("point", "value", "value_text"))
        ts_sorted = pa.array(ts, type=pa.int64())
    else:
        take = pa.array(order)
        # Plain (non-dictionary) Arrow strings on purpose: from an Arrow dictionary the writer would store the
        # whole day's dictionary (4,583 names) in every row group; from strings it builds a dictionary of just
        # the ~45 names each 64k-row group holds.
        point = names.take(pa.array(name_order)).take(pa.array(sorted_pid))
        value, value_text = table["value"].take(take), table["value_text"].take(take)
        ts_sorted = pa.array((sorted_key & ((1 << _TS_OFFSET_BITS) - 1)) + start_ms, type=pa.int64())
    out = pa.table(
        {
            "point_id": pa.array(sorted_pid, type=pa.int32()),
            "point": point,
            "ts_ms": ts_sorted,
            "value": value,
            "value_text": value_text,
        },
        schema=FILE_SCHEMA,
    )
    return out, len(names)


def _write_parquet(
    table: pa.Table, metadata: dict[str, str], *, column_encoding: dict[str, str] = DAY_COLUMN_ENCODING
) -> bytes:
    sink = io.BytesIO()
    dictionary_columns = [c for c in table.column_names if c not in column_encoding]
    with pq.ParquetWriter(
        sink,
        table.schema,
        compression="zstd",
        compression_level=ZSTD_LEVEL,
        use_dictionary=dictionary_columns,
        column_encoding=column_encoding,
        write_statistics=True,
        store_schema=False,  # the Parquet schema is enough; keeps the footer lean
    ) as writer:
        writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        writer.add_key_value_metadata(metadata)
    return sink.getvalue()


def _metadata(info: DayFileInfo) -> dict[str, str]:
    return {
        "bv.kind": info.kind,
        "bv.site": info.site,
        "bv.date": info.day.isoformat(),
        "bv.rows": str(info.rows),
        "bv.schema_version": str(info.schema_version),
        "bv.checksum": info.checksum,
        "bv.source": info.source,
        "bv.point_count": str(info.point_count),
    }


def encode_day(site: str, day: dt.date, samples: pa.Table, *, source: str) -> tuple[bytes, DayFileInfo]:
    """Encode one site-day of samples (SAMPLE_SCHEMA, any order) into the cold layout.

    Raises ValueError when a sample lies outside the UTC day or a (point, ts_ms) pair repeats: de-duplication is
    the caller's job, so a bug upstream cannot be silently hidden here.
    """
    validate_site_name(site)
    table, point_count = _prepare_day(day, samples)
    checksum = _table_checksum(table.select(_SAMPLE_COLUMNS), b"bv-samples-v1\0")
    info = DayFileInfo(
        site=site,
        day=day,
        rows=table.num_rows,
        bytes=0,
        checksum=checksum,
        schema_version=SCHEMA_VERSION,
        point_count=point_count,
        source=source,
    )
    data = _write_parquet(table, _metadata(info))
    return data, dataclasses.replace(info, bytes=len(data))


def encode_old_layout(site: str, samples: pa.Table) -> bytes:
    """The old system's layout, for size comparison only: rows in the order given (the old writer did not sort),
    plain (non-dictionary) string point names, a repeated ``site_name`` column, Snappy."""
    n = samples.num_rows
    table = pa.table(
        {
            "site_name": pa.array([site] * n, type=pa.string()) if n else pa.array([], pa.string()),
            "point_name": samples["point"].cast(pa.string()),
            "ts_ms": samples["ts_ms"].cast(pa.int64()),
            "value": samples["value"].cast(pa.float64()),
            "value_text": samples["value_text"].cast(pa.string()),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="snappy", use_dictionary=False)
    return sink.getvalue()


# ---------------------------------------------------------------------------------------------- decode / info


def _parquet_file(data: bytes) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(pa.BufferReader(data))
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        raise ColdVerificationError(f"not a readable Parquet file ({len(data)} bytes): {exc}") from exc


def decode_day(data: bytes) -> pa.Table:
    """Read a cold day object back to SAMPLE_SCHEMA, sorted by (point, ts_ms)."""
    table = _parquet_file(data).read(columns=_SAMPLE_COLUMNS, use_threads=True)
    return table.cast(SAMPLE_SCHEMA).replace_schema_metadata(None)


def _info_from_metadata(meta: pq.FileMetaData, size: int) -> DayFileInfo:
    kv = {k.decode(): v.decode() for k, v in (meta.metadata or {}).items()}
    try:
        return DayFileInfo(
            site=kv["bv.site"],
            day=dt.date.fromisoformat(kv["bv.date"]),
            rows=int(kv["bv.rows"]),
            bytes=size,
            checksum=kv["bv.checksum"],
            schema_version=int(kv["bv.schema_version"]),
            point_count=int(kv["bv.point_count"]),
            source=kv.get("bv.source", ""),
            kind=kv.get("bv.kind", KIND_SAMPLES),
        )
    except (KeyError, ValueError) as exc:
        raise ColdVerificationError(f"cold object lacks valid bv.* metadata: {exc!r}") from exc


def read_footer(data_or_tail: bytes) -> pq.FileMetaData:
    """Parse the footer from a whole file or from any tail of it that holds the footer."""
    if len(data_or_tail) < 12 or data_or_tail[-4:] != b"PAR1":
        raise ColdVerificationError("bytes do not end with a Parquet footer")
    footer_len = struct.unpack("<I", data_or_tail[-8:-4])[0]
    if footer_len + 8 > len(data_or_tail):
        raise ColdVerificationError(f"footer needs {footer_len + 8} bytes but only {len(data_or_tail)} given")
    # Hand pyarrow a synthetic file "PAR1" + footer so a tail works as well as a whole file.
    synthetic = b"PAR1" + data_or_tail[-(footer_len + 8) :]
    try:
        return pq.read_metadata(pa.BufferReader(synthetic))
    except (pa.ArrowInvalid, OSError) as exc:
        raise ColdVerificationError(f"unreadable Parquet footer: {exc}") from exc


def read_info(data_or_footer_bytes: bytes, *, size: int | None = None) -> DayFileInfo:
    """DayFileInfo from the key-value metadata of a whole object or of a tail holding its footer.

    ``bytes`` is ``size`` when given (pass the object size with a tail), else ``len(data_or_footer_bytes)``.
    """
    meta = read_footer(data_or_footer_bytes)
    return _info_from_metadata(meta, len(data_or_footer_bytes) if size is None else size)


def verify_object(data: bytes, expected: DayFileInfo) -> None:
    """Re-read a cold object and prove it holds ``expected``: metadata, row count and recomputed checksum.

    Works for day files and rollup files (dispatching on ``bv.kind``). Raises ColdVerificationError.
    """
    if expected.bytes and len(data) != expected.bytes:
        raise ColdVerificationError(f"object is {len(data)} bytes, expected {expected.bytes}")
    got = _info_from_metadata(read_footer(data), len(data))
    for name in ("kind", "site", "day", "rows", "schema_version", "checksum", "point_count"):
        if getattr(got, name) != getattr(expected, name):
            raise ColdVerificationError(
                f"metadata {name} is {getattr(got, name)!r}, expected {getattr(expected, name)!r}"
            )
    try:
        if got.kind == KIND_ROLLUP_1H:
            from bv_pipeline.storage.rollups import decode_rollup, rollup_checksum

            table = decode_rollup(data)
            checksum = rollup_checksum(table)
        else:
            table = decode_day(data)
            checksum = _table_checksum(table, b"bv-samples-v1\0")
    except (pa.ArrowException, OSError) as exc:
        raise ColdVerificationError(f"object body unreadable: {exc}") from exc
    if table.num_rows != expected.rows:
        raise ColdVerificationError(f"object holds {table.num_rows} rows, expected {expected.rows}")
    if checksum != expected.checksum:
        raise ColdVerificationError(
            f"content checksum {checksum} does not match expected {expected.checksum}"
        )


# ---------------------------------------------------------------------------------------------- selective read


class _SparseFile(io.RawIOBase):
    """A read-only file of known size whose bytes come from prefetched ranges, fetching any gap on demand."""

    def __init__(self, size: int, fetch: Callable[[int, int], bytes]) -> None:
        self._size = size
        self._fetch = fetch
        self._pos = 0
        self._ranges: list[tuple[int, bytes]] = []  # (start, data), kept sorted by start

    def add(self, start: int, data: bytes) -> None:
        bisect.insort(self._ranges, (start, data), key=lambda r: r[0])

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = base + offset
        return self._pos

    def cached(self, start: int, end: int) -> bytes | None:
        """Bytes [start, end) if one fetched range already holds them."""
        i = bisect.bisect_right(self._ranges, start, key=lambda r: r[0]) - 1
        if i >= 0:
            r_start, r_data = self._ranges[i]
            if r_start + len(r_data) >= end:
                return r_data[start - r_start : end - r_start]
        return None

    def _slice(self, start: int, end: int) -> bytes:
        hit = self.cached(start, end)
        if hit is not None:
            return hit
        data = self._fetch(start, end)
        self.add(start, data)
        return data

    def read(self, size: int = -1) -> bytes:
        end = self._size if size is None or size < 0 else min(self._size, self._pos + size)
        if end <= self._pos:
            return b""
        data = self._slice(self._pos, end)
        self._pos = end
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)


def row_group_span(rg: pq.RowGroupMetaData) -> tuple[int, int]:
    start, end = None, 0
    for i in range(rg.num_columns):
        col = rg.column(i)
        first = col.data_page_offset
        if col.has_dictionary_page and col.dictionary_page_offset is not None:
            first = min(first, col.dictionary_page_offset)
        start = first if start is None else min(start, first)
        end = max(end, first + col.total_compressed_size)
    assert start is not None
    return start, end


def coalesce_ranges(ranges: list[tuple[int, int]], max_gap: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start - out[-1][1] <= max_gap:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _column_index(meta: pq.FileMetaData, name: str) -> int:
    return meta.schema.to_arrow_schema().get_field_index(name)


def select_row_groups(
    meta: pq.FileMetaData, points: Sequence[str] | None, start_ms: int, end_ms: int
) -> list[int]:
    """Row groups whose statistics can hold one of ``points`` (None: all) within [start_ms, end_ms)."""
    wanted = sorted(set(points)) if points is not None else None
    point_col, ts_col = _column_index(meta, "point"), _column_index(meta, "ts_ms")
    out = []
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        if rg.num_rows == 0:
            continue
        ts_stats = rg.column(ts_col).statistics
        if (
            ts_stats is not None
            and ts_stats.has_min_max
            and (ts_stats.max < start_ms or ts_stats.min >= end_ms)
        ):
            continue
        if wanted is not None:
            p_stats = rg.column(point_col).statistics
            if p_stats is not None and p_stats.has_min_max:
                # Names sort by code point in Python and by UTF-8 bytes in Parquet: the same order.
                i = bisect.bisect_left(wanted, p_stats.min)
                if i == len(wanted) or wanted[i] > p_stats.max:
                    continue
        out.append(g)
    return out


def read_points(
    fetch_range: Callable[[int, int], bytes],
    size: int,
    points: Sequence[str] | None,
    start_ms: int,
    end_ms: int,
    *,
    footer_cache: dict[Any, pq.FileMetaData] | None = None,
    cache_key: str | None = None,
    max_gap: int = 32 * 1024,
) -> pa.Table:
    """Read only the rows of ``points`` (None: all) with start_ms <= ts_ms < end_ms from one cold day object.

    ``fetch_range(start, end)`` returns bytes [start, end) of the object (e.g. ``ObjectStore.get_range`` bound
    to a key) and ``size`` is its length. The footer comes from one ranged read of the tail, or from
    ``footer_cache`` under ``(cache_key, size)`` (pass the object key, plus the ETag in it if you have one).
    Only row groups whose statistics can hold a wanted point and time are fetched, as coalesced byte ranges
    (gaps up to ``max_gap`` bytes are read through to save requests). Returns SAMPLE_SCHEMA sorted by
    (point, ts_ms).
    """
    if footer_cache is not None and cache_key is None:
        raise ValueError("footer_cache needs a cache_key naming the object")
    if points is not None and len(points) == 0:
        return SAMPLE_SCHEMA.empty_table()
    sparse = _SparseFile(size, fetch_range)
    ck = (cache_key, size)
    meta = footer_cache.get(ck) if footer_cache is not None else None
    if meta is None:
        tail_start = max(0, size - _TAIL_GUESS)
        tail = fetch_range(tail_start, size)
        footer_len = struct.unpack("<I", tail[-8:-4])[0] if len(tail) >= 8 else 0
        if footer_len + 8 > len(tail) and tail_start > 0:
            tail_start = max(0, size - footer_len - 8)
            tail = fetch_range(tail_start, size)
        sparse.add(tail_start, tail)
        meta = read_footer(tail)
        if footer_cache is not None:
            footer_cache[ck] = meta
    groups = select_row_groups(meta, points, start_ms, end_ms)
    if not groups:
        return SAMPLE_SCHEMA.empty_table()
    for start, end in coalesce_ranges([row_group_span(meta.row_group(g)) for g in groups], max_gap):
        if sparse.cached(start, end) is None:  # a small file's tail read may already hold everything
            sparse.add(start, fetch_range(start, end))
    # pre_buffer off: pyarrow then reads exactly the column chunks, which the sparse file already holds.
    pf = pq.ParquetFile(sparse, metadata=meta, pre_buffer=False)
    table = pf.read_row_groups(groups, columns=_SAMPLE_COLUMNS, use_threads=False)
    mask = pc.and_(pc.greater_equal(table["ts_ms"], start_ms), pc.less(table["ts_ms"], end_ms))
    if points is not None:
        mask = pc.and_(mask, pc.is_in(table["point"], value_set=pa.array(sorted(set(points)), pa.string())))
    return table.filter(mask).cast(SAMPLE_SCHEMA).replace_schema_metadata(None)
