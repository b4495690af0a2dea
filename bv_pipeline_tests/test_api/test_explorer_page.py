"""The chart explorer page in real headless Chromium (Debian's ``chromium``, driven by Playwright).

The read API runs under uvicorn on a loopback port over the two-tier test data set; the page is used as a person
would: sign in, pick a site, search, chart, zoom. Chromium must be installed (``apt-get install -y chromium``):
without it this test fails, it is never skipped.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, Response, expect, sync_playwright

from bv_pipeline.api.reader import TimeseriesReader
from bv_pipeline.api.web.app import create_app
from bv_pipeline.api.web.config import ApiConfig
from bv_pipeline_tests.test_api import _data as D

CHROMIUM = Path("/usr/bin/chromium")
# As the machine notes prescribe for a closed network: no background connections, no GPU, no first-run UI.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "explorer-token-0123456789abcdef"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
SCREENSHOT = ARTIFACTS / "chart.png"


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    ds = D.build(tmp_path_factory.mktemp("explorer"))
    reader = TimeseriesReader(ds.hot, ds.cold, max_workers=2)
    cfg = ApiConfig(api_tokens=(TOKEN,), start_date=D.DAYS[0], rate_limit_per_s=1000.0, rate_limit_burst=1000)
    app = create_app(reader, cfg)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()
    reader.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)"
    )
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    # A browser far from UTC: the page must still show UTC times, as its range inputs and the API's days are.
    context = browser.new_context(
        viewport={"width": 1400, "height": 820}, base_url=base_url, timezone_id="America/Chicago"
    )
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    pg.console_errors = errors  # type: ignore[attr-defined]
    yield pg
    context.close()
    assert errors == [], errors  # no script errors, failed loads or CSP violations


def is_query(response: Response) -> bool:
    return "/timeseries/query" in response.url


def window_of(response: Response) -> tuple[int, int]:
    q = parse_qs(urlparse(response.url).query)
    return int(q["start_time"][0]), int(q["end_time"][0])


def plotted(page: Page) -> dict[str, Any]:
    """What uPlot holds: x length and, per series, the count of values (join() fills gaps with undefined)."""
    return page.evaluate(
        """() => {
            const u = window.bvExplorer.plot;
            return {x: u.data[0].length, values: u.data.slice(1).map(s => s.filter(v => v != null).length)};
        }"""
    )


def expected_plot(body: dict[str, Any]) -> dict[str, Any]:
    """The x length and value counts uPlot must hold for an answer: per point its values, and for bucketed
    answers also its bucket minima and maxima (the band around the average)."""
    xs = set()
    for s in body["series"]:
        xs |= set(s["timestamps"])
    columns = ["values", "min", "max"] if body["metadata"]["interval"] else ["values"]
    return {
        "x": len(xs),
        "values": [sum(isinstance(v, int | float) for v in s[c]) for s in body["series"] for c in columns],
    }


def sign_in(page: Page, token: str) -> None:
    page.goto("/")
    page.fill("#token", token)
    page.click("#signin-button")


def test_bad_token_shows_a_clear_message(page: Page) -> None:
    sign_in(page, "not-the-token-0123456789")
    message = page.locator("#message")
    message.wait_for(state="visible")
    assert "token is not valid" in message.inner_text() and "403" in message.inner_text()
    assert page.locator("#explorer").is_hidden()
    assert page.evaluate("sessionStorage.length + localStorage.length") == 0
    # The browser logs the refused request itself; nothing else may fail.
    errors = page.console_errors  # type: ignore[attr-defined]
    assert errors == ["Failed to load resource: the server responded with a status of 403 (Forbidden)"]
    errors.clear()


def test_search_chart_zoom_and_coverage(page: Page) -> None:
    sign_in(page, TOKEN)
    page.locator("#explorer").wait_for(state="visible")
    # The token lives in sessionStorage only.
    assert page.evaluate("sessionStorage.getItem('bv.token')") == TOKEN
    assert page.evaluate("localStorage.length") == 0
    assert page.locator("#site option").all_inner_texts() == ["other_site", D.SITE]
    page.select_option("#site", D.SITE)

    # Search by name, then by unit: the results carry the points' metadata.
    page.fill("#search", "supplytemp")
    expect(page.locator("#search-total")).to_have_text("2 points match")  # AHU-1 and AHU-2
    temp = page.locator(f'#results li[data-point="{D.TEMP}"]')
    assert temp.locator(".meta").inner_text() == "degF · temperature · ahu · every 300 s"
    page.fill("#search", "%")
    damper = page.locator(f'#results li[data-point="{D.DAMPER}"]')
    expect(page.locator("#search-total")).to_have_text("1 point match")
    expect(page.locator("#results li")).to_have_count(1)

    # A custom window over the ten days of data (nothing is fetched before a point is charted), then both
    # points charted: a request each time, one uPlot series per point.
    page.fill("#range-start", "2025-03-01T00:00")
    page.fill("#range-end", "2025-03-10T23:59")
    page.click("#custom-range button[type=submit]")
    with page.expect_response(is_query):
        damper.click()
    page.fill("#search", "SupplyTemp")
    expect(page.locator("#search-total")).to_have_text("2 points match")
    with page.expect_response(is_query) as both_info:  # by keyboard this time
        page.locator(f'#results li[data-point="{D.TEMP}"]').focus()
        page.keyboard.press("Enter")
    both = both_info.value
    body = both.json()
    assert both.status == 200 and [s["name"] for s in body["series"]] == [D.DAMPER, D.TEMP]
    q = parse_qs(urlparse(both.url).query)
    assert q["interval"] == ["1h"] and q["format"] == ["columnar"] and int(q["max_points"][0]) >= 240
    page.wait_for_function("() => window.bvExplorer.last && window.bvExplorer.last.series.length === 2")
    assert expected_plot(body)["x"] == 240  # ten days of hourly buckets
    assert plotted(page) == expected_plot(body)
    # Units on the axes (one y axis per unit, drawn on the canvas) and in the legend.
    axes = page.evaluate("() => window.bvExplorer.plot.axes.slice(1).map(a => [a.scale, a.label])")
    assert axes == [["%", "%"], ["degF", "degF"]]
    legend = page.locator("#chart .u-legend .u-series .u-label").all_inner_texts()
    assert legend[1:] == [f"{D.DAMPER} (%)", "min", "max", f"{D.TEMP} (degF)", "min", "max"]
    assert page.evaluate("() => window.bvExplorer.plot.bands.map(b => b.series)") == [[3, 2], [6, 5]]

    # Hovering the first bucket shows its time in UTC (2025-03-01 00:00), not the browser's zone (02-28 18:00).
    first = page.locator("#chart .u-over").bounding_box()
    assert first is not None
    page.mouse.move(first["x"] + 1, first["y"] + first["height"] / 2)
    when = page.locator("#chart .u-legend .u-series").first.locator(".u-value").inner_text()
    assert when == "2025-03-01 12:00am"

    # The coverage strip shows each day's tier as the answer's metadata gives it.
    coverage = body["metadata"]["coverage"]
    assert list(coverage.values()) == ["cold"] * 4 + ["hot", "hot", "cold", "hot", "hot", "hot"]
    strip = page.locator("#coverage .day")
    assert strip.count() == 10
    # Lined up under the plotting area, one tenth of it per day.
    over, bar = page.locator("#chart .u-over").bounding_box(), page.locator("#coverage").bounding_box()
    assert over and bar and bar["x"] == over["x"] and bar["width"] == over["width"]
    day = strip.first.bounding_box()
    assert day and abs(day["width"] - over["width"] / 10) < 1.5
    assert {
        d: s
        for d, s in zip(
            strip.evaluate_all("els => els.map(e => e.dataset.day)"),
            strip.evaluate_all("els => els.map(e => e.dataset.state)"),
            strict=True,
        )
    } == coverage
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    print(f"\nexplorer screenshot: {SCREENSHOT}")

    # Zoom by dragging across the middle of the plot: a new request for the narrower window, re-plotted.
    before = window_of(both)
    box = page.locator("#chart .u-over").bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    with page.expect_response(is_query) as zoom_info:
        page.mouse.move(box["x"] + box["width"] * 0.3, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=8)
        page.mouse.up()
    zoomed = zoom_info.value
    start, end = window_of(zoomed)
    assert before[0] < start < end < before[1]
    assert (end - start) < (before[1] - before[0]) / 3
    zbody = zoomed.json()
    assert zbody["metadata"]["interval"] == "5min"  # about two days: finer buckets, the points' cadence
    page.wait_for_function(
        "n => window.bvExplorer.last && window.bvExplorer.last.params.start_time === n", arg=start
    )
    assert plotted(page) == expected_plot(zbody)
    assert plotted(page)["x"] > 240 // 10 * 2  # finer than the hourly view of the same days
    shown = page.locator("#status").inner_text()
    assert "buckets of 5min shown" in shown and f"source {zbody['metadata']['source']}" in shown

    # The address holds the chart: a new tab (no token in its sessionStorage) signs in and shows the same view.
    link = page.evaluate("location.hash")
    assert f"start={start}" in link and f"end={end + 1}" in link  # the window is [start, end_time + 1)
    tab = page.context.new_page()
    tab.goto(f"/{link}")
    tab.fill("#token", TOKEN)
    with tab.expect_response(is_query) as restored_info:
        tab.click("#signin-button")
    restored = restored_info.value
    assert window_of(restored) == (start, end)
    assert parse_qs(urlparse(restored.url).query)["point_names"] == [f"{D.DAMPER},{D.TEMP}"]
    expect(tab.locator("#selected li")).to_have_count(2)
    tab.wait_for_function("() => window.bvExplorer.last !== null")
    assert plotted(tab) == expected_plot(restored.json())
    tab.close()


def test_not_loaded_days_are_told_apart(page: Page) -> None:
    sign_in(page, TOKEN)
    page.locator("#explorer").wait_for(state="visible")
    page.select_option("#site", D.SITE)
    page.fill("#search", "SupplyTemp")
    expect(page.locator("#search-total")).to_have_text("2 points match")
    page.fill("#range-start", "2025-03-12T00:00")
    page.fill("#range-end", "2025-03-13T23:59")
    page.click("#custom-range button[type=submit]")
    with page.expect_response(is_query) as info:
        page.locator(f'#results li[data-point="{D.TEMP}"]').click()
    body = info.value.json()
    assert body["series"][0]["timestamps"] == []
    assert set(body["metadata"]["coverage"].values()) == {"not_loaded"}
    page.wait_for_function("() => window.bvExplorer.last !== null")
    assert "the pipeline holds none of these days" in page.locator("#status").inner_text()
    assert page.locator("#coverage .day.not_loaded").count() == 2
    # A preset is relative to now: seven days ending now, 5-minute buckets (the point's collect interval).
    with page.expect_response(is_query) as preset_info:
        page.click('#presets button[data-preset="7d"]')
    start, end = window_of(preset_info.value)
    assert end - start == 7 * 86_400_000 - 1 and abs(end / 1000 - time.time()) < 60  # end_time is inclusive
    preset = preset_info.value.json()
    assert preset["metadata"]["interval"] == "5min" and set(preset["metadata"]["coverage"].values()) == {
        "not_loaded"
    }
    expect(page.locator('#presets button[data-preset="7d"]')).to_have_class("active")

    # An enum point has text samples: charted, counted, and named as having nothing numeric to draw.
    page.fill("#range-start", "2025-03-08T00:00")
    page.fill("#range-end", "2025-03-09T00:00")
    page.click("#custom-range button[type=submit]")
    page.fill("#search", "OccMode")
    expect(page.locator("#search-total")).to_have_text("1 point match")
    with page.expect_response(is_query) as mode_info:
        page.locator(f'#results li[data-point="{D.MODE}"]').click()
    mode = mode_info.value.json()
    assert mode["metadata"]["interval"] is None and len(mode["series"][1]["timestamps"]) > 200
    expect(page.locator("#status")).to_contain_text(f"no numeric values to plot: {D.MODE}")
    # The page and its assets are served with a strict policy and no third-party origin.
    resp = page.request.get("/")
    assert "script-src 'self'" in resp.headers["content-security-policy"]
    assert page.request.get("/static/vendor/uplot/VERSION").text().strip() == "1.6.32"


def test_every_static_file_is_package_data() -> None:
    """An installed package serves the page: every file under static/ matches pyproject's package-data."""
    import tomllib

    from bv_pipeline.api.web.routes.page import STATIC_DIR

    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "bv_pipeline.api.web"
    ]
    packaged = {p for pattern in patterns for p in STATIC_DIR.parent.glob(pattern) if p.is_file()}
    files = {p for p in STATIC_DIR.rglob("*") if p.is_file()}
    assert len(files) >= 7 and files - packaged == set()


def test_query_plan_for_each_preset(page: Page) -> None:
    """The resolution rules, run in the browser: raw up to 2 days, then the finest bucket within 4 per output
    point (sub-hour only up to a week, never finer than the cadence); max_points is 2 per pixel."""
    page.goto("/")
    plans = page.evaluate(
        """async () => {
            const {queryParams, budgetFallback} = await import("/static/js/query_plan.js");
            const H = 3600000, D = 24 * H;
            const out = {};
            for (const [name, span] of Object.entries({"1h": H, "6h": 6*H, "1d": D, "3d": 3*D, "7d": 7*D,
                                                         "30d": 30*D, "90d": 90*D, "1y": 365*D})) {
                const p = queryParams("s", [{name: "a", cadenceMs: 60000}], 0, span, 1000);
                out[name] = [p.interval || "raw", p.max_points];
            }
            out["3d at 5 min"] = [queryParams("s", [{name: "a", cadenceMs: 300000}], 0, 3*D, 1000).interval];
            out["fallback"] = [budgetFallback({interval: "5min"}).interval, budgetFallback({interval: "1h"})];
            return out;
        }"""
    )
    assert plans == {
        "1h": ["raw", 2000],
        "6h": ["raw", 2000],
        "1d": ["raw", 2000],
        "3d": ["1min", 2000],
        "7d": ["5min", 2000],
        "30d": ["1h", 2000],
        "90d": ["1h", 2000],
        "1y": ["1d", 2000],
        "3d at 5 min": ["5min"],
        "fallback": ["1h", None],
    }
