"""Read-API observability: /metrics counters after real requests, gzip, JSON access log lines, and metrics
aggregated across worker processes (PROMETHEUS_MULTIPROC_DIR)."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from bv_pipeline.api.reader import TimeseriesReader
from bv_pipeline.api.service import ApiConfig, create_app
from bv_pipeline.api.web.access_log import ACCESS_LOGGER
from bv_pipeline.api.web.observability import SiteFreshness
from bv_pipeline.storage.samples import day_bounds_ms
from bv_pipeline_tests.test_api import _data as D

TOKEN = "observability-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW_S = dt.datetime(2025, 6, 1, tzinfo=dt.UTC).timestamp()
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    ds = D.build(tmp_path_factory.mktemp("observability"))
    reader = TimeseriesReader(ds.hot, ds.cold, max_workers=2)
    cfg = ApiConfig(api_tokens=(TOKEN,), rate_limit_per_s=1000.0, rate_limit_burst=1000)
    yield TestClient(create_app(reader, cfg, now=lambda: NOW_S))
    reader.close()


@pytest.fixture
def access_lines() -> Iterator[list[str]]:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger(ACCESS_LOGGER)
    handler = Collect()
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


def query_params(first: dt.date, last: dt.date) -> dict[str, str | int]:
    return {
        "site_name": D.SITE,
        "point_names": f"{D.TEMP},{D.METER}",
        "start_time": day_bounds_ms(first)[0],
        "end_time": day_bounds_ms(last)[1] - 1,
    }


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_count_requests_routes_errors_and_tiers(client: TestClient) -> None:
    before = scrape(client)
    answers = [
        client.get("/timeseries/query", params=query_params(D.DAYS[2], D.DAYS[8]), headers=AUTH)
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [200, 200]
    assert client.get("/timeseries/query", params=query_params(D.DAYS[2], D.DAYS[8])).status_code == 401
    assert client.get("/wp-login.php").status_code == 404
    assert client.get(f"/sites/{D.SITE}/points", headers=AUTH).status_code == 200
    after = scrape(client)

    route = "/timeseries/query"
    assert delta(before, after, "bv_api_requests_total", route=route, method="GET", status="200") == 2
    assert delta(before, after, "bv_api_requests_total", route=route, method="GET", status="401") == 1
    assert delta(before, after, "bv_api_requests_total", route="unmatched", method="GET", status="404") == 1
    points_route = "/sites/{site}/points"
    assert delta(before, after, "bv_api_requests_total", route=points_route, method="GET", status="200") == 1
    assert delta(before, after, "bv_api_request_duration_seconds_count", route=route) == 3
    assert delta(before, after, "bv_api_errors_total", route=route, status_class="4xx") == 1
    assert delta(before, after, "bv_api_errors_total", route="unmatched", status_class="4xx") == 1
    meta = answers[0].json()["metadata"]
    assert meta["hot_samples"] > 0 and meta["cold_samples"] > 0
    assert delta(before, after, "bv_api_query_samples_total", tier="hot") == 2 * meta["hot_samples"]
    assert delta(before, after, "bv_api_query_samples_total", tier="cold") == 2 * meta["cold_samples"]
    # Days 2..8: D2, D3 (archived, deleted from hot) and D6 (backfilled to cold) from cold; D4 (archived but still
    # in hot: hot wins), D5 (missed by archival), D7 and D8 from hot.
    assert delta(before, after, "bv_api_query_days_total", source="hot") == 2 * 4
    assert delta(before, after, "bv_api_query_days_total", source="cold") == 2 * 3
    assert delta(before, after, "bv_api_cold_objects_read_total") > 0
    assert delta(before, after, "bv_api_cold_bytes_fetched_total") > 0
    # The second identical query found the first one's footers and row groups in the cache.
    assert delta(before, after, "bv_api_cold_cache_lookups_total", result="hit") > 0


def test_gzip_when_accepted_identity_otherwise(client: TestClient, access_lines: list[str]) -> None:
    params = query_params(D.DAYS[7], D.DAYS[9])
    plain = client.get("/timeseries/query", params=params, headers={**AUTH, "Accept-Encoding": "identity"})
    zipped = client.get("/timeseries/query", params=params, headers={**AUTH, "Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip" and "Accept-Encoding" in zipped.headers["vary"]
    assert zipped.json()["samples"] == plain.json()["samples"]  # httpx decoded the gzip body
    with client.stream(
        "GET", "/timeseries/query", params=params, headers={**AUTH, "Accept-Encoding": "gzip"}
    ) as r:
        raw = b"".join(r.iter_raw())
    # X-Query-Time-Ms and query_time_ms differ per request: compare the decoded samples.
    assert orjson.loads(gzip.decompress(raw))["samples"] == plain.json()["samples"]
    plain_bytes, zipped_bytes, streamed_bytes = (orjson.loads(line)["bytes"] for line in access_lines[-3:])
    assert plain_bytes == len(plain.content)
    assert streamed_bytes == len(raw) and zipped_bytes < plain_bytes / 3  # what went over the wire
    # Small answers are not compressed (not worth it).
    small = client.get("/health", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in small.headers


def test_access_log_lines_are_json_with_a_token_id(client: TestClient, access_lines: list[str]) -> None:
    client.get(f"/sites/{D.SITE}/points", headers=AUTH, params={"search": "temp"})
    client.get("/sites", headers={"Authorization": "Bearer wrong-token-000000000000"})
    client.get("/health")
    ok, forbidden, health = (orjson.loads(line) for line in access_lines[-3:])
    assert ok["method"] == "GET" and ok["path"] == f"/sites/{D.SITE}/points"
    assert ok["route"] == "/sites/{site}/points" and ok["status"] == 200
    assert ok["token_id"] == hashlib.sha256(TOKEN.encode()).hexdigest()[:12]
    assert isinstance(ok["duration_ms"], float) and ok["duration_ms"] >= 0 and ok["bytes"] > 0
    assert forbidden["status"] == 403 and forbidden["token_id"] != ok["token_id"]
    assert health["token_id"] is None and health["route"] == "/health"
    assert not any(TOKEN in line or "wrong-token" in line for line in access_lines)


COUNT_REQUESTS = """
import sys
from bv_pipeline.api.web import metrics
assert metrics.MULTIPROCESS
for _ in range(int(sys.argv[1])):
    metrics.observe_request("/timeseries/query", "GET", 200, 0.01)
"""
SCRAPE = """
from bv_pipeline.api.web import metrics
print(metrics.render()[0].decode())
"""


def test_metrics_add_up_across_worker_processes(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}

    def python(code: str, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    python(COUNT_REQUESTS, "3")
    python(COUNT_REQUESTS, "4")
    values = {
        (s.name, s.labels.get("status")): s.value
        for family in text_string_to_metric_families(python(SCRAPE))
        for s in family.samples
    }
    assert values[("bv_api_requests_total", "200")] == 7
    assert values[("bv_api_request_duration_seconds_count", None)] == 7
    assert len(list(tmp_path.glob("*.db"))) >= 2  # one value file per process and metric type


def test_health_freshness_is_cached_for_its_ttl(tmp_path: Path) -> None:
    """/health is polled often; the newest sample per site is read once per TTL (one D1 request per site)."""
    ds = D.build(tmp_path)
    calls: list[str] = []
    max_ts = ds.hot.max_ts

    class CountingHot:
        def __getattr__(self, name: str) -> object:
            return getattr(ds.hot, name)

        def max_ts(self, site: str) -> int | None:
            calls.append(site)
            return max_ts(site)

    reader = TimeseriesReader(CountingHot(), ds.cold)  # type: ignore[arg-type]
    clock = [100.0]
    freshness = SiteFreshness(ttl_s=30.0, monotonic=lambda: clock[0])
    try:
        first = freshness.report(reader, NOW_S)
        sites = len(calls)
        assert sites == len(reader.list_sites()) >= 1
        clock[0] += 29.0
        assert freshness.report(reader, NOW_S + 29)[D.SITE]["age_s"] == first[D.SITE]["age_s"] + 29
        assert len(calls) == sites  # cached
        clock[0] += 2.0
        freshness.report(reader, NOW_S + 31)
        assert len(calls) == 2 * sites  # refreshed after the TTL
        age = first[D.SITE]["age_s"]
        assert freshness.report(reader, NOW_S + 31)[D.SITE]["age_s"] == age + 31  # age follows the clock
    finally:
        reader.close()
