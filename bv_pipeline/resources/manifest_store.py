"""``ManifestStore``: the archive manifest kept in object storage (``storage.manifest``), with atomic updates.

Every change is a compare-and-swap on one site-month document: read it with its ETag, apply a pure function to
the day's entry, write it back with ``If-Match: <etag>`` (``If-None-Match: *`` when the month has no document
yet). When another writer committed first the write fails with 412, and the update re-reads and re-applies the
function, so two writers never both win and neither's change is lost. Update functions must therefore be pure
functions of the entry they are given (they may run several times).

Reads cache each month with its ETag and revalidate with a conditional GET (``If-None-Match``; a 304 costs no
body) at most every ``max_age_s`` seconds (default 0: on every read), so a running reader never routes by a
stale manifest. The hot tier's ``archive_manifest`` table, when a ``mirror`` is given, receives a copy of each
committed entry; it is a cache only: nothing reads it to decide anything, and ``rebuild_hot_cache`` refills it.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bv_pipeline.storage import manifest as fmt
from bv_pipeline.storage.interfaces import ManifestEntry, PreconditionFailed
from bv_pipeline.storage.manifest import ManifestMonth

if TYPE_CHECKING:
    from bv_pipeline.storage.interfaces import HotStore, ObjectStore

log = logging.getLogger(__name__)

LIST_FROM_MONTHS = 3  # spans of this many months or more revalidate through one listing instead of GETs
UpdateFn = Callable[[ManifestEntry | None], ManifestEntry | None]


class ManifestConflict(RuntimeError):
    """An update kept losing compare-and-swap races; nothing was written by this call."""


@dataclass
class _Cached:
    checked: float  # monotonic time of the last (re)validation
    etag: str | None  # None: no document exists
    month: ManifestMonth


def _months(start: dt.date, end: dt.date) -> list[dt.date]:
    out, m = [], fmt.month_of(start)
    while m <= end:
        out.append(m)
        m = (m + dt.timedelta(days=32)).replace(day=1)
    return out


class ManifestStore:
    """The archive manifest in object storage. Thread-safe; share one per process (its cache is per instance)."""

    def __init__(
        self,
        cold: ObjectStore,
        *,
        mirror: HotStore | None = None,
        max_age_s: float = 0.0,
        max_attempts: int = 30,
        pool: ThreadPoolExecutor | None = None,
    ) -> None:
        self.cold = cold
        self.mirror = mirror
        self.max_age_s = max_age_s
        self.max_attempts = max_attempts
        self._pool = pool
        self._cache: dict[tuple[str, dt.date], _Cached] = {}
        self._lock = threading.Lock()
        self.commits = 0  # successful conditional writes by this instance
        self.conflicts = 0  # 412s this instance saw (each followed by a re-read and re-apply)

    # ---- reads --------------------------------------------------------------------------------------------

    def read_month(
        self, site: str, month: dt.date, *, fresh: bool = False
    ) -> tuple[ManifestMonth, str | None]:
        """The site-month's document and its ETag (None: no document yet), revalidated unless cached recently."""
        month = fmt.month_of(month)
        ck = (site, month)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(ck)
        if hit is not None and not fresh and now - hit.checked < self.max_age_s:
            return hit.month, hit.etag
        key = fmt.manifest_key(site, month)
        try:
            got = self.cold.get_versioned(key, if_none_match=hit.etag if hit and hit.etag else None)
        except KeyError:
            entry = _Cached(now, None, ManifestMonth(site, month, {}))
        else:
            if got is None:  # 304: still the version cached
                assert hit is not None
                entry = _Cached(now, hit.etag, hit.month)
            else:
                entry = _Cached(now, got.etag, ManifestMonth.from_json(got.data, site=site, month=month))
        with self._lock:
            self._cache[ck] = entry
        return entry.month, entry.etag

    def get(self, site: str, day: dt.date) -> ManifestEntry | None:
        return self.read_month(site, day)[0].days.get(day)

    def list(self, site: str, start: dt.date, end: dt.date) -> list[ManifestEntry]:
        """Verified entries of days in [start, end] (inclusive), by day.

        Up to ``LIST_FROM_MONTHS - 1`` months: one conditional GET each. Longer spans: one listing of the site's
        manifests (it carries every ETag) and GETs only for months whose ETag changed, so a year-long query
        costs one round trip when nothing changed. Both are strongly consistent on R2 and S3.
        """
        months = _months(start, end)
        if len(months) >= LIST_FROM_MONTHS:
            docs = self._read_months_by_listing(site, months)
        elif len(months) > 1 and self._pool is not None:
            docs = list(self._pool.map(lambda m: self.read_month(site, m)[0], months))
        else:
            docs = [self.read_month(site, m)[0] for m in months]
        return [e for doc in docs for d, e in sorted(doc.days.items()) if start <= d <= end]

    def _read_months_by_listing(self, site: str, months: list[dt.date]) -> list[ManifestMonth]:
        etags = self.cold.list_etags(fmt.site_prefix(site))
        now = time.monotonic()
        out: dict[dt.date, ManifestMonth] = {}
        stale: list[dt.date] = []
        with self._lock:
            for m in months:
                etag = etags.get(fmt.manifest_key(site, m))
                hit = self._cache.get((site, m))
                if etag is None:
                    out[m] = ManifestMonth(site, m, {})
                    self._cache[(site, m)] = _Cached(now, None, out[m])
                elif hit is not None and hit.etag == etag:
                    out[m] = hit.month
                    hit.checked = now
                else:
                    stale.append(m)
        fetch = lambda m: self.read_month(site, m, fresh=True)[0]  # noqa: E731
        got = (
            list(self._pool.map(fetch, stale))
            if self._pool is not None and len(stale) > 1
            else map(fetch, stale)
        )
        out.update(zip(stale, got, strict=True))
        return [out[m] for m in months]

    def months(self, site: str) -> list[dt.date]:
        """Months that have a manifest document, from one listing."""
        found = (fmt.parse_manifest_key(k) for k in self.cold.list(fmt.site_prefix(site)))
        return sorted(m for p in found if p is not None and p[0] == site for m in [p[1]])

    def list_all(self, site: str) -> list[ManifestEntry]:
        months = self.months(site)
        if not months:
            return []
        last = (months[-1] + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
        return [e for e in self.list(site, months[0], last)]

    def sites(self) -> list[str]:
        """Sites with at least one manifest document."""
        found = (fmt.parse_manifest_key(k) for k in self.cold.list(f"{fmt.MANIFEST_PREFIX}/"))
        return sorted({p[0] for p in found if p is not None})

    # ---- writes -------------------------------------------------------------------------------------------

    def update(self, site: str, day: dt.date, fn: UpdateFn) -> ManifestEntry | None:
        """Atomically replace the day's entry with ``fn(current)`` (None removes it); returns the committed entry.

        Re-reads and re-applies ``fn`` after every lost race (412), with a short jittered backoff.
        """
        month = fmt.month_of(day)
        key = fmt.manifest_key(site, month)
        for attempt in range(self.max_attempts):
            doc, etag = self.read_month(site, month, fresh=True)
            old = doc.days.get(day)
            new = fn(old)
            if new is not None and (new.site != site or new.day != day):
                raise ValueError(f"update for {site} {day} returned an entry for {new.site} {new.day}")
            if new == old:
                return new
            updated = doc.with_day(new, day)
            try:
                new_etag = self.cold.put_if(key, updated.to_json(), if_match=etag)
            except PreconditionFailed:
                with self._lock:
                    self.conflicts += 1
                time.sleep(random.uniform(0, min(0.5, 0.01 * 2**attempt)))
                continue
            with self._lock:
                self.commits += 1
                self._cache[(site, month)] = _Cached(time.monotonic(), new_etag, updated)
            self._mirror(new)
            return new
        raise ManifestConflict(f"{key}: lost {self.max_attempts} conditional writes in a row; retry later")

    def put(self, entry: ManifestEntry) -> ManifestEntry:
        self.update(entry.site, entry.day, lambda _old: entry)
        return entry

    def _mirror(self, entry: ManifestEntry | None) -> None:
        # The hot copy is a cache: a failure here is logged, never fatal, because object storage already holds
        # the committed entry and ``rebuild_hot_cache`` restores the copy.
        if self.mirror is None or entry is None:
            return
        try:
            self.mirror.manifest_put(entry)
        except Exception as exc:  # any backend failure: the cache is best-effort by design
            log.warning("hot manifest cache not updated for %s %s: %s", entry.site, entry.day, exc)
