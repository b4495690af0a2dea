"""PostgreSQL connections of a running deployment: how many Dagster holds at once and how many it opens per run.

The real daemon (``dagster-daemon run`` on ``workspace.yaml``: daemon, its code server, and the run workers the
code server starts) on ``deploy/dagster.yaml`` with a private PostgreSQL cluster, one site on the embedded
simulator: first idle (the sensor every hour, after its first sync), then busy (the sensor every few seconds). A
sampler on its own single connection reads ``pg_stat_activity`` (connections open now, excluding itself) every
0.1 s and ``pg_stat_database.sessions`` (connections ever opened), and counts successful sync runs in the ``runs``
table, so the benchmark adds no Dagster connections of its own while measuring. The webserver is not running: its pool is bounded by its flags (see deploy/multi-machine.md).

    python -m bench.bench_pg_connections [--runs 10] [--idle-seconds 90]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg2

from bench._common import median, percentile, write_result
from bv_pipeline.jobs import HOT_SYNC_JOB
from bv_pipeline_tests.daemon import open_instance, pipeline_env, running_daemon, write_instance_yaml
from bv_pipeline_tests.fixtures.postgres import PostgresServer, private_postgres

ROOT = Path(__file__).resolve().parent.parent
SYNC_INTERVAL_S = 5


class Sampler:
    """Polls PostgreSQL's own statistics over one connection (not counted in the figures)."""

    def __init__(self, server: PostgresServer) -> None:
        self.conn = psycopg2.connect(
            host=server.host, port=server.port, user=server.user, password=server.password, dbname=server.db
        )
        self.conn.autocommit = True
        self.open_now: list[int] = []
        self.sampling = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def query(self, sql: str, *args: Any) -> int:
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return int(cur.fetchone()[0])

    def sessions(self) -> int:
        # pg_stat_database is a snapshot per transaction; autocommit makes every read fresh.
        return self.query("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")

    def successes(self) -> int:
        return self.query(
            "SELECT count(*) FROM runs WHERE pipeline_name = %s AND status = 'SUCCESS'", HOT_SYNC_JOB
        )

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            if not self.sampling.is_set():
                continue
            self.open_now.append(
                self.query(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.conn.close()


def _wait(check: Any, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}; see the daemon log")
        time.sleep(0.5)


def measure(server: PostgresServer, runs: int, idle_s: float) -> dict[str, Any]:
    """Phase 1, idle: the daemon with the sync sensor every hour, after its first sync, for ``idle_s`` (the
    daemon's and code server's own polling). Phase 2, busy: the sensor every SYNC_INTERVAL_S, ``runs`` syncs."""
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bv-bench-pgconn-") as tmp:
        home = Path(tmp) / "dagster_home"
        write_instance_yaml(home, source=ROOT / "deploy" / "dagster.yaml")
        os.environ.update(server.env())
        # Storage is created here first: a daemon creating it at the same moment could race on its schema.
        with open_instance(home):
            pass
        sampler = Sampler(server)
        try:
            for phase, interval in (("idle", 3600), ("busy", SYNC_INTERVAL_S)):
                env = pipeline_env(
                    home,
                    BV_SITES="demo",
                    BV_DATA_DIR=str(Path(tmp) / "data"),
                    BV_SYNC_INTERVAL_SECONDS=str(interval),
                    **server.env(),
                )
                with running_daemon(home, env):
                    if phase == "idle":
                        _wait(lambda: sampler.successes() >= 1, "the first (whole-day) sync", 600)
                        time.sleep(
                            30
                        )  # the first run's worker has exited; only the daemon and code server remain
                    else:
                        time.sleep(10)  # daemon and code server started
                    runs0, sessions0, t0 = sampler.successes(), sampler.sessions(), time.monotonic()
                    sampler.open_now.clear()
                    sampler.sampling.set()
                    if phase == "idle":
                        time.sleep(idle_s)
                    else:
                        _wait(lambda r=runs0: sampler.successes() >= r + runs, f"{runs} syncs", 1800)
                    sampler.sampling.clear()
                    runs1, sessions1, t1 = sampler.successes(), sampler.sessions(), time.monotonic()
                opened, minutes = sessions1 - sessions0, (t1 - t0) / 60
                open_now = [float(n) for n in sampler.open_now]
                figures.update(
                    {
                        f"{phase}_seconds": round(t1 - t0, 1),
                        f"{phase}_sync_runs": runs1 - runs0,
                        f"{phase}_connections_opened": opened,
                        f"{phase}_connections_opened_per_minute": round(opened / minutes, 1),
                        f"{phase}_connections_open_median": median(open_now),
                        f"{phase}_connections_open_p99": percentile(open_now, 99),
                        f"{phase}_connections_open_max": max(open_now),
                    }
                )
        finally:
            sampler.stop()
    busy_runs = figures["busy_sync_runs"]
    idle_rate = figures["idle_connections_opened_per_minute"]
    extra = figures["busy_connections_opened"] - idle_rate * figures["busy_seconds"] / 60
    figures["sync_interval_s_busy"] = SYNC_INTERVAL_S
    figures["connections_opened_per_sync_run_beyond_idle"] = round(extra / busy_runs, 1)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_pg_connections")
    parser.add_argument("--runs", type=int, default=10, help="sync runs measured in the busy phase")
    parser.add_argument("--idle-seconds", type=float, default=90, help="length of the idle phase")
    args = parser.parse_args(argv)
    with private_postgres() as server:
        figures = measure(server, args.runs, args.idle_seconds)
    write_result("bench_pg_connections", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
