"""POST /exports and GET /exports/...: validation, ownership, limits, progress, download, the 413 link."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import polars as pl
import pytest
from fastapi.testclient import TestClient

from bv_pipeline.api.export_launcher import GraphQLExportLauncher, LaunchError
from bv_pipeline.api.reader import TimeseriesReader
from bv_pipeline.api.web.app import create_app
from bv_pipeline.api.web.config import ApiConfig
from bv_pipeline.storage.exports import ExportStatus, owner_of, status_key
from bv_pipeline.storage.samples import day_bounds_ms
from bv_pipeline_tests.test_api import _data as D
from bv_pipeline_tests.test_api._export_launcher import RecordingLauncher

NOW_MS = day_bounds_ms(D.DAYS[-1])[1] + 86_400_000


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> D.Dataset:
    return D.build(tmp_path_factory.mktemp("exports_api"))


@pytest.fixture(scope="module")
def reader(ds: D.Dataset) -> Iterator[TimeseriesReader]:
    r = TimeseriesReader(ds.hot, ds.cold, max_workers=2)
    yield r
    r.close()


@dataclass
class Api:
    client: TestClient
    launcher: RecordingLauncher
    tokens: tuple[str, str]
    clock: list[float]

    def auth(self, which: int = 0) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[which]}"}

    def post(self, body: dict[str, Any], which: int = 0) -> Any:
        return self.client.post("/exports", json=body, headers=self.auth(which))

    def get(self, path: str, which: int = 0) -> Any:
        return self.client.get(path, headers=self.auth(which), follow_redirects=False)


def make_api(ds: D.Dataset, reader: TimeseriesReader, **overrides: Any) -> Api:
    tokens = (f"tok-{uuid.uuid4().hex}", f"tok-{uuid.uuid4().hex}")  # fresh owners: no exports yet
    launcher = RecordingLauncher(str(ds.root / "hot.sqlite3"), str(ds.root / "cold"), NOW_MS)
    cfg = ApiConfig(
        **{"api_tokens": tokens, "rate_limit_per_s": 1000.0, "rate_limit_burst": 1000, **overrides}
    )
    clock = [NOW_MS / 1000]
    app = create_app(reader, cfg, now=lambda: clock[0], export_launcher=launcher)
    return Api(TestClient(app), launcher, tokens, clock)


@pytest.fixture
def api(ds: D.Dataset, reader: TimeseriesReader) -> Api:
    return make_api(ds, reader)


def body(**extra: Any) -> dict[str, Any]:
    return {
        "site_name": D.SITE,
        "point_names": [D.TEMP, D.MODE],
        "start_time": day_bounds_ms(D.DAYS[0])[0],
        "end_time": day_bounds_ms(D.DAYS[-1])[1] - 1,
        **extra,
    }


def test_export_lifecycle_queued_then_succeeded_then_downloaded(api: Api, ds: D.Dataset) -> None:
    created = api.post(body(format="csv"))
    assert created.status_code == 202, created.text
    ex = created.json()
    assert created.headers["location"] == f"/exports/{ex['export_id']}" == ex["links"]["self"]
    assert ex["state"] == "queued" and ex["rows"] is None and ex["run_id"] == api.launcher.launched[0][0]
    assert ex["run_url"] == f"http://dagster.test/runs/{ex['run_id']}"
    assert ex["request"] == body(format="csv", interval=None)
    assert ex["progress"]["estimated_rows"] == 2 * 10 * 288
    run_config, tags = api.launcher.launched[0][1], api.launcher.launched[0][2]
    assert run_config["ops"]["export_timeseries"]["config"]["export_id"] == ex["export_id"]
    assert tags == {"bv/export": ex["export_id"], "bv/site": D.SITE}

    queued = api.get(f"/exports/{ex['export_id']}").json()
    assert queued["state"] == "queued" and "download" not in queued
    assert api.get(f"/exports/{ex['export_id']}/download").status_code == 409

    api.launcher.run_pending()
    done = api.get(f"/exports/{ex['export_id']}").json()
    want = ds.truth.filter(pl.col("point").is_in([D.TEMP, D.MODE]))
    assert done["state"] == "succeeded" and done["rows"] == want.height
    assert done["progress"]["chunks_done"] == done["progress"]["chunks_total"] >= 1
    assert done["download"]["url"] == f"/exports/{ex['export_id']}/download"
    assert done["download"]["media_type"].startswith("text/csv")
    got = api.get(done["download"]["url"])
    assert got.status_code == 200 and len(got.content) == done["bytes"]
    assert done["download"]["filename"] in got.headers["content-disposition"]
    frame = pl.read_csv(
        io.BytesIO(got.content), schema_overrides={"value": pl.Float64, "value_text": pl.String}
    )
    expected = want.sort("ts_ms", "point")
    assert frame["point_name"].to_list() == expected["point"].to_list()
    assert frame["timestamp"].to_list() == expected["ts_ms"].to_list()
    assert frame["value"].equals(expected["value"], null_equal=True)
    assert frame["value_text"].to_list() == expected["value_text"].to_list()
    listed = api.get("/exports").json()["exports"]
    assert [e["export_id"] for e in listed] == [ex["export_id"]]
    data_key = next(
        k for k in api.client.app.state.exports.store.list(f"exports/{_owner(api)}/") if "/data." in k
    )
    api.client.app.state.exports.store.delete(data_key)  # gone behind the API's back
    gone = api.get(f"/exports/{ex['export_id']}").json()
    assert gone["state"] == "succeeded" and "download" not in gone and "gone" in gone["error"]
    assert api.get(f"/exports/{ex['export_id']}/download").status_code == 410


def test_another_token_cannot_see_or_download_an_export(api: Api) -> None:
    ex = api.post(body()).json()
    api.launcher.run_pending()
    for path in (f"/exports/{ex['export_id']}", f"/exports/{ex['export_id']}/download"):
        other = api.get(path, which=1)
        assert other.status_code == 404 and other.json()["error"] == "unknown_export"
    assert api.get("/exports", which=1).json() == {"exports": []}
    assert api.client.get(f"/exports/{ex['export_id']}").status_code == 401
    assert api.get("/exports/not-an-id").status_code == 400


def test_active_exports_are_limited_per_token(ds: D.Dataset, reader: TimeseriesReader) -> None:
    api = make_api(ds, reader, export_max_active_per_token=1)
    first = api.post(body())
    assert first.status_code == 202
    refused = api.post(body())
    assert refused.status_code == 429 and refused.json()["error"] == "too_many_active_exports"
    assert refused.json()["active_exports"] == [first.json()["export_id"]]
    assert "retry-after" in refused.headers
    assert api.post(body(), which=1).status_code == 202  # another token has its own allowance
    api.launcher.run_pending()
    assert api.post(body()).status_code == 202  # the first finished


def test_a_run_that_died_is_reported_failed(api: Api) -> None:
    ex = api.post(body()).json()
    api.launcher.states[ex["run_id"]] = "CANCELED"  # canceled while queued: it never wrote a status
    got = api.get(f"/exports/{ex['export_id']}").json()
    assert got["state"] == "failed" and "ended CANCELED" in got["error"]
    stored = ExportStatus.from_json(
        api.client.app.state.exports.store.get(status_key(owner_of(_key(api.tokens[0])), ex["export_id"]))
    )
    assert stored.state == "failed"
    assert api.post(body()).status_code == 202  # a failed export no longer counts as active


def test_an_export_never_launched_stops_counting_as_active(api: Api) -> None:
    from bv_pipeline.storage.exports import ExportSpec, new_export_id

    store = api.client.app.state.exports.store
    status = ExportStatus(
        export_id=new_export_id(NOW_MS),
        owner=_owner(api),
        state="queued",
        spec=ExportSpec(D.SITE, (D.TEMP,), 0, 86_400_000, None, "csv"),
        created_ms=NOW_MS,
        updated_ms=NOW_MS,
        expires_ms=NOW_MS + 3_600_000,
    )
    store.put(status.status_key, status.to_json())  # as if the API died before launching (no run.json)
    assert api.get(f"/exports/{status.export_id}").json()["state"] == "queued"
    api.clock[0] += 11 * 60
    got = api.get(f"/exports/{status.export_id}").json()
    assert got["state"] == "failed" and got["error"] == "the export was never launched"


def _owner(api: Api) -> str:
    return owner_of(_key(api.tokens[0]))


def _key(token: str) -> str:
    import hashlib

    return hashlib.sha256(token.encode()).hexdigest()


def test_launch_failure_is_503_and_the_export_is_failed(api: Api) -> None:
    api.launcher.fail_with = "connection refused"
    r = api.post(body())
    assert r.status_code == 503 and r.json()["error"] == "dagster_unavailable"
    assert r.headers["retry-after"] == "30"
    got = api.get(f"/exports/{r.json()['export_id']}").json()
    assert got["state"] == "failed" and "connection refused" in got["error"]


def test_expired_exports_are_gone_for_download(api: Api) -> None:
    ex = api.post(body(format="parquet")).json()
    api.launcher.run_pending()
    assert api.get(f"/exports/{ex['export_id']}/download").status_code == 200
    api.clock[0] += 169 * 3600  # past the default 168 h TTL
    r = api.get(f"/exports/{ex['export_id']}/download")
    assert r.status_code == 410 and r.json()["error"] == "export_expired"
    assert "download" not in api.get(f"/exports/{ex['export_id']}").json()


@pytest.mark.parametrize(
    ("change", "status", "error"),
    [
        ({"format": "xlsx"}, 400, "invalid_parameter"),
        ({"interval": "7min"}, 400, "invalid_parameter"),
        ({"point_names": []}, 400, "invalid_parameter"),
        ({"site_name": "Not A Slug"}, 400, "invalid_parameter"),
        ({"surprise": 1}, 400, "invalid_parameter"),
        ({"start_time": -1}, 400, "invalid_parameter"),
        ({"start_time": 10, "end_time": 5}, 400, "invalid_time_range"),
        ({"start_time": 0, "end_time": 400 * 86_400_000}, 400, "range_too_long"),
        ({"point_names": ["No.Such.Point", D.TEMP]}, 400, "unknown_points"),
        ({"point_names": ["a,b"]}, 400, "invalid_parameter"),
        ({"point_names": ["  "]}, 400, "invalid_parameter"),
        ({"site_name": "no_such_site"}, 404, "unknown_site"),
    ],
)
def test_invalid_requests_get_clear_json_errors(
    api: Api, change: dict[str, Any], status: int, error: str
) -> None:
    r = api.post(body(**change))
    assert r.status_code == status, r.text
    assert r.json()["error"] == error
    assert api.launcher.launched == []


def test_missing_fields_and_bad_json_name_the_problem(api: Api) -> None:
    r = api.post({"site_name": D.SITE})
    assert r.status_code == 400
    assert {p["parameter"] for p in r.json()["detail"]} == {"point_names", "start_time", "end_time"}
    raw = api.client.post(
        "/exports", content=b"{not json", headers={**api.auth(), "Content-Type": "application/json"}
    )
    assert raw.status_code == 400 and raw.json()["error"] == "invalid_parameter"


def test_limits_on_points_and_size(ds: D.Dataset, reader: TimeseriesReader) -> None:
    api = make_api(ds, reader, max_points_per_query=1, export_max_samples=1000)
    r = api.post(body())
    assert r.status_code == 400 and r.json()["error"] == "too_many_points"
    r = api.post(body(point_names=[D.TEMP]))
    assert r.status_code == 413 and r.json()["error"] == "export_too_large"
    assert r.json()["estimated_samples"] == 2880 and r.json()["budget"] == 1000
    assert api.post(body(point_names=[D.TEMP], interval="1h")).status_code == 202  # 240 hourly rows


def test_a_refused_query_links_to_the_equivalent_export(ds: D.Dataset, reader: TimeseriesReader) -> None:
    api = make_api(ds, reader, max_raw_samples=100)
    params = {
        "site_name": D.SITE,
        "point_names": f"{D.TEMP},{D.DAMPER}",
        "start_time": day_bounds_ms(D.DAYS[0])[0],
        "end_time": day_bounds_ms(D.DAYS[2])[1] - 1,
        "interval": "5min",
    }
    refused = api.client.get("/timeseries/query", params=params, headers=api.auth())
    assert refused.status_code == 413
    link = refused.json()["links"]["export"]
    assert link["method"] == "POST" and link["href"] == "/exports"
    assert link["body"] == {
        "site_name": D.SITE,
        "point_names": [D.TEMP, D.DAMPER],
        "start_time": params["start_time"],
        "end_time": params["end_time"],
        "interval": "5min",
        "format": "csv",
    }
    created = api.post(link["body"])
    assert created.status_code == 202 and created.json()["request"] == link["body"]
    api.launcher.run_pending()
    done = api.get(f"/exports/{created.json()['export_id']}").json()
    answer = api.client.get("/timeseries/query", params={**params, "format": "columnar"}, headers=api.auth())
    assert answer.status_code == 413  # still too big inline; the export holds every bucket
    inline = reader.query(
        D.SITE, [D.TEMP, D.DAMPER], params["start_time"], params["end_time"] + 1, interval="5min"
    )
    assert (
        done["state"] == "succeeded" and done["rows"] == inline.frame.height > 1500
    )  # 2 points x 3 days, gaps


def test_openapi_documents_the_export_endpoints(api: Api) -> None:
    doc = api.client.get("/openapi.json").json()
    post = doc["paths"]["/exports"]["post"]
    assert set(post["responses"]) >= {"202", "400", "401", "403", "404", "413", "429", "503"}
    assert "422" not in post["responses"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("ExportRequest")
    assert set(doc["paths"]["/exports/{export_id}"]["get"]["responses"]) >= {"200", "404"}
    assert {"200", "307", "409", "410"} <= set(
        doc["paths"]["/exports/{export_id}/download"]["get"]["responses"]
    )


def test_graphql_launcher_reads_its_url_and_fails_cleanly_when_dagster_is_down() -> None:
    launcher = GraphQLExportLauncher("https://dagster.example.com/ops/graphql")
    assert launcher.ui_url == "https://dagster.example.com/ops"
    assert launcher.run_url("abc") == "https://dagster.example.com/ops/runs/abc"
    with pytest.raises(ValueError):
        GraphQLExportLauncher("ftp://x")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    down = GraphQLExportLauncher(f"http://127.0.0.1:{port}/graphql", timeout_s=5)
    status = ExportStatus.from_json(
        ExportStatus(
            export_id="20260101T000000Z-0011223344556677",
            owner="0" * 32,
            state="queued",
            spec=_spec(),
            created_ms=0,
            updated_ms=0,
            expires_ms=1,
        ).to_json()
    )
    with pytest.raises(LaunchError, match="could not launch export_job"):
        down.launch(status, max_samples=None)
    assert down.run_state("abc") is None


def _spec() -> Any:
    from bv_pipeline.storage.exports import ExportSpec

    return ExportSpec(site=D.SITE, points=(D.TEMP,), start_ms=0, end_ms=1, interval=None, format="csv")


def test_on_s3_the_download_is_a_presigned_url(ds: D.Dataset, s3_bucket: Any) -> None:
    """With an R2/S3 cold tier the status carries a presigned URL and /download redirects to a fresh one."""
    import hashlib

    import httpx

    from bv_pipeline.resources.cold_store import ColdStoreResource
    from bv_pipeline.storage.exports import ExportSpec, new_export_id

    store = ColdStoreResource(
        r2_endpoint_url=s3_bucket.endpoint_url,
        r2_bucket=s3_bucket.bucket,
        r2_access_key_id=s3_bucket.access_key_id,
        r2_secret_access_key=s3_bucket.secret_access_key,
        region_name="us-east-1",
    ).get_store()
    s3_reader = TimeseriesReader(ds.hot, store, max_workers=2)
    try:
        api = make_api(ds, s3_reader)
        owner = owner_of(hashlib.sha256(api.tokens[0].encode()).hexdigest())
        status = ExportStatus(
            export_id=new_export_id(NOW_MS),
            owner=owner,
            state="succeeded",
            spec=ExportSpec(D.SITE, (D.TEMP,), 0, 86_400_000, None, "parquet"),
            created_ms=NOW_MS,
            updated_ms=NOW_MS,
            expires_ms=NOW_MS + 2 * 3_600_000,
            rows=3,
            bytes=11,
        )
        store.put(status.data_key, b"parquet!!!!")
        store.put(status.status_key, status.to_json())
        got = api.get(f"/exports/{status.export_id}").json()
        url = got["download"]["url"]
        assert url.startswith(s3_bucket.endpoint_url) and "Signature=" in url
        assert got["download"]["url_expires_at"] == "2025-03-12T01:00:00.000Z"  # one hour from now
        fetched = httpx.get(url, timeout=30)
        assert fetched.status_code == 200 and fetched.content == b"parquet!!!!"
        redirect = api.get(f"/exports/{status.export_id}/download")
        assert redirect.status_code == 307 and redirect.headers["location"].startswith(s3_bucket.endpoint_url)
        assert httpx.get(redirect.headers["location"], timeout=30).content == b"parquet!!!!"
        assert api.get(f"/exports/{status.export_id}", which=1).status_code == 404
    finally:
        s3_reader.close()
