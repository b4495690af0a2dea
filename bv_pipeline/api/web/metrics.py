"""Prometheus metrics of the read API, served at ``/metrics``.

Metrics live in one registry of this module. With several worker processes, set ``PROMETHEUS_MULTIPROC_DIR`` to
an empty directory shared by the workers before they start: each process then writes its values to memory-mapped
files there and ``/metrics`` aggregates every worker's files, whichever worker answers the scrape.
prometheus_client decides the mode when it is first imported, so the variable must be in the workers'
environment, and the directory must be emptied by whatever starts them, before any of them imports this module
(an old server's files would otherwise be added to the new one's counts).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
    values,
)

from bv_pipeline.api.cache import ByteLRU

REGISTRY = CollectorRegistry(auto_describe=True)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter(
    "bv_api_requests", "HTTP requests answered", ["route", "method", "status"], registry=REGISTRY
)
LATENCY = Histogram(
    "bv_api_request_duration_seconds",
    "Time from request to the end of the response body",
    ["route"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
ERRORS = Counter(
    "bv_api_errors", "Answers with a 4xx or 5xx status", ["route", "status_class"], registry=REGISTRY
)
QUERY_SAMPLES = Counter(
    "bv_api_query_samples", "Samples /timeseries/query read, by tier (hot, cold)", ["tier"], registry=REGISTRY
)
QUERY_DAYS = Counter(
    "bv_api_query_days",
    "Days /timeseries/query answered, by where each came from (hot, cold, compacted, split, not_loaded)",
    ["source"],
    registry=REGISTRY,
)
ROLLUP_DAYS = Counter(
    "bv_api_query_rollup_days", "Cold days answered from hourly rollups (interval=1h/1d)", registry=REGISTRY
)
COLD_OBJECTS = Counter(
    "bv_api_cold_objects_read", "Cold-tier objects read by queries (GETs, ranged or whole)", registry=REGISTRY
)
COLD_BYTES = Counter("bv_api_cold_bytes_fetched", "Bytes fetched from the cold tier", registry=REGISTRY)
CACHE_LOOKUPS = Counter(
    "bv_api_cold_cache_lookups",
    "Lookups in the in-memory cold caches (footers, row-group ranges, rollups), by result",
    ["result"],
    registry=REGISTRY,
)

MULTIPROCESS = values.ValueClass is not values.MutexValue  # prometheus_client saw PROMETHEUS_MULTIPROC_DIR
if not MULTIPROCESS:
    ProcessCollector(registry=REGISTRY)  # memory, CPU, open files of this single process


def render() -> tuple[bytes, str]:
    """The exposition text and its content type; every worker's values in multiprocess mode."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    REQUESTS.labels(route, method, str(status)).inc()
    LATENCY.labels(route).observe(seconds)
    if status >= 400:
        ERRORS.labels(route, f"{status // 100}xx").inc()


class _CacheTotals:
    """Per-process last-seen hit/miss totals of the reader's caches, to add only the increase to the counters."""

    def __init__(self) -> None:
        self._seen: dict[int, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def add_increase(self, caches: Iterator[ByteLRU]) -> None:
        with self._lock:
            for cache in caches:
                hits, misses = cache.hits, cache.misses
                old_hits, old_misses = self._seen.get(id(cache), (0, 0))
                if hits >= old_hits and misses >= old_misses:
                    CACHE_LOOKUPS.labels("hit").inc(hits - old_hits)
                    CACHE_LOOKUPS.labels("miss").inc(misses - old_misses)
                self._seen[id(cache)] = (hits, misses)


_cache_totals = _CacheTotals()


def _byte_lrus(obj: Any, depth: int = 2) -> Iterator[ByteLRU]:
    """The ByteLRU caches an object holds (its attributes, and theirs): the reader keeps several."""
    for value in vars(obj).values() if hasattr(obj, "__dict__") else ():
        if isinstance(value, ByteLRU):
            yield value
        elif depth > 1 and hasattr(value, "__dict__") and type(value).__module__.startswith("bv_pipeline"):
            yield from _byte_lrus(value, depth - 1)


def observe_query(reader: object, result: Any) -> None:
    """Tier mix, cold reads and cache use of one answered query (``QueryResult``)."""
    QUERY_SAMPLES.labels("hot").inc(result.hot_samples)
    QUERY_SAMPLES.labels("cold").inc(result.cold_samples)
    for state in result.coverage.values():
        QUERY_DAYS.labels(state).inc()
    ROLLUP_DAYS.inc(result.rollup_days)
    COLD_OBJECTS.inc(result.cold_objects_read)
    COLD_BYTES.inc(result.cold_bytes_fetched)
    _cache_totals.add_increase(_byte_lrus(reader))
