"""Compacted yearly rollups: keys, sorting, part encoding, verification and selective reads (pure)."""

from __future__ import annotations

import datetime as dt
import json
import random

import pyarrow as pa
import pytest

from bv_pipeline.storage import cold_keys, rollup_year, rollups
from bv_pipeline.storage.parquet_layout import ColdVerificationError, read_footer
from bv_pipeline.storage.rollup_year import PartFooter, RangeFile, YearIndex
from bv_pipeline.storage.samples import SAMPLE_SCHEMA
from bv_pipeline_tests.rollup_year_data import POINTS
from bv_pipeline_tests.test_api._data import day_samples

GEN = "20250105T033000Z-0123abcd"
DAYS = [dt.date(2025, 1, 1) + dt.timedelta(days=i) for i in range(4)]
CHECKSUMS = {d: f"blake2b:raw-{d.isoformat()}" for d in DAYS}


def daily(day: dt.date) -> pa.Table:
    return rollups.hourly_rollup(day_samples(day, POINTS).to_arrow().cast(SAMPLE_SCHEMA))


@pytest.fixture(scope="module")
def year_table() -> pa.Table:
    tables = [daily(d) for d in DAYS]
    random.Random(1).shuffle(tables)  # input order must not matter
    return rollup_year.sort_year(tables)


def encode(table: pa.Table, **kw: int) -> list[tuple[bytes, rollup_year.PartInfo]]:
    return list(rollup_year.encode_year_parts("site-a", 2025, GEN, table, CHECKSUMS, **kw))


def test_keys_are_validated_and_parse_back() -> None:
    assert (
        cold_keys.rollup_year_index_key("site-a", 2025) == "rollups/1h-year/site=site-a/year=2025/index.json"
    )
    key = cold_keys.rollup_year_part_key("site-a", 2025, GEN, 3)
    assert key == f"rollups/1h-year/site=site-a/year=2025/gen={GEN}/part-0003.parquet"
    assert cold_keys.validate_object_key(key) == key
    assert cold_keys.generation_of_part_key(key) == GEN
    assert cold_keys.year_of_index_key(cold_keys.rollup_year_index_key("site-a", 2025)) == 2025
    assert cold_keys.generation_time(GEN) == dt.datetime(2025, 1, 5, 3, 30, tzinfo=dt.UTC)
    for bad in ("../x", "2025-01-05", "20250105T033000Z-XYZ"):
        with pytest.raises(cold_keys.ColdKeyError):
            cold_keys.validate_generation(bad)
    with pytest.raises(cold_keys.ColdKeyError):
        cold_keys.rollup_year_prefix("Bad Site", 2025)
    with pytest.raises(cold_keys.ColdKeyError):
        cold_keys.rollup_year_prefix("site-a", 25)


def test_sort_year_orders_by_point_then_hour_and_rejects_repeats(year_table: pa.Table) -> None:
    assert year_table.num_rows == sum(daily(d).num_rows for d in DAYS)
    names = year_table["point"].cast(pa.string()).to_pylist()
    hours = year_table["hour_ms"].to_pylist()
    assert list(zip(names, hours, strict=True)) == sorted(zip(names, hours, strict=True))
    with pytest.raises(ValueError, match="repeat"):
        rollup_year.sort_year([daily(DAYS[0]), daily(DAYS[0])])
    assert rollup_year.sort_year([]).num_rows == 0


def test_parts_round_trip_with_point_aligned_row_groups(year_table: pa.Table) -> None:
    # Small targets: several parts, several points per row group.
    parts = encode(year_table, part_target_bytes=2_000, min_group_rows=150)
    assert len(parts) > 1
    decoded = pa.concat_tables([rollup_year.verify_part(data, info, CHECKSUMS) for data, info in parts])
    assert rollups.rollup_checksum(decoded) == rollups.rollup_checksum(year_table)
    assert sum(info.rows for _, info in parts) == year_table.num_rows
    seen: list[str] = []
    for data, info in parts:
        meta = rollup_year.part_metadata(data)
        assert meta["bv.kind"] == "rollup_1h_year" and meta["bv.generation"] == GEN
        assert rollup_year.part_days(meta) == CHECKSUMS
        footer = PartFooter.parse(read_footer(data))
        for first, last in zip(footer.first, footer.last, strict=True):
            assert not seen or first > seen[-1]  # a point never spans two row groups or parts
            seen.append(last)
        assert (footer.first[0], footer.last[-1]) == (info.first_point, info.last_point)


def test_full_year_row_groups_hold_one_point(year_table: pa.Table) -> None:
    # The default minimum (one point-year of hours) gives one point per group once points have that many rows.
    [(data, _)] = encode(year_table, min_group_rows=96)
    footer = PartFooter.parse(read_footer(data))
    assert footer.first == footer.last == sorted(POINTS)


def test_verification_catches_tampering(year_table: pa.Table) -> None:
    [(data, info)] = encode(year_table)
    with pytest.raises(ColdVerificationError):
        rollup_year.verify_part(data[:-10], info, CHECKSUMS)
    with pytest.raises(ColdVerificationError, match="day list"):
        rollup_year.verify_part(data, info, {**CHECKSUMS, DAYS[0]: "other"})
    other = rollup_year.sort_year([daily(d) for d in DAYS[:2]])
    [(data2, _)] = list(rollup_year.encode_year_parts("site-a", 2025, GEN, other, CHECKSUMS))
    forged = rollup_year.PartInfo(**{**info.__dict__, "bytes": len(data2)})
    with pytest.raises(ColdVerificationError):
        rollup_year.verify_part(data2, forged, CHECKSUMS)


def test_rows_outside_the_year_are_refused(year_table: pa.Table) -> None:
    with pytest.raises(ValueError, match="outside the year"):
        list(rollup_year.encode_year_parts("site-a", 2024, GEN, year_table, CHECKSUMS))


def test_index_json_round_trip(year_table: pa.Table) -> None:
    parts = [info for _, info in encode(year_table, part_target_bytes=2_000, min_group_rows=150)]
    index = YearIndex(
        site="site-a",
        year=2025,
        generation=GEN,
        days=CHECKSUMS,
        parts=tuple(parts),
        rows=year_table.num_rows,
        checksum=rollup_year.combined_checksum(parts),
        created_ms=1,
    )
    assert YearIndex.from_json(index.to_json()) == index
    assert index.parts_for([POINTS[0]]) == [p for p in parts if p.first_point <= POINTS[0] <= p.last_point]
    with pytest.raises(ColdVerificationError):
        YearIndex.from_json(b'{"kind": "something else"}')
    # An index may only name parts of its own generation: a reader GETs whatever key it names.
    doc = json.loads(index.to_json())
    doc["parts"][0]["key"] = "timeseries/site=site-b/date=2025-01-01/part-0.parquet"
    with pytest.raises(ColdVerificationError, match="foreign part key"):
        YearIndex.from_json(json.dumps(doc).encode())
    doc["days"] = []
    with pytest.raises(ColdVerificationError):
        YearIndex.from_json(json.dumps(doc).encode())


def test_selective_read_fetches_only_the_wanted_points(year_table: pa.Table) -> None:
    [(data, info)] = encode(year_table, min_group_rows=96)
    fetched: list[tuple[int, int]] = []

    def fetch(start: int, end: int) -> bytes:
        fetched.append((start, end))
        return data[start:end]

    footer = PartFooter.parse(read_footer(data))
    wanted = sorted([POINTS[1], POINTS[3]])
    groups = footer.select(wanted)
    assert len(groups) == 2
    source = RangeFile(info.bytes, fetch)
    for start, end in footer.ranges(groups, rollup_year.QUERY_COLUMNS, max_gap=0):
        source.add(start, fetch(start, end))
    table = rollup_year.read_groups(source, footer, groups, wanted)
    assert set(table["point"].cast(pa.string()).to_pylist()) == set(wanted)
    expected = year_table.filter(pa.compute.is_in(year_table["point"].cast(pa.string()), pa.array(wanted)))
    assert table.num_rows == expected.num_rows
    assert sum(e - s for s, e in fetched) < len(data) / 2
