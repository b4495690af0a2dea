"""``TimeseriesReader``: one query over the hot tier (SQLite/D1) and the cold tier (Parquet per site-day).

The read engine behind the HTTP layer and any asset that reads samples, in small modules by concept:

- ``day_plan``: which tier answers each UTC day and point (decided from what the stores hold, never the clock);
- ``hot_read``: the hot-tier read, one range scan per run of hot days;
- ``cold_tier``: the cold-tier read (compacted objects where current, day objects otherwise, byte caches);
- ``merge``: both tiers merged and de-duplicated on (point, ts_ms) with hot winning, and aggregate partials
  (raw samples and hourly rollups combined by sum and count, so averages are exact);
- ``aggregate``: bucketing and downsampling; ``catalogue``: sites and points.

The hot read of a query runs on its own small pool while the calling thread fetches the cold days, so a split
query costs about max(hot, cold) rather than their sum.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import polars as pl

from bv_pipeline.api import day_plan
from bv_pipeline.api.aggregate import INTERVALS_MS, DownsampleMethod, downsample, finalize
from bv_pipeline.api.answer_cache import AnswerCache, ColdPart
from bv_pipeline.api.catalogue import SiteCatalogue
from bv_pipeline.api.cold_tier import ColdTierReader, ReadCounter
from bv_pipeline.api.coverage import DayState, day_states, days_with_rows
from bv_pipeline.api.day_plan import Source
from bv_pipeline.api.hot_read import read_hot
from bv_pipeline.api.merge import merge_agg, merge_raw
from bv_pipeline.api.raw_frame import empty_raw
from bv_pipeline.resources.manifest_store import ManifestStore
from bv_pipeline.storage import cold_keys
from bv_pipeline.storage.interfaces import HotStore, ManifestEntry, ObjectStore, PointMeta

__all__ = ["QueryResult", "Source", "TimeseriesReader"]


@dataclass
class QueryResult:
    """What a query returns. ``frame`` is raw (point, ts_ms, value, value_text) or, with an interval,
    aggregated (point, ts_ms = bucket start, avg, min, max, count); sorted by (point, ts_ms)."""

    site: str
    points: list[str]
    start_ms: int
    end_ms: int
    interval: str | None
    frame: pl.DataFrame
    hot_samples: int
    cold_samples: int
    source: Source
    hot_days: list[dt.date] = field(default_factory=list)
    cold_days: list[dt.date] = field(default_factory=list)
    cold_bytes_fetched: int = 0
    cold_objects_read: int = 0
    rollup_days: int = 0
    downsampled: bool = False
    immutable: bool = False  # every day in the window comes from archived (hot-deleted) cold objects
    coverage: dict[dt.date, DayState] = field(
        default_factory=dict
    )  # which tier answered each day (if any point)
    elapsed_ms: float = 0.0
    answer_cached: bool = False  # served from the answer cache (an immutable window asked before)


class TimeseriesReader:
    """Reads one site's points over any window from both tiers. Thread-safe; share one per process."""

    def __init__(
        self,
        hot: HotStore,
        cold: ObjectStore,
        *,
        max_workers: int = 16,
        cache_bytes: int = 256 * 1024 * 1024,
        catalogue_ttl_s: float = 30.0,
        use_compacted_rollups: bool = True,
        use_compacted_samples: bool = True,
        scan_local_files: bool = True,
        max_concurrent_queries: int = 0,
        answer_cache_bytes: int = 0,
    ) -> None:
        self.hot = hot
        self.cold = cold
        # The archive manifest lives in object storage; each query revalidates its months by ETag (304s).
        self._manifest_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="bv-manifest")
        self.manifest = ManifestStore(cold, pool=self._manifest_pool)
        # Each query holds its decoded rows, merge and encoding buffers: bounding how many run at once bounds
        # that memory (and on a few cores more at once only interleave). 0: unbounded.
        self._query_slots = (
            threading.BoundedSemaphore(max_concurrent_queries) if max_concurrent_queries > 0 else None
        )
        self.answers = AnswerCache(answer_cache_bytes)
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="bv-cold")
        # Its own pool: a hot read never waits behind cold GETs.
        self._hot_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="bv-hot")
        self.cold_tier = ColdTierReader(
            cold,
            self._pool,
            cache_bytes=cache_bytes,
            catalogue_ttl_s=catalogue_ttl_s,
            use_compacted_rollups=use_compacted_rollups,
            use_compacted_samples=use_compacted_samples,
            scan_local_files=scan_local_files,
        )
        self.cache = self.cold_tier.cache
        self.footer_cache = self.cold_tier.footer_cache
        self.compacted = self.cold_tier.compacted
        self.compacted_samples = self.cold_tier.compacted_samples
        self._catalogue = SiteCatalogue(hot, catalogue_ttl_s)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._hot_pool.shutdown(wait=False, cancel_futures=True)
        self._manifest_pool.shutdown(wait=False, cancel_futures=True)

    # ---- discovery ----------------------------------------------------------------------------------------

    def list_sites(self) -> list[str]:
        """Sites the hot tier knows, cached briefly: every query checks its site against this."""
        return self._catalogue.list_sites()

    def catalogue(self, site: str) -> dict[str, PointMeta]:
        """Point name -> metadata for a site, cached for ``catalogue_ttl_s`` (list_points scans the points table)."""
        return self._catalogue.points(site)

    def resolve_points(
        self, site: str, requested: Iterable[str]
    ) -> tuple[list[str], dict[str, str], list[str]]:
        """Map requested names to catalogue names: exact match first, else a unique case-insensitive match.

        Returns (resolved names in request order, {requested: canonical} for case fixes, unknown names).
        """
        return self._catalogue.resolve(site, requested)

    def ping(self) -> dict[str, str | None]:
        """Error text per store (None when reachable), for /health."""
        out: dict[str, str | None] = {}
        for name, fn in (("hot", self.hot.ping), ("cold", self._ping_cold)):
            try:
                fn()
                out[name] = None
            except Exception as exc:  # report any failure: health is about reachability, not error types
                out[name] = f"{type(exc).__name__}: {str(exc)[:200]}"
        return out

    def _ping_cold(self) -> None:
        ping = getattr(self.cold, "ping", None)
        if callable(ping):
            ping()
        else:
            # One cheap request that must reach the store: a listing of a prefix no object uses.
            self.cold.list(f"{cold_keys.SAMPLES_PREFIX}/site=__health__/")

    # ---- queries ------------------------------------------------------------------------------------------

    def query(
        self,
        site: str,
        points: Sequence[str],
        start_ms: int,
        end_ms: int,
        *,
        interval: str | None = None,
        max_points: int | None = None,
        downsample_method: DownsampleMethod = "minmax",
    ) -> QueryResult:
        """Samples of ``points`` in [start_ms, end_ms), raw or bucketed by ``interval``.

        ``site`` must already be a validated slug; ``points`` are passed to the stores only as parameters.
        """
        t0 = time.perf_counter()
        if interval is not None and interval not in INTERVALS_MS:
            raise ValueError(f"unknown interval {interval!r}")
        cold_keys.site_prefix(site)  # raises for a non-slug site: it becomes part of object keys
        pts = list(dict.fromkeys(points))
        days = day_plan.utc_days(start_ms, end_ms)
        result = QueryResult(
            site=site,
            points=pts,
            start_ms=start_ms,
            end_ms=end_ms,
            interval=interval,
            frame=empty_raw(),
            hot_samples=0,
            cold_samples=0,
            source="hot",
        )
        if not pts or not days:
            result.frame = empty_raw() if interval is None else finalize([])
            result.elapsed_ms = (time.perf_counter() - t0) * 1000
            return result

        with self._query_slots or contextlib.nullcontext():
            return self._query(result, days, max_points, downsample_method, t0)

    def _query(
        self,
        result: QueryResult,
        days: list[dt.date],
        max_points: int | None,
        downsample_method: DownsampleMethod,
        t0: float,
    ) -> QueryResult:
        site, pts, start_ms, end_ms, interval = (
            result.site,
            result.points,
            result.start_ms,
            result.end_ms,
            result.interval,
        )
        manifest = {e.day: e for e in self.manifest.list(site, days[0], days[-1])}
        hot_days, cold_days = day_plan.route_days(days, manifest)
        answer_key = None
        if not hot_days and self.answers.enabled:
            params = (interval, max_points, downsample_method if max_points is not None else None)
            answer_key = AnswerCache.key(site, pts, start_ms, end_ms, params, days, manifest)
            cached = self.answers.get(answer_key)
            if cached is not None:
                return dataclasses.replace(
                    cached,
                    cold_bytes_fetched=0,
                    cold_objects_read=0,
                    elapsed_ms=(time.perf_counter() - t0) * 1000,
                )
        # The hot read overlaps the cold days' read on its own pool; with no cold days it runs right here (a hand-off
        # to another thread would only add a switch and another thread's allocator arena).
        hot_read = (
            self._hot_pool.submit(self._read_hot, site, pts, hot_days, start_ms, end_ms, interval)
            if hot_days and cold_days
            else None
        )
        counter = ReadCounter()
        # Days archived and pruned from hot are read meanwhile; they do not depend on what hot holds.
        tasks = day_plan.cold_tasks({d: pts for d in cold_days}, manifest, start_ms, end_ms, interval)
        cold_raw, cold_rollups = self._read_archived(site, tasks, manifest, counter, cache=bool(hot_days))
        if hot_read is not None:
            hot, hot_hourly = hot_read.result()
        elif hot_days:
            hot, hot_hourly = self._read_hot(site, pts, hot_days, start_ms, end_ms, interval)
        else:
            hot, hot_hourly = empty_raw(), None
        # A verified day that hot no longer fully holds (pruned before the manifest said so) falls back to cold.
        present = (
            hot
            if hot_hourly is None
            else pl.concat(
                [hot.select("point", "ts_ms"), hot_hourly.select("point", pl.col("hour_ms").alias("ts_ms"))]
            )
        )
        gaps = day_plan.hot_gaps(pts, hot_days, manifest, present)
        if gaps:
            gap_tasks = day_plan.cold_tasks(gaps, manifest, start_ms, end_ms, interval)
            gap_raw, gap_rollups = self.cold_tier.read(site, gap_tasks, manifest, counter)
            tasks, cold_raw, cold_rollups = tasks + gap_tasks, cold_raw + gap_raw, cold_rollups + gap_rollups

        if interval is None:
            frame, n_hot, n_cold = merge_raw(hot, cold_raw)
        else:
            hourly = [] if hot_hourly is None else [hot_hourly]
            frame, n_hot, n_cold = merge_agg(hot, cold_raw, hourly + cold_rollups, INTERVALS_MS[interval])
            n_hourly = int(hot_hourly["count"].sum() or 0) if hot_hourly is not None else 0
            n_hot, n_cold = n_hot + n_hourly, n_cold - n_hourly  # hot hours came in as rollups
        if max_points is not None:
            before = frame.height
            frame = downsample(frame, "value" if interval is None else "avg", max_points, downsample_method)
            result.downsampled = frame.height < before

        result.frame = frame
        result.hot_samples, result.cold_samples = n_hot, n_cold
        result.hot_days = hot_days
        result.cold_days = sorted({t.day for t in tasks})
        result.rollup_days = counter.rollup_days
        result.cold_bytes_fetched = counter.bytes
        result.cold_objects_read = counter.objects
        result.source = day_plan.query_source(n_hot, n_cold, hot_days, cold_days)
        result.immutable = len(cold_days) == len(days)
        result.coverage = self._coverage(
            site, days, hot_days, present, set(manifest), result.cold_days, counter
        )
        result.elapsed_ms = (time.perf_counter() - t0) * 1000
        if answer_key is not None:
            self.answers.put(answer_key, dataclasses.replace(result))
        return result

    def _read_archived(
        self,
        site: str,
        tasks: list[day_plan.ColdTask],
        manifest: dict[dt.date, ManifestEntry],
        counter: ReadCounter,
        *,
        cache: bool,
    ) -> tuple[list[pl.DataFrame], list[pl.DataFrame]]:
        """The cold tier's frames for the archived days of a window; with ``cache`` (a window that also reads hot
        days, so its answer is not cached whole) from the content-keyed cache when these days were read before."""
        key = (
            AnswerCache.cold_key(site, tasks, manifest) if cache and tasks and self.answers.enabled else None
        )
        if key is not None:
            hit = self.answers.get_cold(key)
            if hit is not None:
                counter.replay(hit.rollup_days, hit.compacted_days)  # coverage and metrics as if read
                return hit.raw, hit.rollups
        raw, rolled = self.cold_tier.read(site, tasks, manifest, counter)
        if key is not None:  # the counter is this query's, and only these tasks have used it yet
            self.answers.put_cold(
                key, ColdPart(raw, rolled, counter.rollup_days, set(counter.compacted_days))
            )
        return raw, rolled

    def _coverage(
        self,
        site: str,
        days: list[dt.date],
        hot_days: list[dt.date],
        hot: pl.DataFrame,
        archived: set[dt.date],
        cold_read_days: list[dt.date],
        counter: ReadCounter,
    ) -> dict[dt.date, DayState]:
        """Which tier answered each day; sync state is asked for only when a hot day returned no rows and
        nothing else tells whether it was ever loaded (so a chart with data costs no extra hot-tier request)."""
        hot_rows_days = days_with_rows(hot)
        unknown = [d for d in hot_days if d not in hot_rows_days and d not in archived]
        synced = set(self.hot.list_sync_as_of(site, unknown[0], unknown[-1])) if unknown else set()
        return day_states(
            days,
            hot_days=set(hot_days),
            hot_rows_days=hot_rows_days,
            synced_days=synced,
            cold_read_days=set(cold_read_days),
            compacted_days=counter.compacted_days,
            archived_days=archived,
        )

    def _read_hot(
        self,
        site: str,
        points: list[str],
        hot_days: list[dt.date],
        start_ms: int,
        end_ms: int,
        interval: str | None = None,
    ) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        return read_hot(self.hot, site, points, hot_days, start_ms, end_ms, interval)
