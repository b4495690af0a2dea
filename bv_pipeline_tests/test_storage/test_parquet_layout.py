from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from bv_pipeline.storage.parquet_layout import (
    ROW_GROUP_ROWS,
    SCHEMA_VERSION,
    ColdVerificationError,
    DayFileInfo,
    content_checksum,
    decode_day,
    encode_day,
    encode_old_layout,
    read_info,
    read_points,
    verify_object,
)
from bv_pipeline.storage.samples import SAMPLE_SCHEMA, day_bounds_ms, sort_samples

DAY = dt.date(2025, 3, 4)
START, END = day_bounds_ms(DAY)


def small_samples() -> pa.Table:
    """Hand-made edge cases, deliberately unsorted: NaN, +/-inf, -0.0, texts, both-null, day edges."""
    rows = [
        ("b/pt", START + 5, math.nan, None),
        ("a.pt", END - 1, -math.inf, None),
        ("a.pt", START, math.inf, None),
        ("b/pt", START + 1, -0.0, None),
        ("enum", START + 2, None, "occupied"),
        ("enum", START + 3, None, "unoccupied"),
        ("enum", START + 4, None, None),
        ("é-ünïcode", START + 7, 1e-300, None),
        ("a.pt", START + 60_000, 21.5, None),
    ]
    return pa.table(
        {
            "point": [r[0] for r in rows],
            "ts_ms": [r[1] for r in rows],
            "value": [r[2] for r in rows],
            "value_text": [r[3] for r in rows],
        },
        schema=SAMPLE_SCHEMA,
    )


def grid_samples(points: int, minutes: int = 1440, *, seed: int = 1) -> pa.Table:
    """Many points x minutes, in time-major (ingest) order, with ms jitter."""
    rng = np.random.default_rng(seed)
    pid = np.tile(np.arange(points), minutes)
    minute = np.repeat(np.arange(minutes), points)
    ts = START + minute * 60_000 + (pid * 37) % 5000 + rng.integers(0, 200, pid.size)
    names = pa.array([f"Bldg1/VAV-{i:04d}/DaTemp" for i in range(points)])
    values = np.round(20 + rng.normal(0, 1, pid.size), 1)
    return pa.table(
        {
            "point": names.take(pa.array(pid)),
            "ts_ms": pa.array(ts, pa.int64()),
            "value": pa.array(values),
            "value_text": pa.nulls(pid.size, pa.string()),
        },
        schema=SAMPLE_SCHEMA,
    )


@pytest.fixture(scope="module")
def big() -> tuple[pa.Table, bytes, DayFileInfo]:
    samples = grid_samples(200)  # 288k rows: ~4.4 row groups
    data, info = encode_day("demo", DAY, samples, source="hot")
    return samples, data, info


def test_round_trip_is_exact_including_nan_inf_text_and_nulls() -> None:
    samples = small_samples()
    data, info = encode_day("demo", DAY, samples, source="ace")
    back = decode_day(data)
    assert back.schema == SAMPLE_SCHEMA
    expected = sort_samples(samples)
    assert back["point"].to_pylist() == expected["point"].to_pylist()
    assert back["ts_ms"].to_pylist() == expected["ts_ms"].to_pylist()
    assert back["value_text"].to_pylist() == expected["value_text"].to_pylist()
    # Compare float bits so NaN, -0.0 and inf are checked exactly.
    got = back["value"].combine_chunks()
    want = expected["value"].combine_chunks()
    assert got.is_null().to_pylist() == want.is_null().to_pylist()
    gv, wv = got.fill_null(7.0).to_numpy(), want.fill_null(7.0).to_numpy()
    assert gv.view(np.int64).tolist() == wv.view(np.int64).tolist()
    assert info.rows == 9 and info.point_count == 4 and info.bytes == len(data)


def test_value_dictionary_keeps_bit_patterns_that_compare_equal() -> None:
    # 0.0 == -0.0 and NaN payloads differ only in bits: a dictionary keyed on float equality would merge them.
    nan_payload = np.array([0x7FF8000000000001], dtype=np.uint64).view(np.float64)[0]
    bits = [0.0, -0.0, math.nan, nan_payload, 0.0, -0.0, 5e-324, -5e-324, 1.7976931348623157e308]
    samples = pa.table(
        {
            "point": ["p"] * len(bits),
            "ts_ms": [START + i for i in range(len(bits))],
            "value": pa.array(np.array(bits, dtype=np.float64)),
            "value_text": pa.nulls(len(bits), pa.string()),
        },
        schema=SAMPLE_SCHEMA,
    )
    data, _ = encode_day("demo", DAY, samples, source="ace")
    got = decode_day(data)["value"].combine_chunks().to_numpy()
    assert got.view(np.uint64).tolist() == np.array(bits, dtype=np.float64).view(np.uint64).tolist()


def test_metadata_is_present_and_read_info_works_from_a_tail() -> None:
    data, info = encode_day("demo", DAY, small_samples(), source="ace")
    kv = {k.decode(): v.decode() for k, v in pq.ParquetFile(pa.BufferReader(data)).metadata.metadata.items()}
    assert kv["bv.site"] == "demo" and kv["bv.date"] == "2025-03-04" and kv["bv.rows"] == "9"
    assert kv["bv.schema_version"] == str(SCHEMA_VERSION) == "1"
    assert kv["bv.source"] == "ace" and kv["bv.point_count"] == "4"
    assert kv["bv.checksum"] == info.checksum == content_checksum(small_samples())
    assert read_info(data) == info
    footer_len = int.from_bytes(data[-8:-4], "little")
    assert read_info(data[-(footer_len + 8) :], size=len(data)) == info
    with pytest.raises(ColdVerificationError):
        read_info(data[-(footer_len + 4) :])


def test_layout_encodings_compression_sort_and_row_groups(big: tuple[pa.Table, bytes, DayFileInfo]) -> None:
    samples, data, _ = big
    pf = pq.ParquetFile(pa.BufferReader(data))
    md = pf.metadata
    names = [md.schema.column(i).name for i in range(md.num_columns)]
    assert names == ["point_id", "point", "ts_ms", "value", "value_text"]
    assert pf.schema_arrow.field("point_id").type == pa.int32()
    rg = md.row_group(0)
    cols = {rg.column(i).path_in_schema: rg.column(i) for i in range(rg.num_columns)}
    assert "DELTA_BINARY_PACKED" in cols["ts_ms"].encodings
    assert "RLE_DICTIONARY" in cols["value"].encodings
    assert "RLE_DICTIONARY" in cols["point"].encodings
    assert "RLE_DICTIONARY" in cols["value_text"].encodings
    assert all(c.compression == "ZSTD" for c in cols.values())
    assert all(
        c.statistics is not None and c.statistics.has_min_max for n, c in cols.items() if n != "value_text"
    )
    sizes = [md.row_group(g).num_rows for g in range(md.num_row_groups)]
    assert sizes[:-1] == [ROW_GROUP_ROWS] * (len(sizes) - 1) and sum(sizes) == samples.num_rows
    table = pf.read()
    assert (
        table.select(["point", "ts_ms"]).to_pylist()
        == sort_samples(samples).select(["point", "ts_ms"]).to_pylist()
    )
    # point_id is the rank of the name among the day's sorted distinct names.
    distinct = sorted(set(samples["point"].to_pylist()))
    ranks = {n: i for i, n in enumerate(distinct)}
    assert table["point_id"].to_pylist() == [ranks[p] for p in table["point"].to_pylist()]


def test_old_layout_is_unsorted_plain_snappy_with_site_column(
    big: tuple[pa.Table, bytes, DayFileInfo],
) -> None:
    samples, data, _ = big
    old = encode_old_layout("demo", samples)
    pf = pq.ParquetFile(pa.BufferReader(old))
    col = pf.metadata.row_group(0).column(1)
    assert col.path_in_schema == "point_name" and col.compression == "SNAPPY"
    assert "RLE_DICTIONARY" not in col.encodings
    table = pf.read()
    assert set(table["site_name"].to_pylist()) == {"demo"}
    assert table["ts_ms"].to_pylist() == samples["ts_ms"].to_pylist()  # input order kept
    assert len(old) > 2 * len(data)  # the full-scale ratio is the benchmark's job


def test_duplicates_and_out_of_day_samples_are_rejected() -> None:
    samples = small_samples()
    dup = pa.concat_tables([samples, samples.slice(3, 1)])
    with pytest.raises(ValueError, match="duplicate"):
        encode_day("demo", DAY, dup, source="hot")
    for bad_ts in (START - 1, END):
        extra = pa.table(
            {"point": ["x"], "ts_ms": [bad_ts], "value": [1.0], "value_text": [None]}, SAMPLE_SCHEMA
        )
        with pytest.raises(ValueError, match="outside"):
            encode_day("demo", DAY, pa.concat_tables([samples, extra]), source="hot")
    with pytest.raises(ValueError):
        encode_day("../etc", DAY, samples, source="hot")
    null_point = pa.table({"point": [None], "ts_ms": [START], "value": [1.0], "value_text": [None]})
    with pytest.raises(ValueError, match="null"):
        encode_day("demo", DAY, null_point, source="hot")


def test_empty_day_round_trips() -> None:
    data, info = encode_day("demo", DAY, SAMPLE_SCHEMA.empty_table(), source="hot")
    assert info.rows == 0 and decode_day(data).num_rows == 0
    verify_object(data, info)


def test_checksum_is_encoding_independent_and_value_sensitive() -> None:
    samples = small_samples()
    base = content_checksum(samples)
    reordered = samples.take(pa.array([8, 7, 6, 5, 4, 3, 2, 1, 0]))
    chunked = pa.concat_tables([samples.slice(0, 4), samples.slice(4)])
    as_dict = samples.set_column(0, "point", pc.dictionary_encode(samples["point"]))
    as_large = samples.cast(pa.schema([pa.field("point", pa.large_string()), *list(SAMPLE_SCHEMA)[1:]]))
    assert {content_checksum(t) for t in (reordered, chunked, as_dict, as_large)} == {base}
    assert content_checksum(decode_day(encode_day("demo", DAY, samples, source="x")[0])) == base

    def with_value(i: int, v: float | None) -> pa.Table:
        values = samples["value"].to_pylist()
        values[i] = v
        return samples.set_column(2, "value", pa.array(values, pa.float64()))

    assert content_checksum(with_value(8, 21.500000000000004)) != base
    assert content_checksum(with_value(3, 0.0)) != base  # -0.0 vs 0.0
    assert content_checksum(with_value(8, None)) != base
    texts = samples["value_text"].to_pylist()
    texts[4] = "occupieD"
    assert content_checksum(samples.set_column(3, "value_text", pa.array(texts))) != base
    assert content_checksum(samples.slice(1)) != base


def test_verify_object_accepts_good_and_catches_bad(big: tuple[pa.Table, bytes, DayFileInfo]) -> None:
    _, data, info = big
    verify_object(data, info)
    with pytest.raises(ColdVerificationError, match="bytes"):
        verify_object(data[: len(data) // 2], info)
    with pytest.raises(ColdVerificationError, match="Parquet"):
        verify_object(data[:-10], DayFileInfo(**{**info.__dict__, "bytes": 0}))
    with pytest.raises(ColdVerificationError, match="rows"):
        verify_object(data, DayFileInfo(**{**info.__dict__, "rows": info.rows + 1}))
    with pytest.raises(ColdVerificationError, match="checksum"):
        verify_object(data, DayFileInfo(**{**info.__dict__, "checksum": "blake2b:00"}))
    with pytest.raises(ColdVerificationError, match="site"):
        verify_object(data, DayFileInfo(**{**info.__dict__, "site": "other"}))


def test_verify_object_recomputes_checksum_from_the_rows() -> None:
    """A file whose metadata matches the manifest but whose rows differ must fail on content."""
    samples = small_samples()
    data, info = encode_day("demo", DAY, samples, source="x")
    values = samples["value"].to_pylist()
    values[8] = 99.0
    forged, _ = encode_day("demo", DAY, samples.set_column(2, "value", pa.array(values)), source="x")
    # Transplant the genuine metadata onto the forged body by re-writing it with info's key-value pairs.
    pf = pq.ParquetFile(pa.BufferReader(forged))
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, pf.schema_arrow) as w:
        w.write_table(pf.read())
        w.add_key_value_metadata(
            {k.decode(): v.decode() for k, v in pq.read_metadata(pa.BufferReader(data)).metadata.items()}
        )
    tampered = sink.getvalue().to_pybytes()
    with pytest.raises(ColdVerificationError, match="checksum"):
        verify_object(tampered, DayFileInfo(**{**info.__dict__, "bytes": len(tampered)}))


class CountingFetch:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.calls: list[tuple[int, int]] = []

    def __call__(self, start: int, end: int) -> bytes:
        self.calls.append((start, end))
        return self.data[start:end]

    @property
    def bytes(self) -> int:
        return sum(e - s for s, e in self.calls)


def expected_rows(samples: pa.Table, points: list[str] | None, start: int, end: int) -> list[dict]:
    table = sort_samples(samples)
    mask = pc.and_(pc.greater_equal(table["ts_ms"], start), pc.less(table["ts_ms"], end))
    if points is not None:
        mask = pc.and_(mask, pc.is_in(table["point"], pa.array(points)))
    return table.filter(mask).to_pylist()


def test_read_points_returns_exact_rows_and_fetches_less(big: tuple[pa.Table, bytes, DayFileInfo]) -> None:
    samples, data, _ = big
    fetch = CountingFetch(data)
    pts = ["Bldg1/VAV-0003/DaTemp"]
    got = read_points(fetch, len(data), pts, START, END)
    assert got.schema == SAMPLE_SCHEMA
    assert got.to_pylist() == expected_rows(samples, pts, START, END)
    assert got.num_rows == 1440
    assert fetch.bytes < len(data) / 3
    assert len(fetch.calls) == 2  # footer tail + one coalesced row-group range


def test_read_points_time_window_multiple_points_and_all(big: tuple[pa.Table, bytes, DayFileInfo]) -> None:
    samples, data, _ = big
    pts = ["Bldg1/VAV-0199/DaTemp", "Bldg1/VAV-0000/DaTemp", "Bldg1/VAV-0100/DaTemp", "not-a-point"]
    lo, hi = START + 3_600_000, START + 7_200_000
    got = read_points(CountingFetch(data), len(data), pts, lo, hi)
    assert got.to_pylist() == expected_rows(samples, pts, lo, hi)
    assert got.num_rows == 180
    everything = read_points(CountingFetch(data), len(data), None, START, END)
    assert everything.num_rows == samples.num_rows
    assert read_points(CountingFetch(data), len(data), ["zzz"], START, END).num_rows == 0
    assert read_points(CountingFetch(data), len(data), [], START, END).num_rows == 0


def test_read_points_uses_the_footer_cache(big: tuple[pa.Table, bytes, DayFileInfo]) -> None:
    _, data, _ = big
    cache: dict = {}
    first = CountingFetch(data)
    read_points(first, len(data), ["Bldg1/VAV-0003/DaTemp"], START, END, footer_cache=cache, cache_key="k")
    second = CountingFetch(data)
    got = read_points(
        second, len(data), ["Bldg1/VAV-0003/DaTemp"], START, END, footer_cache=cache, cache_key="k"
    )
    assert got.num_rows == 1440
    assert len(second.calls) == len(first.calls) - 1 and second.bytes < first.bytes
    assert all(s >= 4 for s, _ in second.calls)  # no tail read: the footer came from the cache
    with pytest.raises(ValueError, match="cache_key"):
        read_points(second, len(data), None, START, END, footer_cache=cache)


def test_read_points_on_a_small_file_with_a_large_footer_guess() -> None:
    samples = small_samples()
    data, _ = encode_day("demo", DAY, samples, source="x")
    fetch = CountingFetch(data)
    got = read_points(fetch, len(data), ["enum"], START, END)
    assert got.to_pylist() == expected_rows(samples, ["enum"], START, END)
    assert fetch.calls == [(0, len(data))]  # the speculative tail read held the whole file: no second GET


def test_sorted_input_fast_path_writes_the_same_bytes_as_unsorted_input() -> None:
    samples = grid_samples(30, minutes=120)  # time-major: the sorting path
    presorted = sort_samples(samples)  # (point, ts) order: the fast path
    a, info_a = encode_day("demo", DAY, samples, source="hot")
    b, info_b = encode_day("demo", DAY, presorted, source="hot")
    assert a == b and info_a == info_b
    # The fast path still rejects duplicates (a repeated row is not strictly increasing).
    dup = pa.concat_tables([presorted.slice(0, 2), presorted.slice(1)])
    with pytest.raises(ValueError, match="duplicate"):
        encode_day("demo", DAY, dup, source="hot")
