"""CPU of one live-sync run per site: ``live_sync_job`` executed in this process for N sites of P points.

Only the run's own work is measured: the op (ACE client, parsing, hot-store writes on SQLite, checks) and its
Dagster events on a SQLite instance (5 per site-day). ACE is the simulator over HTTP in a separate process (its
CPU is not counted); the daemon, the run queue and the run worker's start-up are not included (the whole stack is
``bench_scale``'s). After a first run that loads each site's day so far, ``--runs`` steady runs follow back to
back with a 15-minute re-read window (the 5-minute interval plus the default 10-minute lookback), i.e. what every
5-minute cycle fetches.

    python -m bench.bench_live_sync [--sites 100] [--points 50] [--workers 4] [--runs 3]
"""

from __future__ import annotations

import argparse
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import httpx

from bench._common import median, write_result
from bv_pipeline.config import Settings
from bv_pipeline.definitions import build_definitions
from bv_pipeline.ops.live_sync import LIVE_SYNC_JOB
from bv_pipeline.resources.ace_resource import AceResource
from bv_pipeline.resources.clock import ClockResource
from bv_pipeline.resources.cold_store import ColdStoreResource
from bv_pipeline.resources.hot_store import SqliteHotStoreResource
from bv_pipeline.resources.policy import PolicyResource
from bv_pipeline.sensors import live_sync_run_config

WINDOW_MINUTES = 15  # 5-minute interval + 10-minute lookback


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return r.ru_utime + r.ru_stime


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sites", type=int, default=100)
    p.add_argument("--points", type=int, default=50)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    sites = tuple(f"site-{i:03d}" for i in range(args.sites))
    port = _free_port()
    command = [sys.executable, "-m", "bv_pipeline.simulator.server", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--sites", ",".join(sites), "--points", str(args.points)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"{url}/sites", headers={"Authorization": "Bearer k"}, timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        figures = _measure(url, sites, args)
    finally:
        server.terminate()
        server.wait(timeout=10)
    write_result("bench_live_sync", figures)


def _measure(url: str, sites: tuple[str, ...], args: argparse.Namespace) -> dict[str, object]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        dg.instance_for_test(temp_dir=tmp) as instance,
    ):
        resources = {
            "ace": AceResource(base_url=url, api_key="k", requests_per_minute=100_000),
            "hot_store": SqliteHotStoreResource(sqlite_path=str(Path(tmp) / "hot.sqlite3")),
            "cold_store": ColdStoreResource(local_dir=str(Path(tmp) / "cold")),
            "clock": ClockResource(),
            "policy": PolicyResource(sync_lookback_minutes=WINDOW_MINUTES, sync_workers=args.workers),
        }
        job = build_definitions(
            Settings(sites=sites, data_dir=Path(tmp)), resources=resources
        ).resolve_job_def(LIVE_SYNC_JOB)
        config = live_sync_run_config(sites)
        instance.add_dynamic_partitions("sites", list(sites))
        start, cpu = time.monotonic(), _cpu_s()
        assert job.execute_in_process(instance=instance, run_config=config).success
        first = {"wall_s": round(time.monotonic() - start, 2), "cpu_s": round(_cpu_s() - cpu, 2)}
        walls, cpus, events = [], [], []
        for _ in range(args.runs):
            start, cpu = time.monotonic(), _cpu_s()
            result = job.execute_in_process(instance=instance, run_config=config)
            cpus.append(_cpu_s() - cpu)
            walls.append(time.monotonic() - start)
            assert result.success
            events.append(len(instance.all_logs(result.run_id)))
    cpu_run = median(cpus)
    return {
        "sites": len(sites),
        "points_per_site": args.points,
        "workers": args.workers,
        "first_run_whole_day_so_far": first,
        "steady_runs": args.runs,
        "steady_cpu_s_per_run_median": round(cpu_run, 2),
        "steady_cpu_s_per_site_median": round(cpu_run / len(sites), 4),
        "steady_wall_s_per_run_median": round(median(walls), 2),
        "dagster_events_per_run": events[-1],
    }


if __name__ == "__main__":
    main()
