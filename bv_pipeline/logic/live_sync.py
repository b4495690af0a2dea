"""Live sync of many sites in one process: the hot tier's 5-minute cycle without a Dagster run per site-day.

For each site the hot store's own per-day sync state decides the days (``days_to_sync``, as the sensor did per
site before); each day is synced with ``sync_site_day`` and its checks' statistics are read back. Sites run
concurrently on a bounded thread pool (``BV_SYNC_WORKERS``); ACE and hot-store calls release the GIL, so a few
threads keep both busy. Each site is isolated: an exception becomes that site's failure, the other sites
complete, and nothing is retried in-process (the failed site is simply due again on the next tick, which resumes
from its last committed chunk).

The work is bounded so a dead or slow site (or ACE) cannot hold the run much past the sync interval: ACE clients
make at most ``LIVE_ACE_MAX_ATTEMPTS`` attempts per request (instead of the batch default); once a site has spent
``budget_s`` no further chunk or day is started for it, and once the run has, no further site is started (the rest
is picked up next tick; every committed chunk is kept). Today is synced first, then unclosed earlier days: freshness of today matters most.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bv_pipeline.logic.hot_sync import SyncMode, SyncResult, check_stats, days_to_sync, sync_site_day

if TYPE_CHECKING:
    from bv_pipeline.resources.ace import AceClient
    from bv_pipeline.storage.interfaces import HotStore, WindowStats

log = logging.getLogger(__name__)

# Live requests give up sooner than batch ones: backoff between 3 attempts totals at most ~1.5 s, so a site whose
# ACE answers 5xx fails in seconds and is retried by the next tick instead of holding a worker.
LIVE_ACE_MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class LivePolicy:
    lookback_minutes: int = 10
    chunk_minutes: int = 60
    max_catchup_days: int = 20
    workers: int = 4
    budget_s: float = (
        300.0  # per site: no new chunk or day starts after this long; per run: no new site starts
    )


@dataclass
class SyncedDay:
    """One site-day synced in this run, with the statistics its checks are computed from."""

    result: SyncResult
    stats: WindowStats | None  # None when nothing was synced (no window)


@dataclass
class SiteOutcome:
    site: str
    days: list[SyncedDay] = field(default_factory=list)
    error: str | None = None  # the site failed: "<ExceptionType>: message"
    failed_day: dt.date | None = None  # the day being synced when it failed (None: before any day)
    deferred_days: list[dt.date] = field(default_factory=list)  # not started: the time budget was spent
    deferred: bool = False  # the site was not started: the run's time budget was spent (ACE slow or down)
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.error is not None


class _BudgetSpent(Exception):
    """Raised from the chunk callback to stop a site's sync between two committed chunks."""


def due_days(hot: HotStore, site: str, today: dt.date, policy: LivePolicy) -> list[dt.date]:
    """The site's days to sync now, today first (then unclosed earlier days, newest first)."""
    return _due_days(hot, site, today, policy)[0]


def _due_days(
    hot: HotStore, site: str, today: dt.date, policy: LivePolicy
) -> tuple[list[dt.date], dict[dt.date, int]]:
    """The due days and the sync state they were decided from (one request, two for a site without state)."""
    since = today - dt.timedelta(days=policy.max_catchup_days)
    state = hot.list_sync_as_of(site, since, today)
    days = days_to_sync(
        today,
        state,
        lookback_ms=policy.lookback_minutes * 60_000,
        max_catchup_days=policy.max_catchup_days,
        has_any_state=bool(state) or hot.get_watermark(site) is not None,
    )
    return sorted(days, reverse=True), state


def iter_sync_sites(
    sites: Sequence[str],
    *,
    now_ms: int,
    hot: HotStore,
    ace_factory: Callable[[], AceClient],
    policy: LivePolicy,
    days: Iterable[dt.date] | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> Iterator[SiteOutcome]:
    """Sync every site's due days (or exactly ``days`` when given), sites concurrently, yielding each site's
    outcome as it finishes (on the calling thread, so a caller can record it at once). Never raises for a site.

    ``ace_factory`` builds one ACE client per worker thread (a client is used by one thread at a time); all are
    closed when the iteration ends.
    """
    today = dt.datetime.fromtimestamp(now_ms / 1000, tz=dt.UTC).date()
    fixed_days = sorted(set(days), reverse=True) if days is not None else None
    local = threading.local()
    clients: list[AceClient] = []
    clients_guard = threading.Lock()

    def client() -> AceClient:
        c = getattr(local, "client", None)
        if c is None:
            c = ace_factory()
            c.max_attempts = min(c.max_attempts, LIVE_ACE_MAX_ATTEMPTS)
            local.client = c
            with clients_guard:
                # One rate limiter for the run's clients (it is thread-safe): the run's workers together keep
                # the configured request rate instead of each having it.
                if clients:
                    c.limiter = clients[0].limiter
                clients.append(c)
        return c

    run_deadline = monotonic() + policy.budget_s

    def one_site(site: str) -> SiteOutcome:
        out = SiteOutcome(site)
        started = monotonic()
        if started >= run_deadline:
            out.deferred = True
            return out
        deadline = started + policy.budget_s
        day: dt.date | None = None
        current: list[SyncResult] = []  # the result being built, for a stop between chunks

        def on_chunk(r: SyncResult) -> None:
            current[:] = [r]
            if monotonic() >= deadline:
                raise _BudgetSpent

        try:
            if fixed_days is not None:
                wanted, state = fixed_days, None
            else:
                wanted, state = _due_days(hot, site, today, policy)
            for i, day in enumerate(wanted):
                if i and monotonic() >= deadline:
                    out.deferred_days = list(wanted[i:])
                    break
                current.clear()
                try:
                    result = sync_site_day(
                        client(),
                        hot,
                        site,
                        day,
                        now_ms=now_ms,
                        mode=SyncMode.INCREMENTAL,
                        lookback_minutes=policy.lookback_minutes,
                        chunk_minutes=policy.chunk_minutes,
                        log=log,
                        on_chunk=on_chunk,
                        as_of_by_day=state,
                    )
                except _BudgetSpent:
                    result = current[0]
                    result.notes.append(
                        f"time budget of {policy.budget_s:g} s spent: the rest follows next tick"
                    )
                    out.days.append(SyncedDay(result, check_stats(hot, result, now_ms)))
                    out.deferred_days = list(wanted[i + 1 :])
                    break
                out.days.append(SyncedDay(result, check_stats(hot, result, now_ms)))
        except Exception as exc:  # one site's failure must not stop the others
            out.error = f"{type(exc).__name__}: {exc}"
            out.failed_day = day
            log.warning("live sync of %s failed on %s: %s", site, day, out.error)
        out.seconds = monotonic() - started
        return out

    workers = max(1, min(policy.workers, len(sites)))
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="live-sync") as pool:
            futures = [pool.submit(one_site, site) for site in sites]
            try:
                for future in as_completed(futures):
                    yield future.result()
            finally:
                for future in futures:  # the caller stopped early: start no further site
                    future.cancel()
    finally:
        for c in clients:
            c.close()
