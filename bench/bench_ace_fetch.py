"""End-to-end ACE fetch: one whole site-day through HTTP into one sorted, de-duplicated SAMPLE_SCHEMA table.

The simulator's HTTP server runs in a separate (spawned) process so the client's CPU time and peak RSS are its
own. Targets: >= 500k samples/s end to end and client peak RSS < 1 GiB.

    .venv/bin/python -m bench.bench_ace_fetch [--points 4583] [--hours 24]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import multiprocessing as mp
import pstats
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from bench._common import peak_rss_mib, write_result

SITE = "bench"
DAY = dt.date(2026, 8, 7)
TARGET_SAMPLES_PER_S = 500_000
TARGET_RSS_MIB = 1024


def _sim_config(points: int) -> Any:
    from bv_pipeline.simulator import SimulatorConfig

    return SimulatorConfig(sites=(SITE,), points=points, cadence_s=60, seed=42, api_key="bench-key")


def _fixed_clock() -> float:
    # Far past the fetched day, so every sample (late ones included) is visible.
    return dt.datetime(2026, 9, 1, tzinfo=dt.UTC).timestamp()


def _serve(points: int, conn: Connection) -> None:
    """Child process: serve the simulator until the parent says stop."""
    from bv_pipeline.simulator import AceSimulator, run_server

    sim = AceSimulator(_sim_config(points), clock=_fixed_clock)
    with run_server(sim) as base_url:
        conn.send(base_url)
        conn.recv()  # blocks until the parent is done


def _truth_count(points: int, start_ms: int, end_ms: int, conn: Connection) -> None:
    """Child process: the expected row count, computed from the simulator's ground truth (not over HTTP)."""
    from bv_pipeline.simulator import AceSimulator

    sim = AceSimulator(_sim_config(points), clock=_fixed_clock)
    conn.send(sim.truth(SITE, start_ms, end_ms).num_rows)


def _in_child(target: Any, *args: Any) -> tuple[Any, Any, Connection]:
    ctx = mp.get_context("spawn")  # no fork: the parent may already run polars/arrow thread pools
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(*args, child), daemon=True)
    proc.start()
    return proc, parent, child


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=4583)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the client fetch (top 25 by cumtime)"
    )
    args = parser.parse_args(argv)

    from bv_pipeline.resources.ace import AceClient
    from bv_pipeline.storage.samples import day_bounds_ms

    start_ms, _ = day_bounds_ms(DAY)
    end_ms = start_ms + args.hours * 3_600_000

    server, conn, _ = _in_child(_serve, args.points)
    try:
        if not conn.poll(120):
            raise RuntimeError("simulator server did not start within 120 s")
        base_url = conn.recv()
        rss_before = peak_rss_mib()
        with AceClient(base_url, "bench-key") as client:
            profiler = cProfile.Profile() if args.profile else None
            t0 = time.perf_counter()
            cpu0 = time.process_time()
            if profiler:
                profiler.enable()
            table, stats = client.fetch_samples(SITE, start_ms, end_ms)
            if profiler:
                profiler.disable()
            elapsed = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
        client_peak = peak_rss_mib()
        rows = table.num_rows
        del table
        conn.send("stop")
    finally:
        server.join(timeout=30)
        if server.is_alive():
            server.terminate()

    counter, cconn, _ = _in_child(_truth_count, args.points, start_ms, end_ms)
    expected = cconn.recv()
    counter.join(timeout=60)

    rate = rows / elapsed if elapsed > 0 else 0.0
    figures = {
        "points": args.points,
        "hours": args.hours,
        "rows": rows,
        "truth_rows": expected,
        "seconds": round(elapsed, 3),
        "samples_per_s": round(rate),
        "client_cpu_s": round(
            cpu, 3
        ),  # all client threads; well below "seconds" means the server is the limit
        "client_peak_rss_mib": round(client_peak, 1),
        "client_rss_before_fetch_mib": round(rss_before, 1),
        "requests": stats.requests,
        "pages": stats.pages,
        "retries": stats.retries,
        "cursor_repairs": stats.cursor_repairs,
        "response_mib": round(stats.bytes / 2**20, 1),
        "target_samples_per_s": TARGET_SAMPLES_PER_S,
        "target_rss_mib": TARGET_RSS_MIB,
        "meets_targets": rate >= TARGET_SAMPLES_PER_S and client_peak < TARGET_RSS_MIB,
    }
    write_result("ace_fetch", figures)
    if profiler:
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumtime").print_stats(25)
    if rows != expected:
        print(f"!! row count {rows} != truth {expected}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
