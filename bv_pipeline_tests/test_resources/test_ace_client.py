"""AceClient tests: hand-made transports for the edge cases, then the real simulator (in-process and over HTTP).

Every client gets a recording ``sleep`` so retries and rate limiting cost no wall-clock time.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import itertools
import random
import re
from collections.abc import Callable

import httpx
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from bv_pipeline.resources.ace import (
    SIM_BASE_URL,
    AceClient,
    AceError,
    FetchStats,
    RateLimiter,
)
from bv_pipeline.resources.ace_resource import AceResource
from bv_pipeline.simulator import IN_PROCESS_BASE_URL, AceSimulator, FaultConfig, SimulatorConfig, run_server
from bv_pipeline.storage import ace_pages
from bv_pipeline.storage.ace_pages import retry_after_seconds
from bv_pipeline.storage.samples import SAMPLE_SCHEMA, sort_samples

BASE = "http://ace.test/api"
T0 = int(dt.datetime(2026, 8, 7, tzinfo=dt.UTC).timestamp() * 1000)
MIN = 60_000


class Recorder:
    """A fake clock plus a sleep that records the waits and advances the clock by them."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_client(handler: Callable[[httpx.Request], httpx.Response], rec: Recorder, **kw: object) -> AceClient:
    kw.setdefault("requests_per_minute", 100_000)
    return AceClient(
        BASE,
        "key",
        transport=httpx.MockTransport(handler),
        sleep=rec.sleep,
        clock=rec.clock,
        rng=random.Random(1),
        **kw,  # type: ignore[arg-type]
    )


def iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def page_json(
    rows: list[tuple[str, int, str | None]], *, cursor: str | None = None, more: bool = False
) -> bytes:
    samples = [{"name": n, "value": v, "time": iso(t)} for n, t, v in rows]
    return orjson.dumps({"point_samples": samples, "next_cursor": cursor, "has_more": more})


# -- hand-made transports ----------------------------------------------------------------------------------------


def test_repeated_page_fails_loudly() -> None:
    """A server that serves the same page forever (has_more true) must raise, not loop."""
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        rows = [("p1", T0, "1"), ("p2", T0, "2")]
        return httpx.Response(
            200, content=page_json(rows, cursor="eyJvZmZzZXQiOjIsInRpbWVzdGFtcCI6IngifQ==", more=True)
        )

    rec = Recorder()
    with make_client(handler, rec) as client, pytest.raises(AceError, match="same page twice"):
        client.fetch_samples("demo", T0, T0 + 5 * MIN)
    assert calls == 2


def test_server_cursor_is_replaced_by_the_repaired_one() -> None:
    """The client sends the recomputed offset (incoming + rows in last bucket), not the server's stalled one."""
    rows = [(f"p{i}", T0 + i * 1000, str(i)) for i in range(6)]  # all inside one 5-minute bucket
    sent_cursors: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        from bv_pipeline.storage import ace_parse

        token = request.url.params.get("cursor")
        sent_cursors.append(token)
        cur = ace_parse.decode_cursor(token)
        offset = cur.offset if cur else 0
        chunk = rows[offset : offset + 2]
        more = offset + 2 < len(rows)
        # The buggy server: outgoing offset = rows taken from the last bucket only (always 2 here).
        bad = ace_parse.encode_cursor(ace_parse.Cursor(2, iso(T0)))
        return httpx.Response(200, content=page_json(chunk, cursor=bad if more else None, more=more))

    rec = Recorder()
    with make_client(handler, rec) as client:
        table, stats = client.fetch_samples("demo", T0, T0 + 5 * MIN)
    assert table.column("point").to_pylist() == [f"p{i}" for i in range(6)]
    assert stats.pages == 3 and stats.cursor_repairs == 1  # page 1's cursor (offset 2) happened to be right
    assert sent_cursors[0] is None and len(sent_cursors) == 3


def test_duplicates_across_pages_are_removed_and_counted() -> None:
    pages = [
        page_json([("b", T0, "1"), ("a", T0, "2")], cursor="c1", more=True),
        page_json([("a", T0, "2"), ("a", T0 + MIN, "x"), ("c", T0, None)]),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=pages[1 if request.url.params.get("cursor") else 0])

    rec = Recorder()
    with make_client(handler, rec, window_minutes=60) as client:
        table, stats = client.fetch_samples("demo", T0, T0 + 5 * MIN)
    assert table.schema == SAMPLE_SCHEMA
    assert table.to_pylist() == [
        {"point": "a", "ts_ms": T0, "value": 2.0, "value_text": None},
        {"point": "a", "ts_ms": T0 + MIN, "value": None, "value_text": "x"},
        {"point": "b", "ts_ms": T0, "value": 1.0, "value_text": None},
        {"point": "c", "ts_ms": T0, "value": None, "value_text": None},
    ]
    assert (stats.samples, stats.duplicates, stats.non_numeric, stats.nulls) == (5, 1, 1, 1)


def test_retries_5xx_with_growing_jittered_backoff_then_fails() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"message": "upstream busy"})

    rec = Recorder()
    client = make_client(handler, rec, max_attempts=5, backoff_base_s=1, backoff_max_s=6)
    with client, pytest.raises(AceError) as info:
        client.fetch_samples("demo", T0, T0 + 5 * MIN)
    message = str(info.value)
    assert (
        "timeseries/paginated" in message and "5 attempts" in message and "HTTP 503: upstream busy" in message
    )
    assert info.value.status == 503 and info.value.attempts == 5
    ceilings = [1, 2, 4, 6]  # base * 2**(n-1), capped at backoff_max_s
    assert len(rec.sleeps) == 4
    for slept, ceiling in zip(rec.sleeps, ceilings, strict=True):
        assert ceiling / 2 <= slept <= ceiling


def test_429_honours_retry_after_and_counts() -> None:
    responses = iter(
        [
            httpx.Response(429, headers={"Retry-After": "7"}, json={"message": "slow down"}),
            httpx.Response(429, json={"message": "slow down"}),  # no header: fall back to backoff
            httpx.Response(200, content=page_json([("a", T0, "1")])),
        ]
    )
    rec = Recorder()
    with make_client(lambda r: next(responses), rec, backoff_base_s=0.5) as client:
        table, stats = client.fetch_samples("demo", T0, T0 + 5 * MIN)
    assert table.num_rows == 1
    assert (stats.rate_limited, stats.retries, stats.requests) == (2, 2, 3)
    assert rec.sleeps[0] == 7.0 and 0.5 <= rec.sleeps[1] <= 1.0


def test_retry_after_forms() -> None:
    now = 1_800_000_000.0
    later = email.utils.formatdate(now + 12, usegmt=True)
    assert retry_after_seconds("3", now) == 3.0
    assert retry_after_seconds(" 1.5 ", now) == 1.5
    assert retry_after_seconds(later, now) == pytest.approx(12, abs=1)
    assert retry_after_seconds(email.utils.formatdate(now - 50, usegmt=True), now) == 0.0
    assert retry_after_seconds("100000", now) == 300.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_malformed_sample_is_retried_then_surfaces() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        body = orjson.dumps(
            {"point_samples": [{"name": "a", "value": "1"}], "next_cursor": None, "has_more": False}
        )
        return httpx.Response(200, content=body)

    rec = Recorder()
    client = make_client(handler, rec, max_attempts=3)
    with client, pytest.raises(AceError, match=r"malformed response.*without a time"):
        client.fetch_samples("demo", T0, T0 + 5 * MIN)
    assert calls == 3


def test_invalid_key_500_hint() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"message": "An unhandled exception occurred."})

    rec = Recorder()
    client = make_client(handler, rec, max_attempts=2)
    with client, pytest.raises(AceError, match="API key may be invalid"):
        client.list_sites()


def test_sub_windows_align_to_the_epoch() -> None:
    rec = Recorder()
    with make_client(lambda r: httpx.Response(500), rec, window_minutes=60) as client:
        start = T0 + 90 * MIN + 123
        windows = client.sub_windows(start, T0 + 4 * 60 * MIN)
    assert windows[0] == (start, T0 + 120 * MIN)
    assert windows[1:] == [(T0 + h * 60 * MIN, T0 + (h + 1) * 60 * MIN) for h in (2, 3)]


def test_rate_limiter_spaces_requests() -> None:
    rec = Recorder()
    limiter = RateLimiter(600, clock=rec.clock, sleep=rec.sleep)  # 10/s, burst of 10
    sent: list[float] = []
    for _ in range(40):
        limiter.acquire()
        sent.append(rec.now)
    assert sent[:10] == [sent[0]] * 10  # the burst goes out at once
    gaps = [b - a for a, b in itertools.pairwise(sent[9:])]
    assert all(g == pytest.approx(0.1) for g in gaps)
    assert sum(rec.sleeps) == pytest.approx((40 - 10) * 0.1)


def test_rate_limiter_without_clock_progress_still_accumulates_waits() -> None:
    """With a sleep that does not move the clock, the virtual schedule still charges every request."""
    waits: list[float] = []
    limiter = RateLimiter(60, clock=lambda: 5.0, sleep=waits.append)  # 1/s, burst 1
    for _ in range(4):
        limiter.acquire()
    assert waits == pytest.approx([1.0, 2.0, 3.0])


def test_client_rate_limit_applies_to_requests() -> None:
    rec = Recorder()
    with make_client(
        lambda r: httpx.Response(200, content=page_json([])), rec, requests_per_minute=120
    ) as client:
        for h in range(6):
            client.fetch_samples("demo", T0 + h * 60 * MIN, T0 + (h + 1) * 60 * MIN)
    # 120/min = one request per 0.5 s after a burst of 2: six requests need (6 - 2) * 0.5 s of waiting.
    assert sum(rec.sleeps) == pytest.approx(2.0)


def test_fetch_stats_add() -> None:
    a, b = FetchStats(requests=1, samples=5), FetchStats(requests=2, bytes=10)
    a.add(b)
    assert (a.requests, a.samples, a.bytes) == (3, 5, 10)


# -- against the real simulator ----------------------------------------------------------------------------------

DAY_AFTER = T0 / 1000 + 2 * 86_400  # a clock at which every sample of the test windows is visible


def sim_client(
    sim: AceSimulator, rec: Recorder, base_url: str = IN_PROCESS_BASE_URL, **kw: object
) -> AceClient:
    transport = sim.transport() if base_url == IN_PROCESS_BASE_URL else None
    kw.setdefault("requests_per_minute", 100_000)
    return AceClient(
        base_url,
        str(kw.pop("api_key", "test-key")),
        transport=transport,
        sleep=rec.sleep,
        clock=rec.clock,
        rng=random.Random(2),
        **kw,  # type: ignore[arg-type]
    )


def make_sim(
    points: int = 300, clock: Callable[[], float] = lambda: DAY_AFTER, **faults: object
) -> AceSimulator:
    return AceSimulator(SimulatorConfig(points=points, faults=FaultConfig(**faults)), clock=clock)  # type: ignore[arg-type]


def assert_truth(
    table: pa.Table, sim: AceSimulator, start: int, end: int, as_of_ms: int | None = None
) -> None:
    expected = sort_samples(sim.truth("demo", start, end, as_of_ms=as_of_ms))
    assert table.num_rows == expected.num_rows > 0
    assert table.equals(expected)


def test_clean_fetch_equals_truth_and_streams_pages() -> None:
    sim, rec = make_sim(), Recorder()
    start, end = T0 + 30 * MIN, T0 + 3 * 60 * MIN + 7_000  # unaligned ends: partial first and last windows
    with sim_client(sim, rec, page_size=10_000) as client:
        table, stats = client.fetch_samples("demo", start, end)
        streamed = list(client.iter_samples("demo", start, end))
    assert_truth(table, sim, start, end)
    assert stats.samples == table.num_rows and stats.duplicates == 0 and stats.retries == 0
    assert stats.non_numeric == pc.sum(pc.is_valid(table["value_text"])).as_py() > 0
    # Streaming yields bounded batches (at most one page each) holding the same rows.
    assert len(streamed) == stats.pages and max(t.num_rows for t in streamed) <= 10_000
    assert sort_samples(pa.concat_tables(streamed)).equals(table)


def test_cursor_stall_is_repaired() -> None:
    sim, rec = make_sim(cursor_stall=True), Recorder()
    start, end = T0, T0 + 60 * MIN
    with sim_client(sim, rec, page_size=1000) as client:  # 1,500 rows per bucket: pages start mid-bucket
        table, stats = client.fetch_samples("demo", start, end)
    assert_truth(table, sim, start, end)
    assert sim.fault_counts["cursor_stall"] > 0
    assert stats.cursor_repairs == sim.fault_counts["cursor_stall"]
    assert stats.duplicates == 0


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ({"rate_429": 0.4, "retry_after_s": 2.0}, "429"),
        ({"rate_5xx": 0.4}, "5xx"),
        ({"rate_truncated": 0.4}, "truncated"),
        ({"rate_malformed": 0.5}, "malformed"),
    ],
)
def test_each_request_fault_is_retried_to_the_exact_truth(fault: dict[str, float], kind: str) -> None:
    sim, rec = make_sim(seed=3, **fault), Recorder()
    start, end = T0, T0 + 2 * 60 * MIN
    with sim_client(sim, rec, page_size=5000, max_attempts=8) as client:
        table, stats = client.fetch_samples("demo", start, end)
    assert_truth(table, sim, start, end)
    injected = sim.fault_counts[kind]
    # Every sleep is a retry's or a rate-limit wait's (there are some only after a 429 held the limit).
    assert injected > 0 and stats.retries == injected == len(rec.sleeps) - stats.rate_waits
    assert stats.requests == stats.pages + injected
    if kind == "429":
        assert stats.rate_limited == injected
        assert sum(rec.sleeps) == pytest.approx(2.0 * injected + stats.rate_wait_s)
    else:
        assert stats.rate_waits == 0


def test_all_faults_together_with_late_data() -> None:
    sim = make_sim(
        seed=11,
        rate_429=0.1,
        rate_5xx=0.1,
        rate_truncated=0.1,
        rate_malformed=0.1,
        cursor_stall=True,
        late_fraction=0.05,
    )
    rec = Recorder()
    start, end = T0, T0 + 90 * MIN
    with sim_client(sim, rec, page_size=1000, max_attempts=8) as client:
        table, stats = client.fetch_samples("demo", start, end)
    assert_truth(table, sim, start, end)
    assert stats.cursor_repairs > 0 and stats.retries > 0


def test_faults_beyond_the_attempt_bound_raise_clearly() -> None:
    sim, rec = make_sim(rate_5xx=1.0), Recorder()
    client = sim_client(sim, rec, max_attempts=3)
    with client, pytest.raises(AceError) as info:
        client.fetch_samples("demo", T0, T0 + 60 * MIN)
    message = str(info.value)
    assert "GET /sites/demo/timeseries/paginated" in message and "after 3 attempts" in message
    assert re.search(r"HTTP 50[023]", message)
    assert len(rec.sleeps) == 2 and sim.requests_served == 3


def test_late_samples_appear_on_refetch() -> None:
    now = [T0 / 1000 + 62 * 60]  # 2 minutes after the window ends: some late samples are not visible yet
    sim = make_sim(clock=lambda: now[0], late_fraction=0.2, late_max_minutes=15)
    rec = Recorder()
    start, end = T0, T0 + 60 * MIN
    with sim_client(sim, rec) as client:
        early, _ = client.fetch_samples("demo", start, end)
        assert_truth(early, sim, start, end, as_of_ms=int(now[0] * 1000))
        now[0] += 20 * 60  # every late sample is now visible
        later, _ = client.fetch_samples("demo", start + 30 * MIN, end)  # an overlapping re-fetch
    assert_truth(later, sim, start + 30 * MIN, end, as_of_ms=int(now[0] * 1000))
    early_keys = set(zip(early["point"].to_pylist(), early["ts_ms"].to_pylist(), strict=True))
    later_keys = set(zip(later["point"].to_pylist(), later["ts_ms"].to_pylist(), strict=True))
    assert len(later_keys - early_keys) > 0  # the late samples arrived


def test_list_points_metadata() -> None:
    sim, rec = AceSimulator(SimulatorConfig(points=1234), clock=lambda: DAY_AFTER), Recorder()
    with sim_client(sim, rec) as client:
        points = client.list_points("demo")  # 1,234 points at 1,000 per page: two pages
        sites = client.list_sites()
    expected = sim.points("demo")
    assert [p.name for p in points] == [p.name for p in expected]
    for got, want in zip(points, expected, strict=True):
        assert (got.kind, got.unit, got.marker_tags) == (want.kind, want.unit, want.marker_tags)
        assert got.kv_tags == want.kv_tags and got.collect_interval_s == want.collect_interval_s
    assert {p.kind for p in points} >= {"temperature", "enum", "binary"}
    assert [s["name"] for s in sites] == ["demo"]


def test_client_errors_are_not_retried() -> None:
    keyed = AceSimulator(SimulatorConfig(points=10, api_key="right-key"), clock=lambda: DAY_AFTER)
    rec = Recorder()
    with sim_client(keyed, rec, api_key="") as client, pytest.raises(AceError, match="HTTP 401") as info:
        client.list_points("demo")
    assert info.value.attempts == 1 and "Missing Authorization Header" in str(info.value)

    client = sim_client(keyed, rec, api_key="wrong-key", max_attempts=2)
    with client, pytest.raises(AceError, match="API key may be invalid"):
        client.list_sites()

    sim = make_sim(points=10)
    with sim_client(sim, rec) as client:
        with pytest.raises(AceError, match="HTTP 403") as info:
            client.fetch_samples("nowhere", T0, T0 + MIN)
        assert info.value.status == 403
        client.page_size = 7  # not in the server's closed set: a 400 in the Flask-RESTX shape
        with pytest.raises(AceError, match=r"HTTP 400: Input payload validation failed.*page_size"):
            client.fetch_samples("demo", T0, T0 + MIN)
    assert rec.sleeps == [rec.sleeps[0]]  # only the wrong-key 500 was retried, once
    with pytest.raises(ValueError, match="page_size"):
        AceClient(BASE, "k", page_size=12345)


def test_over_http_with_faults_and_slow_responses() -> None:
    """Real sockets: timeouts (slow responses), truncated bodies with a shorter Content-Length, 5xx."""
    sim = make_sim(seed=5, rate_slow=0.2, slow_s=1.5, rate_truncated=0.15, rate_5xx=0.15, cursor_stall=True)
    rec = Recorder()
    start, end = T0, T0 + 60 * MIN
    with (
        run_server(sim) as base_url,
        sim_client(
            sim, rec, base_url=base_url, page_size=5000, timeout_s=0.5, max_attempts=8, window_minutes=20
        ) as client,
    ):
        table, stats = client.fetch_samples("demo", start, end)
    assert_truth(table, sim, start, end)
    assert sim.fault_counts["slow"] > 0 and sim.fault_counts["truncated"] > 0
    # At least one retry per injected fault (a loaded machine may add a genuine timeout or two).
    assert stats.retries >= sum(sim.fault_counts[k] for k in ("slow", "truncated", "5xx"))
    assert stats.bytes > 0


def test_resource_builds_an_embedded_simulator_client() -> None:
    resource = AceResource(sim_points=20, page_size=1000)
    with resource.get_client() as client:
        points = client.list_points("demo")
        table, stats = client.fetch_samples("demo", T0, T0 + 10 * MIN)
    assert len(points) == 20 and client.base_url == SIM_BASE_URL
    assert table.num_rows > 0 and stats.pages >= 1
    assert (
        AceResource(base_url="http://ace.example/api", api_key="k").get_client().base_url
        == "http://ace.example/api"
    )


def test_worker_failure_stops_a_concurrent_fetch() -> None:
    sim, rec = make_sim(rate_5xx=1.0), Recorder()
    client = sim_client(sim, rec, max_attempts=2, concurrency=2)
    with client, pytest.raises(AceError, match="after 2 attempts"):
        client.fetch_samples("demo", T0, T0 + 6 * 60 * MIN)  # six sub-windows, two in flight
    # At most the first two sub-windows were started (2 attempts each); the other four were never fetched.
    assert 2 <= sim.requests_served <= 4


def test_concurrency_does_not_change_the_result() -> None:
    sim = make_sim(cursor_stall=True)
    start, end = T0 + 7 * MIN, T0 + 4 * 60 * MIN
    results = []
    for concurrency in (1, 3):
        with sim_client(
            sim, Recorder(), page_size=5000, window_minutes=30, concurrency=concurrency
        ) as client:
            results.append(client.fetch_samples("demo", start, end))
    (one, one_stats), (three, three_stats) = results
    assert one.equals(three)
    assert_truth(three, sim, start, end)
    assert (one_stats.pages, one_stats.samples, one_stats.cursor_repairs) == (
        three_stats.pages,
        three_stats.samples,
        three_stats.cursor_repairs,
    )


def test_string_columns_built_in_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Long results are cast to pa.string() slice by slice (32-bit offsets); slicing must not change rows."""
    monkeypatch.setattr(ace_pages, "STRING_SLICE_ROWS", 1000)
    sim, rec = make_sim(), Recorder()
    start, end = T0, T0 + 30 * MIN
    with sim_client(sim, rec) as client:
        table, _ = client.fetch_samples("demo", start, end)
    assert table["point"].num_chunks > 1
    assert_truth(table, sim, start, end)
