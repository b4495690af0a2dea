"""Pure tests of the ACE page parser: every time and value form, malformed pages, cursor arithmetic."""

from __future__ import annotations

import datetime as dt
import math

import orjson
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bv_pipeline.storage import ace_parse
from bv_pipeline.storage.ace_parse import Cursor, PageParseError


def page(
    samples: list[dict[str, object]], *, next_cursor: str | None = None, has_more: bool = False
) -> bytes:
    return orjson.dumps({"point_samples": samples, "next_cursor": next_cursor, "has_more": has_more})


def ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ("2026-08-07T16:25:00", ms("2026-08-07T16:25:00")),
        ("2026-08-07T16:25:00Z", ms("2026-08-07T16:25:00")),
        ("2026-08-07T16:25:00+00:00", ms("2026-08-07T16:25:00")),
        ("2026-08-07T17:16:34.957381", ms("2026-08-07T17:16:34.957")),  # microseconds truncate
        ("2026-08-07T17:16:34.9", ms("2026-08-07T17:16:34.900")),
        ("2026-08-07T17:16:34.95Z", ms("2026-08-07T17:16:34.950")),
        ("2026-08-07T17:16:34.123+00:00", ms("2026-08-07T17:16:34.123")),
        ("2026-08-07T17:16:34.1234567", ms("2026-08-07T17:16:34.123")),  # reference parser path
        ("1969-12-31T23:59:59.999", -1),
    ],
)
def test_time_forms(wire: str, expected: int) -> None:
    assert ace_parse.parse_time_ms(wire) == expected


@pytest.mark.parametrize(
    "wire",
    [
        "2026-08-07 16:25:00",  # space separator
        "2026-08-07T16:25",  # no seconds
        "2026-08-07",
        "2026-08-07T16:25:00+02:00",  # a real offset is not UTC
        "2026-02-30T00:00:00",
        "2026-08-07T16:25:00.",
        "garbage",
        "",
    ],
)
def test_bad_times_raise(wire: str) -> None:
    with pytest.raises(PageParseError, match="unparsable time"):
        ace_parse.parse_times_ms(pl.Series([wire, "2026-08-07T16:25:00"]))


def test_mixed_time_forms_in_one_page() -> None:
    wires = [
        "2026-08-07T16:25:00",
        "2026-08-07T16:25:00.5Z",
        "2026-08-07T16:25:01+00:00",
        "2026-08-07T16:25:02.25",
    ]
    got = ace_parse.parse_times_ms(pl.Series(wires)).to_list()
    base = ms("2026-08-07T16:25:00")
    assert got == [base, base + 500, base + 1000, base + 2250]


@settings(max_examples=200, deadline=None)
@given(
    st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2200, 1, 1)),
    st.integers(min_value=0, max_value=6),
    st.sampled_from(["", "Z", "+00:00"]),
)
def test_time_roundtrip_property(when: dt.datetime, digits: int, suffix: str) -> None:
    base = when.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{when.microsecond:06d}"[:digits]
    wire = base + (f".{frac}" if digits else "") + suffix
    micros = int(frac.ljust(6, "0")) if digits else 0
    expected = int(when.replace(microsecond=0, tzinfo=dt.UTC).timestamp()) * 1000 + micros // 1000
    # Parse inside a batch of ordinary times so both the fast and the reference path are exercised.
    batch = pl.Series([wire, "2026-08-07T16:25:00"])
    assert ace_parse.parse_times_ms(batch)[0] == expected


@pytest.mark.parametrize(
    ("wire", "value", "text"),
    [
        ("23.5", 23.5, None),
        ("1.6100000143051147", 1.6100000143051147, None),
        ("-1e3", -1000.0, None),
        ("  42 ", 42.0, None),  # float() strips whitespace
        ("\t7\n", 7.0, None),
        ("1_000", 1000.0, None),  # float() accepts underscores
        ("inf", math.inf, None),
        ("-Infinity", -math.inf, None),
        ("1e400", math.inf, None),
        ("+5", 5.0, None),
        (".5", 0.5, None),
        ("-0", -0.0, None),
        ("nan", None, "nan"),  # NaN stays text (module docstring)
        ("NaN", None, "NaN"),
        ("occupied", None, "occupied"),
        ("true", None, "true"),
        ("", None, ""),
        ("0x10", None, "0x10"),
        ("1,5", None, "1,5"),
        (None, None, None),
    ],
)
def test_value_forms(wire: str | None, value: float | None, text: str | None) -> None:
    got_value, got_text = ace_parse.parse_values(pl.Series([wire, "1"], dtype=pl.String))
    assert got_value[0] == value if value is not None else got_value[0] is None
    assert got_text[0] == text
    assert got_value[1] == 1.0 and got_text[1] is None


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=12),
        st.text(alphabet="0123456789+-.eE_ naifNIty\t", max_size=10),
        st.floats(allow_nan=True).map(repr),
    )
)
def test_values_follow_python_float(wire: str) -> None:
    """The vectorised fast path must agree with the documented reference rule on any string."""
    value, text = ace_parse.parse_values(pl.Series([wire, "oops", "2.5"]))
    ref = ace_parse.python_float(wire)
    if ref is None:
        assert value[0] is None and text[0] == wire
    else:
        assert value[0] == ref and text[0] is None
    assert (value[1], text[1], value[2], text[2]) == (None, "oops", 2.5, None)


def test_parse_page_counts_and_columns() -> None:
    body = page(
        [
            {"name": "a", "value": "1.5", "time": "2026-08-07T16:25:00"},
            {"name": "a", "value": "occupied", "time": "2026-08-07T16:26:00.123456"},
            {"name": "b", "value": None, "time": "2026-08-07T16:25:00Z"},
            {"name": "b", "value": 2.5, "time": "2026-08-07T16:26:00"},  # a JSON number is read as its text
        ],
        next_cursor="abc",
        has_more=True,
    )
    parsed = ace_parse.parse_page(body)
    assert parsed.has_more and parsed.next_cursor == "abc"
    assert (parsed.non_numeric, parsed.nulls) == (1, 1)
    assert parsed.samples.schema == pl.Schema(ace_parse.FRAME_SCHEMA)
    assert parsed.samples.rows() == [
        ("a", ms("2026-08-07T16:25:00"), 1.5, None),
        ("a", ms("2026-08-07T16:26:00.123"), None, "occupied"),
        ("b", ms("2026-08-07T16:25:00"), None, None),
        ("b", ms("2026-08-07T16:26:00"), 2.5, None),
    ]


def test_empty_page() -> None:
    parsed = ace_parse.parse_page(page([]))
    assert parsed.samples.height == 0 and not parsed.has_more


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (page([{"name": "a", "value": "1", "time": "2026-08-07T16:25:00"}])[:-5], "invalid JSON"),
        (b"<html>502 Bad Gateway</html>", "invalid JSON"),
        (b'{"message": "oops"}', "lacks point_samples"),
        (page([{"value": "1", "time": "2026-08-07T16:25:00"}]), "without a point name"),
        (page([{"name": "a", "value": "1"}]), "without a time"),
        (page([{"name": "a", "value": "1", "time": "yesterday"}]), "unparsable time"),
        (page([{"name": "a", "value": "1", "time": "2026-08-07T16:25:00"}], has_more=True), "next_cursor"),
        (page([{"name": "a", "value": {"x": 1}, "time": "2026-08-07T16:25:00"}]), "invalid JSON"),
    ],
)
def test_malformed_pages_raise(body: bytes, match: str) -> None:
    with pytest.raises(PageParseError, match=match):
        ace_parse.parse_page(body)


def test_cursor_roundtrip_matches_reference_encoding() -> None:
    token = "eyJvZmZzZXQiOjUwLCJ0aW1lc3RhbXAiOiIyMDI2LTA4LTA3VDE3OjE1OjAwIn0="  # from the reference doc
    cursor = ace_parse.decode_cursor(token)
    assert cursor == Cursor(50, "2026-08-07T17:15:00")
    assert ace_parse.encode_cursor(cursor) == token
    assert ace_parse.decode_cursor("not base64 json") is None
    assert ace_parse.decode_cursor(None) is None


def _ts(*stamps: str) -> pl.Series:
    return pl.Series([ms(s) for s in stamps], dtype=pl.Int64)


def test_repair_cursor_within_one_bucket_adds_incoming_offset() -> None:
    # The stall case: the page starts and ends in the 17:15 bucket; the server would answer offset=3 again.
    incoming = Cursor(3, "2026-08-07T17:15:00")
    page_ts = _ts("2026-08-07T17:15:00", "2026-08-07T17:16:00", "2026-08-07T17:17:00")
    server = Cursor(3, "2026-08-07T17:15:00")
    assert ace_parse.repair_cursor(incoming, page_ts, server) == Cursor(6, "2026-08-07T17:15:00")


def test_repair_cursor_crossing_buckets_counts_only_last_bucket() -> None:
    incoming = Cursor(3, "2026-08-07T17:15:00")
    page_ts = _ts("2026-08-07T17:19:00", "2026-08-07T17:20:00", "2026-08-07T17:21:30.5")
    out = ace_parse.repair_cursor(incoming, page_ts, None)
    assert out == Cursor(2, "2026-08-07T17:20:00")
    first = ace_parse.repair_cursor(None, page_ts, None)
    assert first == Cursor(2, "2026-08-07T17:20:00")


def test_page_fingerprint_distinguishes_content() -> None:
    a = ace_parse.parse_page(page([{"name": "a", "value": "1", "time": "2026-08-07T16:25:00"}])).samples
    b = ace_parse.parse_page(page([{"name": "a", "value": "2", "time": "2026-08-07T16:25:00"}])).samples
    assert ace_parse.page_fingerprint(a) == ace_parse.page_fingerprint(a.clone())
    assert ace_parse.page_fingerprint(a) != ace_parse.page_fingerprint(b)
