"""ACE's shared rate limit: GCRA arithmetic and lanes on a simulated clock, 429 holds, settings and wiring, then
real processes sharing one SQLite file or one PostgreSQL table, two AceClients in two processes against the HTTP
simulator, and hot_timeseries runs choosing their lane and reporting their waits.

No wall-clock assertions: every reservation returns its slot (the time its request may be sent), so the tests check
the slots: how many, in which bucket, and that no two are closer than the bucket's interval. Where real clients
really sleep, the checks are counts with the slack a slow request could need.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest

from bv_pipeline.config import ConfigError, Settings
from bv_pipeline.definitions import build_definitions
from bv_pipeline.ops.live_sync import LIVE_SYNC_JOB, LIVE_SYNC_OP
from bv_pipeline.partitions import site_day_key
from bv_pipeline.resources.ace import AceClient
from bv_pipeline.resources.ace_rate_limit import (
    BATCH_BUCKET,
    GLOBAL_BUCKET,
    MAX_AHEAD_S,
    Bucket,
    LaneLimiter,
    MemorySlotStore,
    PostgresSlotStore,
    RateLimitStoreError,
    SlotStore,
    SqliteSlotStore,
    ace_buckets,
)
from bv_pipeline.resources.ace_resource import AceResource
from bv_pipeline.resources.wiring import build_resources
from bv_pipeline.sensors import live_sync_run_config
from bv_pipeline.simulator import AceSimulator, SimulatorConfig, run_server
from bv_pipeline_tests.fixtures.postgres import PostgresServer
from bv_pipeline_tests.stack import SimulatedAceResource, Stack

ROOT = Path(__file__).resolve().parents[2]
PER_MINUTE = 600  # 10/s, burst 10; batch at half: 5/s, burst 5


class SimClock:
    """Simulated time for several threads: ``sleep`` blocks a thread until the clock reaches its wake time, and the
    clock jumps to the earliest wake time once every thread is asleep or finished. Requests take no time."""

    def __init__(self, threads: int) -> None:
        self.now = 0.0
        self._running = threads
        self._sleepers: list[list[Any]] = []  # [wake time, released]
        self._cond = threading.Condition()

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._cond:
            token: list[Any] = [self.now + seconds, False]
            self._sleepers.append(token)
            self._running -= 1
            self._advance()
            while not token[1]:
                self._cond.wait()

    def finish(self) -> None:
        with self._cond:
            self._running -= 1
            self._advance()

    def _advance(self) -> None:
        if self._running or not self._sleepers:
            return
        self.now = min(t[0] for t in self._sleepers)
        for token in [t for t in self._sleepers if t[0] <= self.now]:
            token[1] = True
            self._sleepers.remove(token)
            self._running += 1
        self._cond.notify_all()


@dataclass
class SimWorker:
    """A thread sending requests in ``lane`` until the end, ``pause_s`` apart (0: back to back)."""

    lane: str
    pause_s: float = 0.0
    sent: list[float] = field(default_factory=list)  # send times
    waits: list[float] = field(default_factory=list)  # rate-limit wait of each sent request


def simulate(store: SlotStore, workers: Sequence[SimWorker], until_s: float) -> None:
    """Run ``workers`` on one simulated clock until ``until_s`` simulated seconds."""
    clock = SimClock(len(workers))

    def run(w: SimWorker) -> None:
        limiter = LaneLimiter(
            store, ace_buckets(PER_MINUTE, 0.5, w.lane), clock=clock.time, sleep=clock.sleep
        )
        try:
            while True:
                waited = limiter.acquire()
                if clock.now >= until_s:
                    return
                w.sent.append(clock.now)
                w.waits.append(waited)
                if w.pause_s:
                    clock.sleep(w.pause_s)
        finally:
            clock.finish()

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)


def run_lanes(store: SlotStore, lanes: Sequence[str], until_s: float) -> dict[str, list[float]]:
    """One back-to-back worker per entry of ``lanes``; the send times per lane."""
    workers = [SimWorker(lane) for lane in lanes]
    simulate(store, workers, until_s)
    return {lane: sorted(t for w in workers if w.lane == lane for t in w.sent) for lane in set(lanes)}


def max_in_window(times: list[float], window_s: float) -> int:
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window_s + 1e-9:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_batch_is_capped_at_its_share_and_live_gets_the_rest(backend: str, tmp_path: Path) -> None:
    store: SlotStore = MemorySlotStore() if backend == "memory" else SqliteSlotStore(tmp_path / "rl.sqlite")
    # Four batch workers (backfill steps, archival, settle) against one live sync worker, 60 simulated seconds.
    sent = run_lanes(store, ["batch", "batch", "batch", "batch", "live"], until_s=60.0)
    batch, live = sent["batch"], sent["live"]
    # Batch: 5/s plus its burst of 5, however many workers push. Live: the other half (its burst of 10 at t=0
    # shares the global burst with batch's first requests).
    assert 300 <= len(batch) <= 305
    assert 295 <= len(live) <= 310
    everything = batch + live
    assert len(everything) <= 600 + 10
    # GCRA: in any window of T seconds at most burst + rate * T requests, for the whole and for batch alone.
    for window_s in (1.0, 5.0, 20.0):
        assert max_in_window(everything, window_s) <= 10 + 10 * window_s
        assert max_in_window(batch, window_s) <= 5 + 5 * window_s
    store.close()


def test_live_alone_gets_the_whole_rate_batch_alone_half() -> None:
    live = run_lanes(MemorySlotStore(), ["live", "live"], until_s=30.05)["live"]
    batch = run_lanes(MemorySlotStore(), ["batch", "batch"], until_s=30.05)["batch"]
    assert len(live) == 10 + 10 * 30  # the burst at 0 s, then one per 0.1 s up to 30 s
    assert len(batch) == 5 + 5 * 30  # the burst at 0 s, then one per 0.2 s


def test_live_requests_do_not_queue_behind_a_saturating_backfill() -> None:
    """Eight batch workers push as hard as they can; a live request every 2 s still goes out at once. Without the
    lanes (the same eight workers taking slots from the global bucket directly) it queues behind them."""
    sync = SimWorker("live", pause_s=2.0)
    backfill = [SimWorker("batch") for _ in range(8)]
    simulate(MemorySlotStore(), [*backfill, sync], until_s=60.0)
    assert len(sync.sent) == 30 and sum(sync.waits) == 0.0
    assert 300 <= sum(len(w.sent) for w in backfill) <= 305  # batch kept its whole share meanwhile

    sync = SimWorker("live", pause_s=2.0)
    simulate(MemorySlotStore(), [*(SimWorker("live") for _ in range(8)), sync], until_s=60.0)
    assert len(sync.sent) < 30 and sum(sync.waits) > 10  # most of its requests waited, for ~0.8 s each


def test_waits_are_virtual_when_sleep_does_not_advance_the_clock() -> None:
    """A frozen clock and a sleep that only records: every request is still charged its slot."""
    waits: list[float] = []
    store = MemorySlotStore()
    limiter = LaneLimiter(store, ace_buckets(60, 0.5, "batch"), clock=lambda: 5.0, sleep=waits.append)
    total = sum(limiter.acquire() for _ in range(4))
    # Batch: 30/min = one per 2 s, burst 1; the global bucket (1/s) then sees requests at 5 s of virtual time.
    assert waits == pytest.approx([2.0, 1.0, 4.0, 2.0, 6.0, 3.0])
    assert total == pytest.approx(sum(waits))


def test_a_schedule_far_in_the_future_restarts_from_now(tmp_path: Path) -> None:
    """A clock that jumped backwards must not block ACE requests for hours."""
    bucket = Bucket(GLOBAL_BUCKET, 60, 1)
    for store in (MemorySlotStore(), SqliteSlotStore(tmp_path / "rl.sqlite")):
        store.reserve(bucket, 10 * MAX_AHEAD_S)
        slot = store.reserve(bucket, 1000.0)
        assert slot.send_at == 1000.0 and slot.wait_s == 0.0
        assert store.reserve(bucket, 1000.0).wait_s == pytest.approx(1.0)
        store.close()


def test_sqlite_store_uses_its_own_epoch_clock(tmp_path: Path) -> None:
    store = SqliteSlotStore(tmp_path / "rl.sqlite")
    bucket = Bucket(GLOBAL_BUCKET, 60, 1)
    first, second = store.reserve(bucket), store.reserve(bucket)
    assert abs(first.now - time.time()) < 60 and first.wait_s == 0.0  # epoch seconds, read by SQLite
    assert second.send_at == pytest.approx(first.send_at + 1.0)
    assert 0.9 < second.wait_s <= 1.0
    store.close()


def assert_hold(store: SlotStore) -> None:
    bucket = Bucket("hold-test", 60, 3)  # 1/s, burst 3
    store.hold(bucket, 5.0, 100.0)
    # Nothing for 5 s, then one per second: the burst is not available right after a 429.
    assert [store.reserve(bucket, 100.0).wait_s for _ in range(3)] == pytest.approx([5.0, 6.0, 7.0])
    store.hold(bucket, 1.0, 100.0)  # a shorter hold never shortens the schedule
    assert store.reserve(bucket, 100.0).wait_s == pytest.approx(8.0)


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_a_hold_stops_the_bucket_then_resumes_at_its_rate(backend: str, tmp_path: Path) -> None:
    assert_hold(MemorySlotStore() if backend == "memory" else SqliteSlotStore(tmp_path / "rl.sqlite"))


def test_a_429_in_one_client_holds_the_others(tmp_path: Path) -> None:
    """ACE's Retry-After applies to the whole budget: a client on another connection (another process) waits too."""
    path = tmp_path / "ace-rate-limit.sqlite"
    answers = iter([httpx.Response(429, headers={"Retry-After": "3"}, json={"message": "slow down"})])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or httpx.Response(200, json={"items": [], "pages": 1, "total": 0})

    def client(clock: Callable[[], float], sleep: Callable[[float], None]) -> AceClient:
        limiter = LaneLimiter(SqliteSlotStore(path), ace_buckets(600, 0.5, "live"), clock=clock, sleep=sleep)
        transport = httpx.MockTransport(handler)
        return AceClient("http://ace.test/api", "k", transport=transport, sleep=sleep, limiter=limiter)

    now = [1000.0]
    first_sleeps: list[float] = []

    def first_sleep(seconds: float) -> None:
        first_sleeps.append(seconds)
        now[0] += seconds

    other_sleeps: list[float] = []
    first = client(lambda: now[0], first_sleep)
    other = client(lambda: 1000.0, other_sleeps.append)  # asks at the moment the first client got its 429
    assert first.list_sites() == []  # 429 with Retry-After 3 s, then 200
    assert first_sleeps == [3.0]  # its own retry: at 1003 s the hold is over and its slot is due
    assert other.list_sites() == []
    # The other client waits out the hold too, and then one interval (0.1 s) behind the first client's retry.
    assert other_sleeps == pytest.approx([3.1]) and other.rate_waits == 1


def test_many_connections_opening_a_new_file_at_once(tmp_path: Path) -> None:
    """Run workers starting together all create the file and switch it to WAL: none may fail with "locked" (before
    the retry, about 3 % of such rounds of 8 did)."""
    errors: list[Exception] = []
    for round_no in range(40):
        barrier = threading.Barrier(8)

        def open_store(
            path: Path = tmp_path / f"rl-{round_no}.sqlite", barrier: threading.Barrier = barrier
        ) -> None:
            barrier.wait()
            try:
                SqliteSlotStore(path).close()
            except Exception as exc:  # collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=open_store) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


def test_an_unusable_sqlite_path_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(RateLimitStoreError, match=r"cannot open the ACE rate-limit store .*file/rl\.sqlite"):
        SqliteSlotStore(tmp_path / "file" / "rl.sqlite")


def test_bucket_and_lane_validation() -> None:
    with pytest.raises(ValueError, match="lane must be one of"):
        ace_buckets(600, 0.5, "backfill")
    with pytest.raises(ValueError, match="batch_share"):
        ace_buckets(600, 0.0, "batch")
    assert [b.name for b in ace_buckets(600, 0.25, "batch")] == [BATCH_BUCKET, GLOBAL_BUCKET]
    assert ace_buckets(600, 0.25, "batch")[0].per_minute == 150
    assert [b.name for b in ace_buckets(600, 0.25, "live")] == [GLOBAL_BUCKET]
    with pytest.raises(ValueError, match="lane must be one of"):
        AceResource(rate_limit_path="/nonexistent/x.sqlite").get_client("nightly")


def test_settings_and_wiring(tmp_path: Path) -> None:
    s = Settings.from_env({"BV_DATA_DIR": str(tmp_path), "BV_ACE_BATCH_SHARE": "0.3"})
    assert s.ace_batch_share == 0.3 and s.ace_rate_limit_path == tmp_path / "ace-rate-limit.sqlite"
    ace = build_resources(s)["ace"]
    assert ace.batch_share == 0.3 and ace.rate_limit_path == str(tmp_path.resolve() / "ace-rate-limit.sqlite")
    assert ace.rate_limit_url is None
    for bad in ("0", "1.5", "-0.2", "half", "nan"):
        with pytest.raises(ConfigError, match="BV_ACE_BATCH_SHARE"):
            Settings.from_env({"BV_ACE_BATCH_SHARE": bad})
    url = "postgresql://u:secret@db.internal:5432/bv"
    s = Settings.from_env({"BV_ACE_RATE_LIMIT_URL": url})
    assert s.ace_rate_limit_url_set
    assert build_resources(s)["ace"].rate_limit_url == dg.EnvVar("BV_ACE_RATE_LIMIT_URL")
    for bad in ("postgresql+psycopg2://u@h/db", "mysql://h/db", "postgresql:///db"):
        with pytest.raises(ConfigError, match="BV_ACE_RATE_LIMIT_URL") as err:
            Settings.from_env({"BV_ACE_RATE_LIMIT_URL": bad})
        assert "secret" not in str(err.value)


# -- real processes --------------------------------------------------------------------------------------------


def run_workers(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Start one worker process per job, release them together, return their JSON answers."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bv_pipeline_tests.test_resources.ace_rate_worker", json.dumps(job)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=env,
            text=True,
        )
        for job in jobs
    ]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    answers = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        answers.append(json.loads(out))
    return answers


def assert_spaced(times: list[float], interval_s: float) -> None:
    times = sorted(times)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= interval_s - 1e-6, f"two slots {min(gaps):.6f} s apart, interval {interval_s}"


def reserve_in_processes(store: dict[str, str], per_process: int) -> None:
    """Two live and two batch processes reserve against one store at one frozen virtual time (sleeps do nothing),
    so every slot is a distinct step of the shared schedule."""
    now = 1_000_000.0
    lanes = ["live", "batch", "live", "batch"]
    jobs = [
        {"store": store, "lane": lane, "per_minute": PER_MINUTE, "batch_share": 0.5, "mode": "reserve"}
        | {"count": per_process, "now": now}
        for lane in lanes
    ]
    answers = run_workers(jobs)
    global_slots = [t for a in answers for name, t in a["slots"] if name == GLOBAL_BUCKET]
    batch_slots = [t for a in answers for name, t in a["slots"] if name == BATCH_BUCKET]
    assert len(global_slots) == 4 * per_process and len(batch_slots) == 2 * per_process
    # One shared schedule: consecutive global slots exactly one interval apart, none shared, none skipped.
    assert_spaced(global_slots, 0.1)
    assert max(global_slots) - min(global_slots) == pytest.approx((4 * per_process - 1) * 0.1)
    assert_spaced(batch_slots, 0.2)
    assert max(batch_slots) - min(batch_slots) == pytest.approx((2 * per_process - 1) * 0.2)


def test_processes_share_one_sqlite_schedule(tmp_path: Path) -> None:
    reserve_in_processes({"path": str(tmp_path / "ace-rate-limit.sqlite")}, per_process=300)


def test_processes_share_one_postgres_schedule(postgres_server: PostgresServer) -> None:
    reserve_in_processes({"url": postgres_server.url}, per_process=150)


def test_an_unreachable_postgres_store_fails_clearly_without_the_password() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RateLimitStoreError, match=f"PostgreSQL 127.0.0.1:{port}/bv.*unreachable") as err:
        PostgresSlotStore(f"postgresql://u:hunter2secret@127.0.0.1:{port}/bv", connect_timeout_s=2)
    assert "hunter2secret" not in str(err.value)


def test_postgres_store_uses_the_server_clock(postgres_server: PostgresServer) -> None:
    assert_hold(PostgresSlotStore(postgres_server.url))
    store = PostgresSlotStore(postgres_server.url)
    bucket = Bucket("clock-test", 60, 1)
    first, second = store.reserve(bucket), store.reserve(bucket)
    assert abs(first.now - second.now) < 60 and first.wait_s == 0.0  # the server's epoch seconds, not a fake
    assert second.send_at == pytest.approx(first.send_at + 1.0)
    assert second.wait_s == pytest.approx(1.0 - (second.now - first.now), abs=1e-6)
    store.close()


def test_wired_resource_takes_slots_in_postgres(
    postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BV_ACE_RATE_LIMIT_URL set: the wired resource resolves it at run time and its clients reserve in PostgreSQL."""
    import psycopg2

    monkeypatch.setenv("BV_ACE_RATE_LIMIT_URL", postgres_server.url)
    settings = Settings.from_env({"BV_DATA_DIR": str(tmp_path), "BV_ACE_RATE_LIMIT_URL": postgres_server.url})
    with (
        dg.build_resources({"ace": build_resources(settings)["ace"]}) as resources,
        resources.ace.get_client("batch") as client,
    ):
        client.list_sites()
        client.list_sites()
    with psycopg2.connect(postgres_server.url) as conn, conn.cursor() as cur:
        cur.execute("SELECT bucket FROM bv_ace_rate_limit ORDER BY bucket")
        assert [name for (name,) in cur.fetchall()] == [GLOBAL_BUCKET, BATCH_BUCKET]
    assert not (tmp_path / "ace-rate-limit.sqlite").exists()  # the box-local file is not used


def test_two_clients_in_two_processes_share_the_budget_at_the_simulator(tmp_path: Path) -> None:
    """Real AceClients (two sub-window threads each, real sleeps), one in the live lane and one in the batch lane,
    against the HTTP simulator: every request the simulator served took exactly one slot of the shared budget."""
    day_after = 1_786_406_400.0 + 2 * 86_400  # every sample of the fetched windows is visible
    sim = AceSimulator(SimulatorConfig(points=20), clock=lambda: day_after)
    start_ms = 1_786_406_400_000  # 2026-08-11T00:00Z
    per_minute, hours = 120, 4  # 2/s (burst 2), batch 1/s (burst 1): about 3 s of real waiting in all
    with run_server(sim) as base_url:
        jobs = [
            {"store": {"path": str(tmp_path / "rl.sqlite")}, "lane": lane, "per_minute": per_minute}
            | {
                "batch_share": 0.5,
                "mode": "fetch",
                "base_url": base_url,
                "start_ms": start_ms,
                "hours": hours,
            }
            for lane in ("live", "batch")
        ]
        answers = run_workers(jobs)
        served = sim.requests_served
    global_slots = [t for a in answers for name, t in a["slots"] if name == GLOBAL_BUCKET]
    assert served == sum(a["requests"] for a in answers) == len(global_slots) == 2 * hours
    assert all(a["rows"] == answers[0]["rows"] > 0 for a in answers)
    assert_spaced(global_slots, 60 / per_minute)
    batch = answers[1]["slots"]
    assert sum(1 for name, _ in batch if name == BATCH_BUCKET) == hours
    # The batch client's two sub-window threads start together and batch has a burst of 1: at least its
    # second request waited about a second for its slot (the later ones too, unless their thread was slower),
    # and the client counted it.
    assert answers[1]["rate_wait_s"] > 0.5


def test_live_sync_uses_the_live_lane_and_metadata_shows_rate_limit_waits(tmp_path: Path) -> None:
    """live_sync_job takes ACE slots in the live lane only; hot_timeseries (manual materialisations, backfills) in
    the batch lane, and its materialisation reports how many requests waited and how long. 600/min with a batch
    share of 0.1: live 10/s with a burst of 10, batch 1/s with a burst of 1."""
    path = tmp_path / "ace-rate-limit.sqlite"
    stack = Stack(tmp_path, points=5)
    stack.set_now(dt.datetime(2026, 3, 10, 3, 3, tzinfo=dt.UTC))
    ace = SimulatedAceResource(simulator_id=stack.sim_id, rate_limit_path=str(path), batch_share=0.1)
    defs = build_definitions(stack.settings, resources=stack.resources() | {"ace": ace})
    partition = str(site_day_key("demo", dt.date(2026, 3, 10)))

    def buckets() -> set[str]:
        with sqlite3.connect(path) as conn:
            return {name for (name,) in conn.execute("SELECT bucket FROM ace_rate_limit")}

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("sites", ["demo"])
        live = defs.resolve_job_def(LIVE_SYNC_JOB).execute_in_process(
            instance=instance, run_config=live_sync_run_config(["demo"])
        )
        assert live.success
        assert buckets() == {GLOBAL_BUCKET}  # the live sync never touched the batch bucket
        [live_mat] = live.asset_materializations_for_node(LIVE_SYNC_OP)
        assert live_mat.partition == partition
        by_hand = defs.resolve_job_def("hot_sync_job").execute_in_process(
            partition_key=partition, instance=instance
        )
        assert by_hand.success
        assert buckets() == {GLOBAL_BUCKET, BATCH_BUCKET}
    [mat] = by_hand.asset_materializations_for_node("hot_timeseries")
    md = {k: v.value for k, v in mat.metadata.items()}
    # The points, then one request per hour of the day up to 03:03 (4, counted by ace_requests), 5 in all. Batch:
    # the first request goes at once, the next four each wait for their 1 s slot (all four unless a request of
    # five points took a whole second).
    assert md["ace_requests"] == 4
    assert md["ace_rate_limit_waits"] >= 3 and md["ace_rate_limit_wait_s"] > 1.5
