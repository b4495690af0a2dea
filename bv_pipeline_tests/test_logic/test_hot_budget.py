"""Rows written per sync, seal and retention, counted exactly like D1 (the local endpoint carries Cloudflare's
row-count patch), and crashes between any two writes of a sync, a seal and retention.

Scale: 60 points at a 1-minute cadence; the figures are per point-hour so they extrapolate to 4,583 points
(bench/bench_cost.py measures the full site-day).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bv_pipeline.logic.archive import apply_retention, archive_site_day
from bv_pipeline.logic.hot_sync import SyncMode, sync_site_day
from bv_pipeline.resources.ace import AceClient
from bv_pipeline.resources.cold_store import LocalObjectStore
from bv_pipeline.resources.hot_store import D1HotStore, SqliteHotStore
from bv_pipeline.simulator import AceSimulator, SimulatorConfig
from bv_pipeline.simulator.faults import FaultConfig
from bv_pipeline.storage import hot_sql as q
from bv_pipeline.storage.samples import day_bounds_ms
from bv_pipeline_tests.fakes.d1_server import FakeD1, run_fake_d1
from bv_pipeline_tests.stack import assert_same_samples

POINTS = 60
DAY = dt.date(2026, 3, 10)
DAY0, DAY_END = day_bounds_ms(DAY)
MIN = 60_000
HOUR = 3_600_000


class World:
    def __init__(self, fake: FakeD1, tmp: Path) -> None:
        self.clock = DAY0
        self.sim = AceSimulator(
            SimulatorConfig(
                points=POINTS, seed=5, faults=FaultConfig(late_fraction=0.05, late_max_minutes=8, seed=2)
            ),
            clock=lambda: self.clock / 1000,
            sleep=lambda _s: None,
        )
        self.ace = AceClient(
            "http://ace-simulator/api", "k", transport=self.sim.transport(), sleep=lambda _s: None
        )
        self.fake = fake
        self.hot = D1HotStore(fake.account_id, fake.database_id, fake.token, base_url=fake.base_url)
        self.hot.ensure_schema()
        self.cold = LocalObjectStore(tmp / "cold")

    def sync(self, now: int, hot: Any = None) -> Any:
        self.clock = now
        return sync_site_day(self.ace, hot or self.hot, "demo", DAY, now_ms=now, mode=SyncMode.INCREMENTAL)

    def written(self) -> int:
        return self.fake.totals().rows_written


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with run_fake_d1() as fake:
        w = World(fake, tmp_path)
        yield w
        w.hot.close()


def test_rows_written_per_sync_seal_and_retention_stay_within_budget(world: World) -> None:
    # First sync of the day: creates the points (rows + UNIQUE index entries) and stages the first 5 minutes.
    world.sync(DAY0 + 5 * MIN + 20_000)
    per_sync: list[int] = []
    for k in range(2, 16):  # the rest of the first hour and the syncs up to the one that seals it (01:10)
        before = world.written()
        world.sync(DAY0 + k * 5 * MIN + 20_000)
        per_sync.append(world.written() - before)
    # Steady state: one staging row (60 points < 1,000 per group) + sync_state + watermark, and the hour's seal:
    # 60 blocks + 1 seal-state row + deleting the hour's ~12 staging rows.
    assert max(per_sync[:-2]) <= 3 + 2, (
        per_sync
    )  # a window spanning two hours writes one staging row per hour
    sealing = [w for w in per_sync if w > 10]
    # The day's first seal also creates the day table and recreates the operators' view (sqlite_master rows).
    assert len(sealing) == 1 and sealing[0] <= POINTS + 1 + 14 + 3 + 4, str(per_sync)
    # The hour's samples are in blocks, exactly once.
    start = DAY0
    got = world.hot.read_samples("demo", None, start, start + HOUR)
    assert_same_samples(got, world.sim.truth("demo", start, start + HOUR, as_of_ms=world.clock))

    # A replayed sync (same instant, nothing new at the source): no sample row, only nothing or state rows.
    before = world.written()
    again = world.sync(world.clock)
    assert again.rows_new == 0
    assert world.written() - before == 0  # guarded state upserts write nothing either

    # Point metadata refreshed hourly writes nothing when nothing changed.
    before = world.written()
    assert world.hot.upsert_points("demo", world.ace.list_points("demo")) == 0
    assert world.written() - before == 0

    # Retention of the archived day: DROP TABLE (0 rows) plus the manifest row.
    world.clock = DAY_END + 30 * MIN
    for k in range(0, 4):  # close the day (as_of past midnight + lookback) and seal every hour
        world.sync(DAY_END + k * 5 * MIN + 20_000)
    archive_site_day(world.hot, world.cold, world.ace, "demo", DAY, now_ms=world.clock)
    before = world.written()
    result = apply_retention(
        world.hot, world.cold, world.ace, "demo", today=DAY + dt.timedelta(days=3), hot_days=2
    )
    assert result.deleted_days == [DAY]
    # The manifest's hot_deleted_ms and recreating the view (2 sqlite_master rows); dropping the day's blocks
    # costs nothing, however many there are.
    assert world.written() - before <= 3
    assert world.hot.count_samples("demo", DAY0, DAY_END) == 0


class CrashAfter:
    """A D1 store whose ``_run`` raises after ``n`` atomic units (each unit is committed or not at all)."""

    def __init__(self, inner: D1HotStore, n: int) -> None:
        self.inner, self.left = inner, n
        self.orig = inner._run

        def run(statements: Any) -> Any:
            writes = any(not st.sql.lstrip().upper().startswith("SELECT") for st in statements)
            if writes:
                if self.left == 0:
                    raise RuntimeError("crash")
                self.left -= 1
            return self.orig(statements)

        inner._run = run  # type: ignore[method-assign]

    def restore(self) -> None:
        self.inner._run = self.orig  # type: ignore[method-assign]


@pytest.mark.parametrize("crash_after", [0, 1, 2, 3, 4, 5])  # the sync writes 6 units: every gap
def test_a_crash_between_any_two_writes_of_a_sync_and_seal_loses_nothing(
    world: World, crash_after: int
) -> None:
    # Small requests so one sync's staging rows and one seal's blocks span several atomic units.
    # The crashing sync's write units: staging rows (2: its window spans two hours), sync state, then the seal
    # of hour 0 in several units (blocks, the last one deleting the staging rows), then the seal state.
    world.hot.max_body_bytes = 6_000
    for k in range(1, 14):
        world.sync(DAY0 + k * 5 * MIN + 20_000)
    crash = CrashAfter(world.hot, crash_after)
    with pytest.raises(RuntimeError, match="crash"):
        world.sync(DAY0 + 14 * 5 * MIN + 20_000)  # fetches 01:00-01:10 and seals hour 0
    crash.restore()
    # Whatever was committed reads back correctly, and the rerun completes the sync and the seal.
    truth = world.sim.truth("demo", DAY0, DAY0 + 60 * MIN, as_of_ms=world.clock)
    assert_same_samples(world.hot.read_samples("demo", None, DAY0, DAY0 + 60 * MIN), truth)
    for k in (14, 15):
        world.sync(DAY0 + k * 5 * MIN + 20_000)
    truth = world.sim.truth("demo", DAY0, DAY0 + 65 * MIN, as_of_ms=world.clock)
    assert_same_samples(world.hot.read_samples("demo", None, DAY0, DAY0 + 65 * MIN), truth)
    assert world.hot.count_samples("demo", DAY0, DAY0 + 65 * MIN) == truth.num_rows
    assert world.fake.sql("SELECT COUNT(*) FROM hot_staging WHERE hour_ms < ?", (DAY0 + HOUR,)) == [(0,)]


@pytest.mark.parametrize("crash_after", [0, 1])
def test_a_crash_during_retention_loses_nothing(world: World, crash_after: int) -> None:
    for k in range(0, 3):
        world.sync(DAY_END + k * 5 * MIN + 20_000)  # first sync of the day loads it all (full day, staged)
    archive_site_day(world.hot, world.cold, world.ace, "demo", DAY, now_ms=world.clock)
    crash = CrashAfter(world.hot, crash_after)
    with pytest.raises(RuntimeError, match="crash"):
        apply_retention(
            world.hot, world.cold, world.ace, "demo", today=DAY + dt.timedelta(days=3), hot_days=2
        )
    crash.restore()
    truth = world.sim.truth("demo", DAY0, DAY_END, as_of_ms=world.clock)
    entry = world.hot.manifest_get("demo", DAY)
    assert entry is not None
    if world.hot.count_samples("demo", DAY0, DAY_END):
        assert_same_samples(world.hot.read_samples("demo", None, DAY0, DAY_END), truth)
    result = apply_retention(
        world.hot, world.cold, world.ace, "demo", today=DAY + dt.timedelta(days=3), hot_days=2
    )
    assert result.kept_days == {}
    assert world.hot.count_samples("demo", DAY0, DAY_END) == 0


def test_sqlite_and_d1_hold_the_same_rows_after_the_same_syncs(world: World, tmp_path: Path) -> None:
    lite = SqliteHotStore(tmp_path / "hot.sqlite3")
    lite.ensure_schema()
    for k in range(1, 15):
        world.sync(DAY0 + k * 5 * MIN + 20_000)
        world.sync(DAY0 + k * 5 * MIN + 20_000, hot=lite)
    d1_rows = world.hot.read_samples("demo", None, DAY0, DAY_END)
    assert d1_rows.equals(lite.read_samples("demo", None, DAY0, DAY_END))
    assert q.SCHEMA_VERSION >= 2
    lite.close()


def test_reads_seek_blocks_and_hourly_reads_touch_only_summaries(world: World) -> None:
    for k in range(1, 28):  # two sealed hours and an open one
        world.sync(DAY0 + k * 5 * MIN + 20_000)
    names = sorted(world.hot.point_ids("demo"))
    before = world.fake.totals().rows_read
    world.hot.read_samples("demo", names[:1], DAY0, DAY0 + 2 * HOUR)
    # Two blocks of one point (a seek each) plus the staging scan and the small lookups: never a table scan.
    assert world.fake.totals().rows_read - before < 200
    before = world.fake.totals().rows_read
    hourly = world.hot.read_hourly("demo", names[:10], DAY0, DAY0 + 2 * HOUR)
    assert hourly.height == 20
    assert world.fake.totals().rows_read - before < 300
