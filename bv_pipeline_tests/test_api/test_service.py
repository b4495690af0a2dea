"""The HTTP service: contract, payload formats, security, validation, caching and health."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import boto3
import msgpack
import orjson
import polars as pl
import pyarrow as pa
import pytest
from botocore.config import Config
from fastapi.testclient import TestClient

from bv_pipeline.api.reader import TimeseriesReader
from bv_pipeline.api.service import ApiConfig, create_app
from bv_pipeline.config import Settings
from bv_pipeline.resources.cold_store import S3ObjectStore
from bv_pipeline.storage.samples import day_bounds_ms
from bv_pipeline_tests.test_api import _data as D

TOKEN = "test-token-0123456789abcdef"
OTHER = "other-token-0123456789abcdef"
ORIGIN = "https://charts.example.com"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# "Now" for Cache-Control: long after the data set, so archived windows count as old.
NOW_S = dt.datetime(2025, 6, 1, tzinfo=dt.UTC).timestamp()


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> D.Dataset:
    return D.build(tmp_path_factory.mktemp("service"))


@pytest.fixture(scope="module")
def reader(ds: D.Dataset) -> Iterator[TimeseriesReader]:
    r = TimeseriesReader(ds.hot, ds.cold, max_workers=4)
    yield r
    r.close()


def make_client(reader: TimeseriesReader, **overrides: Any) -> TestClient:
    settings: dict[str, Any] = {
        "api_tokens": (TOKEN, OTHER),
        "allowed_origins": (ORIGIN,),
        "rate_limit_per_s": 1000.0,
        "rate_limit_burst": 1000,
    }
    cfg = ApiConfig(**{**settings, **overrides})
    return TestClient(create_app(reader, cfg, now=lambda: NOW_S))


@pytest.fixture(scope="module")
def client(reader: TimeseriesReader) -> TestClient:
    return make_client(reader)


def q(first: dt.date, last: dt.date, points: list[str], **extra: Any) -> dict[str, Any]:
    """Query parameters for whole days first..last; end_time is inclusive, as in the old contract."""
    return {
        "site_name": D.SITE,
        "point_names": ",".join(points),
        "start_time": day_bounds_ms(first)[0],
        "end_time": day_bounds_ms(last)[1] - 1,
        **extra,
    }


def truth_for(ds: D.Dataset, first: dt.date, last: dt.date, points: list[str]) -> pl.DataFrame:
    lo, hi = day_bounds_ms(first)[0], day_bounds_ms(last)[1]
    return ds.truth.filter(pl.col("point").is_in(points) & (pl.col("ts_ms") >= lo) & (pl.col("ts_ms") < hi))


# ---- the old contract ---------------------------------------------------------------------------------------


def test_old_contract_field_by_field(client: TestClient, ds: D.Dataset) -> None:
    points = [D.TEMP, D.MODE]
    r = client.get("/timeseries/query", params=q(D.DAYS[2], D.DAYS[8], points), headers=AUTH)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert list(body) == ["site_name", "point_names", "samples", "metadata"]
    assert body["site_name"] == D.SITE
    assert body["point_names"] == points
    want = truth_for(ds, D.DAYS[2], D.DAYS[8], points)
    assert len(body["samples"]) == want.height
    for sample, row in zip(body["samples"], want.iter_rows(named=True), strict=True):
        assert list(sample) == ["point_name", "timestamp", "value"]
        assert sample["point_name"] == row["point"]
        assert isinstance(sample["timestamp"], int) and sample["timestamp"] == row["ts_ms"]
        assert sample["value"] == (row["value_text"] if row["value_text"] is not None else row["value"])
    meta = body["metadata"]
    assert meta["source"] == "split"
    n_hot = sum(
        truth_for(ds, d, d, points).height for d in (D.OVERLAP, D.MISSED, D.HOT_ONLY[0], D.HOT_ONLY[1])
    )
    assert meta["hot_samples"] == meta["d1_samples"] == n_hot
    assert meta["cold_samples"] == meta["r2_samples"] == want.height - n_hot
    assert isinstance(meta["query_time_ms"], float | int) and meta["query_time_ms"] >= 0
    assert meta["unknown_points"] == []


def test_source_is_hot_or_cold_for_single_tier_windows(client: TestClient) -> None:
    hot = client.get(
        "/timeseries/query", params=q(D.HOT_ONLY[0], D.HOT_ONLY[-1], [D.TEMP]), headers=AUTH
    ).json()
    cold = client.get("/timeseries/query", params=q(D.DAYS[0], D.DAYS[3], [D.TEMP]), headers=AUTH).json()
    assert hot["metadata"]["source"] == "hot" and hot["metadata"]["r2_samples"] == 0
    assert cold["metadata"]["source"] == "cold" and cold["metadata"]["d1_samples"] == 0
    assert len(hot["samples"]) > 0 and len(cold["samples"]) > 0


def test_unknown_points_are_listed_not_fatal(client: TestClient, ds: D.Dataset) -> None:
    params = q(D.DAYS[7], D.DAYS[7], [D.TEMP, "No.Such.Point", D.DAMPER.lower()])
    body = client.get("/timeseries/query", params=params, headers=AUTH).json()
    assert body["metadata"]["unknown_points"] == ["No.Such.Point"]
    assert body["metadata"]["resolved_points"] == {D.DAMPER.lower(): D.DAMPER}
    assert {s["point_name"] for s in body["samples"]} == {D.TEMP, D.DAMPER}


def test_aggregated_rows_carry_min_max_count(client: TestClient, ds: D.Dataset) -> None:
    body = client.get(
        "/timeseries/query", params=q(D.DAYS[0], D.DAYS[9], [D.TEMP], interval="1d"), headers=AUTH
    ).json()
    assert len(body["samples"]) == 10
    raw = truth_for(ds, D.DAYS[0], D.DAYS[9], [D.TEMP])
    first = raw.filter(pl.col("ts_ms") < day_bounds_ms(D.DAYS[0])[1])
    s0 = body["samples"][0]
    assert s0["timestamp"] == day_bounds_ms(D.DAYS[0])[0]
    assert s0["count"] == first.height
    assert s0["min"] == first["value"].min() and s0["max"] == first["value"].max()
    assert s0["value"] == pytest.approx(first["value"].mean(), rel=1e-12)


# ---- payload formats ----------------------------------------------------------------------------------------


def _rows_to_frame(samples: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "point": [s["point_name"] for s in samples],
            "ts_ms": [s["timestamp"] for s in samples],
            "value": [s["value"] for s in samples],
        },
        schema={"point": pl.String, "ts_ms": pl.Int64, "value": pl.Float64},
    )


def _series_to_frame(series: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.concat(
        [
            pl.DataFrame(
                {"point": [s["name"]] * len(s["timestamps"]), "ts_ms": s["timestamps"], "value": s["values"]},
                schema={"point": pl.String, "ts_ms": pl.Int64, "value": pl.Float64},
            )
            for s in series
        ]
    ).sort("point", "ts_ms")  # series come in request order, rows in (point, ts) order


def test_columnar_msgpack_and_arrow_decode_to_the_same_data(client: TestClient) -> None:
    points = [D.TEMP, D.METER]
    params = q(D.DAYS[1], D.DAYS[8], points)
    rows = client.get("/timeseries/query", params=params, headers=AUTH)
    ref = _rows_to_frame(rows.json()["samples"])
    assert ref.height > 1000

    col = client.get("/timeseries/query", params={**params, "format": "columnar"}, headers=AUTH)
    doc = col.json()
    assert [s["name"] for s in doc["series"]] == points
    assert _series_to_frame(doc["series"]).equals(ref)
    assert len(col.content) * 2 < len(rows.content)  # columnar drops the repeated keys and names

    mp = client.get(
        "/timeseries/query",
        params={**params, "format": "columnar"},
        headers={**AUTH, "Accept": "application/x-msgpack"},
    )
    assert mp.headers["content-type"].startswith("application/x-msgpack")
    mdoc = msgpack.unpackb(mp.content)
    assert _series_to_frame(mdoc["series"]).equals(ref)
    assert mdoc["metadata"]["hot_samples"] == doc["metadata"]["hot_samples"]

    mp_rows = msgpack.unpackb(
        client.get(
            "/timeseries/query", params=params, headers={**AUTH, "Accept": "application/x-msgpack"}
        ).content
    )
    assert _rows_to_frame(mp_rows["samples"]).equals(ref)

    arrow = client.get(
        "/timeseries/query",
        params=params,
        headers={**AUTH, "Accept": "application/json;q=0.5, application/vnd.apache.arrow.stream"},
    )
    assert arrow.headers["content-type"].startswith("application/vnd.apache.arrow.stream")
    table = pa.ipc.open_stream(arrow.content).read_all()
    got = pl.from_arrow(table)
    assert isinstance(got, pl.DataFrame)
    got = got.select(
        pl.col("point_name").cast(pl.String).alias("point"), pl.col("timestamp").alias("ts_ms"), "value"
    )
    assert got.equals(ref)
    assert orjson.loads(table.schema.metadata[b"metadata"])["source"] == doc["metadata"]["source"]
    assert len(arrow.content) < len(col.content)  # zstd-compressed buffers


def test_text_values_in_every_format(client: TestClient, ds: D.Dataset) -> None:
    params = q(D.DAYS[7], D.DAYS[7], [D.MODE])
    want = truth_for(ds, D.DAYS[7], D.DAYS[7], [D.MODE])["value_text"].to_list()
    rows = client.get("/timeseries/query", params=params, headers=AUTH).json()
    assert [s["value"] for s in rows["samples"]] == want
    col = client.get("/timeseries/query", params={**params, "format": "columnar"}, headers=AUTH).json()
    assert col["series"][0]["values"] == want
    arrow = client.get(
        "/timeseries/query", params=params, headers={**AUTH, "Accept": "application/vnd.apache.arrow.stream"}
    )
    assert pa.ipc.open_stream(arrow.content).read_all()["value_text"].to_pylist() == want


def test_max_points_downsamples_each_series(client: TestClient) -> None:
    params = q(D.DAYS[0], D.DAYS[9], [D.TEMP, D.DAMPER], format="columnar")
    full = client.get("/timeseries/query", params=params, headers=AUTH).json()
    body = client.get("/timeseries/query", params={**params, "max_points": 50}, headers=AUTH).json()
    assert full["metadata"]["downsampled"] is False
    assert body["metadata"]["downsampled"] is True
    for s, f in zip(body["series"], full["series"], strict=True):
        assert 0 < len(s["timestamps"]) <= 50
        assert max(s["values"]) == max(f["values"]) and min(s["values"]) == min(f["values"])


# ---- security -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/timeseries/query", "/sites", f"/sites/{D.SITE}/points"])
def test_data_endpoints_need_a_bearer_token(client: TestClient, path: str) -> None:
    params = q(D.DAYS[7], D.DAYS[7], [D.TEMP]) if path == "/timeseries/query" else {}
    missing = client.get(path, params=params)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"] == "unauthorized"
    assert client.get(path, params=params, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    wrong = client.get(path, params=params, headers={"Authorization": "Bearer not-the-token-at-all-xx"})
    assert wrong.status_code == 403 and wrong.json()["error"] == "forbidden"
    assert client.get(path, params=params, headers={"Authorization": f"Bearer {OTHER}"}).status_code == 200


def test_no_configured_tokens_refuses_everything(reader: TimeseriesReader) -> None:
    c = TestClient(create_app(reader, ApiConfig(api_tokens=())))
    assert c.get("/sites", headers=AUTH).status_code == 403
    assert c.get("/health").status_code == 200


def test_rate_limit_per_token(reader: TimeseriesReader) -> None:
    c = make_client(reader, rate_limit_burst=3, rate_limit_per_s=0.001)
    codes = [c.get("/sites", headers=AUTH).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = c.get("/sites", headers=AUTH)
    assert limited.json()["error"] == "rate_limited" and int(limited.headers["retry-after"]) >= 1
    # Buckets are per token: the other token is unaffected.
    assert c.get("/sites", headers={"Authorization": f"Bearer {OTHER}"}).status_code == 200


def test_cors_allows_listed_origin_only(client: TestClient) -> None:
    ok = client.get("/health", headers={"Origin": ORIGIN})
    assert ok.headers.get("access-control-allow-origin") == ORIGIN
    evil = client.get("/health", headers={"Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in evil.headers
    pre = client.options(
        "/timeseries/query",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == ORIGIN
    refused = client.options(
        "/timeseries/query",
        headers={"Origin": "https://evil.example.com", "Access-Control-Request-Method": "GET"},
    )
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers


def test_wildcard_origin_only_when_configured(reader: TimeseriesReader) -> None:
    c = TestClient(create_app(reader, ApiConfig(api_tokens=(TOKEN,), allowed_origins=("*",))))
    assert (
        c.get("/health", headers={"Origin": "https://any.example.org"}).headers["access-control-allow-origin"]
        == "*"
    )


# ---- validation ---------------------------------------------------------------------------------------------


BASE = q(D.DAYS[7], D.DAYS[7], [D.TEMP])


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"start_time": "yesterday"}, "invalid_parameter"),
        ({"end_time": -5}, "invalid_parameter"),
        ({"start_time": BASE["end_time"] + 10}, "invalid_time_range"),
        ({"start_time": BASE["end_time"] - 367 * 86_400_000}, "range_too_long"),
        ({"point_names": ",".join(f"P{i}" for i in range(101))}, "too_many_points"),
        ({"point_names": " , ,"}, "invalid_parameter"),
        ({"point_names": "bad\x01name"}, "invalid_parameter"),
        ({"interval": "7min"}, "invalid_parameter"),
        ({"max_points": 1}, "invalid_parameter"),
        ({"max_points": "many"}, "invalid_parameter"),
        ({"max_points": 10_000_000}, "invalid_parameter"),
        ({"downsample": "median"}, "invalid_parameter"),
        ({"format": "xml"}, "invalid_parameter"),
        ({"site_name": "../../etc"}, "invalid_parameter"),
        ({"site_name": "Test_Site"}, "invalid_parameter"),
        ({"site_name": None}, "invalid_parameter"),
    ],
)
def test_bad_parameters_give_json_400(client: TestClient, change: dict[str, Any], error: str) -> None:
    params = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    r = client.get("/timeseries/query", params=params, headers=AUTH)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == error and body["detail"]


def test_point_limit_is_configurable(reader: TimeseriesReader) -> None:
    c = make_client(reader, max_points_per_query=2)
    params = {**BASE, "point_names": f"{D.TEMP},{D.DAMPER},{D.METER}"}
    assert c.get("/timeseries/query", params=params, headers=AUTH).json()["error"] == "too_many_points"


def test_unknown_site_is_404(client: TestClient) -> None:
    r = client.get("/timeseries/query", params={**BASE, "site_name": "nowhere"}, headers=AUTH)
    assert r.status_code == 404 and r.json()["error"] == "unknown_site"
    assert client.get("/sites/nowhere/points", headers=AUTH).status_code == 404


def test_raw_request_over_budget_is_413_with_suggestions(reader: TimeseriesReader) -> None:
    c = make_client(reader, max_raw_samples=5_000)
    # 3 points x 10 days at the points' 5-minute cadence = 8,640 estimated samples.
    params = q(D.DAYS[0], D.DAYS[9], [D.TEMP, D.DAMPER, D.METER])
    r = c.get("/timeseries/query", params=params, headers=AUTH)
    assert r.status_code == 413
    body = r.json()
    assert body["error"] == "too_many_samples" and body["estimated_samples"] == 8_640
    assert any("interval=1h" in s for s in body["suggestions"])
    assert any("at most 1 points" in s for s in body["suggestions"])
    # The same window at 1 h is answered (cold days come from rollups), as is a shorter raw window.
    assert c.get("/timeseries/query", params={**params, "interval": "1h"}, headers=AUTH).status_code == 200
    assert (
        c.get("/timeseries/query", params=q(D.DAYS[0], D.DAYS[3], [D.TEMP]), headers=AUTH).status_code == 200
    )


# ---- caching ------------------------------------------------------------------------------------------------


def test_etag_and_304(client: TestClient) -> None:
    params = q(D.DAYS[0], D.DAYS[3], [D.TEMP])
    first = client.get("/timeseries/query", params=params, headers=AUTH)
    etag = first.headers["etag"]
    assert etag.startswith('"') and len(etag) > 20
    # Archived (hot-deleted) days only: not immutable (settling and corrections may change them), revalidated.
    assert first.headers["cache-control"] == "private, max-age=300"
    again = client.get("/timeseries/query", params=params, headers={**AUTH, "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    stale = client.get("/timeseries/query", params=params, headers={**AUTH, "If-None-Match": '"nope"'})
    assert stale.status_code == 200
    # Another representation of the same data has another tag.
    col = client.get("/timeseries/query", params={**params, "format": "columnar"}, headers=AUTH)
    assert col.headers["etag"] != etag
    other = client.get("/timeseries/query", params=q(D.DAYS[0], D.DAYS[3], [D.DAMPER]), headers=AUTH)
    assert other.headers["etag"] != etag


def test_cache_control_by_data_age(reader: TimeseriesReader) -> None:
    hot_window = q(D.DAYS[7], D.DAYS[8], [D.TEMP])
    c = make_client(reader)
    assert (
        c.get("/timeseries/query", params=hot_window, headers=AUTH).headers["cache-control"]
        == "private, max-age=300"
    )
    # The same window seen on its last day: it touches today, so only a short max-age.
    today = day_bounds_ms(D.DAYS[8])[0] / 1000 + 3600
    c_today = TestClient(create_app(reader, ApiConfig(api_tokens=(TOKEN,)), now=lambda: today))
    assert c_today.get("/timeseries/query", params=hot_window, headers=AUTH).headers["cache-control"] == (
        "private, max-age=60"
    )


# ---- discovery and health -----------------------------------------------------------------------------------


def test_sites_and_point_discovery(client: TestClient) -> None:
    sites = client.get("/sites", headers=AUTH).json()["sites"]
    assert D.SITE in sites and "other_site" in sites
    body = client.get(f"/sites/{D.SITE}/points", headers=AUTH).json()
    assert body["total"] == len(D.POINTS)
    by_name = {p["name"]: p for p in body["points"]}
    assert by_name[D.METER]["unit"] == "kWh" and by_name[D.METER]["kind"] == "meter"
    assert by_name[D.TEMP]["collect_interval_s"] == 300
    found = client.get(f"/sites/{D.SITE}/points", params={"search": "vav-707"}, headers=AUTH).json()
    assert [p["name"] for p in found["points"]] == [D.DAMPER]
    tagged = client.get(f"/sites/{D.SITE}/points", params={"search": "ahu", "limit": 1}, headers=AUTH).json()
    assert tagged["total"] == 3 and tagged["returned"] == 1


def test_health_ok(client: TestClient, ds: D.Dataset) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "healthy" and body["stores"] == {"hot": {"ok": True}, "cold": {"ok": True}}
    newest = ds.hot.max_ts(D.SITE)
    assert newest is not None
    assert body["sites"][D.SITE] == {
        "newest_sample": dt.datetime.fromtimestamp(newest / 1000, dt.UTC).isoformat(timespec="seconds"),
        "age_s": round(NOW_S - newest / 1000),
    }
    # A site the hot tier knows without samples (points only) has no freshness yet.
    others = {s for s in body["sites"] if s != D.SITE}
    assert all(body["sites"][s] == {"newest_sample": None, "age_s": None} for s in others)


def test_health_503_when_cold_store_unreachable(ds: D.Dataset) -> None:
    # An S3 endpoint where nothing listens: connection refused at once, no retries.
    s3 = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        region_name="auto",
        config=Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1}),
    )
    reader = TimeseriesReader(ds.hot, S3ObjectStore(s3, "bucket"))
    try:
        c = TestClient(create_app(reader, ApiConfig(api_tokens=(TOKEN,))))
        r = c.get("/health")
        assert r.status_code == 503
        body = r.json()
        assert body["status"] == "unhealthy"
        assert body["stores"]["hot"] == {"ok": True}
        assert body["stores"]["cold"]["ok"] is False and body["stores"]["cold"]["error"]
    finally:
        reader.close()


def test_settings_are_accepted_as_config(reader: TimeseriesReader) -> None:
    settings = Settings(api_tokens=(TOKEN,), allowed_origins=(ORIGIN,))
    c = TestClient(create_app(reader, settings))
    assert c.get("/sites", headers=AUTH).status_code == 200
    assert c.get("/health", headers={"Origin": ORIGIN}).headers["access-control-allow-origin"] == ORIGIN


def test_openapi_documents_the_query_parameters(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    params = {p["name"]: p for p in doc["paths"]["/timeseries/query"]["get"]["parameters"]}
    for name in ("site_name", "point_names", "start_time", "end_time", "interval", "max_points", "format"):
        assert params[name].get("description"), name
    assert "bearer" in str(doc["components"]["securitySchemes"]).lower()
