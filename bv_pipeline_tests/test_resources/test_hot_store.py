"""Behavioural suite for the HotStore contract, run against both backends: SQLite in a temp dir, and D1 through
the real ``cloudflare`` SDK against the local fake D1 endpoint."""

from __future__ import annotations

import datetime as dt
import math
import struct
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from bv_pipeline.resources.hot_store import D1HotStore, SqliteHotStore
from bv_pipeline.storage.interfaces import HotStore, ManifestEntry, PointMeta
from bv_pipeline.storage.samples import SAMPLE_SCHEMA, sort_samples
from bv_pipeline_tests.fakes.d1_server import run_fake_d1

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def samples(rows: list[tuple[str, int, float | None, str | None]]) -> pa.Table:
    p, t, v, x = (list(c) for c in zip(*rows, strict=True)) if rows else ([], [], [], [])
    return pa.table({"point": p, "ts_ms": t, "value": v, "value_text": x}, schema=SAMPLE_SCHEMA)


def as_rows(table: pa.Table) -> list[tuple[object, ...]]:
    assert table.schema.equals(SAMPLE_SCHEMA)
    return list(zip(*(table[c].to_pylist() for c in SAMPLE_SCHEMA.names), strict=True))


@pytest.fixture(params=["sqlite", "d1"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HotStore]:
    if request.param == "sqlite":
        s = SqliteHotStore(tmp_path / "hot.sqlite3")
        s.ensure_schema()
        yield s
        s.close()
    else:
        with run_fake_d1() as fake:
            d1 = D1HotStore(fake.account_id, fake.database_id, fake.token, base_url=fake.base_url)
            d1.ensure_schema()
            yield d1
            d1.close()


def test_implements_protocol_and_schema_is_idempotent(store: HotStore) -> None:
    assert isinstance(store, HotStore)
    store.ensure_schema()
    store.ensure_schema()
    store.ping()
    assert store.list_sites() == []
    assert store.max_ts("demo") is None
    assert store.get_watermark("demo") is None


ROWS: list[tuple[str, int, float | None, str | None]] = [
    ("b.Temp", T0 + 60_123, 21.5, None),
    ("a.Mode", T0 + 1, None, "occupied"),
    ("b.Temp", T0 + 7, -0.1, None),
    ("a.Mode", T0 + 60_001, None, "unocc ✓ ünïcode"),
    ("c.Null", T0 + 5, None, None),
    ("c.Null", T0 + 6, 1.7976931348623157e308, None),
    ("d.Tiny", T0 + 2, 5e-324, None),
    ("d.Tiny", T0 + 3, 0.30000000000000004, None),
    ("d.Tiny", T0 + 4, math.inf, None),
    ("d.Tiny", T0 + 8, -math.inf, None),
    ("e.Big", 2**41 + 17, 123456789.123456789, None),
]


def test_round_trip_is_exact_and_sorted(store: HotStore) -> None:
    stats = store.upsert_samples("demo", samples(ROWS))
    assert stats.rows == len(ROWS)
    assert stats.new_points == 5
    got = store.read_samples("demo", None, 0, 2**53)
    assert as_rows(got) == as_rows(sort_samples(samples(ROWS)))
    assert store.list_sites() == ["demo"]


def test_upsert_twice_is_idempotent(store: HotStore) -> None:
    store.upsert_samples("demo", samples(ROWS))
    again = store.upsert_samples("demo", samples(ROWS))
    assert again.new_points == 0
    assert again.rows == len(ROWS)
    assert as_rows(store.read_samples("demo", None, 0, 2**53)) == as_rows(sort_samples(samples(ROWS)))
    assert store.count_samples("demo", 0, 2**53) == len(ROWS)


def test_late_rows_merge_and_changed_values_replace(store: HotStore) -> None:
    store.upsert_samples("demo", samples([("p", T0 + i * 60_000, float(i), None) for i in (0, 1, 3, 4)]))
    late = samples([("p", T0 + 2 * 60_000, 2.0, None), ("p", T0 + 3 * 60_000, None, "fault")])
    assert store.upsert_samples("demo", late).rows == 2
    got = as_rows(store.read_samples("demo", ["p"], T0, T0 + 10 * 60_000))
    assert got == [
        ("p", T0, 0.0, None),
        ("p", T0 + 60_000, 1.0, None),
        ("p", T0 + 120_000, 2.0, None),
        ("p", T0 + 180_000, None, "fault"),
        ("p", T0 + 240_000, 4.0, None),
    ]


def test_duplicate_keys_in_one_batch_keep_the_last(store: HotStore) -> None:
    batch = samples(
        [("p", T0, 1.0, None), ("p", T0, None, "text"), ("q", T0, 2.0, None), ("p", T0, 3.0, None)]
    )
    assert store.upsert_samples("demo", batch).rows == 2
    assert as_rows(store.read_samples("demo", None, T0, T0 + 1)) == [
        ("p", T0, 3.0, None),
        ("q", T0, 2.0, None),
    ]


def test_point_metadata_upsert_and_new_point_counting(store: HotStore) -> None:
    pts = [
        PointMeta("AHU-1.SupplyTemp", "temperature", "degF", ("sensor", "temp"), {"equip": "AHU-1"}, 60),
        PointMeta("AHU-1.Damper", "position", "%", (), {}, None),
    ]
    assert store.upsert_points("demo", pts) == 2
    assert store.upsert_points("demo", pts) == 0
    changed = [PointMeta("AHU-1.Damper", "position", "percent", ("cmd",), {"a": "b"}, 300)]
    assert store.upsert_points("demo", [*changed, PointMeta("AHU-2.Fan", "binary")]) == 1
    got = {p.name: p for p in store.list_points("demo")}
    assert got["AHU-1.SupplyTemp"] == pts[0]
    assert got["AHU-1.Damper"] == changed[0]
    assert got["AHU-2.Fan"] == PointMeta("AHU-2.Fan", "binary")
    assert [p.name for p in store.list_points("demo")] == sorted(got)
    assert set(store.point_ids("demo")) == set(got)
    assert store.list_points("other") == []


def test_points_created_by_samples_keep_later_metadata(store: HotStore) -> None:
    stats = store.upsert_samples("demo", samples([("x", T0, 1.0, None), ("y", T0, 2.0, None)]))
    assert stats.new_points == 2
    assert store.list_points("demo") == [PointMeta("x"), PointMeta("y")]
    assert store.upsert_points("demo", [PointMeta("x", "meter", "kWh")]) == 0
    # Samples for a described point must not wipe its metadata.
    assert store.upsert_samples("demo", samples([("x", T0 + 1, 3.0, None)])).new_points == 0
    assert store.list_points("demo")[0] == PointMeta("x", "meter", "kWh")


def test_point_names_are_case_sensitive_and_verbatim(store: HotStore) -> None:
    names = ["AHU-1.Temp", "ahu-1.temp", "x'); DROP TABLE samples; --", 'q"uote\\', " spaced ", "%_like*"]
    store.upsert_samples("demo", samples([(n, T0 + i, float(i), None) for i, n in enumerate(names)]))
    assert set(store.point_ids("demo")) == set(names)
    assert len(set(store.point_ids("demo").values())) == len(names)
    got = as_rows(store.read_samples("demo", ["ahu-1.temp", "x'); DROP TABLE samples; --"], 0, 2**53))
    assert got == [("ahu-1.temp", T0 + 1, 1.0, None), ("x'); DROP TABLE samples; --", T0 + 2, 2.0, None)]
    assert store.count_samples("demo", 0, 2**53) == len(names)


def test_watermark_is_monotonic_per_site(store: HotStore) -> None:
    assert store.get_watermark("a") is None
    store.set_watermark("a", T0 + 100)
    store.set_watermark("a", T0 + 50)
    assert store.get_watermark("a") == T0 + 100
    store.set_watermark("a", T0 + 200)
    store.set_watermark("b", T0)
    assert store.get_watermark("a") == T0 + 200
    assert store.get_watermark("b") == T0
    assert store.list_sites() == ["a", "b"]


def test_manifest_put_get_list(store: HotStore) -> None:
    def entry(site: str, day: dt.date, **kw: object) -> ManifestEntry:
        base: dict[str, object] = dict(
            site=site,
            day=day,
            key=f"{site}/{day.isoformat()}.parquet",
            rows=6_543_773,
            bytes=40_000_000,
            checksum="sha256:ab",
            schema_version=1,
            verified_ms=T0,
            source="hot",
        )
        return ManifestEntry(**(base | kw))  # type: ignore[arg-type]

    d = dt.date(2026, 1, 1)
    assert store.manifest_get("demo", d) is None
    entries = [entry("demo", d + dt.timedelta(days=i)) for i in range(4)]
    for e in entries:
        store.manifest_put(e)
    store.manifest_put(entry("other", d))
    assert store.manifest_get("demo", d) == entries[0]
    updated = entry("demo", d, source="ace", rows=5, hot_deleted_ms=T0 + 9)
    store.manifest_put(updated)
    store.manifest_put(updated)
    assert store.manifest_get("demo", d) == updated
    listed = store.manifest_list("demo", d + dt.timedelta(days=1), d + dt.timedelta(days=3))
    assert listed == entries[1:4]
    assert store.manifest_list("demo", d, d) == [updated]
    assert store.manifest_list("nowhere", d, d + dt.timedelta(days=9)) == []


def test_delete_range_count_and_max_ts(store: HotStore) -> None:
    rows = [(f"p{i}", T0 + m * 60_000, float(m), None) for i in range(3) for m in range(10)]
    store.upsert_samples("demo", samples(rows))
    store.upsert_samples("other", samples([("p0", T0 + 5 * 60_000, 9.0, None)]))
    assert store.count_samples("demo", 0, 2**53) == 30
    assert store.count_samples("demo", T0 + 60_000, T0 + 3 * 60_000) == 6
    assert store.max_ts("demo") == T0 + 9 * 60_000
    assert store.delete_range("demo", T0 + 2 * 60_000, T0 + 5 * 60_000) == 9
    assert store.delete_range("demo", T0 + 2 * 60_000, T0 + 5 * 60_000) == 0
    assert store.count_samples("demo", 0, 2**53) == 21
    assert store.count_samples("other", 0, 2**53) == 1  # another site's rows are untouched
    assert store.delete_range("demo", T0 + 9 * 60_000, T0 + 10 * 60_000) == 3
    assert store.max_ts("demo") == T0 + 8 * 60_000
    assert store.max_ts("other") == T0 + 5 * 60_000


def test_read_subset_and_half_open_range(store: HotStore) -> None:
    rows = [(p, T0 + m * 1_000, float(m), None) for p in ("a", "b", "c") for m in range(10)]
    store.upsert_samples("demo", samples(rows))
    store.upsert_samples("other", samples([("b", T0 + 3_000, 99.0, None)]))
    got = as_rows(store.read_samples("demo", ["c", "a", "missing"], T0 + 3_000, T0 + 6_000))
    assert got == [(p, T0 + m * 1_000, float(m), None) for p in ("a", "c") for m in (3, 4, 5)]
    assert store.read_samples("demo", [], 0, 2**53).num_rows == 0
    assert store.read_samples("demo", None, T0 + 6_000, T0 + 6_000).num_rows == 0
    assert store.read_samples("nowhere", None, 0, 2**53).schema.equals(SAMPLE_SCHEMA)
    assert as_rows(store.read_samples("other", None, 0, 2**53)) == [("b", T0 + 3_000, 99.0, None)]


def test_sync_state_is_per_day_and_monotonic(store: HotStore) -> None:
    d1, d2 = dt.date(2026, 1, 1), dt.date(2026, 1, 2)
    assert store.get_sync_as_of("demo", d1) is None
    store.set_sync_as_of("demo", d1, T0 + 600_000)
    store.set_sync_as_of("demo", d1, T0 + 300_000)  # an older run finishing late never moves progress back
    store.set_sync_as_of("demo", d2, T0 + 90_000_000)
    store.set_sync_as_of("other", d1, T0 + 1)
    assert store.get_sync_as_of("demo", d1) == T0 + 600_000
    assert store.list_sync_as_of("demo", d1, d2) == {d1: T0 + 600_000, d2: T0 + 90_000_000}
    assert store.list_sync_as_of("demo", d2, d2) == {d2: T0 + 90_000_000}
    assert store.list_sync_as_of("nobody", d1, d2) == {}


def test_min_ts_and_max_ts_between(store: HotStore) -> None:
    assert store.min_ts("demo") is None and store.max_ts_between("demo", 0, 2**53) is None
    rows = [(p, T0 + m * 60_000, float(m), None) for p in ("a", "b") for m in range(3, 10)]
    store.upsert_samples("demo", samples(rows))
    store.upsert_samples("other", samples([("a", T0, 1.0, None)]))
    assert store.min_ts("demo") == T0 + 3 * 60_000
    assert store.max_ts_between("demo", T0, T0 + 6 * 60_000) == T0 + 5 * 60_000
    assert store.max_ts_between("demo", T0, T0 + 3 * 60_000) is None
    assert store.max_ts_between("demo", T0 + 9 * 60_000, T0 + 10 * 60_000) == T0 + 9 * 60_000


def test_record_sync_moves_day_progress_and_site_watermark_forward(store: HotStore) -> None:
    day = dt.date(2026, 1, 1)
    store.record_sync("demo", day, T0 + 700_000, T0 + 600_000)
    store.record_sync("demo", day, T0 + 100_000, T0 + 50_000)  # late, older progress never wins
    assert store.get_sync_as_of("demo", day) == T0 + 700_000
    assert store.get_watermark("demo") == T0 + 600_000


def test_window_stats_counts_rows_future_rows_and_max(store: HotStore) -> None:
    rows = [(p, T0 + m * 60_000, float(m), None) for p in ("a", "b") for m in range(10)]
    store.upsert_samples("demo", samples(rows))
    store.upsert_samples("other", samples([("a", T0 + 60_000, 1.0, None)]))
    stats = store.window_stats("demo", T0 + 2 * 60_000, T0 + 9 * 60_000, T0 + 7 * 60_000)
    assert (stats.rows, stats.future_rows, stats.max_ts) == (14, 4, T0 + 8 * 60_000)
    empty = store.window_stats("demo", T0 + 100 * 60_000, T0 + 200 * 60_000, T0)
    assert (empty.rows, empty.future_rows, empty.max_ts) == (0, 0, None)


def test_hourly_summaries_match_raw_samples_for_sealed_and_open_hours(store: HotStore) -> None:
    rows = [
        (p, T0 + m * 60_000, float(m % 7) * (1.5 if p == "a" else -2.25), None)
        for p in ("a", "b")
        for m in range(0, 180)
    ]
    rows += [("a", T0 + 30_000, None, "fault"), ("b", T0 + 90_000, math.inf, None)]
    store.upsert_samples("demo", samples(rows))
    store.seal("demo", T0 + 2 * 3_600_000)  # hours 0 and 1 sealed, hour 2 still staged
    assert store.sealed_ms("demo") == T0 + 2 * 3_600_000  # type: ignore[attr-defined]
    got = store.read_hourly("demo", ["a", "b", "missing"], T0, T0 + 3 * 3_600_000)
    assert got.height == 6
    raw = store.read_samples("demo", ["a", "b"], T0, T0 + 3 * 3_600_000)
    from bv_pipeline.storage import rollups

    want = rollups.hourly_rollup(raw)
    assert got["point"].to_list() == want["point"].cast(pa.string()).to_pylist()
    assert got["hour_ms"].to_list() == want["hour_ms"].to_pylist()
    assert got["samples"].to_list() == want["samples"].to_pylist()
    assert got["count"].to_list() == want["count"].to_pylist()
    assert got["sum"].to_list() == want["sum"].to_pylist()
    assert got["min"].to_list() == want["min"].to_pylist()
    assert got["max"].to_list() == want["max"].to_pylist()


def test_repeated_sync_of_a_sealed_hour_writes_nothing_and_late_samples_merge(store: HotStore) -> None:
    rows = [(p, T0 + m * 60_000, float(m), None) for p in ("a", "b") for m in range(0, 60) if m != 30]
    store.upsert_samples("demo", samples(rows))
    store.seal("demo", T0 + 3_600_000)
    assert store.upsert_samples("demo", samples(rows)).new_rows == 0
    late = store.upsert_samples("demo", samples([("a", T0 + 30 * 60_000, 30.0, None)]))
    assert late.new_rows == 1
    got = store.read_samples("demo", ["a"], T0, T0 + 3_600_000)
    assert got["ts_ms"].to_pylist() == [T0 + m * 60_000 for m in range(60)]
    assert store.count_samples("demo", T0, T0 + 3_600_000) == 119


def test_operators_view_shows_every_sample_with_plain_sql(store: HotStore) -> None:
    rows = [(p, T0 + m * 60_000 + 7, float(m) / 8, None) for p in ("a", "b") for m in range(0, 90)]
    rows += [("c", T0 + 5, None, "occupied"), ("c", T0 + 86_400_000 + 5, -0.0, None)]
    store.upsert_samples("demo", samples(rows))
    store.seal("demo", T0 + 3_600_000)  # hour 0 in blocks, hour 1 still staged, one sample on the next day
    sql = (
        'SELECT point, ts_ms, value, value_text FROM "samples_demo" '
        "WHERE point = ?1 AND ts_ms >= ?2 AND ts_ms < ?3 ORDER BY ts_ms"
    )
    for point in ("a", "c"):
        got = [tuple(r.values()) for r in store._one(sql, [point, T0, T0 + 2 * 86_400_000])]  # type: ignore[attr-defined]
        want = [r for r in sorted(rows) if r[0] == point]
        assert got == want


def test_read_frame_holds_exactly_what_read_samples_holds(store: HotStore) -> None:
    """The read API's Polars form of a read: the same rows, values to the bit, in (point, ts_ms) order."""
    rows = [*ROWS, ("b.Temp", T0 + 9, -0.0, None), ("b.Temp", T0 + 3_700_000, math.nan, None)]
    store.upsert_samples("demo", samples(rows))

    def same(points: list[str], lo: int, hi: int) -> int:
        frame = store.read_frame("demo", points, lo, hi)  # type: ignore[attr-defined]
        assert list(frame.columns) == SAMPLE_SCHEMA.names
        table = frame.to_arrow().cast(SAMPLE_SCHEMA)
        want = store.read_samples("demo", points, lo, hi)
        assert _bits(table) == _bits(want)  # -0.0 and NaN kept bit for bit
        assert table["value_text"].to_pylist() == want["value_text"].to_pylist()
        return table.num_rows

    names = ["e.Big", "b.Temp", "a.Mode", "missing", "d.Tiny", "c.Null"]  # not in name or id order
    for _ in range(2):  # staging rows, then sealed blocks
        assert same(names, 0, 2**53) == len(rows)
        assert same(["b.Temp"], 0, 2**53) == 4
        assert same(["b.Temp", "d.Tiny"], T0 + 3, T0 + 10) == 5
        assert same(["missing"], 0, 2**53) == 0 and same(names, T0, T0) == 0
        store.seal("demo", T0 + 2 * 3_600_000)  # type: ignore[attr-defined]


def _bits(table: pa.Table) -> list[tuple[object, ...]]:
    values = [None if v is None else struct.pack("<d", v) for v in table["value"].to_pylist()]
    return list(zip(table["point"].to_pylist(), table["ts_ms"].to_pylist(), values, strict=True))
