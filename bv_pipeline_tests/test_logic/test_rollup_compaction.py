"""compact_rollups_year: incremental, refreshes re-archived days, idempotent, crash-safe."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from bv_pipeline.logic import rollup_compaction as rc
from bv_pipeline.resources.cold_store import LocalObjectStore
from bv_pipeline.resources.hot_store import SqliteHotStore
from bv_pipeline.resources.manifest_store import ManifestStore
from bv_pipeline.storage import cold_keys, rollup_year, rollups
from bv_pipeline.storage.interfaces import ObjectStore
from bv_pipeline_tests.rollup_year_data import SITE, put_day

YEAR = 2025
DAYS = [dt.date(2025, 2, 1) + dt.timedelta(days=i) for i in range(5)]
NOW = int(dt.datetime(2025, 3, 1, 3, 30, tzinfo=dt.UTC).timestamp() * 1000)
HOUR = 3_600_000
SMALL = {"part_target_bytes": 3_000, "min_group_rows": 100}  # several parts and row groups at test scale


@pytest.fixture
def stores(tmp_path: Path) -> tuple[SqliteHotStore, LocalObjectStore]:
    hot = SqliteHotStore(tmp_path / "hot.sqlite3")
    hot.ensure_schema()
    return hot, LocalObjectStore(tmp_path / "cold")


def compact(hot: SqliteHotStore, cold: ObjectStore, now_ms: int = NOW) -> rc.CompactionResult:
    return rc.compact_rollups_year(ManifestStore(cold), cold, SITE, YEAR, now_ms=now_ms, **SMALL)


def published_rows(cold: ObjectStore) -> pa.Table:
    index = rc.read_index(cold, SITE, YEAR)
    assert index is not None
    return pa.concat_tables([rollup_year.verify_part(cold.get(p.key), p, index.days) for p in index.parts])


def expected_rows(cold: ObjectStore, days: list[dt.date]) -> pa.Table:
    return rollup_year.sort_year(
        [rollups.decode_rollup(cold.get(cold_keys.rollup_key(SITE, d))) for d in days]
    )


def test_incremental_add_then_idempotent(stores: tuple[SqliteHotStore, LocalObjectStore]) -> None:
    hot, cold = stores
    for d in DAYS[:3]:
        put_day(hot, cold, d)
    first = compact(hot, cold)
    assert first.status == "published" and first.days_added == DAYS[:3] and first.parts > 1
    assert rollups.rollup_checksum(published_rows(cold)) == rollups.rollup_checksum(
        expected_rows(cold, DAYS[:3])
    )

    for d in DAYS[3:]:
        put_day(hot, cold, d)
    second = compact(hot, cold, NOW + HOUR)
    assert second.days_added == DAYS[3:] and second.days_kept == 3 and second.days_refreshed == []
    assert rollups.rollup_checksum(published_rows(cold)) == rollups.rollup_checksum(expected_rows(cold, DAYS))
    index = rc.read_index(cold, SITE, YEAR)
    assert index is not None and index.generation == second.generation
    assert index.days == {d: e.checksum for d in DAYS if (e := hot.manifest_get(SITE, d))}

    keys_before = cold.list(cold_keys.rollup_year_prefix(SITE, YEAR))
    third = compact(hot, cold, NOW + 2 * HOUR)
    assert third.status == "unchanged" and third.generation == second.generation
    assert cold.list(cold_keys.rollup_year_prefix(SITE, YEAR)) == keys_before  # nothing written, nothing lost


def test_rearchived_day_replaces_its_rows(stores: tuple[SqliteHotStore, LocalObjectStore]) -> None:
    hot, cold = stores
    for d in DAYS:
        put_day(hot, cold, d)
    compact(hot, cold)
    put_day(hot, cold, DAYS[2], offset=500.0)  # re-archived with different content, rollup rebuilt
    result = compact(hot, cold, NOW + HOUR)
    assert result.days_refreshed == [DAYS[2]] and result.days_added == [] and result.days_kept == 4
    assert rollups.rollup_checksum(published_rows(cold)) == rollups.rollup_checksum(expected_rows(cold, DAYS))


def test_stale_or_legacy_daily_rollups_are_not_compacted(
    stores: tuple[SqliteHotStore, LocalObjectStore],
) -> None:
    hot, cold = stores
    for d in DAYS:
        put_day(hot, cold, d)
    compact(hot, cold)
    # Re-archived, but its rollup not rebuilt yet: the old rows must leave the object, the stale rollup stay out.
    put_day(hot, cold, DAYS[1], offset=500.0, rollup=False)
    # A rollup written before rollups recorded their source checksum.
    legacy_day = dt.date(2025, 6, 1)
    df = put_day(hot, cold, legacy_day, rollup=False)
    data, _ = rollups.encode_rollup_day(SITE, legacy_day, rollups.hourly_rollup(df.to_arrow()))
    cold.put(cold_keys.rollup_key(SITE, legacy_day), data)

    result = compact(hot, cold, NOW + HOUR)
    assert result.days_dropped == [DAYS[1]]
    assert set(result.days_skipped) == {DAYS[1].isoformat(), legacy_day.isoformat()}
    index = rc.read_index(cold, SITE, YEAR)
    assert index is not None and set(index.days) == set(DAYS) - {DAYS[1]}
    check = rc.check_year(ManifestStore(cold), cold, SITE, YEAR)
    assert check.readable and not check.stale_days and check.missing_days == [DAYS[1], legacy_day]


class FailingIndexPut:
    """An object store whose index writes fail: a crash between writing the parts and publishing them."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner

    def put(self, key: str, data: bytes) -> None:
        if key.endswith("/index.json"):
            raise OSError("simulated crash before publish")
        self.inner.put(key, data)

    def put_if(self, key: str, data: bytes, *, if_match: str | None) -> str:
        if key.endswith("/index.json"):
            raise OSError("simulated crash before publish")
        return self.inner.put_if(key, data, if_match=if_match)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_crash_before_publish_leaves_previous_generation_valid(
    stores: tuple[SqliteHotStore, LocalObjectStore],
) -> None:
    hot, cold = stores
    for d in DAYS[:3]:
        put_day(hot, cold, d)
    first = compact(hot, cold)
    before = published_rows(cold)
    for d in DAYS[3:]:
        put_day(hot, cold, d)
    with pytest.raises(OSError, match="simulated crash"):
        compact(hot, FailingIndexPut(cold), NOW + HOUR)  # type: ignore[arg-type]
    index = rc.read_index(cold, SITE, YEAR)
    assert index is not None and index.generation == first.generation and set(index.days) == set(DAYS[:3])
    assert published_rows(cold).equals(before)
    assert rc.check_year(ManifestStore(cold), cold, SITE, YEAR).readable
    gens = {cold_keys.generation_of_part_key(k) for k in cold.list(cold_keys.rollup_year_prefix(SITE, YEAR))}
    assert len(gens - {None}) == 2  # the orphan parts of the crashed run are still there

    # The next run publishes; a day later the orphan and the replaced generation are aged out.
    second = compact(hot, cold, NOW + 2 * HOUR)
    assert second.status == "published" and second.days_added == DAYS[3:]
    later = compact(hot, cold, NOW + 30 * HOUR)
    assert later.status == "unchanged" and len(later.generations_deleted) == 2
    gens = {cold_keys.generation_of_part_key(k) for k in cold.list(cold_keys.rollup_year_prefix(SITE, YEAR))}
    assert gens - {None} == {second.generation}


def test_damaged_published_parts_are_rebuilt_from_daily_rollups(
    stores: tuple[SqliteHotStore, LocalObjectStore],
) -> None:
    hot, cold = stores
    for d in DAYS[:3]:
        put_day(hot, cold, d)
    compact(hot, cold)
    index = rc.read_index(cold, SITE, YEAR)
    assert index is not None
    cold.delete(index.parts[0].key)
    assert not rc.check_year(ManifestStore(cold), cold, SITE, YEAR).readable
    put_day(hot, cold, DAYS[3])
    result = compact(hot, cold, NOW + HOUR)
    assert result.status == "published" and result.days_total == 4
    assert rollups.rollup_checksum(published_rows(cold)) == rollups.rollup_checksum(
        expected_rows(cold, DAYS[:4])
    )


class IndexChangesDuringRun:
    """Another writer publishes while this run writes its parts."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.fired = False

    def put(self, key: str, data: bytes) -> None:
        if "/gen=" in key and not self.fired:
            self.fired = True
            self.inner.put(cold_keys.rollup_year_index_key(SITE, YEAR), b'{"kind": "other writer"}')
        self.inner.put(key, data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_concurrent_publish_is_detected(stores: tuple[SqliteHotStore, LocalObjectStore]) -> None:
    hot, cold = stores
    put_day(hot, cold, DAYS[0])
    with pytest.raises(rc.CompactionConflict):
        compact(hot, IndexChangesDuringRun(cold))  # type: ignore[arg-type]


def test_years_to_compact_follow_the_manifest(stores: tuple[SqliteHotStore, LocalObjectStore]) -> None:
    hot, cold = stores
    put_day(hot, cold, dt.date(2024, 12, 31))
    put_day(hot, cold, DAYS[0])
    assert rc.years_to_compact(ManifestStore(cold), cold, SITE, until=dt.date(2025, 3, 1)) == [2024, 2025]
