"""Fault injection: each fault fires at its configured rate, deterministically; late samples appear late."""

from __future__ import annotations

import json

import httpx
import pytest

from bv_pipeline.simulator import IN_PROCESS_BASE_URL, AceSimulator, FaultConfig, SimulatorConfig
from bv_pipeline_tests.fixtures.ace import ACE_AUTH_HEADERS, ACE_TEST_NOW_MS, fixed_clock

from .helpers import day_ms, iso, samples_to_table, walk_pages

TS = "/sites/demo/timeseries/paginated"
PARAMS = {"start_time": iso(day_ms(0)), "end_time": iso(day_ms(10)), "raw_data": "true", "page_size": 100}


def _sim(
    faults: FaultConfig, clock_ms: int = ACE_TEST_NOW_MS, sleeps: list[float] | None = None
) -> AceSimulator:
    sleep = sleeps.append if sleeps is not None else (lambda s: None)
    return AceSimulator(SimulatorConfig(points=20, faults=faults), clock=fixed_clock(clock_ms), sleep=sleep)


def _client(sim: AceSimulator) -> httpx.Client:
    return httpx.Client(transport=sim.transport(), base_url=IN_PROCESS_BASE_URL, headers=ACE_AUTH_HEADERS)


def _is_page(content: bytes) -> bool:
    try:
        body = json.loads(content)
    except ValueError:
        return False
    return (
        isinstance(body, dict)
        and isinstance(body.get("point_samples"), list)
        and isinstance(body.get("has_more"), bool)
        and all(isinstance(s, dict) and set(s) == {"name", "value", "time"} for s in body["point_samples"])
    )


def test_no_faults_by_default() -> None:
    sim = _sim(FaultConfig())
    with _client(sim) as client:
        for _ in range(50):
            r = client.get(TS, params=PARAMS)
            assert r.status_code == 200 and _is_page(r.content)
    assert sum(sim.fault_counts.values()) == 0
    assert sim.requests_served == 50


def test_429_with_retry_after() -> None:
    sim = _sim(FaultConfig(rate_429=1.0, retry_after_s=2.5))
    with _client(sim) as client:
        for path in (TS, "/sites/", "/sites/demo/configured_points"):
            r = client.get(path, params=PARAMS if path == TS else None)
            assert r.status_code == 429 and r.headers["Retry-After"] == "2.5"
    assert sim.fault_counts["429"] == 3


def test_5xx_statuses() -> None:
    sim = _sim(FaultConfig(rate_5xx=1.0))
    with _client(sim) as client:
        statuses = {client.get(TS, params=PARAMS).status_code for _ in range(60)}
    assert statuses == {500, 502, 503}
    assert sim.fault_counts["5xx"] == 60


def test_slow_responses_sleep_then_answer() -> None:
    sleeps: list[float] = []
    sim = _sim(FaultConfig(rate_slow=1.0, slow_s=0.75), sleeps=sleeps)
    with _client(sim) as client:
        for _ in range(5):
            r = client.get(TS, params=PARAMS)
            assert r.status_code == 200 and _is_page(r.content)
    assert sleeps == [0.75] * 5 and sim.fault_counts["slow"] == 5


def test_truncated_bodies_are_prefixes_that_do_not_parse() -> None:
    clean = _sim(FaultConfig())
    sim = _sim(FaultConfig(rate_truncated=1.0))
    with _client(clean) as c_clean, _client(sim) as c_fault:
        full = c_clean.get(TS, params=PARAMS).content
        cuts = set()
        for _ in range(20):
            r = c_fault.get(TS, params=PARAMS)
            assert r.status_code == 200
            assert 0 < len(r.content) < len(full) and full.startswith(r.content)
            assert not _is_page(r.content)
            cuts.add(len(r.content))
    assert len(cuts) > 10  # cut at varying places
    assert sim.fault_counts["truncated"] == 20


def test_malformed_bodies_are_not_pages() -> None:
    sim = _sim(FaultConfig(rate_malformed=1.0))
    with _client(sim) as client:
        bodies = [client.get(TS, params=PARAMS) for _ in range(30)]
    assert all(r.status_code == 200 and not _is_page(r.content) for r in bodies)
    assert len({r.content for r in bodies}) >= 4  # several kinds of breakage
    assert sim.fault_counts["malformed"] == 30


@pytest.mark.parametrize("kind", ["429", "5xx", "slow", "truncated", "malformed"])
def test_faults_fire_at_their_configured_rate(kind: str) -> None:
    rate = 0.2
    field = {"429": "rate_429", "5xx": "rate_5xx", "slow": "rate_slow", "truncated": "rate_truncated"}.get(
        kind, "rate_malformed"
    )
    sim = _sim(FaultConfig(**{field: rate, "seed": 11}))  # type: ignore[arg-type]
    with _client(sim) as client:
        for _ in range(500):
            client.get("/sites/demo")
    assert 70 <= sim.fault_counts[kind] <= 130  # 100 expected; binomial sd ~9
    assert sum(sim.fault_counts.values()) == sim.fault_counts[kind]


def test_faults_are_deterministic_per_seed() -> None:
    def statuses(seed: int) -> list[int]:
        sim = _sim(FaultConfig(rate_429=0.3, rate_5xx=0.3, seed=seed))
        with _client(sim) as client:
            return [client.get("/sites/").status_code for _ in range(100)]

    assert statuses(1) == statuses(1)
    assert statuses(1) != statuses(2)


def test_auth_and_routing_errors_are_not_hidden_by_faults() -> None:
    sim = _sim(FaultConfig(rate_429=1.0))
    with httpx.Client(transport=sim.transport(), base_url=IN_PROCESS_BASE_URL) as client:
        assert client.get("/sites/").status_code == 401
        assert client.get("/nope", headers=ACE_AUTH_HEADERS).status_code == 404


def test_late_samples_are_invisible_until_their_delay_passes() -> None:
    now = [day_ms(30)]
    faults = FaultConfig(late_fraction=0.3, late_max_minutes=10, seed=5)
    sim = AceSimulator(SimulatorConfig(points=20, faults=faults), clock=lambda: now[0] / 1000)
    start, end = day_ms(0), day_ms(30)
    early = sim.truth("demo", start, end)
    final = sim.truth("demo", start, end, as_of_ms=day_ms(41))
    assert final.equals(sim.truth("demo", start, end, as_of_ms=day_ms(24 * 60)))  # nothing more appears later
    missing = final.num_rows - early.num_rows
    recent = sum(1 for t in final["ts_ms"].to_pylist() if t >= day_ms(19))
    assert (
        0 < missing < recent
    )  # only samples of the last 10 minutes can still be missing, and not all of them
    # Over the whole window about 30% of samples arrive late; early ones have all arrived by now.
    assert early.filter(early["ts_ms"].to_numpy() < day_ms(19)).num_rows == sum(
        1 for t in final["ts_ms"].to_pylist() if t < day_ms(19)
    )
    with _client(sim) as client:
        served_now, _ = walk_pages(client, "demo", start, end, page_size=100)
        assert samples_to_table(served_now).equals(early)
        now[0] = day_ms(41)
        served_later, _ = walk_pages(client, "demo", start, end, page_size=100)
        assert samples_to_table(served_later).equals(final)
    samples = sim._models["demo"].window(start, end)
    delay = samples.visible_from - samples.ts
    assert 0.25 < (delay > 0).mean() < 0.35
    assert delay[delay > 0].min() >= 60_000 and delay.max() <= 10 * 60_000
    # A late sample is served exactly once the clock reaches ts + delay: step the clock minute by minute.
    counts = [sim.truth("demo", start, end, as_of_ms=day_ms(m)).num_rows for m in range(28, 42)]
    assert counts == sorted(counts) and counts[0] < counts[-1]


def test_samples_after_the_clock_are_never_served() -> None:
    sim = _sim(FaultConfig(), clock_ms=day_ms(12.5))
    with _client(sim) as client:
        samples, _ = walk_pages(client, "demo", day_ms(0), day_ms(60), page_size=1000)
    table = samples_to_table(samples)
    assert table.num_rows > 0 and max(table["ts_ms"].to_pylist()) <= day_ms(12.5)
    assert table.equals(sim.truth("demo", day_ms(0), day_ms(60)))
    assert table.equals(sim.truth("demo", day_ms(0), day_ms(12.5) + 1, as_of_ms=10**15))


def test_fault_config_validation() -> None:
    with pytest.raises(ValueError, match="rate_429"):
        FaultConfig(rate_429=1.5)
    with pytest.raises(ValueError, match="late_max_minutes"):
        FaultConfig(late_max_minutes=0)
    with pytest.raises(ValueError, match="cadence_s"):
        SimulatorConfig(cadence_s=1)
    with pytest.raises(ValueError, match="sites"):
        SimulatorConfig(sites=("a", "a"))
