"""A crash at any step of archival or retention loses nothing (fault injection at each step).

Invariant checked after every crash and after the recovery run: for every day, the union of the hot rows and the
verified cold object equals the simulator's truth, and a day is marked deleted only if cold holds all of it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

from bv_pipeline.logic.archive import apply_retention
from bv_pipeline.logic.hot_sync import SyncMode, sync_site_day
from bv_pipeline.resources.ace import AceClient
from bv_pipeline.resources.cold_store import LocalObjectStore
from bv_pipeline.resources.hot_store import SqliteHotStore
from bv_pipeline.resources.manifest_store import ManifestStore
from bv_pipeline.simulator import AceSimulator, SimulatorConfig
from bv_pipeline.storage import parquet_layout
from bv_pipeline.storage.samples import SAMPLE_SCHEMA, day_bounds_ms
from bv_pipeline_tests.stack import assert_same_samples

TODAY = dt.date(2026, 3, 10)
DAYS = [TODAY - dt.timedelta(days=n) for n in (5, 4, 3)]  # all outside a 2-day hot window
NOW_MS = day_bounds_ms(TODAY)[0] + 3 * 3_600_000


class Crash(RuntimeError):
    pass


class Proxy:
    """Delegates to a real store; the ``nth`` call of ``method`` fails once, before or after doing its work."""

    def __init__(self, inner: Any, method: str, *, after: bool, nth: int = 1) -> None:
        self._inner, self._method, self._after, self.fired = inner, method, after, False
        self._calls_left = nth

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name != self._method or self.fired:
            return attr

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self._calls_left -= 1
            if self._calls_left > 0:
                return attr(*args, **kwargs)
            self.fired = True
            if not self._after:
                raise Crash(f"crash before {name}")
            attr(*args, **kwargs)
            raise Crash(f"crash after {name}")

        return wrapped


class HalfDelete(Proxy):
    """delete_range deletes the first half of the range, then crashes (a D1 batch lost mid-way)."""

    def __getattr__(self, name: str) -> Any:
        if name == "delete_range" and not self.fired:

            def wrapped(site: str, start_ms: int, end_ms: int) -> int:
                self.fired = True
                self._inner.delete_range(site, start_ms, (start_ms + end_ms) // 2)
                raise Crash("crash mid-delete")

            return wrapped
        return getattr(self._inner, name)


def _world(tmp_path: Path, **store: Any) -> tuple[AceSimulator, AceClient, SqliteHotStore, LocalObjectStore]:
    sim = AceSimulator(SimulatorConfig(points=12, seed=3), clock=lambda: NOW_MS / 1000)
    client = AceClient("http://ace-simulator/api", "k", transport=sim.transport(), sleep=lambda _s: None)
    hot = SqliteHotStore(tmp_path / "hot.sqlite3", **store)
    hot.ensure_schema()
    cold = LocalObjectStore(tmp_path / "cold")
    for day in DAYS:
        sync_site_day(client, hot, "demo", day, now_ms=NOW_MS, mode=SyncMode.FULL_DAY)
    return sim, client, hot, cold


@pytest.fixture
def world(tmp_path: Path) -> tuple[AceSimulator, AceClient, SqliteHotStore, LocalObjectStore]:
    return _world(tmp_path)


def _union(hot: SqliteHotStore, cold: LocalObjectStore, day: dt.date) -> pa.Table:
    start, end = day_bounds_ms(day)
    parts = [hot.read_samples("demo", None, start, end)]
    entry = ManifestStore(cold).get("demo", day)
    if entry is not None and cold.size(entry.key) is not None:
        parts.append(parquet_layout.decode_day(cold.get(entry.key)))
    df = pl.from_arrow(pa.concat_tables([p.cast(SAMPLE_SCHEMA) for p in parts]))
    assert isinstance(df, pl.DataFrame)
    return df.unique(subset=["point", "ts_ms"], keep="first").to_arrow().cast(SAMPLE_SCHEMA)


def _assert_nothing_lost(sim: AceSimulator, hot: SqliteHotStore, cold: LocalObjectStore) -> None:
    for day in DAYS:
        start, end = day_bounds_ms(day)
        assert_same_samples(_union(hot, cold, day), sim.truth("demo", start, end))
        entry = ManifestStore(cold).get("demo", day)
        if entry is not None and entry.hot_deleted_ms is not None:
            # A day readers now take from cold must be complete there.
            assert_same_samples(parquet_layout.decode_day(cold.get(entry.key)), sim.truth("demo", start, end))


@pytest.mark.parametrize(
    ("target", "method", "after", "nth"),
    [
        ("cold", "put", False, 1),  # upload fails
        ("cold", "put", True, 1),  # crash right after the upload, before verification
        ("cold", "get", False, 1),  # crash during read-back verification
        ("cold", "put", False, 2),  # the rollup upload fails (raw object written and verified)
        ("cold", "put", True, 2),  # crash right after the rollup upload, before the manifest commit
        ("cold", "put_if", False, 1),  # crash before the manifest commit (object storage's conditional write)
        ("cold", "put_if", True, 1),  # crash after the commit, before retention marks the day
        ("cold", "put_if", False, 2),  # crash before the "hot copy retired" mark is committed
        ("cold", "put_if", True, 2),  # crash after the mark, before the delete
        ("hot", "delete_range", False, 1),  # crash just before deleting
        ("hot", "delete_range", True, 1),  # crash right after deleting, before bookkeeping ends
        ("hot", "half_delete", True, 1),  # crash mid-delete
    ],
)
def test_crash_at_each_step_loses_nothing(
    world: tuple[Any, ...], target: str, method: str, after: bool, nth: int
) -> None:
    sim, client, hot, cold = world
    if method == "half_delete":
        faulty_hot: Any = HalfDelete(hot, "delete_range", after=True)
        faulty_cold: Any = cold
    elif target == "hot":
        faulty_hot, faulty_cold = Proxy(hot, method, after=after, nth=nth), cold
    else:
        faulty_hot, faulty_cold = hot, Proxy(cold, method, after=after, nth=nth)

    with pytest.raises(Crash):
        apply_retention(faulty_hot, faulty_cold, client, "demo", today=TODAY, hot_days=2, now_ms=NOW_MS)
    _assert_nothing_lost(sim, hot, cold)

    result = apply_retention(hot, cold, client, "demo", today=TODAY, hot_days=2, now_ms=NOW_MS)
    _assert_nothing_lost(sim, hot, cold)
    for day in DAYS:
        start, end = day_bounds_ms(day)
        assert hot.count_samples("demo", start, end) == 0, f"{day} should have been retired after recovery"
    assert result.kept_days == {}


def test_a_failing_hot_manifest_cache_loses_nothing(world: tuple[Any, ...]) -> None:
    """The hot tier's manifest table is a cache: failing writes to it change nothing that matters."""
    sim, client, hot, cold = world
    result = apply_retention(
        Proxy(hot, "manifest_put", after=False), cold, client, "demo", today=TODAY, hot_days=2, now_ms=NOW_MS
    )
    assert result.deleted_days == DAYS
    _assert_nothing_lost(sim, hot, cold)
    assert all((e := ManifestStore(cold).get("demo", d)) and e.hot_deleted_ms for d in DAYS)


def test_retention_reverifies_a_tampered_object_before_deleting(world: tuple[Any, ...]) -> None:
    sim, client, hot, cold = world
    # Archive DAYS[0] properly, then replace its object with one that lacks a point (out-of-band damage).
    from bv_pipeline.logic.archive import archive_site_day

    archive_site_day(hot, cold, client, "demo", DAYS[0], now_ms=NOW_MS)
    entry = hot.manifest_get("demo", DAYS[0])
    assert entry is not None
    full = parquet_layout.decode_day(cold.get(entry.key))
    first_point = full["point"][0].as_py()
    damaged = full.filter(pa.compute.not_equal(full["point"], first_point))
    data, _ = parquet_layout.encode_day("demo", DAYS[0], damaged, source="hot")
    cold.put(entry.key, data)

    result = apply_retention(hot, cold, client, "demo", today=TODAY, hot_days=2, now_ms=NOW_MS)
    assert DAYS[0] in result.rearchived_days and DAYS[0] in result.deleted_days
    _assert_nothing_lost(sim, hot, cold)
