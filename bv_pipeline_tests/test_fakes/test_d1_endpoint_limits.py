"""The local D1 endpoint enforces D1's limits with D1's errors (HTTP 400, code 7500, Cloudflare's envelope)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import cloudflare
import pytest

from bv_pipeline_tests.fakes.d1_server import D1Limits, FakeD1, run_fake_d1


def query(client: cloudflare.Cloudflare, fake: FakeD1, sql: str, params: list[Any] | None = None) -> Any:
    extra = {} if params is None else {"params": params}
    return client.d1.database.query(fake.database_id, account_id=fake.account_id, sql=sql, **extra)  # type: ignore[arg-type]


def d1_error(info: pytest.ExceptionInfo[cloudflare.APIStatusError]) -> tuple[int, int, str]:
    body = info.value.body
    assert isinstance(body, dict) and body["success"] is False
    (err,) = body["errors"]
    if err["code"] == 7500:  # D1's SQL errors carry the code in a header too
        assert info.value.response.headers.get("cf-d1") == "err=7500"
    return info.value.status_code, err["code"], err["message"]


def test_bound_parameters_and_statement_length(client: cloudflare.Cloudflare, fake: FakeD1) -> None:
    assert query(client, fake, "SELECT " + ",".join("?" * 100), list(range(100))).result[0].success
    with pytest.raises(cloudflare.BadRequestError) as info:
        query(client, fake, "SELECT " + ",".join("?" * 101), list(range(101)))
    status, code, message = d1_error(info)
    assert (status, code) == (400, 7500)
    assert message.startswith("too many SQL variables at offset ") and message.endswith(": SQLITE_ERROR")
    filler = "x" * (100_000 - len("SELECT ''"))
    assert query(client, fake, f"SELECT '{filler}'").result[0].success  # exactly 100,000 bytes
    with pytest.raises(cloudflare.BadRequestError, match="statement too long"):
        query(client, fake, f"SELECT '{filler}x'")
    with pytest.raises(cloudflare.BadRequestError, match="Wrong number of parameter bindings"):
        query(client, fake, "SELECT ?, ?", [1])
    for sql in ("SELECT 1; BEGIN", "/* why */ -- not\n SAVEPOINT a"):
        with pytest.raises(cloudflare.BadRequestError, match=r"state\.storage\.transaction"):
            query(client, fake, sql)
    with pytest.raises(cloudflare.BadRequestError, match="No SQL statements detected"):
        query(client, fake, "-- nothing")
    with pytest.raises(cloudflare.BadRequestError) as info:
        query(client, fake, "CREATE TABLE wide (" + ", ".join(f"c{i}" for i in range(101)) + ")")
    assert d1_error(info)[2] == "too many columns on wide: SQLITE_ERROR"  # as D1 answers


def test_two_megabyte_values(client: cloudflare.Cloudflare, fake: FakeD1) -> None:
    query(client, fake, "CREATE TABLE b (id INTEGER PRIMARY KEY, s TEXT)")
    assert query(client, fake, "INSERT INTO b (s) VALUES (?)", ["x" * 1_999_000]).result[0].success
    with pytest.raises(cloudflare.BadRequestError) as info:
        query(client, fake, "INSERT INTO b (s) VALUES (?)", ["x" * 2_000_001])
    assert d1_error(info)[1:] == (7500, "string or blob too big: SQLITE_TOOBIG")
    with pytest.raises(cloudflare.BadRequestError, match="SQLITE_TOOBIG"):  # a computed value, too
        query(client, fake, "SELECT zeroblob(2000001)")


def test_database_size_cap_rolls_back_the_batch() -> None:
    with run_fake_d1(limits=D1Limits(max_database_bytes=64 * 1024)) as fake:
        client = cloudflare.Cloudflare(api_token=fake.token, base_url=fake.base_url, max_retries=0)
        query(client, fake, "CREATE TABLE b (id INTEGER PRIMARY KEY, s BLOB)")
        query(client, fake, "INSERT INTO b (s) VALUES (zeroblob(20000))")
        with pytest.raises(cloudflare.BadRequestError) as info:
            client.d1.database.query(
                fake.database_id,
                account_id=fake.account_id,
                batch=[{"sql": "INSERT INTO b (s) VALUES (zeroblob(20000))"}] * 4,
            )
        assert d1_error(info)[1:] == (7500, "Exceeded maximum DB size")
        assert fake.sql("SELECT count(*) FROM b") == [(1,)]  # the whole batch was rolled back
        assert fake.totals().size_bytes <= 64 * 1024


def test_result_size_request_body_and_timeout_limits() -> None:
    limits = D1Limits(max_result_bytes=10_000, query_timeout_s=0.0)
    with run_fake_d1(limits=limits, max_body_bytes=50_000) as fake:
        client = cloudflare.Cloudflare(api_token=fake.token, base_url=fake.base_url, max_retries=0)
        assert query(client, fake, "SELECT 1 AS one").result[0].results == [{"one": 1}]
        with pytest.raises(cloudflare.BadRequestError, match="Query result too large"):
            query(client, fake, "SELECT ? AS s", ["y" * 10_000])
        with pytest.raises(cloudflare.APIStatusError) as info:
            query(client, fake, "SELECT ? AS s", ["y" * 50_000])
        assert info.value.status_code == 413
        # The deadline has passed before the query starts: the first progress check interrupts a long one.
        with pytest.raises(cloudflare.BadRequestError, match="exceeded timeout"):
            query(
                client,
                fake,
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) "
                "SELECT count(*) FROM n",
            )


def test_auth_and_unknown_database(client: cloudflare.Cloudflare, fake: FakeD1) -> None:
    other = cloudflare.Cloudflare(api_token="wrong", base_url=fake.base_url, max_retries=0)
    with pytest.raises(cloudflare.PermissionDeniedError) as denied:
        query(other, fake, "SELECT 1")
    assert d1_error(denied)[1] == 10000
    with pytest.raises(cloudflare.NotFoundError) as missing:
        client.d1.database.query("no-such-db", account_id=fake.account_id, sql="SELECT 1")
    assert d1_error(missing)[1] == 7404


def test_missing_library_is_a_clear_error(tmp_path: Any) -> None:
    code = "from bv_pipeline_tests.fakes.d1_server import run_fake_d1\nwith run_fake_d1():\n    pass\n"
    env = {**os.environ, "D1METER_LIB": str(tmp_path / "absent.so")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    assert "LibraryMissing" in proc.stderr and "make d1meter" in proc.stderr
