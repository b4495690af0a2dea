"""Parts of a compacted object set: immutable Parquet objects whose row groups hold whole points, sorted by point.

Shared by the compacted yearly rollups (``rollup_year``) and the compacted monthly raw samples (``raw_month``):
what an index records per part (``PartInfo``), how rows are cut into point-aligned row groups, and the selective
read side (footer tail GET, per-group point ranges and byte spans, a file served from prefetched ranges).
"""

from __future__ import annotations

import bisect
import hashlib
import io
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from bv_pipeline.storage.parquet_layout import (
    ColdVerificationError,
    coalesce_ranges,
    read_footer,
    row_group_span,
)

# One tail GET usually holds a part's footer (~620 B per row group plus the ~20 KB day list).
_TAIL_GUESS = 128 * 1024


@dataclass(frozen=True)
class PartInfo:
    key: str
    rows: int
    bytes: int
    checksum: str  # content checksum of the part's rows
    first_point: str
    last_point: str


def combined_checksum(parts: Iterable[PartInfo], tag: bytes) -> str:
    """Checksum of a generation's content: over its part checksums in order (each covers its rows)."""
    h = hashlib.blake2b(digest_size=20)
    h.update(tag)
    for p in parts:
        h.update(p.checksum.encode() + b"\0")
    return "blake2b:" + h.hexdigest()


def parts_for(parts: Iterable[PartInfo], points: Sequence[str]) -> list[PartInfo]:
    """Parts whose point range can hold one of the sorted ``points``."""
    out = []
    for p in parts:
        i = bisect.bisect_left(points, p.first_point)
        if i < len(points) and points[i] <= p.last_point:
            out.append(p)
    return out


def group_bounds(ranks: np.ndarray, min_group_rows: int) -> list[tuple[int, int]]:
    """Row ranges [start, end) of row groups: whole points, each at least ``min_group_rows`` (but the last)."""
    if len(ranks) == 0:
        return []
    starts = np.concatenate([[0], np.flatnonzero(ranks[1:] != ranks[:-1]) + 1, [len(ranks)]])
    bounds: list[tuple[int, int]] = []
    begin = 0
    for end in starts[1:]:
        if end - begin >= min_group_rows:
            bounds.append((begin, int(end)))
            begin = int(end)
    if begin < len(ranks):
        bounds.append((begin, len(ranks)))
    return bounds


def part_metadata(data_or_tail: bytes) -> dict[str, str]:
    """The ``bv.*`` key-value metadata of a part (whole object or a tail holding its footer)."""
    kv = read_footer(data_or_tail).metadata or {}
    return {k.decode(): v.decode() for k, v in kv.items() if k.startswith(b"bv.")}


def fetch_footer_tail(fetch_range: Callable[[int, int], bytes], size: int) -> tuple[int, bytes]:
    """(start, bytes) of a tail of an object of ``size`` bytes that holds its whole Parquet footer: one GET of
    ``_TAIL_GUESS`` bytes, a second only when the footer is larger."""
    start = max(0, size - _TAIL_GUESS)
    tail = fetch_range(start, size)
    if len(tail) < 8:
        raise ColdVerificationError(f"object of {size} bytes is too short for a Parquet footer")
    footer_len = struct.unpack("<I", tail[-8:-4])[0]
    if footer_len + 8 > len(tail) and start > 0:
        start = max(0, size - footer_len - 8)
        tail = fetch_range(start, size)
    return start, tail


@dataclass(frozen=True)
class PartFooter:
    """A part's parsed footer plus per-row-group point ranges and byte spans as plain Python values."""

    meta: pq.FileMetaData
    first: list[str]
    last: list[str]
    spans: list[tuple[int, int]]
    nbytes: int  # for a byte-bounded cache

    @classmethod
    def parse(cls, meta: pq.FileMetaData) -> PartFooter:
        col = meta.schema.to_arrow_schema().get_field_index("point")
        first, last, spans = [], [], []
        for g in range(meta.num_row_groups):
            rg = meta.row_group(g)
            stats = rg.column(col).statistics
            if rg.num_rows == 0 or stats is None or not stats.has_min_max:
                raise ColdVerificationError("compacted part lacks point statistics")
            first.append(stats.min)
            last.append(stats.max)
            spans.append(row_group_span(rg))
        return cls(meta, first, last, spans, meta.serialized_size * 4)

    def select(self, points: Sequence[str]) -> list[int]:
        """Row groups holding one of the sorted ``points``. Groups are sorted and disjoint by point."""
        out: list[int] = []
        for p in points:
            g = bisect.bisect_right(self.first, p) - 1
            if g >= 0 and p <= self.last[g] and (not out or out[-1] != g):
                out.append(g)
        return out

    def ranges(self, groups: Sequence[int], columns: Sequence[str], max_gap: int) -> list[tuple[int, int]]:
        """Byte ranges of just ``columns`` of ``groups``, coalesced across gaps up to ``max_gap``."""
        names = self.meta.schema.to_arrow_schema().names
        wanted = [names.index(c) for c in columns]
        spans = []
        for g in groups:
            rg = self.meta.row_group(g)
            for i in wanted:
                c = rg.column(i)
                first = c.data_page_offset
                if c.has_dictionary_page and c.dictionary_page_offset is not None:
                    first = min(first, c.dictionary_page_offset)
                spans.append((first, first + c.total_compressed_size))
        return coalesce_ranges(spans, max_gap)


class RangeFile(io.RawIOBase):
    """Read-only file of known size served from prefetched ranges; a read outside them is fetched."""

    def __init__(self, size: int, fetch: Callable[[int, int], bytes]) -> None:
        self._size, self._fetch, self._pos = size, fetch, 0
        self._starts: list[int] = []
        self._data: list[bytes] = []

    def add(self, start: int, data: bytes) -> None:
        i = bisect.bisect_left(self._starts, start)
        self._starts.insert(i, start)
        self._data.insert(i, data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._pos = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence] + offset
        return self._pos

    def read(self, size: int = -1) -> bytes:
        end = self._size if size is None or size < 0 else min(self._size, self._pos + size)
        if end <= self._pos:
            return b""
        start = self._pos
        i = bisect.bisect_right(self._starts, start) - 1
        if i >= 0 and self._starts[i] + len(self._data[i]) >= end:
            out = self._data[i][start - self._starts[i] : end - self._starts[i]]
        else:
            out = self._fetch(start, end)
            self.add(start, out)
        self._pos = end
        return out

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)
