from __future__ import annotations

import datetime as dt

import pytest

from bv_pipeline.storage.cold_keys import (
    ColdKeyError,
    ParsedKey,
    day_key,
    parse_key,
    rollup_key,
    samples_key,
    site_prefix,
    validate_object_key,
    validate_prefix,
)

DAY = dt.date(2025, 3, 4)


def test_samples_and_rollup_keys_are_hive_style() -> None:
    assert samples_key("demo", DAY) == "timeseries/site=demo/date=2025-03-04/part-0.parquet"
    assert rollup_key("site-2", DAY) == "rollups/1h/site=site-2/date=2025-03-04/part-0.parquet"
    assert site_prefix("demo") == "timeseries/site=demo/"
    assert site_prefix("demo", "rollup_1h") == "rollups/1h/site=demo/"


@pytest.mark.parametrize("kind", ["samples", "rollup_1h"])
def test_parse_inverts_day_key(kind: str) -> None:
    key = day_key("b_7", DAY, kind)  # type: ignore[arg-type]
    assert parse_key(key) == ParsedKey(kind=kind, site="b_7", day=DAY)  # type: ignore[arg-type]


@pytest.mark.parametrize("site", ["../x", "A B", "", "Demo", "a/b", "-lead", "x" * 64, "demo\n"])
def test_site_names_that_are_not_slugs_are_rejected(site: str) -> None:
    with pytest.raises(ColdKeyError):
        samples_key(site, DAY)


def test_datetime_is_not_a_day() -> None:
    with pytest.raises(ColdKeyError):
        samples_key("demo", dt.datetime(2025, 3, 4, 12, 0))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "key",
    [
        "timeseries/site=demo/date=2025-03-04/part-1.parquet",
        "timeseries/site=../date=2025-03-04/part-0.parquet",
        "timeseries/site=demo/date=2025-02-30/part-0.parquet",
        "other/site=demo/date=2025-03-04/part-0.parquet",
        "/timeseries/site=demo/date=2025-03-04/part-0.parquet",
    ],
)
def test_parse_rejects_foreign_keys(key: str) -> None:
    with pytest.raises(ColdKeyError):
        parse_key(key)


@pytest.mark.parametrize(
    "key", ["", "../x", "a/../b", "/abs", "a//b", "a/./b", ".hidden", "a/.tmp-1", "a b", "a\\b", "x" * 1025]
)
def test_object_key_guard_rejects_unsafe_keys(key: str) -> None:
    with pytest.raises(ColdKeyError):
        validate_object_key(key)


def test_object_key_guard_accepts_cold_keys_and_prefixes() -> None:
    key = samples_key("demo", DAY)
    assert validate_object_key(key) == key
    for prefix in ("", "timeseries/", "timeseries/site=demo/date=2025-0", "time"):
        assert validate_prefix(prefix) == prefix
    with pytest.raises(ColdKeyError):
        validate_prefix("../")
