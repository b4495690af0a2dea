"""Generations of a compacted object set: what the yearly-rollup and monthly-sample compactions share.

A compaction writes a complete new generation of immutable parts under ``gen=<UTC stamp>-<hex>/``, verifies it,
then publishes it by replacing the set's ``index.json``. This module names generations, detects a concurrent
publish, checks published parts cheaply (footer only) and deletes unpublished generations once old enough.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from bv_pipeline.storage import cold_keys, compacted_parts
from bv_pipeline.storage.interfaces import PreconditionFailed
from bv_pipeline.storage.parquet_layout import ColdVerificationError

if TYPE_CHECKING:
    from bv_pipeline.storage.compacted_parts import PartInfo
    from bv_pipeline.storage.interfaces import ObjectStore, Versioned

# A generation that is no longer published is deleted once it is this old and is not the one just replaced, so
# a reader holding a recently cached index, or a query in flight, never loses its parts.
GC_GRACE_MS = 6 * 3_600_000


class CompactionConflict(RuntimeError):
    """The index changed while this run was compacting: another writer published first. Retry."""


def new_generation(now_ms: int) -> str:
    stamp = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return cold_keys.validate_generation(f"{stamp}-{secrets.token_hex(4)}")


def stored_version(cold: ObjectStore, key: str) -> Versioned | None:
    """The object's bytes and ETag, None when it does not exist (an index not published yet)."""
    try:
        return cold.get_versioned(key)
    except KeyError:
        return None


def publish_index(
    cold: ObjectStore,
    index_key: str,
    data: bytes,
    *,
    expected_etag: str | None,
    read_back: Callable[[bytes], object],
    expected: object,
) -> None:
    """Replace a set's ``index.json`` (the commit point) with ``data``, then prove the stored index parses to
    ``expected``.

    The replace is a conditional write: ``If-Match: expected_etag`` (the version this run planned from), or
    ``If-None-Match: *`` when it found none. Raises CompactionConflict when another run published meanwhile; the
    whole compaction is then retried (re-planned from the new index), because its generation was built from the
    old one. A conditional write, unlike a compare-then-put, leaves no window in which two writers both win."""
    try:
        cold.put_if(index_key, data, if_match=expected_etag)
    except PreconditionFailed as exc:
        raise CompactionConflict(f"{index_key} changed during compaction: {exc}") from exc
    if read_back(cold.get(index_key)) != expected:
        raise ColdVerificationError(f"{index_key} failed verification after upload")


def generations_to_keep(status: str, published: str | None, previous: str | None) -> set[str]:
    """Generations garbage collection must spare: the published one, and right after a publish also the one it
    replaced (readers may still hold its index in their cache)."""
    if status == "unchanged":
        return {published} if published else set()
    return {g for g in (published, previous) if g}


def collect_garbage(
    cold: ObjectStore,
    prefix: str,
    generation_of: Callable[[str], str | None],
    *,
    keep: set[str],
    now_ms: int,
    grace_ms: int = GC_GRACE_MS,
) -> list[str]:
    """Delete the parts under ``prefix`` of generations not in ``keep`` that are older than ``grace_ms``.

    ``generation_of`` maps a key to its generation (None: not a part). Returns the deleted generations.
    """
    by_gen: dict[str, list[str]] = {}
    for key in cold.list(prefix):
        gen = generation_of(key)
        if gen is not None and gen not in keep:
            by_gen.setdefault(gen, []).append(key)
    deleted = []
    for gen, keys in sorted(by_gen.items()):
        if now_ms - cold_keys.generation_time(gen).timestamp() * 1000 >= grace_ms:
            for key in keys:
                cold.delete(key)
            deleted.append(gen)
    return deleted


def check_parts(cold: ObjectStore, parts: Iterable[PartInfo]) -> list[str]:
    """Problems of published parts, from footer-only reads: each must exist with the size the index records and
    a footer whose ``bv.checksum`` and ``bv.rows`` match it. Empty when all is well."""
    problems = []
    for p in parts:
        size = cold.size(p.key)
        if size != p.bytes:
            problems.append(f"{p.key}: size {size}, index says {p.bytes}")
            continue
        try:
            _, tail = compacted_parts.fetch_footer_tail(
                lambda a, b, key=p.key: cold.get_range(key, a, b), size
            )
            meta = compacted_parts.part_metadata(tail)
        except ColdVerificationError as exc:
            problems.append(f"{p.key}: {exc}")
            continue
        if meta.get("bv.checksum") != p.checksum or meta.get("bv.rows") != str(p.rows):
            problems.append(f"{p.key}: footer metadata does not match the index")
    return problems
