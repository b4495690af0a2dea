"""The local D1 endpoint counts rows the way D1 bills them and reports D1's meta, seen through the official SDK.

Expected figures are D1's billing rules (rows_written: +1 per row and per index entry written, +1 per row
deleted, DROP TABLE 0; rows_read: +1 per seek, rewind and row stepped, sorter steps included).
"""

from __future__ import annotations

import json
from typing import Any

import cloudflare
import pytest
from cloudflare.types.d1 import QueryResult

from bv_pipeline_tests.fakes.d1_server import FakeD1


def run(
    client: cloudflare.Cloudflare, fake: FakeD1, sql: str, params: list[Any] | None = None
) -> QueryResult:
    extra = {} if params is None else {"params": params}
    page = client.d1.database.query(fake.database_id, account_id=fake.account_id, sql=sql, **extra)  # type: ignore[arg-type]
    (result,) = page.result
    return result


def counts(result: QueryResult) -> tuple[int, int]:
    assert result.meta is not None
    return int(result.meta.rows_read or 0), int(result.meta.rows_written or 0)


@pytest.fixture
def tables(client: cloudflare.Cloudflare, fake: FakeD1) -> None:
    run(client, fake, "CREATE TABLE u (id INTEGER PRIMARY KEY, k TEXT UNIQUE)")
    run(client, fake, "CREATE TABLE w (a INTEGER, b INTEGER, v REAL, PRIMARY KEY (a, b)) WITHOUT ROWID")


@pytest.mark.usefixtures("tables")
def test_rows_written_per_table_and_index_entry(client: cloudflare.Cloudflare, fake: FakeD1) -> None:
    # A rowid table with a UNIQUE constraint writes the row and its index entry.
    assert counts(run(client, fake, "INSERT INTO u (k) VALUES (?)", ["a"]))[1] == 2
    assert counts(run(client, fake, "INSERT INTO u (k) VALUES ('b'), ('c'), ('d')"))[1] == 6
    # A WITHOUT ROWID table keyed only by its primary key writes one b-tree entry per row.
    assert counts(run(client, fake, "INSERT INTO w VALUES (1, 1, 1.5)"))[1] == 1
    res = run(
        client,
        fake,
        "INSERT INTO w SELECT value, 0, value * 0.5 FROM json_each(?)",
        [json.dumps(list(range(10, 30)))],
    )
    assert counts(res) == (20, 20)  # each json_each element read once, each row written once
    assert res.meta is not None and res.meta.changes == 20


@pytest.mark.usefixtures("tables")
def test_deletes_count_rows_not_index_entries_and_drop_table_is_free(
    client: cloudflare.Cloudflare, fake: FakeD1
) -> None:
    run(client, fake, "INSERT INTO u (k) VALUES ('a'), ('b'), ('c'), ('d')")
    run(client, fake, "INSERT INTO w SELECT value, 0, 1.0 FROM json_each(?)", [json.dumps(list(range(30)))])
    assert counts(run(client, fake, "DELETE FROM w WHERE a >= 20")) == (10, 10)
    assert counts(run(client, fake, "DELETE FROM w"))[1] == 20  # a whole-table delete still counts every row
    res = run(client, fake, "DELETE FROM u")
    assert counts(res)[1] == 4 and res.meta is not None and res.meta.changes == 4  # index deletes not counted
    run(client, fake, "INSERT INTO u (k) VALUES ('z')")
    res = run(client, fake, "DROP TABLE u")
    assert counts(res)[1] == 0
    assert res.meta is not None and res.meta.changed_db is True


@pytest.mark.usefixtures("tables")
def test_upserts_guarded_no_op_writes_nothing_unconditional_writes_one(
    client: cloudflare.Cloudflare, fake: FakeD1
) -> None:
    run(client, fake, "INSERT INTO w VALUES (1, 1, 1.5)")
    head = "INSERT INTO w VALUES (1, 1, 1.5) ON CONFLICT (a, b) DO UPDATE SET v = excluded.v"
    res = run(client, fake, head + " WHERE w.v IS NOT excluded.v")
    assert counts(res)[1] == 0
    assert res.meta is not None and res.meta.changes == 0 and res.meta.changed_db is False
    res = run(client, fake, head)  # identical values, still a write
    assert counts(res)[1] == 1
    assert res.meta is not None and res.meta.changes == 1 and res.meta.changed_db is True


@pytest.mark.usefixtures("tables")
def test_rows_read_scans_counts_sorts_and_json_each(client: cloudflare.Cloudflare, fake: FakeD1) -> None:
    run(
        client,
        fake,
        "INSERT INTO w SELECT value, 0, value * 0.25 FROM json_each(?)",
        [json.dumps(list(range(21)))],
    )
    assert counts(run(client, fake, "SELECT COUNT(*) FROM w")) == (21, 0)  # COUNT(*) reads every row
    assert counts(run(client, fake, "SELECT * FROM w")) == (21, 0)
    assert counts(run(client, fake, "SELECT * FROM w ORDER BY v DESC")) == (42, 0)  # the sorter's rows again
    assert counts(run(client, fake, "SELECT * FROM w WHERE a = 3 AND b = 0")) == (1, 0)  # one seek
    assert counts(run(client, fake, "SELECT value FROM json_each(?)", [json.dumps(list(range(7)))])) == (7, 0)
    assert counts(run(client, fake, "SELECT 1")) == (0, 0)


def test_meta_fields_through_the_sdk(client: cloudflare.Cloudflare, fake: FakeD1) -> None:
    run(client, fake, "CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT)")
    page = client.d1.database.query(
        fake.database_id,
        account_id=fake.account_id,
        batch=[
            {"sql": "INSERT INTO t (id, s) VALUES (41, 'x'), (42, 'y')"},
            {"sql": "SELECT id, s FROM t ORDER BY id"},
        ],
    )
    insert, select = page.result
    assert insert.success and select.success
    assert insert.meta is not None and select.meta is not None
    assert (insert.meta.changes, insert.meta.last_row_id, insert.meta.changed_db) == (2, 42, True)
    assert (select.meta.changes, select.meta.changed_db, select.meta.last_row_id, select.results) == (
        0,
        False,
        0,
        [{"id": 41, "s": "x"}, {"id": 42, "s": "y"}],
    )
    page_count, page_size = fake.sql("PRAGMA page_count")[0][0], fake.sql("PRAGMA page_size")[0][0]
    assert select.meta.size_after == page_count * page_size > 0
    assert select.meta.duration is not None and select.meta.duration >= 0
    assert select.meta.timings is not None and select.meta.timings.sql_duration_ms is not None
    assert select.meta.served_by_primary is True and select.meta.served_by_region == "ENAM"
    assert (select.meta.model_extra or {}).get("served_by")  # not in the SDK's model; D1 sends it
    raw = client.d1.database.raw(fake.database_id, account_id=fake.account_id, sql="SELECT id, s FROM t")
    (raw_result,) = raw.result
    assert raw_result.results is not None and raw_result.results.columns == ["id", "s"]
    assert raw_result.meta is not None and raw_result.meta.rows_read == 2


def test_values_come_back_as_d1_javascript_runtime_encodes_them(
    client: cloudflare.Cloudflare, fake: FakeD1
) -> None:
    sql = "SELECT 21.0 AS whole, -0.0 AS neg_zero, 9e999 AS inf, 9007199254740993 AS big, x'0102' AS blob, 0.1 AS tenth"
    resp = client.d1.database.with_raw_response.query(fake.database_id, account_id=fake.account_id, sql=sql)
    row = resp.http_response.json()["result"][0]["results"][0]
    assert row == {
        "whole": 21,
        "neg_zero": 0,
        "inf": None,
        "big": 9007199254740992,
        "blob": [1, 2],
        "tenth": 0.1,
    }
    assert '"whole":21,' in resp.http_response.text


def test_parameters_bind_as_d1_binds_json_values(client: cloudflare.Cloudflare, fake: FakeD1) -> None:
    res = run(
        client,
        fake,
        "SELECT typeof(?1) AS a, typeof(?2) AS b, typeof(?3) AS c, ?4 AS d, hex(?5) AS e, typeof(?6) AS f",
        [21.0, 1.5, True, -0.0, [1, 2, 255], "7"],  # type: ignore[list-item]
    )
    # One JavaScript number type: 21.0 is an integer; booleans are integers; a byte array is a BLOB.
    assert res.results == [{"a": "integer", "b": "real", "c": "integer", "d": 0, "e": "0102FF", "f": "text"}]
    with pytest.raises(cloudflare.BadRequestError, match="D1_TYPE_ERROR"):
        run(client, fake, "SELECT ?", [{"x": 1}])  # type: ignore[list-item]


def test_totals_and_request_records_add_up(client: cloudflare.Cloudflare, fake: FakeD1) -> None:
    run(client, fake, "CREATE TABLE w (a INTEGER PRIMARY KEY, v REAL) WITHOUT ROWID")
    fake.reset_totals()
    fake.reset_log()
    results = [
        run(client, fake, "INSERT INTO w SELECT value, 1.0 FROM json_each(?)", [json.dumps(list(range(50)))]),
        run(client, fake, "SELECT * FROM w ORDER BY v"),
    ]
    with pytest.raises(cloudflare.BadRequestError):
        run(client, fake, "INSERT INTO w VALUES (1, 2.0)")  # UNIQUE violation: rolled back, not counted
    totals = fake.totals()
    assert totals.rows_read == sum(counts(r)[0] for r in results) == 50 + 100
    assert totals.rows_written == 50
    assert (totals.requests, totals.statements) == (3, 2)
    assert totals.size_bytes == results[-1].meta.size_after  # type: ignore[union-attr]
    assert [(r.status, r.rows_read, r.rows_written) for r in fake.requests] == [
        (200, 50, 50),
        (200, 100, 0),
        (400, 0, 0),
    ]
    assert fake.requests[1].result_bytes == totals.max_result_bytes > 50 * len('{"a":0,"v":1}')
    fake.reset_totals()
    assert fake.totals().rows_read == 0 and fake.totals().size_bytes == totals.size_bytes


def test_injected_failures_after_commit_are_billed(client: cloudflare.Cloudflare, fake: FakeD1) -> None:
    run(client, fake, "CREATE TABLE w (a INTEGER PRIMARY KEY, v REAL) WITHOUT ROWID")
    fake.reset_totals()
    fake.inject(503, count=1, when="after")
    fake.inject(429, count=1, when="before")
    sql = "INSERT INTO w SELECT value, 1.0 FROM json_each(?) WHERE true ON CONFLICT DO NOTHING"
    for _ in range(2):
        with pytest.raises(cloudflare.APIStatusError):
            run(client, fake, sql, [json.dumps(list(range(10)))])
    # The "after" failure committed (and is billed); the "before" one never reached the database.
    assert [(r.status, r.injected, r.rows_written) for r in fake.requests[-2:]] == [
        (503, True, 10),
        (429, True, 0),
    ]
    assert (fake.totals().rows_written, fake.totals().requests) == (10, 2)
    assert fake.sql("SELECT count(*) FROM w") == [(10,)]
