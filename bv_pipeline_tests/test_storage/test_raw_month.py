"""Compacted monthly raw samples: keys, index, merging, part encoding, verification and selective reads (pure)."""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Callable

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from bv_pipeline.storage import cold_keys, raw_month
from bv_pipeline.storage.parquet_layout import ColdVerificationError, read_footer
from bv_pipeline.storage.raw_month import MonthIndex
from bv_pipeline.storage.rollup_year import PartFooter, PartInfo, RangeFile
from bv_pipeline_tests.raw_month_data import DENSE, POINTS, SPARSE, arrow, raw_day

GEN = "20250302T033000Z-0123abcd"
MONTH = dt.date(2025, 2, 1)
DAYS = [dt.date(2025, 2, 26), dt.date(2025, 2, 27), dt.date(2025, 2, 28)]  # the month's last days
CHECKSUMS = {d: f"blake2b:raw-{d.isoformat()}" for d in DAYS}
SMALL = {"part_target_bytes": 4_000, "min_group_rows": 200}  # several parts, sparse points sharing groups


def frame(table: pa.Table) -> pl.DataFrame:
    df = pl.from_arrow(table.cast(raw_month.SAMPLE_SCHEMA))
    assert isinstance(df, pl.DataFrame)
    return df


@pytest.fixture(scope="module")
def truth() -> pl.DataFrame:
    return pl.concat([raw_day(d) for d in DAYS]).sort("point", "ts_ms")


def merge(tables: list[pa.Table]) -> tuple[pa.Table, np.ndarray]:
    """merge_days as (table with string names, per-row ranks)."""
    rows = raw_month.merge_days(MONTH, tables)
    return rows.table(0, rows.num_rows), rows.ranks


@pytest.fixture(scope="module")
def merged_rows() -> raw_month.MergedRows:
    tables = [arrow(raw_day(d)) for d in DAYS]
    random.Random(1).shuffle(tables)  # input order must not matter
    return raw_month.merge_days(MONTH, tables)


@pytest.fixture(scope="module")
def merged(merged_rows: raw_month.MergedRows) -> tuple[pa.Table, np.ndarray]:
    return merged_rows.table(0, merged_rows.num_rows), merged_rows.ranks


Encode = Callable[..., list[tuple[bytes, PartInfo]]]


@pytest.fixture
def encode(merged_rows: raw_month.MergedRows) -> Encode:
    def run(**kw: int) -> list[tuple[bytes, PartInfo]]:
        return list(raw_month.encode_month_parts("site-a", MONTH, GEN, merged_rows, CHECKSUMS, **kw))

    return run


# ---------------------------------------------------------------------------------------------- keys


def test_month_keys_are_validated_and_parse_back() -> None:
    assert cold_keys.samples_month_site_prefix("site-a") == "timeseries-month/site=site-a/"
    assert cold_keys.samples_month_prefix("site-a", MONTH) == "timeseries-month/site=site-a/month=2025-02/"
    index_key = cold_keys.samples_month_index_key("site-a", MONTH)
    assert index_key == "timeseries-month/site=site-a/month=2025-02/index.json"
    part_key = cold_keys.samples_month_part_key("site-a", MONTH, GEN, 12)
    assert part_key == f"timeseries-month/site=site-a/month=2025-02/gen={GEN}/part-0012.parquet"
    for key in (index_key, part_key):
        assert cold_keys.validate_object_key(key) == key
    assert cold_keys.month_of_index_key(index_key) == MONTH
    assert cold_keys.month_of_index_key(cold_keys.samples_month_index_key("b_7", dt.date(2024, 12, 1))) == (
        dt.date(2024, 12, 1)
    )
    assert cold_keys.generation_of_month_part_key(part_key) == GEN
    # Each parser answers only for its own kind of key.
    assert cold_keys.month_of_index_key(part_key) is None
    assert cold_keys.generation_of_month_part_key(index_key) is None
    assert cold_keys.month_of_index_key(cold_keys.rollup_year_index_key("site-a", 2025)) is None
    assert (
        cold_keys.generation_of_month_part_key(cold_keys.rollup_year_part_key("site-a", 2025, GEN, 1)) is None
    )
    assert cold_keys.generation_of_part_key(part_key) is None


@pytest.mark.parametrize(
    "month",
    [dt.date(2025, 2, 2), dt.datetime(2025, 2, 1), dt.date(1969, 12, 1), "2025-02", None],
)
def test_invalid_months_are_rejected(month: object) -> None:
    with pytest.raises(cold_keys.ColdKeyError):
        cold_keys.samples_month_prefix("site-a", month)  # type: ignore[arg-type]
    with pytest.raises(cold_keys.ColdKeyError):
        cold_keys.samples_month_index_key("site-a", month)  # type: ignore[arg-type]


@pytest.mark.parametrize("part", [-1, 10_000, True, 1.0])
def test_invalid_part_numbers_sites_and_generations_are_rejected(part: object) -> None:
    with pytest.raises(cold_keys.ColdKeyError):
        cold_keys.samples_month_part_key("site-a", MONTH, GEN, part)  # type: ignore[arg-type]
    with pytest.raises(cold_keys.ColdKeyError):
        cold_keys.samples_month_part_key("site-a", MONTH, "../x", 0)
    with pytest.raises(cold_keys.ColdKeyError):
        cold_keys.samples_month_site_prefix("Bad Site")


@pytest.mark.parametrize(
    "key",
    [
        "timeseries-month/site=a/month=2025-13/index.json",
        "timeseries-month/site=a/month=2025-00/index.json",
        "timeseries-month/site=a/month=2025-2/index.json",
        "timeseries-month/site=a/month=2025-02/other.json",
        "timeseries-month/site=a/month=2025-02/gen=x/index.json",
        "timeseries/site=a/month=2025-02/index.json",
    ],
)
def test_month_of_index_key_rejects_foreign_keys(key: str) -> None:
    assert cold_keys.month_of_index_key(key) is None


@pytest.mark.parametrize(
    "key",
    [
        "timeseries-month/site=a/month=2025-02/gen=20250302T033000Z-XYZ/part-0001.parquet",
        "timeseries-month/site=a/month=2025-02/gen=20250302T033000Z-0123abcd/part-1.parquet",
        "timeseries-month/site=a/month=2025-02/gen=20250302T033000Z-0123abcd/index.json",
    ],
)
def test_generation_of_month_part_key_rejects_foreign_keys(key: str) -> None:
    assert cold_keys.generation_of_month_part_key(key) is None


def test_month_helpers() -> None:
    assert raw_month.month_of(dt.date(2024, 2, 29)) == dt.date(2024, 2, 1)
    assert raw_month.month_days(dt.date(2024, 2, 1)) == (dt.date(2024, 2, 1), dt.date(2024, 2, 29))
    assert raw_month.month_days(dt.date(2025, 12, 1)) == (dt.date(2025, 12, 1), dt.date(2025, 12, 31))
    lo, hi = raw_month.month_bounds_ms(MONTH)
    assert lo == int(dt.datetime(2025, 2, 1, tzinfo=dt.UTC).timestamp() * 1000)
    assert hi == int(dt.datetime(2025, 3, 1, tzinfo=dt.UTC).timestamp() * 1000)


# ---------------------------------------------------------------------------------------------- merge


def test_merge_days_sorts_across_days_given_out_of_order(
    merged: tuple[pa.Table, np.ndarray], truth: pl.DataFrame
) -> None:
    table, ranks = merged
    assert table.schema == raw_month.SAMPLE_SCHEMA
    assert frame(table).equals(truth)  # values, value_text and nulls included
    assert truth["value"].null_count() > 0 and truth["value_text"].null_count() < truth.height
    names = table["point"].to_pylist()
    assert ranks.dtype == np.int64 and len(ranks) == table.num_rows
    assert [POINTS[r] for r in ranks] == names  # each row's rank is its point's rank among the names
    assert bool(np.all(np.diff(ranks) >= 0))


def test_merge_days_accepts_dictionary_points(truth: pl.DataFrame) -> None:
    tables = [arrow(raw_day(d)) for d in DAYS]
    tables[1] = tables[1].set_column(0, "point", pc.dictionary_encode(tables[1]["point"]))
    # Two chunks whose dictionaries order the names differently.
    reversed_day = arrow(raw_day(DAYS[2]).sort("point", descending=True))
    tables[2] = reversed_day.set_column(0, "point", pc.dictionary_encode(reversed_day["point"]))
    table, _ = merge(tables)
    assert frame(table).equals(truth)


def test_merge_days_rejects_repeats_and_rows_outside_the_month() -> None:
    day = arrow(raw_day(DAYS[0], points=DENSE[:2]))
    with pytest.raises(ValueError, match="repeat"):
        raw_month.merge_days(MONTH, [day, arrow(raw_day(DAYS[1], points=DENSE[:1])), day])
    one_row = day.slice(5, 1)
    with pytest.raises(ValueError, match="repeat"):
        raw_month.merge_days(MONTH, [pa.concat_tables([day, one_row])])
    with pytest.raises(ValueError, match="outside the month"):
        raw_month.merge_days(MONTH, [day, arrow(raw_day(dt.date(2025, 3, 1), points=DENSE[:1]))])
    with pytest.raises(ValueError, match="outside the month"):
        raw_month.merge_days(MONTH, [arrow(raw_day(dt.date(2025, 1, 31), points=DENSE[:1])), day])
    empty, ranks = merge([day.slice(0, 0)])
    assert empty.num_rows == 0 and len(ranks) == 0


# ---------------------------------------------------------------------------------------------- encode / verify


def test_parts_round_trip_with_point_aligned_row_groups(
    merged: tuple[pa.Table, np.ndarray], encode: Encode
) -> None:
    table, _ = merged
    parts = encode(**SMALL)
    assert len(parts) > 2
    assert [info.key for _, info in parts] == [
        cold_keys.samples_month_part_key("site-a", MONTH, GEN, i) for i in range(len(parts))
    ]
    rows_per_point = dict(pl.from_arrow(table.select(["point"])).group_by("point").len().iter_rows())  # type: ignore[union-attr]
    decoded = []
    seen: list[str] = []
    multi_point_groups = 0
    for i, (data, info) in enumerate(parts):
        assert raw_month.verify_part(data, info, CHECKSUMS) == info.rows
        meta = raw_month.part_metadata(data)
        assert meta["bv.kind"] == "samples_month" and meta["bv.generation"] == GEN
        assert (meta["bv.part"], meta["bv.rows"], meta["bv.checksum"]) == (
            str(i),
            str(info.rows),
            info.checksum,
        )
        assert json.loads(meta["bv.days"]) == {d.isoformat(): c for d, c in CHECKSUMS.items()}
        footer = PartFooter.parse(read_footer(data))
        assert (footer.first[0], footer.last[-1]) == (info.first_point, info.last_point)
        pf = pq.ParquetFile(pa.BufferReader(data))
        for g, (first, last) in enumerate(zip(footer.first, footer.last, strict=True)):
            assert not seen or first > seen[-1]  # a point never spans two row groups or parts
            seen.append(last)
            group = pl.from_arrow(pf.read_row_group(g, columns=["point"]))
            assert isinstance(group, pl.DataFrame)
            counts = dict(group.group_by("point").len().iter_rows())
            assert counts == {p: rows_per_point[p] for p in counts}  # whole points only
            if len(counts) > 1:
                multi_point_groups += 1
                assert set(counts) <= set(SPARSE)  # only points below the group minimum share a group
                assert sum(counts.values()) >= SMALL["min_group_rows"] or g == len(footer.first) - 1
            else:
                assert first == last
        decoded.append(raw_month.decode_part(data))
    assert multi_point_groups > 0
    assert seen[-1] == POINTS[-1] and len(seen) < len(POINTS)
    assert frame(pa.concat_tables(decoded)).equals(frame(table))
    assert sum(info.rows for _, info in parts) == table.num_rows


def test_default_sizes_give_one_part_and_one_point_per_dense_group(
    merged: tuple[pa.Table, np.ndarray], encode: Encode
) -> None:
    [(data, info)] = encode(min_group_rows=500)
    footer = PartFooter.parse(read_footer(data))
    dense_groups = [f for f, last in zip(footer.first, footer.last, strict=True) if f == last]
    assert sorted(dense_groups) == sorted(DENSE)
    assert info.rows == merged[0].num_rows


def test_encoding_of_nothing_yields_no_parts() -> None:
    empty = raw_month.merge_days(MONTH, [])
    assert empty.num_rows == 0
    assert list(raw_month.encode_month_parts("site-a", MONTH, GEN, empty, {})) == []


def test_verification_catches_tampering(merged: tuple[pa.Table, np.ndarray], encode: Encode) -> None:
    parts = encode(**SMALL)
    data, info = parts[0]
    with pytest.raises(ColdVerificationError, match="bytes"):
        raw_month.verify_part(data[:-10], info, CHECKSUMS)
    with pytest.raises(ColdVerificationError, match="bytes"):
        raw_month.verify_part(data, PartInfo(**{**info.__dict__, "bytes": info.bytes + 1}), CHECKSUMS)
    with pytest.raises(ColdVerificationError, match="day list"):
        raw_month.verify_part(data, info, {**CHECKSUMS, DAYS[0]: "blake2b:other"})
    with pytest.raises(ColdVerificationError, match="day list"):
        raw_month.verify_part(data, info, {d: c for d, c in CHECKSUMS.items() if d != DAYS[1]})
    with pytest.raises(ColdVerificationError, match="metadata"):
        raw_month.verify_part(data, PartInfo(**{**info.__dict__, "checksum": "blake2b:other"}), CHECKSUMS)
    # Another part's bytes under this part's entry (same claimed size): the metadata gives it away.
    other_data, _ = parts[1]
    with pytest.raises(ColdVerificationError):
        raw_month.verify_part(other_data, PartInfo(**{**info.__dict__, "bytes": len(other_data)}), CHECKSUMS)
    # One flipped byte anywhere in the row data (past the 4-byte magic, before the footer) is either caught or
    # leaves the decoded content unchanged (e.g. a byte of a page header's statistics, which nothing reads).
    original = raw_month.decode_part(data)
    footer_len = int.from_bytes(data[-8:-4], "little")
    positions = range(4, len(data) - footer_len - 8, 7)
    rejected = 0
    for pos in positions:
        tampered = bytearray(data)
        tampered[pos] ^= 0xFF
        try:
            raw_month.verify_part(bytes(tampered), info, CHECKSUMS)
        except ColdVerificationError:
            rejected += 1
        else:
            assert raw_month.decode_part(bytes(tampered)).equals(original), pos
    assert rejected > 0.9 * len(positions)


# ---------------------------------------------------------------------------------------------- index


def month_index(parts: list[PartInfo], rows: int) -> MonthIndex:
    per_day = rows // len(DAYS)
    day_rows = {d: per_day for d in DAYS}
    day_rows[DAYS[-1]] += rows - per_day * len(DAYS)
    return MonthIndex(
        site="site-a",
        month=MONTH,
        generation=GEN,
        days=CHECKSUMS,
        day_rows=day_rows,
        parts=tuple(parts),
        rows=rows,
        checksum=raw_month.combined_checksum(parts),
        created_ms=1,
    )


def test_index_json_round_trip(merged: tuple[pa.Table, np.ndarray], encode: Encode) -> None:
    parts = [info for _, info in encode(**SMALL)]
    index = month_index(parts, merged[0].num_rows)
    assert MonthIndex.from_json(index.to_json()) == index
    doc = json.loads(index.to_json())
    assert doc["month"] == "2025-02" and doc["kind"] == "samples_month"
    assert doc["days"][DAYS[0].isoformat()] == {
        "checksum": CHECKSUMS[DAYS[0]],
        "rows": index.day_rows[DAYS[0]],
    }
    sparse = SPARSE[2]
    assert index.parts_for([sparse]) == [p for p in parts if p.first_point <= sparse <= p.last_point]
    assert len(index.parts_for([sparse])) == 1
    assert index.parts_for(["zzz-not-a-point"]) == []
    assert index.parts_for(POINTS) == parts
    assert raw_month.combined_checksum(parts) != raw_month.combined_checksum(parts[::-1])


def _edited(index: MonthIndex, edit: str) -> bytes:
    doc = json.loads(index.to_json())
    first_day = DAYS[0].isoformat()
    if edit == "total rows":
        doc["rows"] += 1
    elif edit == "day rows":
        doc["days"][first_day]["rows"] += 1
    elif edit == "part rows":
        doc["parts"][0]["rows"] -= 1
    elif edit == "schema version":
        doc["schema_version"] = 2
    elif edit == "kind":
        doc["kind"] = "rollup_1h_year"
    elif edit == "month":
        doc["month"] = "2025-13"
    elif edit == "generation":
        doc["generation"] = "../escape"
    elif edit == "site":
        doc["site"] = "Bad Site"
    elif edit == "missing field":
        del doc["checksum"]
    elif edit == "part field":
        doc["parts"][0]["extra"] = 1
    elif edit == "day checksum shape":
        doc["days"][first_day] = "blake2b:x"
    elif edit == "days shape":
        doc["days"] = [first_day]
    elif edit == "foreign part key":
        doc["parts"][0]["key"] = "timeseries/site=site-b/date=2025-02-26/part-0.parquet"
    elif edit == "part key of another generation":
        doc["parts"][0]["key"] = cold_keys.samples_month_part_key(
            "site-a", MONTH, "20250101T000000Z-00000000", 0
        )
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "edit",
    [
        "total rows",
        "day rows",
        "part rows",
        "schema version",
        "kind",
        "month",
        "generation",
        "site",
        "missing field",
        "part field",
        "day checksum shape",
        "days shape",
        "foreign part key",
        "part key of another generation",
    ],
)
def test_corrupt_or_inconsistent_index_is_rejected(
    merged: tuple[pa.Table, np.ndarray], edit: str, encode: Encode
) -> None:
    index = month_index([info for _, info in encode(**SMALL)], merged[0].num_rows)
    with pytest.raises(ColdVerificationError):
        MonthIndex.from_json(_edited(index, edit))


@pytest.mark.parametrize("data", [b"", b"not json", b"[]", b"null", b'{"kind": "samples_month"}'])
def test_unparseable_index_is_rejected(data: bytes) -> None:
    with pytest.raises(ColdVerificationError):
        MonthIndex.from_json(data)


# ---------------------------------------------------------------------------------------------- selective read


def selective_read(data: bytes, info: PartInfo, wanted: list[str]) -> tuple[pa.Table, list[int], int]:
    """(rows of ``wanted``, the groups read, bytes fetched) through RangeFile with only the groups' ranges."""
    fetched: list[tuple[int, int]] = []

    def fetch(start: int, end: int) -> bytes:
        fetched.append((start, end))
        return data[start:end]

    footer = PartFooter.parse(read_footer(data))
    groups = footer.select(wanted)
    source = RangeFile(info.bytes, fetch)
    for start, end in footer.ranges(groups, raw_month.SAMPLE_COLUMNS, max_gap=0):
        source.add(start, fetch(start, end))
    table = raw_month.read_groups(source, footer, groups, wanted)
    return table, groups, sum(e - s for s, e in fetched)


def test_selective_read_returns_exactly_the_points_rows(
    merged: tuple[pa.Table, np.ndarray], truth: pl.DataFrame, encode: Encode
) -> None:
    [(data, info)] = encode(min_group_rows=200)
    footer = PartFooter.parse(read_footer(data))
    shared = next(g for g, (f, last) in enumerate(zip(footer.first, footer.last, strict=True)) if f != last)
    sparse = footer.first[shared]
    neighbour = footer.last[shared]
    assert sparse in SPARSE and neighbour in SPARSE and sparse != neighbour

    cases = [[DENSE[0]], [sparse], sorted([DENSE[2], neighbour]), sorted([sparse, neighbour]), ["nope"]]
    for wanted in cases:
        table, groups, nbytes = selective_read(data, info, wanted)
        assert table.schema == raw_month.SAMPLE_SCHEMA
        assert frame(table).equals(truth.filter(pl.col("point").is_in(wanted)))
        assert len(groups) == len({footer.select([p])[0] for p in wanted if footer.select([p])})
        if wanted != ["nope"]:
            assert 0 < nbytes < len(data) / 2
    # A group shared by several points returns only the wanted one.
    table, groups, _ = selective_read(data, info, [sparse])
    assert groups == [shared] and set(table["point"].to_pylist()) == {sparse}
    assert table.num_rows == truth.filter(pl.col("point") == sparse).height > 0
