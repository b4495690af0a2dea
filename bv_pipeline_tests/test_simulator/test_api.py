"""The in-process API: every endpoint and error status, wire quirks, pagination and aggregation."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import httpx
import polars as pl
import pytest

from bv_pipeline.simulator import IN_PROCESS_BASE_URL, AceSimulator, FaultConfig, SimulatorConfig
from bv_pipeline.simulator.app import PAGE_SIZE_CHOICES, PER_PAGE_CHOICES
from bv_pipeline.storage.samples import SAMPLE_SCHEMA
from bv_pipeline_tests.fixtures.ace import ACE_AUTH_HEADERS, ACE_TEST_NOW_MS, ACE_TEST_POINTS, fixed_clock

from .helpers import day_ms, decode_cursor, iso, samples_to_table, walk_pages, wire_time_ms

TS = "/sites/demo/timeseries/paginated"
WIRE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}000)?")


def _client(sim: AceSimulator, headers: dict[str, str] | None = None) -> httpx.Client:
    return httpx.Client(
        transport=sim.transport(),
        base_url=IN_PROCESS_BASE_URL,
        headers=ACE_AUTH_HEADERS if headers is None else headers,
    )


def _ts(client: httpx.Client, start_ms: int, end_ms: int, **params: Any) -> httpx.Response:
    return client.get(TS, params={"start_time": iso(start_ms), "end_time": iso(end_ms), **params})


# ---------------------------------------------------------------- sites and points


def test_list_sites_envelope_and_paging() -> None:
    sim = AceSimulator(
        SimulatorConfig(sites=("demo", "annex", "plant-3"), points=5), clock=fixed_clock(ACE_TEST_NOW_MS)
    )
    with _client(sim) as client:
        body = client.get("/sites/").json()
        assert body["page"] == 1 and body["per_page"] == 10 and body["total"] == 3 and body["pages"] == 1
        assert [s["name"] for s in body["items"]] == ["demo", "annex", "plant-3"]
        site = body["items"][0]
        assert set(site) >= {
            "id",
            "name",
            "client",
            "nice_name",
            "geo_location",
            "latitude",
            "longitude",
            "archived",
        }
        assert re.fullmatch(r"0101000000[0-9a-f]{32}", site["geo_location"])
        page2 = client.get("/sites", params={"page": 2, "per_page": 2}).json()
        assert [s["name"] for s in page2["items"]] == ["plant-3"] and page2["pages"] == 2
        assert client.get("/sites/", params={"page": 3, "per_page": 2}).json()["items"] == []
        assert client.get("/sites/annex").json() == body["items"][1]


@pytest.mark.parametrize(
    ("params", "field"), [({"per_page": 7}, "per_page"), ({"page": "x"}, "page"), ({"page": 0}, "page")]
)
def test_list_sites_rejects_bad_paging(ace_client: httpx.Client, params: dict[str, Any], field: str) -> None:
    r = ace_client.get("/sites/", params=params)
    assert r.status_code == 400
    body = r.json()
    assert body["message"] == "Input payload validation failed" and set(body["errors"]) == {field}


def test_unknown_site_is_403_with_null_body_and_its_points_404(ace_client: httpx.Client) -> None:
    r = ace_client.get("/sites/nowhere")
    assert r.status_code == 403
    body = r.json()
    assert body and all(v is None for v in body.values()) and "name" in body
    assert (
        ace_client.get(
            "/sites/nowhere/timeseries/paginated", params={"start_time": iso(0), "end_time": iso(1)}
        ).status_code
        == 403
    )
    r = ace_client.get("/sites/nowhere/configured_points")
    assert r.status_code == 404 and "message" in r.json()


def test_configured_points_pages_cover_every_point(
    ace_client: httpx.Client, ace_simulator: AceSimulator
) -> None:
    first = ace_client.get("/sites/demo/configured_points").json()
    assert first["per_page"] == 10 and first["total"] == ACE_TEST_POINTS and first["pages"] == 4
    names: list[str] = []
    for page in range(1, 4):
        body = ace_client.get("/sites/demo/configured_points", params={"page": page, "per_page": 20}).json()
        names += [p["name"] for p in body["items"]]
    assert names == [p.name for p in ace_simulator.points("demo")]
    by_name = {p.name: p for p in ace_simulator.points("demo")}
    for item in ace_client.get("/sites/demo/configured_points", params={"per_page": 100}).json()["items"]:
        sim_point = by_name[item["name"]]
        assert item["kv_tags"]["kind"] == sim_point.kind
        assert item["kv_tags"].get("unit") == sim_point.unit
        assert item["marker_tags"] == list(sim_point.marker_tags)
        assert item["collect_enabled"] is True and item["collect_interval"] == 60
        assert item["client"] == "bvsim" and item["site"] == "demo"
        assert isinstance(item["bacnet_data"]["present_value"], str)
        assert WIRE_TIME.fullmatch(item["created"]) and WIRE_TIME.fullmatch(item["updated"])
    assert ace_client.get("/sites/demo/configured_points", params={"per_page": 3}).status_code == 400
    assert ace_client.get("/sites/demo/points", params={"per_page": 2}).json()["items"][0]["name"] == names[0]


@pytest.mark.parametrize("per_page", PER_PAGE_CHOICES)
def test_every_per_page_choice_is_accepted(ace_client: httpx.Client, per_page: int) -> None:
    body = ace_client.get("/sites/demo/configured_points", params={"per_page": per_page}).json()
    assert len(body["items"]) == min(per_page, ACE_TEST_POINTS)


# ---------------------------------------------------------------- auth, routing


def test_auth_statuses() -> None:
    sim = AceSimulator(SimulatorConfig(points=5, api_key="right-key"), clock=fixed_clock(ACE_TEST_NOW_MS))
    with _client(sim, {}) as client:
        assert client.get("/sites/").status_code == 401
        assert client.get("/sites/", headers={"Authorization": "Bearer "}).status_code == 401
        assert client.get("/sites/", headers={"Authorization": "Basic right-key"}).status_code == 401
        wrong = client.get("/sites/", headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 500 and wrong.json() == {"message": "An unhandled exception occurred."}
        assert client.get("/sites/", headers={"Authorization": "Bearer right-key"}).status_code == 200
    with _client(AceSimulator(SimulatorConfig(points=5)), {"Authorization": "Bearer anything"}) as client:
        assert client.get("/sites/").status_code == 200


def test_unknown_routes_and_methods(ace_client: httpx.Client) -> None:
    for path in ("/nope", "/sites/demo/weather", "/sites/demo/timeseries", "/sites/demo/configured_points/x"):
        r = ace_client.get(path)
        assert r.status_code == 404 and "message" in r.json()
    r = ace_client.get("http://ace-simulator.invalid/other/sites/")
    assert r.status_code == 404
    assert ace_client.post("/sites/", json={}).status_code == 405


# ---------------------------------------------------------------- timeseries parameters


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"end_time": "2026-08-07T01:00:00"}, "start_time"),
        ({"start_time": "2026-08-07T00:00:00"}, "end_time"),
        ({"start_time": "yesterday", "end_time": "2026-08-07T01:00:00"}, "start_time"),
        ({"start_time": "2026-08-07T00:00:00", "end_time": "2026-13-07T01:00:00"}, "end_time"),
        ({"start_time": "2026-08-07T02:00:00", "end_time": "2026-08-07T01:00:00"}, "start_time"),
        (
            {"start_time": "2026-08-07T00:00:00", "end_time": "2026-08-07T01:00:00", "page_size": 20},
            "page_size",
        ),
        (
            {"start_time": "2026-08-07T00:00:00", "end_time": "2026-08-07T01:00:00", "page_size": "ten"},
            "page_size",
        ),
        (
            {"start_time": "2026-08-07T00:00:00", "end_time": "2026-08-07T01:00:00", "raw_data": "yes"},
            "raw_data",
        ),
        ({"start_time": "2026-08-07T00:00:00", "end_time": "2026-08-07T01:00:00", "cursor": "%%%"}, "cursor"),
        (
            {
                "start_time": "2026-08-07T00:00:00",
                "end_time": "2026-08-07T01:00:00",
                "cursor": base64.b64encode(b"not json").decode(),
            },
            "cursor",
        ),
        (
            {
                "start_time": "2026-08-07T00:00:00",
                "end_time": "2026-08-07T01:00:00",
                "cursor": base64.b64encode(b'{"offset": -1, "timestamp": "2026-08-07T00:00:00"}').decode(),
            },
            "cursor",
        ),
        (
            {
                "start_time": "2026-08-07T00:00:00",
                "end_time": "2026-08-07T01:00:00",
                "cursor": base64.b64encode(b'{"offset": 3}').decode(),
            },
            "cursor",
        ),
    ],
)
def test_timeseries_rejects_bad_parameters(
    ace_client: httpx.Client, params: dict[str, Any], field: str
) -> None:
    r = ace_client.get(TS, params=params)
    assert r.status_code == 400, r.text
    assert r.json() == {
        "message": "Input payload validation failed",
        "errors": {field: r.json()["errors"][field]},
    }


@pytest.mark.parametrize("page_size", PAGE_SIZE_CHOICES)
def test_every_page_size_choice_is_accepted(
    ace_client: httpx.Client, ace_simulator: AceSimulator, page_size: int
) -> None:
    total = ace_simulator.truth("demo", day_ms(0), day_ms(10)).num_rows
    body = _ts(ace_client, day_ms(0), day_ms(10), page_size=page_size, raw_data="true").json()
    assert len(body["point_samples"]) == min(page_size, total)
    assert body["has_more"] is (page_size < total)


@pytest.mark.parametrize(
    ("text", "raw"),
    [("true", True), ("True", True), ("1", True), ("false", False), ("False", False), ("0", False)],
)
def test_raw_data_forms(ace_client: httpx.Client, text: str, raw: bool) -> None:
    body = _ts(ace_client, day_ms(0), day_ms(10), raw_data=text, page_size=1000).json()
    times = {s["time"] for s in body["point_samples"]}
    # Aggregated rows sit on bucket starts; raw rows carry poll phase and jitter.
    assert (times == {"2026-08-07T00:00:00", "2026-08-07T00:05:00"}) is (not raw)


def test_default_is_aggregated_with_page_size_10000(ace_client: httpx.Client) -> None:
    body = ace_client.get(TS, params={"start_time": iso(day_ms(0)), "end_time": iso(day_ms(24 * 60))}).json()
    assert len(body["point_samples"]) == 10000 and body["has_more"] is True
    assert {s["time"][-5:] for s in body["point_samples"]} <= {f"{m}0:00" for m in range(6)} | {
        f"{m}5:00" for m in range(6)
    }


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-08-07T00:10:00", "2026-08-07T00:40:00"),
        ("2026-08-07T00:10:00Z", "2026-08-07T00:40:00Z"),
        ("2026-08-07T00:10:00+00:00", "2026-08-07T00:40:00+00:00"),
        ("2026-08-07T00:10:00.000", "2026-08-07T00:40:00.000000Z"),
        ("2026-08-07T02:10:00+02:00", "2026-08-06T19:40:00-05:00"),
        ("2026-08-07 00:10:00", "2026-08-07T00:40"),
    ],
)
def test_query_time_forms_select_the_same_window(ace_client: httpx.Client, start: str, end: str) -> None:
    reference = _ts(ace_client, day_ms(10), day_ms(40), raw_data="true", page_size=5000).content
    r = ace_client.get(
        TS, params={"start_time": start, "end_time": end, "raw_data": "true", "page_size": 5000}
    )
    assert r.status_code == 200 and r.content == reference


def test_query_time_fraction_is_honoured_to_the_millisecond(
    ace_client: httpx.Client, ace_simulator: AceSimulator
) -> None:
    truth = ace_simulator.truth("demo", day_ms(0), day_ms(5))
    ts = next(t for t in truth["ts_ms"].to_pylist() if t % 1000)
    millis = iso(ts)[:-3] + "Z"  # "2026-08-07T00:00:04.208Z": a 3-digit fraction with a Z suffix
    for start in (iso(ts), millis):
        body = ace_client.get(
            TS, params={"start_time": start, "end_time": iso(day_ms(5)), "raw_data": 1}
        ).json()
        times = {wire_time_ms(s["time"]) for s in body["point_samples"]}
        assert ts in times and min(times) == ts
    after = ace_client.get(
        TS, params={"start_time": iso(ts + 1), "end_time": iso(day_ms(5)), "raw_data": 1}
    ).json()
    assert ts not in {wire_time_ms(s["time"]) for s in after["point_samples"]}


def test_empty_window(ace_client: httpx.Client) -> None:
    for start, end in ((day_ms(7), day_ms(7)), (day_ms(7.1), day_ms(7.5))):
        body = _ts(ace_client, start, end, raw_data="true").json()
        assert body == {"point_samples": [], "next_cursor": None, "has_more": False}
    # Long after the simulator's clock nothing has been measured yet.
    body = _ts(ace_client, ACE_TEST_NOW_MS + 3_600_000, ACE_TEST_NOW_MS + 7_200_000, raw_data="true").json()
    assert body == {"point_samples": [], "next_cursor": None, "has_more": False}


# ---------------------------------------------------------------- wire form and order


def test_wire_form_values_times_and_order(ace_client: httpx.Client, ace_simulator: AceSimulator) -> None:
    raw = ace_client.get(
        TS,
        params={
            "start_time": iso(day_ms(3)),
            "end_time": iso(day_ms(17)),
            "raw_data": "true",
            "page_size": 5000,
        },
    )
    assert raw.headers["content-type"] == "application/json"
    body = raw.json()
    assert list(body) == ["point_samples", "next_cursor", "has_more"]
    samples = body["point_samples"]
    assert all(list(s) == ["name", "value", "time"] for s in samples)
    assert all(isinstance(s["value"], str) for s in samples)
    for s in samples:
        assert WIRE_TIME.fullmatch(s["time"]), s["time"]
        assert s["time"].endswith("000") if "." in s["time"] else True
    assert any("." in s["time"] for s in samples)
    keys = [((wire_time_ms(s["time"]) // 300_000), s["name"], wire_time_ms(s["time"])) for s in samples]
    assert keys == sorted(keys)
    assert {k[0] for k in keys} == {
        day_ms(0) // 300_000 + b for b in range(4)
    }  # partial first and last buckets
    truth = ace_simulator.truth("demo", day_ms(3), day_ms(17))
    assert samples_to_table(samples).equals(truth)
    # float() of every numeric wire string is exactly the truth value, and enum labels come verbatim.
    by_key = {
        (p, t): (v, x)
        for p, t, v, x in zip(*(truth[c].to_pylist() for c in SAMPLE_SCHEMA.names), strict=True)
    }
    for s in samples:
        value, text = by_key[(s["name"], wire_time_ms(s["time"]))]
        assert (float(s["value"]) == value) if value is not None else (s["value"] == text)


# ---------------------------------------------------------------- pagination


@pytest.mark.parametrize("page_size", [3, 10, 50, 100, 1000, 10000])
def test_walking_pages_reconstructs_truth_raw(
    ace_client: httpx.Client, ace_simulator: AceSimulator, page_size: int
) -> None:
    start, end = day_ms(2.5), (day_ms(27.5) if page_size >= 10 else day_ms(9))
    samples, pages = walk_pages(ace_client, "demo", start, end, page_size=page_size)
    assert all(len(p["point_samples"]) == page_size for p in pages[:-1])
    assert 0 < len(pages[-1]["point_samples"]) <= page_size
    table = samples_to_table(samples)
    assert table.num_rows == len(samples)  # no duplicates
    assert table.equals(ace_simulator.truth("demo", start, end))


def test_cursor_points_into_the_bucket_of_the_last_row(ace_client: httpx.Client) -> None:
    samples, pages = walk_pages(ace_client, "demo", day_ms(0), day_ms(15), page_size=50)
    consumed: dict[int, int] = {}
    for page in pages:
        for s in page["point_samples"]:
            bucket = wire_time_ms(s["time"]) // 300_000 * 300_000
            consumed[bucket] = consumed.get(bucket, 0) + 1
        if page["next_cursor"]:
            cursor = decode_cursor(page["next_cursor"])
            assert set(cursor) == {"offset", "timestamp"}
            last = wire_time_ms(page["point_samples"][-1]["time"]) // 300_000 * 300_000
            assert wire_time_ms(cursor["timestamp"]) == last and cursor["timestamp"].endswith(":00")
            assert cursor["offset"] == consumed[last]
    assert len(samples) == sum(consumed.values())


def test_cursor_stall_fault_repeats_the_cursor_inside_one_bucket() -> None:
    config = SimulatorConfig(points=ACE_TEST_POINTS, faults=FaultConfig(cursor_stall=True))
    sim = AceSimulator(config, clock=fixed_clock(ACE_TEST_NOW_MS))
    with _client(sim) as client:
        first = _ts(client, day_ms(0), day_ms(15), raw_data="true", page_size=50).json()
        second = _ts(
            client, day_ms(0), day_ms(15), raw_data="true", page_size=50, cursor=first["next_cursor"]
        ).json()
        third = _ts(
            client, day_ms(0), day_ms(15), raw_data="true", page_size=50, cursor=second["next_cursor"]
        ).json()
    assert decode_cursor(first["next_cursor"]) == {"offset": 50, "timestamp": "2026-08-07T00:00:00"}
    assert second["next_cursor"] == first["next_cursor"]  # the real bug: a naive loop never ends
    assert third["point_samples"] == second["point_samples"] != first["point_samples"]
    assert sim.fault_counts["cursor_stall"] == 2
    # With pages at least as large as a bucket, every page ends in a later bucket and the bug is harmless.
    with _client(sim) as client:
        samples, _ = walk_pages(client, "demo", day_ms(0), day_ms(15), page_size=1000)
    assert samples_to_table(samples).equals(sim.truth("demo", day_ms(0), day_ms(15)))


def test_cursor_may_come_from_a_bucket_before_the_window(ace_client: httpx.Client) -> None:
    cursor = base64.b64encode(json.dumps({"offset": 0, "timestamp": "2026-08-06T00:00:00"}).encode()).decode()
    with_cursor = _ts(ace_client, day_ms(0), day_ms(10), raw_data="true", page_size=50, cursor=cursor).content
    assert with_cursor == _ts(ace_client, day_ms(0), day_ms(10), raw_data="true", page_size=50).content
    urlsafe = base64.urlsafe_b64encode(b'{"offset":5,"timestamp":"2026-08-07T00:05:00"}').decode().rstrip("=")
    assert _ts(ace_client, day_ms(0), day_ms(10), raw_data="true", cursor=urlsafe).status_code == 200


# ---------------------------------------------------------------- aggregation


def test_aggregated_pages_match_a_direct_polars_computation(
    ace_client: httpx.Client, ace_simulator: AceSimulator
) -> None:
    start, end = (
        day_ms(2),
        day_ms(33),
    )  # buckets starting at 00:05 .. 00:30, each aggregated over its whole span
    samples, _ = walk_pages(ace_client, "demo", start, end, page_size=100, raw=False)
    served = samples_to_table(samples)
    assert served.equals(ace_simulator.truth_aggregated("demo", start, end))
    raw = pl.from_arrow(ace_simulator.truth("demo", day_ms(5), day_ms(35)))
    assert isinstance(raw, pl.DataFrame)
    expected = (
        raw.with_columns(bucket=pl.col("ts_ms") // 300_000 * 300_000)
        .group_by("point", "bucket")
        .agg(mean=pl.col("value").mean(), last=pl.col("value_text").sort_by("ts_ms").last())
        .sort("point", "bucket")
    )
    got = pl.from_arrow(served)
    assert isinstance(got, pl.DataFrame)
    assert got["point"].to_list() == expected["point"].to_list()
    assert got["ts_ms"].to_list() == expected["bucket"].to_list()
    assert got["value_text"].to_list() == expected["last"].to_list()
    for value, mean in zip(got["value"].to_list(), expected["mean"].to_list(), strict=True):
        assert (value is None and mean is None) or value == pytest.approx(mean, rel=1e-12, abs=1e-12)
    assert {s["time"] for s in samples} == {iso(day_ms(m)) for m in range(5, 35, 5)}


def test_aggregates_of_the_current_bucket_grow_with_the_clock() -> None:
    now = [day_ms(12.5)]
    sim = AceSimulator(SimulatorConfig(points=ACE_TEST_POINTS), clock=lambda: now[0] / 1000)
    with _client(sim) as client:
        partial, _ = walk_pages(client, "demo", day_ms(0), day_ms(15), page_size=100, raw=False)
        assert samples_to_table(partial).equals(sim.truth_aggregated("demo", day_ms(0), day_ms(15)))
        assert {s["time"] for s in partial} == {iso(day_ms(m)) for m in (0, 5, 10)}  # 00:10 is still filling
        now[0] = day_ms(20)
        final, _ = walk_pages(client, "demo", day_ms(0), day_ms(15), page_size=100, raw=False)
    current = {s["name"]: s["value"] for s in partial if s["time"] == iso(day_ms(10))}
    later = {s["name"]: s["value"] for s in final if s["time"] == iso(day_ms(10))}
    assert current.keys() == later.keys() and current != later
    assert [s for s in partial if s["time"] != iso(day_ms(10))] == [
        s for s in final if s["time"] != iso(day_ms(10))
    ]


def test_site_names_with_a_slash_are_percent_encoded() -> None:
    sim = AceSimulator(SimulatorConfig(sites=("acme/north",), points=5), clock=fixed_clock(ACE_TEST_NOW_MS))
    with _client(sim) as client:
        assert client.get("/sites/acme%2Fnorth").json()["name"] == "acme/north"
        assert client.get("/sites/acme%2Fnorth/configured_points").json()["total"] == 5
        r = client.get(
            "/sites/acme%2Fnorth/timeseries/paginated",
            params={"start_time": iso(day_ms(0)), "end_time": iso(day_ms(5))},
        )
        assert r.status_code == 200 and len(r.json()["point_samples"]) == 5
        assert client.get("/sites/acme/north").status_code == 404
