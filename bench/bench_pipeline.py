"""The pipeline's own paths at benchmark scale (4,583 points, 1-minute cadence, ~6.5 M samples per site-day).

1. One 5-minute sync from the simulator (HTTP, separate process) into SQLite, after half a day is already
   stored: the pure 5-minute window, and the real sync window (5 minutes + the 10-minute lookback).
   Target: under 1 s wall.
2. The same sync into D1 (official SDK against the local D1-compatible endpoint): API requests per sync.
   Target: at most 5.
3. Archival of one whole site-day from SQLite to the S3 server (moto, separate process), including the
   read-back verification. Target: under 15 s.
4. Backfill of one site-day from the simulator over HTTP straight to the S3 server (never via the hot tier).
   Target: under 30 s.

    .venv/bin/python -m bench.bench_pipeline [--points 4583] [--only archive] [--archive-runs 3]

``--only`` (repeatable) runs just the named parts; the day that archival needs is then synced in one go.
``--archive-runs N`` archives the day N times (the object deleted in between, so every run does the same work)
and reports the median with every run's figures: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import peak_rss_mib, write_result
from bench.bench_ace_fetch import _in_child, _serve

SITE = "bench"  # must match bench_ace_fetch's simulator config
PARTS = ("sync", "d1", "archive", "backfill")
DAY = dt.date(2026, 8, 7)
MIN_MS = 60_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto server did not start")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.bench_pipeline")
    ap.add_argument("--points", type=int, default=4583)
    ap.add_argument("--syncs", type=int, default=5, help="5-minute syncs to time (median reported)")
    ap.add_argument("--only", action="append", choices=PARTS, help="run only these parts (repeatable)")
    ap.add_argument("--archive-runs", type=int, default=1, help="archive the day this many times (median)")
    args = ap.parse_args(argv)
    parts = set(args.only or PARTS)

    import boto3

    from bv_pipeline.logic.archive import archive_site_day
    from bv_pipeline.logic.hot_sync import SyncMode, sync_site_day
    from bv_pipeline.resources.ace import AceClient
    from bv_pipeline.resources.cold_store import S3ObjectStore, make_s3_client
    from bv_pipeline.resources.hot_store import D1HotStore, SqliteHotStore
    from bv_pipeline.storage.cold_keys import samples_key
    from bv_pipeline.storage.samples import day_bounds_ms
    from bv_pipeline_tests.fakes.d1_server import run_fake_d1

    day_start, day_end = day_bounds_ms(DAY)
    figures: dict[str, object] = {"points": args.points}
    server, conn, _child = _in_child(_serve, args.points)
    base_url = conn.recv()
    moto, s3_url = _start_moto()
    try:
        client = AceClient(base_url, "bench-key", requests_per_minute=100_000)
        with tempfile.TemporaryDirectory() as tmp:
            hot = SqliteHotStore(Path(tmp) / "hot.sqlite3")
            hot.ensure_schema()

            # -- 1. 5-minute syncs after half a day -------------------------------------------------------------
            noon = day_start + 12 * 60 * MIN_MS
            if "sync" in parts:
                t = time.perf_counter()
                primed = sync_site_day(client, hot, SITE, DAY, now_ms=noon, mode=SyncMode.FULL_DAY)
                figures["prime_half_day_rows"] = primed.rows_upserted
                figures["prime_half_day_s"] = round(time.perf_counter() - t, 2)
                pure, real, rows_pure, rows_real = [], [], [], []
                now = noon
                for _ in range(args.syncs):
                    # The pure 5-minute window (no lookback) ...
                    now += 5 * MIN_MS
                    t = time.perf_counter()
                    r = sync_site_day(client, hot, SITE, DAY, now_ms=now, lookback_minutes=0)
                    pure.append(time.perf_counter() - t)
                    rows_pure.append(r.rows_upserted)
                    # ... and the sensor's real sync 5 minutes later: 5 new minutes + the default 10-minute lookback.
                    now += 5 * MIN_MS
                    t = time.perf_counter()
                    r = sync_site_day(client, hot, SITE, DAY, now_ms=now, lookback_minutes=10)
                    real.append(time.perf_counter() - t)
                    rows_real.append(r.rows_upserted)
                figures["sync_5min_window_rows"] = int(statistics.median(rows_pure))
                figures["sync_5min_window_s_median"] = round(statistics.median(pure), 3)
                figures["sync_with_10min_lookback_rows"] = int(statistics.median(rows_real))
                figures["sync_with_10min_lookback_s_median"] = round(statistics.median(real), 3)
                figures["sync_target_s"] = 1.0

            # -- 2. D1 requests per 5-minute sync ------------------------------------------------------------------
            if "d1" in parts:
                with run_fake_d1() as fake:
                    d1 = D1HotStore(fake.account_id, fake.database_id, fake.token, base_url=fake.base_url)
                    d1.ensure_schema()
                    # A day's first sync (point metadata + ids), then a steady-state sensor sync 5 minutes later.
                    first_now = noon + 20 * MIN_MS
                    d1.set_sync_as_of(SITE, DAY, first_now - 5 * MIN_MS)
                    before = d1.requests_made
                    sync_site_day(client, d1, SITE, DAY, now_ms=first_now, lookback_minutes=0)
                    figures["d1_requests_first_sync"] = d1.requests_made - before
                    before = d1.requests_made
                    r = sync_site_day(client, d1, SITE, DAY, now_ms=first_now + 5 * MIN_MS)
                    d1.window_stats(
                        SITE, first_now - 10 * MIN_MS, day_end, first_now + 5 * MIN_MS
                    )  # the checks' query
                    figures["d1_requests_per_5min_sync_steady_incl_checks"] = d1.requests_made - before
                    figures["d1_rows_per_5min_sync_steady"] = r.rows_upserted
                    figures["d1_target_requests"] = 5
                    d1.close()

            # -- 3. archival of a whole day from SQLite to S3 --------------------------------------------------
            boto3.client(
                "s3",
                endpoint_url=s3_url,
                region_name="us-east-1",
                aws_access_key_id="k",
                aws_secret_access_key="s",
            ).create_bucket(Bucket="bench")
            cold = S3ObjectStore(make_s3_client(s3_url, "us-east-1", "k", "s"), "bench")

            if "archive" in parts:
                # Without part 1 nothing is synced yet: take the whole day in one go.
                mode = SyncMode.INCREMENTAL if "sync" in parts else SyncMode.FULL_DAY
                sync_site_day(client, hot, SITE, DAY, now_ms=day_end + 15 * MIN_MS, mode=mode)
                figures["hot_day_rows"] = hot.count_samples(SITE, day_start, day_end)
                runs: list[tuple[float, Any]] = []
                for _ in range(max(1, args.archive_runs)):
                    cold.delete(samples_key(SITE, DAY))  # every run archives from scratch (no merge)
                    t = time.perf_counter()
                    arch = archive_site_day(hot, cold, None, SITE, DAY)
                    runs.append((time.perf_counter() - t, arch))
                total, arch = sorted(runs, key=lambda r: r[0])[len(runs) // 2]  # the median run
                figures["archive_from_sqlite_to_s3_s"] = round(total, 2)
                figures["archive_phases_s"] = {k: round(v, 2) for k, v in arch.phase_seconds.items()}
                if len(runs) > 1:
                    figures["archive_runs_s"] = [
                        {"total": round(t, 2), **{k: round(v, 2) for k, v in a.phase_seconds.items()}}
                        for t, a in runs
                    ]
                figures["archive_rows"] = arch.rows
                figures["archive_bytes_per_sample"] = round(arch.bytes_per_sample, 3)
                figures["archive_target_s"] = 15

            # -- 4. backfill of a history day from ACE over HTTP to S3 ------------------------------------------
            if "backfill" in parts:
                empty = SqliteHotStore(Path(tmp) / "empty.sqlite3")
                empty.ensure_schema()
                history = DAY - dt.timedelta(days=1)
                t = time.perf_counter()
                back = archive_site_day(empty, cold, client, SITE, history)
                figures["backfill_from_ace_http_to_s3_s"] = round(time.perf_counter() - t, 2)
                figures["backfill_phases_s"] = {k: round(v, 2) for k, v in back.phase_seconds.items()}
                figures["backfill_rows"] = back.rows
                figures["backfill_ace_requests"] = back.ace_requests
                figures["backfill_hot_rows_after"] = empty.count_samples(SITE, 0, 2**62)
                figures["backfill_target_s"] = 30
        client.close()
    finally:
        conn.send("stop")
        server.join(timeout=10)
        moto.terminate()
    figures["bench_process_peak_rss_mib"] = round(peak_rss_mib(), 1)
    write_result(
        "pipeline" if parts == set(PARTS) else "pipeline-" + "-".join(p for p in PARTS if p in parts), figures
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
