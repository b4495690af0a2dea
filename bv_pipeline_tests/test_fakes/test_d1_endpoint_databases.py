"""Several databases per account through the official SDK's ``client.d1.database.list/create/get/delete``."""

from __future__ import annotations

import cloudflare
import pytest

from bv_pipeline_tests.fakes.d1_server import FakeD1


def test_create_get_list_delete(client: cloudflare.Cloudflare, fake: FakeD1) -> None:
    acct = fake.account_id
    created = client.d1.database.create(account_id=acct, name="site-alpha")
    assert created.uuid and created.uuid != fake.database_id and created.name == "site-alpha"
    assert created.created_at is not None and created.file_size and created.file_size > 0

    with pytest.raises(cloudflare.BadRequestError) as dup:
        client.d1.database.create(account_id=acct, name="site-alpha")
    assert isinstance(dup.value.body, dict) and dup.value.body["errors"][0]["code"] == 7502

    got = client.d1.database.get(created.uuid, account_id=acct)
    assert (got.uuid, got.name, got.num_tables) == (created.uuid, "site-alpha", 0)
    client.d1.database.query(created.uuid, account_id=acct, sql="CREATE TABLE t (x)")
    assert client.d1.database.get(created.uuid, account_id=acct).num_tables == 1

    names = sorted(d.name or "" for d in client.d1.database.list(account_id=acct))
    assert names == ["bv-hot", "site-alpha"]
    assert [d.uuid for d in client.d1.database.list(account_id=acct, name="alpha")] == [created.uuid]

    client.d1.database.delete(created.uuid, account_id=acct)
    with pytest.raises(cloudflare.NotFoundError):
        client.d1.database.get(created.uuid, account_id=acct)
    with pytest.raises(cloudflare.NotFoundError):
        client.d1.database.query(created.uuid, account_id=acct, sql="SELECT 1")
    assert not list(fake.data_dir.glob(f"{created.uuid}*"))  # its file is gone
    assert [d.name for d in client.d1.database.list(account_id=acct)] == ["bv-hot"]


def test_list_paginates_like_cloudflare(client: cloudflare.Cloudflare, fake: FakeD1) -> None:
    for i in range(24):
        fake.create_database(f"site-{i:02d}")
    first = client.d1.database.list(account_id=fake.account_id, per_page=10)
    assert len(first.result) == 10
    assert first.result_info is not None and (first.result_info.page, first.result_info.per_page) == (1, 10)
    raw = client.d1.database.with_raw_response.list(
        account_id=fake.account_id, per_page=10, page=3
    ).http_response
    assert raw.json()["result_info"] == {"page": 3, "per_page": 10, "count": 5, "total_count": 25}
    every = [d.name for d in client.d1.database.list(account_id=fake.account_id, per_page=10)]  # auto-paging
    assert len(every) == 25 and len(set(every)) == 25
    with pytest.raises(cloudflare.BadRequestError):
        client.d1.database.list(account_id=fake.account_id, per_page=5)


def test_databases_are_separate_files_with_separate_totals(
    client: cloudflare.Cloudflare, fake: FakeD1
) -> None:
    acct = fake.account_id
    other = client.d1.database.create(account_id=acct, name="site-beta").uuid
    assert other is not None
    for db, rows in ((fake.database_id, 3), (other, 5)):
        client.d1.database.query(
            db,
            account_id=acct,
            batch=[
                {"sql": "CREATE TABLE t (k INTEGER PRIMARY KEY) WITHOUT ROWID"},
                {"sql": "INSERT INTO t SELECT value FROM json_each(?)", "params": [str(list(range(rows)))]},
            ],
        )
    assert fake.sql("SELECT count(*) FROM t") == [(3,)]
    assert fake.sql("SELECT count(*) FROM t", database_id=other) == [(5,)]
    assert (fake.totals().requests, fake.totals(other).requests) == (1, 1)
    # CREATE TABLE writes two schema entries; then one row per insert.
    assert (fake.totals().rows_written, fake.totals(other).rows_written) == (2 + 3, 2 + 5)
    both = fake.account_totals()
    assert (both.rows_written, both.requests) == (12, 2)
    assert both.size_bytes == fake.totals().size_bytes + fake.totals(other).size_bytes
    fake.reset_totals(other)
    assert fake.totals(other).rows_written == 0 and fake.totals().rows_written == 5
    assert {fake.database_id, other} == set(fake.database_ids)
    assert (
        fake.database_id_named("site-beta") == other and fake.database_id_named("bv-hot") == fake.database_id
    )
