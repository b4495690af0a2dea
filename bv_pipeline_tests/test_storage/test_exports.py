"""Pure pieces of exports: ids, key layout, status documents, sizing and chunk planning."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from bv_pipeline.storage import exports as E
from bv_pipeline.storage.cold_keys import validate_object_key
from bv_pipeline.storage.samples import MS_PER_DAY, day_bounds_ms

OWNER = "0123456789abcdef0123456789abcdef"
NOW_MS = int(dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC).timestamp() * 1000)
SPEC = E.ExportSpec(
    site="ses_falls_city",
    points=("Bldg1/VAV-707/DaTemp", "AHU-1.SupplyTemp"),
    start_ms=day_bounds_ms(dt.date(2025, 1, 1))[0],
    end_ms=day_bounds_ms(dt.date(2025, 12, 31))[1],
    interval=None,
    format="csv",
)


def test_export_id_carries_its_creation_second_and_sorts_by_it() -> None:
    eid = E.new_export_id(NOW_MS, rand="00112233445566ff")
    assert eid == "20260304T050607Z-00112233445566ff"
    assert E.check_export_id(eid) == eid
    assert E.export_created_ms(eid) == NOW_MS // 1000 * 1000
    later = E.new_export_id(NOW_MS + 1000)
    assert later > eid and E.check_export_id(later)
    assert E.new_export_id(NOW_MS) != E.new_export_id(NOW_MS)  # random part


@pytest.mark.parametrize(
    "bad",
    ["", "20260304T050607Z", "20260304T050607Z-00112233445566FF", "../20260304T050607Z-0011223344556677"],
)
def test_malformed_export_ids_are_refused(bad: str) -> None:
    with pytest.raises(E.ExportError):
        E.check_export_id(bad)


def test_key_layout_is_per_owner_and_valid_for_object_stores() -> None:
    eid = E.new_export_id(NOW_MS, rand="0011223344556677")
    base = f"exports/{OWNER}/{eid}/"
    assert E.owner_prefix(OWNER) == f"exports/{OWNER}/"
    assert E.status_key(OWNER, eid) == base + "status.json"
    assert E.run_key(OWNER, eid) == base + "run.json"
    assert E.data_key(OWNER, eid, "csv") == base + "data.csv"
    assert E.data_key(OWNER, eid, "parquet") == base + "data.parquet"
    for key in (E.status_key(OWNER, eid), E.data_key(OWNER, eid, "parquet")):
        assert validate_object_key(key) == key
        assert E.parse_export_key(key) == (OWNER, eid, key.rsplit("/", 1)[1])
    assert E.parse_export_key(f"exports/{OWNER}/not-an-id/status.json") is None
    assert E.parse_export_key("timeseries/site=a/date=2025-01-01/part-0.parquet") is None
    with pytest.raises(E.ExportError):
        E.data_key(OWNER, eid, "json")
    with pytest.raises(E.ExportError):
        E.owner_prefix("ABC")


def test_owner_comes_from_the_token_hash() -> None:
    import hashlib

    key = hashlib.sha256(b"some-token-0123456789").hexdigest()
    assert E.owner_of(key) == key[:32]
    assert E.owner_of(hashlib.sha256(b"other-token-0123456789").hexdigest()) != key[:32]


def test_status_round_trips_through_json() -> None:
    status = E.ExportStatus(
        export_id=E.new_export_id(NOW_MS),
        owner=OWNER,
        state="running",
        spec=SPEC,
        created_ms=NOW_MS,
        updated_ms=NOW_MS + 5,
        expires_ms=NOW_MS + 168 * 3_600_000,
        estimated_samples=1_051_200,
        rows=123,
        chunks_done=1,
        chunks_total=4,
        run_id="abc",
    )
    again = E.ExportStatus.from_json(status.to_json())
    assert again == status
    assert again.spec.points == SPEC.points
    done = again.advance(NOW_MS + 9, state="succeeded", rows=1000, bytes=4096)
    assert (done.state, done.updated_ms, done.rows, done.bytes, done.created_ms) == (
        "succeeded",
        NOW_MS + 9,
        1000,
        4096,
        NOW_MS,
    )
    assert done.data_key.endswith("/data.csv") and done.status_key.endswith("/status.json")


@pytest.mark.parametrize(
    "doc",
    [b"", b"[]", b'{"export_id": "x"}', b"not json"],
)
def test_malformed_status_documents_are_refused(doc: bytes) -> None:
    with pytest.raises(E.ExportError):
        E.ExportStatus.from_json(doc)


def test_unknown_state_or_format_is_refused() -> None:
    status = E.ExportStatus(
        export_id=E.new_export_id(NOW_MS),
        owner=OWNER,
        state="queued",
        spec=SPEC,
        created_ms=NOW_MS,
        updated_ms=NOW_MS,
        expires_ms=NOW_MS,
    )
    with pytest.raises(E.ExportError):
        E.ExportStatus.from_json(status.to_json().replace(b'"queued"', b'"paused"'))
    with pytest.raises(E.ExportError):
        E.ExportStatus.from_json(status.to_json().replace(b'"csv"', b'"xlsx"'))


def test_download_filename_names_site_window_and_kind() -> None:
    status = E.ExportStatus(
        export_id="20260304T050607Z-0011223344556677",
        owner=OWNER,
        state="succeeded",
        spec=SPEC,
        created_ms=NOW_MS,
        updated_ms=NOW_MS,
        expires_ms=NOW_MS,
    )
    assert E.download_filename(status) == "ses_falls_city_20250101-20251231_raw_20260304T050607Z.csv"


def test_estimate_uses_each_points_cadence_or_the_bucket() -> None:
    day = MS_PER_DAY
    assert E.estimate_samples([60, 300], 0, day, None) == 1440 + 288
    assert E.estimate_samples([60, 300], 0, day, 3_600_000) == 48  # hourly buckets
    assert (
        E.estimate_samples([60, 900], 0, day, 300_000) == 288 + 96
    )  # a bucket is never finer than the cadence
    assert E.estimate_samples([60], 0, 1, None) == 1
    assert E.estimate_samples([60], 5, 5, None) == 0


def test_chunks_are_whole_days_within_budget_and_cover_the_window_exactly() -> None:
    lo, hi = SPEC.start_ms, SPEC.end_ms  # 365 days
    per_day = 20 * 1440
    chunks = E.plan_chunks(lo, hi, per_day, 1_000_000)
    assert chunks[0][0] == lo and chunks[-1][1] == hi
    assert all(a[1] == b[0] for a, b in itertools.pairwise(chunks))  # contiguous, no overlap
    days = [(b - a) // MS_PER_DAY for a, b in chunks]
    assert days[:-1] == [34] * (len(chunks) - 1) and 0 < days[-1] <= 34  # 1,000,000 // 28,800 = 34 days
    assert all(a % MS_PER_DAY == 0 for a, _ in chunks)
    assert len(chunks) == 11


def test_chunks_clip_a_partial_first_and_last_day() -> None:
    lo = MS_PER_DAY * 10 + 5_000
    hi = MS_PER_DAY * 13 + 7
    chunks = E.plan_chunks(lo, hi, 1000, 2000)  # two days per chunk
    assert chunks == [(lo, MS_PER_DAY * 12), (MS_PER_DAY * 12, hi)]


def test_a_day_larger_than_the_budget_is_one_chunk() -> None:
    chunks = E.plan_chunks(0, 3 * MS_PER_DAY, 10_000_000, 1000)
    assert chunks == [(0, MS_PER_DAY), (MS_PER_DAY, 2 * MS_PER_DAY), (2 * MS_PER_DAY, 3 * MS_PER_DAY)]
    assert E.plan_chunks(5, 5, 10, 10) == []


def test_point_cadences_fall_back_to_the_default() -> None:
    from bv_pipeline.storage.interfaces import PointMeta

    catalogue = {"a": PointMeta(name="a", collect_interval_s=300), "b": PointMeta(name="b")}
    assert E.point_cadences(catalogue, ["a", "b", "unknown"], 60) == [300, 60, 60]
