"""The HTTP server, the CLI, and compatibility with the public aceiot-models client."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
import pytest
from aceiot_models.api.client import APIClient
from aceiot_models.api.pagination import PaginatedResults
from aceiot_models.points import Point
from aceiot_models.sites import Site

from bv_pipeline.simulator import AceSimulator, SimulatorConfig, run_server
from bv_pipeline.simulator.server import build_parser, config_from_args
from bv_pipeline_tests.fixtures.ace import ACE_AUTH_HEADERS, ACE_TEST_API_KEY, ACE_TEST_POINTS

from .helpers import day_ms, iso, samples_to_table, walk_pages

REQUESTS: list[tuple[str, dict[str, Any] | None]] = [
    ("/sites/", None),
    ("/sites", {"per_page": 2}),
    ("/sites/demo", None),
    ("/sites/nowhere", None),
    ("/sites/demo/configured_points", {"per_page": 20, "page": 2}),
    ("/sites/demo/configured_points", {"per_page": 7}),
    (
        "/sites/demo/timeseries/paginated",
        {"start_time": iso(day_ms(0)), "end_time": iso(day_ms(20)), "raw_data": "true"},
    ),
    (
        "/sites/demo/timeseries/paginated",
        {"start_time": iso(day_ms(0)), "end_time": iso(day_ms(20)), "page_size": 50},
    ),
    ("/sites/demo/timeseries/paginated", {"start_time": "bad", "end_time": iso(day_ms(20))}),
    ("/nope", None),
]


def test_http_server_answers_like_the_in_process_transport(
    ace_server_url: str, ace_client: httpx.Client
) -> None:
    assert ace_server_url.startswith("http://127.0.0.1:") and ace_server_url.endswith("/api")
    with httpx.Client(base_url=ace_server_url, headers=ACE_AUTH_HEADERS) as http:
        for path, params in REQUESTS:
            over_http = http.get(path, params=params)
            in_process = ace_client.get(path, params=params)
            assert over_http.status_code == in_process.status_code, path
            assert over_http.content == in_process.content, path
            assert over_http.headers["content-type"] == "application/json"
        assert http.get("/sites/").status_code == 200
        assert httpx.get(f"{ace_server_url}/sites/").status_code == 401  # no key


def test_http_server_pages_reconstruct_truth(ace_server_url: str, ace_simulator: AceSimulator) -> None:
    with httpx.Client(base_url=ace_server_url, headers=ACE_AUTH_HEADERS) as http:
        samples, pages = walk_pages(http, "demo", day_ms(0), day_ms(60), page_size=500)
    assert len(pages) > 2
    assert samples_to_table(samples).equals(ace_simulator.truth("demo", day_ms(0), day_ms(60)))


def test_http_server_handles_concurrent_clients(ace_server_url: str, ace_simulator: AceSimulator) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def fetch(minute: int) -> bool:
        with httpx.Client(base_url=ace_server_url, headers=ACE_AUTH_HEADERS) as http:
            samples, _ = walk_pages(http, "demo", day_ms(minute), day_ms(minute + 30), page_size=100)
        return samples_to_table(samples).equals(
            ace_simulator.truth("demo", day_ms(minute), day_ms(minute + 30))
        )

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(fetch, [0, 7, 13, 0]))


def test_aceiot_models_client_reads_the_http_server(ace_server_url: str, ace_simulator: AceSimulator) -> None:
    client = APIClient(base_url=ace_server_url, api_key=ACE_TEST_API_KEY, timeout=10)
    sites = client.get_sites()  # GET /sites (no trailing slash), per_page=100
    assert [s["name"] for s in sites["items"]] == ["demo"]
    Site.model_validate(client.get_site("demo"))

    points = PaginatedResults(client.get_site_configured_points, per_page=10, site_name="demo").all_items()
    assert [p["name"] for p in points] == [p.name for p in ace_simulator.points("demo")]
    assert len(points) == ACE_TEST_POINTS
    for p in points:
        Point.model_validate(p)

    # get_site_timeseries_paginated follows next_cursor until has_more is false, with no stall guard. Against
    # the real server that loop never ends when a page starts and ends inside one 5-minute bucket. Here the
    # simulator runs without the cursor-stall fault and page_size (1000) exceeds the 200 rows of a bucket
    # (40 points x 5 samples), so every cursor advances and the loop ends after a few pages.
    start, end = day_ms(0), day_ms(45)
    data = client.get_site_timeseries_paginated(
        "demo", iso(start) + "Z", iso(end) + "Z", page_size=1000, raw_data=True
    )
    assert samples_to_table(data["point_samples"]).equals(ace_simulator.truth("demo", start, end))
    aggregated = client.get_site_timeseries_paginated(
        "demo", iso(start) + "Z", iso(end) + "Z", page_size=1000
    )
    assert samples_to_table(aggregated["point_samples"]).equals(
        ace_simulator.truth_aggregated("demo", start, end)
    )


def test_aceiot_models_client_against_the_cursor_bug(ace_simulator: AceSimulator) -> None:
    from bv_pipeline.simulator import FaultConfig

    # With the real bug on, the client's naive loop still terminates when each page covers more than one
    # bucket (1000 > 200 rows per bucket): a page that started mid-bucket always ends in a later bucket.
    sim = AceSimulator(
        SimulatorConfig(points=ACE_TEST_POINTS, faults=FaultConfig(cursor_stall=True)),
        clock=ace_simulator.clock,
    )
    with run_server(sim) as url:
        client = APIClient(base_url=url, api_key=ACE_TEST_API_KEY, timeout=10)
        data = client.get_site_timeseries_paginated(
            "demo", iso(day_ms(0)), iso(day_ms(30)), page_size=1000, raw_data=True
        )
    assert samples_to_table(data["point_samples"]).equals(sim.truth("demo", day_ms(0), day_ms(30)))


def test_cli_defaults_match_the_embedded_simulator() -> None:
    args = build_parser().parse_args([])
    assert (args.host, args.port) == ("127.0.0.1", 8700)
    assert config_from_args(args) == SimulatorConfig()
    custom = config_from_args(
        build_parser().parse_args(
            [
                "--sites",
                "demo,annex",
                "--points",
                "12",
                "--seed",
                "3",
                "--api-key",
                "K",
                "--fault-429",
                "0.05",
                "--cursor-stall",
            ]
        )
    )
    assert (
        custom.sites == ("demo", "annex")
        and custom.points == 12
        and custom.seed == 3
        and custom.api_key == "K"
    )
    assert custom.faults.rate_429 == 0.05 and custom.faults.cursor_stall
    with pytest.raises(SystemExit):
        from bv_pipeline.simulator.server import main

        main(["--sites", "Not A Slug", "--port", "0"])


def test_cli_serves_what_the_default_simulator_serves() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bv_pipeline.simulator.server", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ACE simulator listening on http://127.0.0.1:")
        url = line.split()[-1]
        default = AceSimulator()
        params = {
            "start_time": iso(day_ms(0)),
            "end_time": iso(day_ms(10)),
            "raw_data": "true",
            "page_size": 500,
        }
        with (
            httpx.Client(base_url=url, headers=ACE_AUTH_HEADERS, timeout=10) as http,
            httpx.Client(
                transport=default.transport(), base_url="http://sim/api", headers=ACE_AUTH_HEADERS
            ) as local,
        ):
            for path, p in (("/sites/", None), ("/sites/demo/timeseries/paginated", params)):
                assert http.get(path, params=p).content == local.get(path, params=p).content
            # The window lies in the past of the real clock, so the comparison covers real samples.
            assert (
                len(http.get("/sites/demo/timeseries/paginated", params=params).json()["point_samples"])
                == 500
            )
            assert http.get("/sites/demo/configured_points", params={"per_page": 500}).json()["total"] == 300
    finally:
        proc.terminate()
        proc.wait(timeout=10)
