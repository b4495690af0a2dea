"""D1-specific behaviour: request packing within D1's limits, SDK retries replaying writes, error surfacing."""

from __future__ import annotations

from collections.abc import Iterator

import cloudflare
import numpy as np
import pyarrow as pa
import pytest

from bv_pipeline.resources.hot_store import D1Error, D1HotStore
from bv_pipeline.storage import hot_sql as q
from bv_pipeline.storage.samples import SAMPLE_SCHEMA, sort_samples
from bv_pipeline_tests.fakes.d1_server import FakeD1, run_fake_d1

T0 = 1_767_225_600_000
N_POINTS = 4_583


def five_minutes(start_minute: int, seed: int = 1) -> pa.Table:
    """4,583 points x 5 minutes = 22,915 rows, time-major, 1 % text (enum) points, realistic float values."""
    rng = np.random.default_rng(seed)
    names = np.array([f"Bldg1/VAV-{i // 12}/Pt{i:05d}" for i in range(N_POINTS)], dtype=object)
    pid = np.tile(np.arange(N_POINTS), 5)
    minute = np.repeat(np.arange(start_minute, start_minute + 5), N_POINTS)
    ts = T0 + minute * 60_000 + pid % 5_000 + rng.integers(-400, 400, pid.size)
    value = rng.normal(50, 30, pid.size)  # full-precision doubles: the longest literals
    is_text = pid % 100 == 7
    text = np.where(is_text, np.array(["occupied", "unoccupied", "standby"], dtype=object)[pid % 3], None)
    return pa.table(
        {
            "point": pa.array(names[pid], pa.string()),
            "ts_ms": pa.array(ts, pa.int64()),
            "value": pa.array(value, pa.float64(), mask=is_text),
            "value_text": pa.array(text, pa.string()),
        },
        schema=SAMPLE_SCHEMA,
    )


@pytest.fixture
def fake() -> Iterator[FakeD1]:
    with run_fake_d1() as f:
        yield f


def make_store(fake: FakeD1, **kw: object) -> D1HotStore:
    store = D1HotStore(fake.account_id, fake.database_id, fake.token, base_url=fake.base_url, **kw)  # type: ignore[arg-type]
    store.ensure_schema()
    return store


def assert_within_limits(fake: FakeD1, *, max_body: int = 4_000_000) -> None:
    for r in fake.requests:
        assert r.status == 200 or r.injected, r
        assert r.max_params <= q.D1_MAX_PARAMS
        assert r.max_sql_bytes <= q.D1_MAX_STATEMENT_BYTES
        assert r.body_bytes <= max_body


def staged_samples(fake: FakeD1) -> int:
    return int(fake.sql("SELECT COALESCE(SUM(n), 0) FROM hot_staging")[0][0])


def test_five_minute_sync_fits_in_few_requests_within_limits(fake: FakeD1) -> None:
    store = make_store(fake)
    batch = five_minutes(0)
    assert batch.num_rows == 22_915
    fake.reset_log()
    before = store.requests_made
    stats = store.upsert_samples("demo", batch)
    store.set_watermark("demo", T0 + 5 * 60_000)
    first = store.requests_made - before
    assert first <= 6  # point-id lookup/creation + seal state and staging read + staging rows + watermark
    assert first == len(fake.requests)
    assert stats.rows == 22_915 and stats.new_points == N_POINTS and stats.new_rows == 22_915
    assert_within_limits(fake)

    fake.reset_log()
    stats = store.upsert_samples("demo", five_minutes(5, seed=2))
    store.set_watermark("demo", T0 + 10 * 60_000)
    # steady state: ids cached -> one read (seal state + staging) and one write request, plus the watermark
    assert len(fake.requests) == 3
    assert stats.requests == 2 and stats.new_points == 0
    assert_within_limits(fake)

    assert staged_samples(fake) == 45_830
    # A handful of staging rows per write (groups of <= 1,000 points, split further only when a payload would
    # not fit one statement), never a row per sample.
    assert 10 <= fake.sql("SELECT COUNT(*) FROM hot_staging")[0][0] <= 30
    got = store.read_samples("demo", None, 0, T0 + 5 * 60_000 - 1_000)
    want = sort_samples(batch.filter(pa.compute.less(batch["ts_ms"], T0 + 5 * 60_000 - 1_000)))
    assert got.equals(want)


def test_repeated_write_writes_no_sample_row(fake: FakeD1) -> None:
    store = make_store(fake)
    batch = five_minutes(0)
    store.upsert_samples("demo", batch)
    fake.reset_log()
    again = store.upsert_samples("demo", batch)
    assert again.new_rows == 0 and again.statements == 0
    assert len(fake.requests) == 1  # the read; nothing to write
    assert fake.sql("SELECT COUNT(*) FROM hot_staging")[0][0] <= 15


def test_small_body_cap_splits_requests_and_fake_enforces_it() -> None:
    with run_fake_d1(max_body_bytes=300_000) as fake:
        store = make_store(fake, max_body_bytes=250_000)
        fake.reset_log()
        store.upsert_samples("demo", five_minutes(0))
        store.seal("demo", T0 + 3_600_000)
        assert len(fake.requests) >= 3
        assert_within_limits(fake, max_body=300_000)
        assert staged_samples(fake) == 0
        days = ('"hb_demo_20251231"', '"hb_demo_20260101"')
        assert sum(fake.sql(f"SELECT SUM(n) FROM {t}")[0][0] for t in days) == 22_915


@pytest.mark.parametrize(
    ("status", "when"), [(429, "before"), (503, "before"), (503, "after"), (429, "after")]
)
def test_sdk_retries_replay_writes_exactly_once(fake: FakeD1, status: int, when: str) -> None:
    store = make_store(fake)
    store.upsert_samples("demo", five_minutes(0))  # ids cached
    batch = five_minutes(5, seed=3)
    fake.reset_log()
    # "after": the fake commits the batch and then answers with an error, as when a response is lost.
    fake.inject(status, count=2, when=when)
    stats = store.upsert_samples("demo", batch)
    assert [r.status for r in fake.requests] == [status, status, 200, 200]
    assert stats.requests == 4  # SDK retries are counted
    assert staged_samples(fake) == 45_830 if when == "before" else staged_samples(fake) >= 45_830
    got = store.read_samples("demo", None, T0 + 4 * 60_000 + 5_000, 2**53)
    assert got.equals(sort_samples(batch))
    store.seal("demo", T0 + 3_600_000)
    assert store.count_samples("demo", 0, 2**53) == 45_830  # sealing folds any replayed staging row away


def test_exhausted_retries_raise_with_status(fake: FakeD1) -> None:
    store = make_store(fake, max_retries=1)
    fake.inject(503, count=2)
    with pytest.raises(D1Error) as info:
        store.ping()
    assert info.value.status == 503
    assert store.requests_made == 1 + 2  # ensure_schema + two attempts


def test_sql_errors_surface_d1_code_and_message(fake: FakeD1) -> None:
    store = D1HotStore(fake.account_id, fake.database_id, fake.token, base_url=fake.base_url)
    with pytest.raises(D1Error, match=r"7500.*no such table") as info:  # schema never created
        store.count_samples("demo", 0, 1)
    assert info.value.code == 7500 and info.value.status == 400
    store.ensure_schema()
    too_many = q.Statement("SELECT " + ",".join("?" * 101), list(range(101)))
    with pytest.raises(D1Error, match="too many SQL variables") as info:
        store._query([too_many])
    assert info.value.code == 7500
    with pytest.raises(D1Error, match="statement too long"):
        store._query([q.Statement("SELECT '" + "x" * 100_000 + "'")])
    # A failing statement rolls back the whole batch, like D1.
    ok = q.Statement(q.ENSURE_SITE, ["s", 1])
    with pytest.raises(D1Error, match="no such table"):
        store._query([ok, q.Statement("SELECT * FROM nope")])
    assert store.list_sites() == []
    with pytest.raises(D1Error, match="7500"):
        store._query([q.Statement("BEGIN TRANSACTION")])


def test_bad_token_is_a_clear_error(fake: FakeD1) -> None:
    store = D1HotStore(fake.account_id, fake.database_id, "wrong-token", base_url=fake.base_url)
    with pytest.raises(D1Error, match=r"HTTP 403.*10000") as info:
        store.ping()
    assert info.value.status == 403


def test_caller_supplied_client_still_counts_retries(fake: FakeD1) -> None:
    client = cloudflare.Cloudflare(api_token=fake.token, base_url=fake.base_url, max_retries=2)
    store = D1HotStore(fake.account_id, fake.database_id, "unused", client=client)
    store.ensure_schema()
    fake.inject(429, count=1)
    store.set_watermark("demo", T0)
    assert store.get_watermark("demo") == T0
    assert store.requests_made == len(fake.requests) == 4


def test_retention_drops_the_day_table_and_partial_deletes_rewrite_hours(fake: FakeD1) -> None:
    store = make_store(fake)
    store.upsert_samples("demo", five_minutes(0))
    store.seal("demo", T0 + 3_600_000)
    assert store.delete_range("demo", T0 + 60_000 - 10_000, T0 + 3 * 60_000 - 10_000) > 9_000
    assert store.count_samples("demo", T0 + 60_000 - 10_000, T0 + 3 * 60_000 - 10_000) == 0
    left = store.count_samples("demo", T0, T0 + 86_400_000)
    fake.reset_log()
    assert store.delete_range("demo", T0, T0 + 86_400_000) == left
    assert fake.sql("SELECT name FROM sqlite_master WHERE name LIKE 'hb_demo_2026%'") == []
    assert store.count_samples("demo", T0, T0 + 86_400_000) == 0
    assert store.count_samples("demo", 0, T0) > 0  # samples jittered into the previous day keep their table
