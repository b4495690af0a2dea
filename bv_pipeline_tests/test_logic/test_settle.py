"""Late samples end up stored (settling pass), and a day can be replaced by what ACE serves now (correction).

The simulator delays a share of samples (``FaultConfig.late_fraction``) by up to ``late_max_minutes``: the API
serves such a sample only once the simulator clock passes ``ts + delay``. Afterwards hot or cold must equal the
simulator's complete truth, sample by sample.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from bv_pipeline.logic.archive import apply_retention, archive_site_day
from bv_pipeline.logic.hot_sync import SyncMode, sync_site_day
from bv_pipeline.logic.settle import correct_site_day, settle_site_day
from bv_pipeline.resources.ace import AceClient
from bv_pipeline.resources.cold_store import LocalObjectStore
from bv_pipeline.resources.hot_store import SqliteHotStore
from bv_pipeline.resources.manifest_store import ManifestStore
from bv_pipeline.simulator import AceSimulator, FaultConfig, SimulatorConfig
from bv_pipeline.storage import parquet_layout
from bv_pipeline.storage.samples import day_bounds_ms
from bv_pipeline_tests.stack import assert_same_samples

DAY = dt.date(2026, 3, 5)
START, END = day_bounds_ms(DAY)
MIN = 60_000
HOUR = 60 * MIN


class World:
    def __init__(self, tmp: Path, *, late_fraction: float, late_max_minutes: int) -> None:
        self.now = START
        faults = FaultConfig(late_fraction=late_fraction, late_max_minutes=late_max_minutes, seed=9)
        self.sim = AceSimulator(
            SimulatorConfig(points=10, seed=4, faults=faults), clock=lambda: self.now / 1000
        )
        self.ace = AceClient(
            "http://ace-simulator/api", "k", transport=self.sim.transport(), sleep=lambda _s: None
        )
        self.hot = SqliteHotStore(tmp / "hot.sqlite3")
        self.hot.ensure_schema()
        self.cold = LocalObjectStore(tmp / "cold")

    def truth(self) -> pa.Table:
        return self.sim.truth(
            "demo", START, END, as_of_ms=END + 10 * 24 * HOUR
        )  # every sample, late ones too

    def hot_day(self) -> pa.Table:
        return self.hot.read_samples("demo", None, START, END)

    def cold_day(self) -> pa.Table:
        entry = ManifestStore(self.cold).get("demo", DAY)
        assert entry is not None and entry.rollup_current
        return parquet_layout.decode_day(self.cold.get(entry.key))

    def sync(self, mode: SyncMode = SyncMode.INCREMENTAL) -> None:
        sync_site_day(self.ace, self.hot, "demo", DAY, now_ms=self.now, mode=mode, lookback_minutes=10)


def test_late_by_up_to_15_minutes_is_found_before_archival(tmp_path: Path) -> None:
    w = World(tmp_path, late_fraction=0.3, late_max_minutes=15)
    # The live sync: a full read at 21:00, then every 5 minutes with the default 10-minute lookback.
    w.now = START + 21 * HOUR
    w.sync(SyncMode.FULL_DAY)
    while w.now < END + 5 * MIN:
        w.now += 5 * MIN
        w.sync()
    truth = w.truth()
    missed = truth.num_rows - w.hot_day().num_rows
    assert missed > 0  # samples later than the lookback were never fetched by the sync

    w.now = END + 2 * HOUR  # the nightly archival: settle first, then archive
    r = settle_site_day(w.hot, w.cold, w.ace, "demo", DAY, now_ms=w.now)
    assert r.target == "hot" and r.late_samples == missed and not r.rearchived
    assert 0 < r.max_age_minutes <= 24 * 60 + 2 * 60 and sum(r.late_by_age.values()) == missed
    assert_same_samples(w.hot_day(), truth)
    archive_site_day(w.hot, w.cold, w.ace, "demo", DAY, now_ms=w.now)
    assert_same_samples(w.cold_day(), truth)
    again = settle_site_day(w.hot, w.cold, w.ace, "demo", DAY, now_ms=w.now + HOUR)
    assert again.late_samples == 0 and again.target == "hot+cold" and not again.rearchived


@pytest.mark.parametrize("retired", [False, True])
def test_late_by_up_to_24_hours_is_stored_by_the_delayed_pass(tmp_path: Path, retired: bool) -> None:
    w = World(tmp_path, late_fraction=0.05, late_max_minutes=24 * 60)
    w.now = END + 5 * MIN
    w.sync(SyncMode.FULL_DAY)
    w.now = END + 2 * HOUR  # nightly: settle (finds what arrived by now), archive
    first = settle_site_day(w.hot, w.cold, w.ace, "demo", DAY, now_ms=w.now)
    archive_site_day(w.hot, w.cold, w.ace, "demo", DAY, now_ms=w.now)
    truth = w.truth()
    assert first.late_samples > 0 and w.cold_day().num_rows < truth.num_rows  # more is still to come
    before = ManifestStore(w.cold).get("demo", DAY)
    assert before is not None
    if retired:  # retention retires the hot copy before the delayed pass
        result = apply_retention(
            w.hot, w.cold, w.ace, "demo", today=DAY + dt.timedelta(days=1), hot_days=0, now_ms=w.now
        )
        assert result.deleted_days == [DAY] and w.hot_day().num_rows == 0

    w.now = END + 26 * HOUR  # BV_SETTLE_DELAY_HOURS after the day ended
    r = settle_site_day(w.hot, w.cold, w.ace, "demo", DAY, now_ms=w.now)
    assert r.target == ("cold" if retired else "hot+cold") and r.rearchived
    assert r.late_samples == truth.num_rows - before.rows > 0
    assert 24 * 60 < r.max_age_minutes <= (w.now - START) / MIN  # age when found: ts is up to 50 h back
    assert_same_samples(w.cold_day(), truth)  # the rollup followed (cold_day asserts rollup_current)
    after = ManifestStore(w.cold).get("demo", DAY)
    assert after is not None and after.checksum != before.checksum and after.rows == truth.num_rows
    assert (after.hot_deleted_ms is not None) == retired
    if not retired:
        assert_same_samples(w.hot_day(), truth)


def test_correction_replaces_the_day_with_what_ace_serves(tmp_path: Path) -> None:
    w = World(tmp_path, late_fraction=0.0, late_max_minutes=1)
    w.now = END + 2 * HOUR
    w.sync(SyncMode.FULL_DAY)
    truth = w.truth()
    # Bad rows reach the stores (a misconfigured point once served garbage): merge keeps them forever.
    bogus = truth.slice(0, 5).set_column(0, "point", pa.array(["bogus/point"] * 5))
    w.hot.upsert_samples("demo", bogus)
    archive_site_day(w.hot, w.cold, w.ace, "demo", DAY, now_ms=w.now)
    assert w.cold_day().num_rows == truth.num_rows + 5
    merged = settle_site_day(w.hot, w.cold, w.ace, "demo", DAY, now_ms=w.now)
    assert merged.late_samples == 0 and w.cold_day().num_rows == truth.num_rows + 5  # a merge cannot remove

    c = correct_site_day(w.hot, w.cold, w.ace, "demo", DAY, now_ms=w.now + HOUR)
    assert c.rows_before == truth.num_rows + 5 and c.rows_after == truth.num_rows and c.hot_replaced
    assert c.checksum_before != c.checksum_after
    assert_same_samples(w.cold_day(), truth)
    assert_same_samples(w.hot_day(), truth)


def test_correction_refuses_an_empty_answer(tmp_path: Path) -> None:
    from bv_pipeline.logic.archive import ArchiveError

    w = World(tmp_path, late_fraction=0.0, late_max_minutes=1)
    w.now = END + 2 * HOUR
    w.sync(SyncMode.FULL_DAY)
    archive_site_day(w.hot, w.cold, w.ace, "demo", DAY, now_ms=w.now)
    before = ManifestStore(w.cold).get("demo", DAY)
    future = DAY + dt.timedelta(days=30)  # ACE serves nothing for a day that has not happened
    with pytest.raises(ArchiveError, match="no samples"):
        correct_site_day(w.hot, w.cold, w.ace, "demo", future, now_ms=w.now)
    assert ManifestStore(w.cold).get("demo", DAY) == before


@pytest.mark.parametrize(
    ("target", "method", "after"),
    [
        ("cold", "put", False),  # the corrected object's upload fails
        ("cold", "put", True),  # crash after the upload, before verification and commit
        ("cold", "put_if", False),  # crash before the manifest commit
        ("cold", "put_if", True),  # crash after the commit, before the hot copy is replaced
        ("hot", "delete_range", True),  # crash between deleting the hot day and writing the corrected one
    ],
)
def test_a_crash_during_correction_leaves_old_or_new_and_a_rerun_finishes(
    tmp_path: Path, target: str, method: str, after: bool
) -> None:
    from bv_pipeline.api.reader import TimeseriesReader
    from bv_pipeline_tests.test_logic.test_retention_faults import Crash, Proxy

    w = World(tmp_path, late_fraction=0.0, late_max_minutes=1)
    w.now = END + 2 * HOUR
    w.sync(SyncMode.FULL_DAY)
    truth = w.truth()
    w.hot.upsert_samples("demo", truth.slice(0, 4).set_column(0, "point", pa.array(["bogus/point"] * 4)))
    archive_site_day(w.hot, w.cold, w.ace, "demo", DAY, now_ms=w.now)
    old_rows = w.hot_day().num_rows
    hot: Any = Proxy(w.hot, method, after=after) if target == "hot" else w.hot
    cold: Any = Proxy(w.cold, method, after=after) if target == "cold" else w.cold
    with pytest.raises(Crash):
        correct_site_day(hot, cold, w.ace, "demo", DAY, now_ms=w.now + HOUR)

    # Meanwhile a reader gets the old day or the corrected one, whole: never a mix, never an error.
    reader = TimeseriesReader(w.hot, w.cold, max_workers=2)
    try:
        points = [*sorted(set(truth["point"].to_pylist())), "bogus/point"]
        got = reader.query("demo", points, START, END).frame.height
    finally:
        reader.close()
    assert got in (old_rows, truth.num_rows)

    correct_site_day(w.hot, w.cold, w.ace, "demo", DAY, now_ms=w.now + 2 * HOUR)
    assert_same_samples(w.cold_day(), truth)
    # The hot copy is the corrected day, or (crash right after deleting it) empty: a verified day hot lacks is
    # read from cold, so the answer is the corrected day either way.
    if target == "hot":
        assert w.hot_day().num_rows == 0
    else:
        assert_same_samples(w.hot_day(), truth)
    reader = TimeseriesReader(w.hot, w.cold, max_workers=2)
    try:
        assert reader.query("demo", points, START, END).frame.height == truth.num_rows
    finally:
        reader.close()
