"""Growth of Dagster's own storage per sync run, and per site per month, before and after run retention.

Real sync runs: the real daemon (``dagster-daemon run`` on ``workspace.yaml``) with the sync sensor every few
seconds, one site on the embedded simulator, the repository's dagster.yaml (SQLite) and, when PostgreSQL server
binaries are installed, deploy/dagster.yaml on a private cluster. After the first (whole-day) sync, N more runs
are measured: bytes and files under DAGSTER_HOME (SQLite: run/event databases, compute logs; Postgres: the
database size plus compute logs). Then ``prune_runs`` (the daily retention job's logic) is applied as if the runs
were older than BV_RUN_RETENTION_DAYS, and the storage is measured again.

    python -m bench.bench_dagster_storage [--runs 12] [--no-postgres]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sqlite3
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import dagster as dg

from bench._common import write_result
from bv_pipeline.config import AutomationSettings
from bv_pipeline.logic.run_retention import RunRetentionPolicy, prune_runs
from bv_pipeline.ops.live_sync import LIVE_SYNC_JOB
from bv_pipeline.run_retention import RUN_RETENTION_JOB
from bv_pipeline_tests.daemon import (
    ROOT,
    open_instance,
    pipeline_env,
    running_daemon,
    wait_for,
    write_instance_yaml,
)
from bv_pipeline_tests.fixtures.postgres import PostgresServer, postgres_bin_dir, private_postgres

SYNCS_PER_SITE_MONTH = 288 * 30  # every 5 minutes, 30 days
KEEP_DAYS = AutomationSettings().run_retention_days  # the shipped defaults
KEEP_FAILED_DAYS = AutomationSettings().failed_run_retention_days


def _tree(home: Path) -> tuple[int, int]:
    """Bytes and files under DAGSTER_HOME, not counting our own log and config."""
    size = files = 0
    for dirpath, _dirs, names in os.walk(home):
        for name in names:
            if name in ("daemon.log", "dagster.yaml"):
                continue
            size += os.path.getsize(os.path.join(dirpath, name))
            files += 1
    return size, files


def _pg_bytes(server: PostgresServer) -> int:
    import psycopg2

    with (
        psycopg2.connect(
            host=server.host, port=server.port, user=server.user, password=server.password, dbname=server.db
        ) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SELECT pg_database_size(current_database())")
        return int(cur.fetchone()[0])


def _vacuum_sqlite(home: Path) -> None:
    for db in home.rglob("*.db"):
        with sqlite3.connect(db) as conn:
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # else the WAL holds a second copy


def measure(backend: str, runs: int, server: PostgresServer | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bv-bench-dagster-") as tmp:
        home = Path(tmp) / "dagster_home"
        source = ROOT / ("deploy/dagster.yaml" if server else "dagster.yaml")
        write_instance_yaml(home, source=source)
        extra = server.env() if server else {}
        env = pipeline_env(
            home, BV_SITES="demo", BV_DATA_DIR=str(Path(tmp) / "data"), BV_SYNC_INTERVAL_SECONDS="5", **extra
        )
        os.environ.update(extra)

        def size() -> tuple[int, int]:
            b, f = _tree(home)
            return (b + _pg_bytes(server), f) if server else (b, f)

        def successes(instance: dg.DagsterInstance) -> int:
            done = instance.get_runs(
                filters=dg.RunsFilter(job_name=LIVE_SYNC_JOB, statuses=[dg.DagsterRunStatus.SUCCESS])
            )
            return len(done)

        # Storage is created here first: a daemon creating it at the same moment could race on its schema.
        with open_instance(home) as instance, running_daemon(home, env):
            wait_for(lambda: successes(instance) >= 1, "the first sync", timeout=600, home=home)
            base_bytes, base_files = size()
            base_runs = len(instance.get_runs(filters=dg.RunsFilter(job_name=LIVE_SYNC_JOB)))
            wait_for(lambda: successes(instance) >= 1 + runs, f"{runs} more syncs", timeout=3600, home=home)
        with open_instance(home) as instance:
            all_runs = len(instance.get_runs(filters=dg.RunsFilter(job_name=LIVE_SYNC_JOB)))
            measured = all_runs - base_runs
            grown_bytes, grown_files = size()
            per_run = (grown_bytes - base_bytes) / measured
            files_per_run = (grown_files - base_files) / measured
            policy = RunRetentionPolicy(KEEP_DAYS, KEEP_FAILED_DAYS, (LIVE_SYNC_JOB, RUN_RETENTION_JOB))
            later = dt.datetime.now(dt.UTC) + dt.timedelta(days=KEEP_FAILED_DAYS + 1)
            pruned = prune_runs(instance, policy, later)
            after_bytes, after_files = size()
        if not server:
            _vacuum_sqlite(home)
        vacuumed_bytes, _ = size()
    return {
        f"{backend}_runs_measured": measured,
        f"{backend}_bytes_per_sync_run": round(per_run),
        f"{backend}_files_per_sync_run": round(files_per_run, 2),
        f"{backend}_per_site_month_MB_without_retention": round(per_run * SYNCS_PER_SITE_MONTH / 1e6, 1),
        f"{backend}_per_site_month_files_without_retention": round(files_per_run * SYNCS_PER_SITE_MONTH),
        # With the daily retention job, a site's sync runs settle at KEEP_DAYS worth (failures aside).
        f"{backend}_per_site_MB_with_retention_{KEEP_DAYS}d": round(per_run * 288 * KEEP_DAYS / 1e6, 1),
        f"{backend}_per_site_files_with_retention_{KEEP_DAYS}d": round(files_per_run * 288 * KEEP_DAYS),
        f"{backend}_bytes_before_retention": grown_bytes,
        f"{backend}_files_before_retention": grown_files,
        f"{backend}_runs_deleted_by_retention": pruned.runs_deleted,
        f"{backend}_bytes_after_retention": after_bytes,
        f"{backend}_files_after_retention": after_files,
        f"{backend}_bytes_after_retention_and_vacuum": vacuumed_bytes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_dagster_storage")
    parser.add_argument("--runs", type=int, default=12, help="sync runs measured after the first one")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    figures: dict[str, Any] = {"runs_per_site_month": SYNCS_PER_SITE_MONTH}
    figures.update(measure("sqlite", args.runs, None))
    if not args.no_postgres:
        try:
            postgres_bin_dir()
        except AssertionError as exc:
            figures["postgres"] = f"not measured: {exc}"
        else:
            with ExitStack() as stack:
                server = stack.enter_context(private_postgres())
                figures.update(measure("postgres", args.runs, server))
    write_result("bench_dagster_storage", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
