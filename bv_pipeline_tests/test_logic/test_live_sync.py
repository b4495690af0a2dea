"""logic/live_sync.py: many sites per call on a thread pool, against the simulator over httpx and a real SQLite
hot store. One site's ACE failing fails only that site; every other site ends up with exactly the source's
samples."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bv_pipeline.logic.live_sync import (
    LIVE_ACE_MAX_ATTEMPTS,
    LivePolicy,
    SiteOutcome,
    due_days,
    iter_sync_sites,
)
from bv_pipeline.resources.ace import AceClient
from bv_pipeline.resources.hot_store import D1HotStoreResource
from bv_pipeline.storage.samples import day_bounds_ms
from bv_pipeline_tests.fakes.d1_server import FakeD1
from bv_pipeline_tests.stack import Stack, assert_same_samples

DAY = dt.date(2026, 3, 10)
SITES = tuple(f"site-{i}" for i in range(6))
DEAD = "site-3"


class DeadSiteTransport(httpx.BaseTransport):
    """The simulator, except that every request for one site gets HTTP 503 (counted)."""

    def __init__(self, inner: httpx.BaseTransport, dead: str) -> None:
        self.inner, self.dead, self.dead_requests = inner, dead, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if f"/sites/{self.dead}/" in request.url.path:
            self.dead_requests += 1
            return httpx.Response(503, json={"message": "upstream unavailable"})
        return self.inner.handle_request(request)


def sync_sites(sites: Sequence[str], **kwargs: Any) -> list[SiteOutcome]:
    """Every site's outcome, in the order of ``sites`` (they are yielded as they finish)."""
    by_site = {o.site: o for o in iter_sync_sites(sites, **kwargs)}
    assert len(by_site) == len(sites)
    return [by_site[s] for s in sites]


def _factory(stack: Stack, transport: httpx.BaseTransport):
    def make() -> AceClient:
        return AceClient(
            "http://ace-simulator/api",
            "k",
            transport=transport,
            sleep=lambda _s: None,
            requests_per_minute=10**5,
        )

    return make


def _assert_exact(stack: Stack, site: str, day: dt.date) -> None:
    start, _ = day_bounds_ms(day)
    as_of = stack.hot.get_sync_as_of(site, day)
    assert as_of is not None
    assert_same_samples(stack.hot_rows(site, start, as_of), stack.truth(site, start, as_of))


def test_many_sites_one_dead_the_others_exact(tmp_path: Path) -> None:
    stack = Stack(tmp_path, sites=SITES, points=5)
    stack.set_now(dt.datetime(2026, 3, 10, 8, 2, tzinfo=dt.UTC))
    transport = DeadSiteTransport(stack.sim.transport(), DEAD)
    policy = LivePolicy(workers=3)

    outcomes = sync_sites(
        SITES, now_ms=stack.now_ms, hot=stack.hot, ace_factory=_factory(stack, transport), policy=policy
    )

    [dead] = [o for o in outcomes if o.failed]
    assert dead.site == DEAD and dead.failed_day == DAY and not dead.days
    assert "HTTP 503" in (dead.error or "")
    assert transport.dead_requests == LIVE_ACE_MAX_ATTEMPTS  # the live retry budget, not the batch one (6)
    for o in outcomes:
        if o.site == DEAD:
            continue
        [synced] = o.days
        assert synced.result.day == DAY and synced.result.rows_upserted > 0
        assert synced.stats is not None and synced.stats.rows == synced.result.rows_upserted
        _assert_exact(stack, o.site, DAY)
    assert stack.hot.get_sync_as_of(DEAD, DAY) is None

    # Next tick, ACE is back for every site: the dead one starts its day, the others continue incrementally.
    stack.advance(minutes=5)
    healthy = _factory(stack, stack.sim.transport())
    outcomes = sync_sites(SITES, now_ms=stack.now_ms, hot=stack.hot, ace_factory=healthy, policy=policy)
    assert not any(o.failed for o in outcomes) and sum(len(o.days) for o in outcomes) == len(SITES)
    for site in SITES:
        _assert_exact(stack, site, DAY)


def test_today_first_then_unclosed_days_and_the_time_budget(tmp_path: Path) -> None:
    stack = Stack(tmp_path, sites=("demo",), points=3)
    factory = _factory(stack, stack.sim.transport())
    stack.set_now(dt.datetime(2026, 3, 8, 12, 0, tzinfo=dt.UTC))
    sync_sites(["demo"], now_ms=stack.now_ms, hot=stack.hot, ace_factory=factory, policy=LivePolicy())
    # Two days of downtime: the 8th and 9th are unclosed, the 10th is today.
    stack.set_now(dt.datetime(2026, 3, 10, 0, 30, tzinfo=dt.UTC))
    policy = LivePolicy(chunk_minutes=60)
    assert due_days(stack.hot, "demo", DAY, policy) == [
        DAY,
        DAY - dt.timedelta(days=1),
        DAY - dt.timedelta(days=2),
    ]

    # A spent budget stops the site after its first committed chunk; the rest is deferred, nothing is lost.
    ticks = itertools.count()
    [o] = sync_sites(
        ["demo"],
        now_ms=stack.now_ms,
        hot=stack.hot,
        ace_factory=factory,
        policy=LivePolicy(budget_s=2),
        monotonic=lambda: float(next(ticks)),
    )
    assert not o.failed
    assert [d.result.day for d in o.days] == [DAY]
    assert o.days[0].result.chunks == 1
    assert o.deferred_days == [DAY - dt.timedelta(days=1), DAY - dt.timedelta(days=2)]

    # Without a budget the next call closes both earlier days (24 one-hour chunks each) with exact data.
    [o] = sync_sites(["demo"], now_ms=stack.now_ms, hot=stack.hot, ace_factory=factory, policy=policy)
    assert [d.result.day for d in o.days] == [DAY, DAY - dt.timedelta(days=1), DAY - dt.timedelta(days=2)]
    for day in (DAY - dt.timedelta(days=2), DAY - dt.timedelta(days=1)):
        start, end = day_bounds_ms(day)
        assert_same_samples(stack.hot_rows("demo", start, end), stack.truth("demo", start, end))
    stack.advance(minutes=15)
    assert due_days(stack.hot, "demo", DAY, policy) == [DAY]


def test_d1_requests_per_site_of_a_steady_tick(tmp_path: Path, fake_d1: FakeD1) -> None:
    """The account-wide D1 budget (1,200 requests / 5 min) bounds the sites per account: count a steady tick."""
    hot = D1HotStoreResource(
        account_id=fake_d1.account_id,
        database_id=fake_d1.database_id,
        api_token=fake_d1.token,
        base_url=fake_d1.base_url,
    )
    sites = SITES[:3]
    stack = Stack(tmp_path, sites=sites, points=5, hot_resource=hot)
    factory = _factory(stack, stack.sim.transport())
    stack.set_now(dt.datetime(2026, 3, 10, 8, 2, tzinfo=dt.UTC))
    sync_sites(sites, now_ms=stack.now_ms, hot=stack.hot, ace_factory=factory, policy=LivePolicy())
    stack.advance(minutes=5)  # same hour, no hour to seal: the common 5-minute tick
    before = fake_d1.totals().requests
    outcomes = sync_sites(sites, now_ms=stack.now_ms, hot=stack.hot, ace_factory=factory, policy=LivePolicy())
    assert not any(o.failed for o in outcomes)
    # The run reads the site's sync state once (it decides the days and feeds the window; before, the sensor and
    # the run each read it); the other 9 are sync_site_day's and the checks' statistics (staging read and write,
    # progress, sealing, window statistics), unchanged.
    assert fake_d1.totals().requests - before == 10 * len(sites)
    for site in sites:
        _assert_exact(stack, site, DAY)


class SlowSiteTransport(httpx.BaseTransport):
    """The simulator, but every request for one site takes 1,000 s of the run's (fake) clock."""

    def __init__(self, inner: httpx.BaseTransport, slow: str, clock: list[float]) -> None:
        self.inner, self.slow, self.clock = inner, slow, clock

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if f"/sites/{self.slow}/" in request.url.path:
            self.clock[0] += 1000
        return self.inner.handle_request(request)


def test_a_slow_ace_defers_the_sites_not_started_when_the_run_budget_is_spent(tmp_path: Path) -> None:
    sites = SITES[:3]
    stack = Stack(tmp_path, sites=sites, points=3)
    stack.set_now(dt.datetime(2026, 3, 10, 0, 30, tzinfo=dt.UTC))  # one chunk per site
    clock = [0.0]
    transport = SlowSiteTransport(stack.sim.transport(), sites[0], clock)
    outcomes = sync_sites(
        sites,
        now_ms=stack.now_ms,
        hot=stack.hot,
        ace_factory=_factory(stack, transport),
        policy=LivePolicy(workers=1, budget_s=300),
        monotonic=lambda: clock[0],
    )
    first, *rest = outcomes
    assert not first.failed and not first.deferred and [d.result.chunks for d in first.days] == [1]
    _assert_exact(stack, sites[0], DAY)
    assert all(o.deferred and not o.days and not o.failed for o in rest)
    assert all(stack.hot.get_sync_as_of(o.site, DAY) is None for o in rest)  # due again next tick


def test_the_run_s_ace_clients_share_one_rate_limit(tmp_path: Path) -> None:
    stack = Stack(tmp_path, sites=SITES, points=3)
    stack.set_now(dt.datetime(2026, 3, 10, 0, 30, tzinfo=dt.UTC))
    made: list[AceClient] = []
    all_workers_started = threading.Barrier(3)

    def factory() -> AceClient:  # each worker's first call waits for the other two: three clients for sure
        client = _factory(stack, stack.sim.transport())()
        made.append(client)
        all_workers_started.wait(timeout=30)
        return client

    outcomes = sync_sites(
        SITES, now_ms=stack.now_ms, hot=stack.hot, ace_factory=factory, policy=LivePolicy(workers=3)
    )
    assert not any(o.failed for o in outcomes)
    assert len(made) == 3 and len({id(c.limiter) for c in made}) == 1
