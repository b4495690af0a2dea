"""Coverage metadata: every answer says, per UTC day, which tier answered and which days are not loaded."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import msgpack
import orjson
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from bv_pipeline.api.coverage import day_states, refine
from bv_pipeline.api.reader import TimeseriesReader
from bv_pipeline.api.web.app import create_app
from bv_pipeline.api.web.config import ApiConfig
from bv_pipeline.storage.samples import day_bounds_ms
from bv_pipeline_tests.test_api import _data as D

TOKEN = "coverage-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BEFORE = D.DAYS[0] - dt.timedelta(days=1)  # before BV_START_DATE
SYNCED_EMPTY = D.DAYS[-1] + dt.timedelta(days=1)  # synced, but the points had no samples
NEVER = D.DAYS[-1] + dt.timedelta(days=2)  # in the past, never synced
TOMORROW = D.DAYS[-1] + dt.timedelta(days=3)
NOW_S = (day_bounds_ms(TOMORROW)[0] - 3_600_000) / 1000  # 23:00 UTC on the day before TOMORROW


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> D.Dataset:
    data = D.build(tmp_path_factory.mktemp("coverage"))
    data.hot.set_sync_as_of(D.SITE, SYNCED_EMPTY, day_bounds_ms(SYNCED_EMPTY)[1])
    return data


@pytest.fixture(scope="module")
def client(ds: D.Dataset) -> Iterator[TestClient]:
    reader = TimeseriesReader(ds.hot, ds.cold, max_workers=2)
    cfg = ApiConfig(api_tokens=(TOKEN,), start_date=D.DAYS[0])
    yield TestClient(create_app(reader, cfg, now=lambda: NOW_S))
    reader.close()


def params(first: dt.date, last: dt.date, points: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "site_name": D.SITE,
        "point_names": ",".join(points),
        "start_time": day_bounds_ms(first)[0],
        "end_time": day_bounds_ms(last)[1] - 1,
        **extra,
    }


def expected(points_include_extra: bool) -> dict[str, str]:
    states = {BEFORE: "before_start"}
    states |= {d: "cold" for d in D.COLD_DELETED}
    # D4 is verified and still in hot: hot answers, except a point only the cold copy holds (then both do).
    states[D.OVERLAP] = "split" if points_include_extra else "hot"
    states[D.MISSED] = "hot"
    states[D.BACKFILLED] = "cold"  # verified in cold, no hot rows at all
    states |= {d: "hot" for d in D.HOT_ONLY}
    states |= {SYNCED_EMPTY: "hot", NEVER: "not_loaded", TOMORROW: "future"}
    return {d.isoformat(): s for d, s in sorted(states.items())}


@pytest.mark.parametrize("extra", [False, True])
def test_every_day_of_the_window_has_a_state(client: TestClient, extra: bool) -> None:
    points = [D.TEMP, D.EXTRA] if extra else [D.TEMP]
    r = client.get("/timeseries/query", params=params(BEFORE, TOMORROW, points), headers=AUTH)
    assert r.status_code == 200
    meta = r.json()["metadata"]
    assert meta["coverage"] == expected(extra)
    assert list(meta["coverage"]) == sorted(meta["coverage"])  # days in order
    assert meta["source"] == "split"  # the old field is still there


def test_no_data_is_told_apart_from_not_loaded(client: TestClient) -> None:
    synced = client.get(
        "/timeseries/query", params=params(SYNCED_EMPTY, SYNCED_EMPTY, [D.TEMP]), headers=AUTH
    )
    never = client.get("/timeseries/query", params=params(NEVER, NEVER, [D.TEMP]), headers=AUTH)
    for r in (synced, never):
        assert r.status_code == 200 and r.json()["samples"] == []
    assert synced.json()["metadata"]["coverage"] == {SYNCED_EMPTY.isoformat(): "hot"}
    assert never.json()["metadata"]["coverage"] == {NEVER.isoformat(): "not_loaded"}


def test_coverage_in_every_format_and_aggregate(client: TestClient) -> None:
    p = params(D.DAYS[2], D.DAYS[5], [D.TEMP])
    want = {
        d.isoformat(): s
        for d, s in [(D.DAYS[2], "cold"), (D.DAYS[3], "cold"), (D.DAYS[4], "hot"), (D.DAYS[5], "hot")]
    }
    col = client.get("/timeseries/query", params={**p, "format": "columnar", "interval": "1h"}, headers=AUTH)
    assert col.json()["metadata"]["coverage"] == want
    mp = client.get("/timeseries/query", params=p, headers={**AUTH, "Accept": "application/x-msgpack"})
    assert msgpack.unpackb(mp.content)["metadata"]["coverage"] == want
    arrow = client.get(
        "/timeseries/query", params=p, headers={**AUTH, "Accept": "application/vnd.apache.arrow.stream"}
    )
    schema = pa.ipc.open_stream(arrow.content).schema
    assert orjson.loads(schema.metadata[b"metadata"])["coverage"] == want


def test_openapi_documents_coverage(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    text = orjson.dumps(doc).decode()
    assert "coverage" in text and "not_loaded" in text and "before_start" in text


def test_day_states_rules() -> None:
    d = [dt.date(2025, 1, i) for i in range(1, 7)]
    got = day_states(
        d,
        hot_days={d[2], d[3], d[4], d[5]},
        hot_rows_days={d[2], d[3]},
        synced_days={d[4]},
        cold_read_days={d[0], d[1], d[3]},
        compacted_days={d[1]},
        archived_days={d[0], d[1], d[3]},
    )
    assert got == {
        d[0]: "cold",
        d[1]: "compacted",
        d[2]: "hot",
        d[3]: "split",
        d[4]: "hot",
        d[5]: "not_loaded",
    }
    assert refine({d[5]: "not_loaded", d[0]: "not_loaded", d[1]: "cold"}, start_date=d[1], today=d[4]) == {
        d[5].isoformat(): "future",
        d[0].isoformat(): "before_start",
        d[1].isoformat(): "cold",
    }
