"""Selective reads of compacted part sets (``storage.compacted_parts``), shared by the yearly-rollup and
monthly-sample readers: a short-lived index cache, part footers cached by key (parts are immutable), and the two
rounds of concurrent ranged GETs (uncached footers, then the wanted row groups' column chunks)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from bv_pipeline.api.cache import ByteLRU
from bv_pipeline.api.cold_read import ColdReadError
from bv_pipeline.storage import compacted_parts
from bv_pipeline.storage.compacted_parts import PartFooter, PartInfo, RangeFile
from bv_pipeline.storage.parquet_layout import read_footer

Fetcher = Callable[[str, int], Callable[[int, int], bytes]]  # (key, size) -> fetch_range(start, end)
T = TypeVar("T")


class IndexCache(Generic[T]):
    """Published indexes by key, each re-read at most every ``ttl_s`` seconds. Thread-safe.

    A stale cached index is safe for both compacted sets: a day is only used while its checksum matches the
    archive manifest, and a part that vanished makes the reader fall back (and ``forget`` the index).
    """

    def __init__(self, ttl_s: float) -> None:
        self._ttl = ttl_s
        self._entries: dict[Hashable, tuple[float, T | None]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], T | None]) -> T | None:
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        value = load()
        with self._lock:
            self._entries[key] = (now, value)
        return value

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._entries.pop(key, None)


def part_footer(
    part: PartInfo, fetcher: Fetcher, cache: ByteLRU, tag: str
) -> tuple[PartFooter, tuple[int, bytes] | None]:
    """The part's parsed footer (cached under (tag, key)) and, when it was just fetched, the tail bytes (which
    may also hold row groups of a small part). The footer must name the checksum and row count the index does."""
    ck = (tag, part.key)
    footer = cache.get(ck)
    if footer is not None:
        return footer, None
    start, tail = compacted_parts.fetch_footer_tail(fetcher(part.key, part.bytes), part.bytes)
    meta = read_footer(tail)
    kv = {k.decode(): v.decode() for k, v in (meta.metadata or {}).items()}
    if kv.get("bv.checksum") != part.checksum or kv.get("bv.rows") != str(part.rows):
        raise ColdReadError(f"{part.key}: footer does not match its index")
    footer = PartFooter.parse(meta)
    cache.put(ck, footer)
    return footer, (start, tail)


def fetch_groups(
    pool: ThreadPoolExecutor,
    parts: Sequence[PartInfo],
    points: Sequence[str],
    columns: Sequence[str],
    fetcher: Fetcher,
    footer_cache: ByteLRU,
    tag: str,
    max_gap: int,
) -> list[tuple[RangeFile, PartFooter, list[int]]]:
    """Per part: a file holding the byte ranges of ``columns`` of the row groups that hold the sorted ``points``,
    its footer and those groups. Two rounds of concurrent GETs over all parts: footers, then column chunks."""
    footers = list(pool.map(lambda p: part_footer(p, fetcher, footer_cache, tag), parts))
    jobs: list[tuple[int, int, int]] = []  # (index into `parts`, start, end)
    plans: list[tuple[RangeFile, PartFooter, list[int]]] = []
    for i, (part, (footer, tail)) in enumerate(zip(parts, footers, strict=True)):
        groups = footer.select(points)
        source = RangeFile(part.bytes, fetcher(part.key, part.bytes))
        if tail is not None:
            source.add(*tail)
        plans.append((source, footer, groups))
        jobs += [(i, s, e) for s, e in footer.ranges(groups, columns, max_gap)]
    fetched = pool.map(lambda j: (j, fetcher(parts[j[0]].key, parts[j[0]].bytes)(j[1], j[2])), jobs)
    for (i, s, _e), data in fetched:
        plans[i][0].add(s, data)
    return plans
