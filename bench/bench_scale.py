"""The whole stack under the 5-minute sync at 1 to 300+ sites: CPU per cycle and per site, run queue, sync lag,
Dagster storage growth.

For each site count N, the production process layout runs for real (``bench/_scale_stack.py``: code server, daemon
and webserver on the repository's dagster.yaml, embedded SQLite hot store, local cold directory), with ACE served
by the simulator over HTTP on loopback (N sites of ``--points`` points at 1-minute cadence) in a process of its own.
The sync runs every ``--interval`` seconds (``BV_SYNC_INTERVAL_SECONDS``) instead of 300 so the benchmark takes
minutes; ACE's rate limit is raised by the same factor (600 requests/minute at 300 s).

Per N:
1. Every site is recorded as synced up to one interval ago (``--from-midnight`` skips this: then the warm-up
   fetches the whole day so far); the sync sensor's first tick registers the sites and syncs each once (warm-up,
   not measured).
2. Measured: ``--cycles`` rounds (every site's sync point moved that many times), sampled every second: CPU of the
   three process trees (run workers included, ``_tree_cpu.py``), queued and running runs, each site's lag
   (now - its newest sync point), DAGSTER_HOME bytes and files.
3. The sync sensor is stopped and the idle stack's CPU rate measured (``--idle-seconds``), to project a cycle's
   CPU to the 300 s cadence (``_scale_figures.py``).
Not counted: the simulator (its CPU is printed for information) and this harness.

    python -m bench.bench_scale [--sites 1,20,100,300] [--points 50] [--cycles 3] [--interval 30]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import dagster as dg

from bench._common import write_result
from bench._scale_figures import (
    PRODUCTION_CYCLE_S,
    CpuWindow,
    LagTracker,
    QueueDepth,
    SyncRounds,
    project_lag_s,
    sites_within,
    storage_per_site_month,
    utilisation_pct,
)
from bench._scale_stack import (
    ROLES,
    StackPaths,
    dir_usage,
    preseed_sync_points,
    running_stack,
    runs_in_flight,
    simulator_process,
    site_names,
    sleep_until,
    stop_sensor,
    sync_points,
)
from bench._tree_cpu import TreeCpu, TreeSplit, process_cpu, total
from bv_pipeline_tests.daemon import open_instance, wait_for

SYNC_SENSOR = "ace_sync_sensor"
TARGET_CPU_PER_SITE = 0.5  # CPU-s per site per 5-minute cycle at 50 points
TARGET_SITES, TARGET_UTILISATION = 300, 70.0  # >= 300 sites of 50 points under 70 % of the cores
TARGET_LAG_S = 600.0
SAMPLE_EVERY_S = 1.0


class Phase:
    """One site count: its stack, samplers and figures."""

    def __init__(self, args: argparse.Namespace, sites: int, tmp: Path) -> None:
        self.args = args
        self.sites = site_names(sites)
        self.paths = StackPaths.under(tmp)
        self.hot = self.paths.hot_store()  # creates the hot tier's schema before any run does
        self.cores = os.cpu_count() or 1

    def _wait(self, check: Any, what: str, timeout: float) -> Any:
        try:
            return wait_for(check, what, timeout=timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.paths.log_tail()}") from None

    def run(self) -> dict[str, Any]:
        args, sites = self.args, self.sites
        interval = args.interval
        if not args.from_midnight:
            preseed_sync_points(self.hot, sites, int(time.time() * 1000) - interval * 1000)
        variables = {
            "BV_SITES": ",".join(sites),
            "BV_SYNC_INTERVAL_SECONDS": str(interval),
            "ACE_API_KEY": "bench-key",
            "ACE_REQUESTS_PER_MINUTE": str(min(100_000, 600 * 300 // interval)),
        }
        # Dagster's storage is created here first: the daemon creating it at the same moment could race on it.
        with (
            open_instance(self.paths.home) as instance,
            simulator_process(sites, args.points, self.paths.logs) as (ace_url, sim_pid),
            running_stack(self.paths, {**variables, "ACE_API_BASE": ace_url}) as roots,
        ):
            started = time.monotonic()
            before = sync_points(self.hot, sites)
            self._wait(
                lambda: all(
                    v is not None and v != before[s] for s, v in sync_points(self.hot, sites).items()
                ),
                f"the warm-up sync of {len(sites)} sites",
                timeout=args.timeout,
            )
            warmup_s = time.monotonic() - started
            # Start between rounds when the stack keeps up (nothing queued or running); a saturated stack has
            # no such moment, then start anyway.
            with_slack = time.monotonic() + interval
            while runs_in_flight(instance) != (0, 0) and time.monotonic() < with_slack:
                time.sleep(0.2)
            figures = self._measure(instance, roots, sim_pid)
            figures["startup_and_warmup_s"] = round(warmup_s, 1)
            figures.update(self._idle(instance, roots))
        return self._derive(figures)

    def _measure(self, instance: dg.DagsterInstance, roots: dict[str, int], sim_pid: int) -> dict[str, Any]:
        sites, args = self.sites, self.args
        tree = TreeCpu(roots)
        rounds = SyncRounds(sites)
        rounds.start(sync_points(self.hot, sites))
        lag = LagTracker(sites, since_ms=int(time.time() * 1000))
        queue = QueueDepth()
        created_after = dt.datetime.now(dt.UTC)
        cpu0 = tree.snapshot()
        mark = tree.mark()
        sim0, harness0 = process_cpu(sim_pid), time.process_time()
        bytes0, files0 = dir_usage(self.paths.home)
        t0 = time.monotonic()
        deadline = t0 + args.timeout
        while rounds.fewest < args.cycles:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{rounds.fewest} of {args.cycles} rounds after {args.timeout} s\n{self.paths.log_tail()}"
                )
            tick = time.monotonic() + SAMPLE_EVERY_S
            as_of = sync_points(self.hot, sites)
            rounds.observe(as_of)
            lag.observe(int(time.time() * 1000), as_of)
            queue.observe(*runs_in_flight(instance))
            tree.snapshot()  # keeps the last-seen cross-check current
            sleep_until(tick)
        cpu1 = tree.snapshot()
        window_s = time.monotonic() - t0
        bytes1, files1 = dir_usage(self.paths.home)
        self.window = (created_after, dt.datetime.now(dt.UTC))
        # The syncs moved real data: every site's hot tier holds samples stamped inside the measured rounds.
        start_ms, end_ms = int(created_after.timestamp() * 1000), int(time.time() * 1000)
        fresh = [self.hot.count_samples(site, start_ms, end_ms) for site in sites]
        return {
            "cycles_measured": round(rounds.rounds, 2),
            "window_s": round(window_s, 1),
            "stack_cpu_s": total(cpu1) - total(cpu0),
            **_by_process(cpu0, cpu1),
            "simulator_cpu_s_not_counted": round(process_cpu(sim_pid) - sim0, 2),
            "harness_cpu_s_not_counted": round(time.process_time() - harness0, 2),
            "processes_started": len(tree.last_seen) - len(mark),
            "stack_peak_rss_MiB": round(tree.peak_rss / 2**20),
            "cpu_s_exact_vs_sampled_lower_bound": (
                round(total(cpu1) - total(cpu0), 1),
                round(tree.sampled_since(mark), 1),
            ),
            **queue.summary(),
            "lag_worst_s": round(lag.worst(), 1),
            "lag_p95_s": round(lag.p95(), 1),
            "sites_with_samples_from_the_window": sum(1 for n in fresh if n),
            "hot_samples_stamped_in_the_window": sum(fresh),
            "dagster_home_bytes_grown": bytes1 - bytes0,
            "dagster_home_files_grown": files1 - files0,
        }

    def _idle(self, instance: dg.DagsterInstance, roots: dict[str, int]) -> dict[str, Any]:
        if not stop_sensor(instance, self.args.sync_sensor):
            raise AssertionError(f"no stored state for sensor {self.args.sync_sensor!r}")
        self._wait(lambda: runs_in_flight(instance) == (0, 0), "the last sync runs to finish", timeout=600)
        after, before = self.window
        runs = instance.get_runs(filters=dg.RunsFilter(created_after=after, created_before=before))
        failed = [r for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
        time.sleep(5)  # a tick being evaluated when the sensor was stopped
        tree = TreeCpu(roots)
        cpu0, t0 = total(tree.snapshot()), time.monotonic()
        time.sleep(self.args.idle_seconds)
        cpu1, t1 = total(tree.snapshot()), time.monotonic()
        return {
            "runs_created": len(runs),
            "runs_not_successful": len(failed),
            "idle_cpu_per_s": (cpu1 - cpu0) / (t1 - t0),
        }

    def _derive(self, f: dict[str, Any]) -> dict[str, Any]:
        n, interval = len(self.sites), self.args.interval
        window = CpuWindow(f.pop("stack_cpu_s"), f["window_s"], f["cycles_measured"], f["idle_cpu_per_s"])
        at_300 = window.cpu_per_cycle_at(PRODUCTION_CYCLE_S)
        return {
            "sites": n,
            **f,
            "idle_cpu_per_s": round(window.idle_cpu_per_s, 4),
            "cpu_s_per_cycle_measured": round(window.cpu_per_cycle, 2),
            "work_cpu_s_per_cycle": round(window.work_per_cycle, 2),
            "cpu_s_per_cycle_at_300s": round(at_300, 2),
            "cpu_s_per_site_per_cycle_at_300s": round(at_300 / n, 3),
            "work_cpu_s_per_site_per_cycle": round(window.work_per_cycle / n, 3),
            "cpu_pct_of_cores_at_300s": round(utilisation_pct(at_300, PRODUCTION_CYCLE_S, self.cores), 1),
            # The lag projection holds when the stack kept up at the bench interval (a round took about one
            # interval); when saturated, queueing inflates it and the projection is an upper bound.
            "kept_up": f["window_s"] / window.cycles <= 1.5 * interval,
            "lag_worst_s_at_300s": round(project_lag_s(f["lag_worst_s"], interval), 1),
            "lag_p95_s_at_300s": round(project_lag_s(f["lag_p95_s"], interval), 1),
            "dagster_storage_MB_per_site_month": round(
                storage_per_site_month(f["dagster_home_bytes_grown"], window.cycles, n) / 1e6, 1
            ),
            "dagster_storage_files_per_site_month": round(
                storage_per_site_month(f["dagster_home_files_grown"], window.cycles, n)
            ),
        }


def _by_process(cpu0: dict[str, TreeSplit], cpu1: dict[str, TreeSplit]) -> dict[str, float]:
    """CPU-s over the window: code server (supervisor + gRPC server), the run workers it launched, the daemon and
    the webserver (with anything they launched, normally nothing)."""
    spent = {
        role: (cpu1[role].resident - cpu0[role].resident, cpu1[role].launched - cpu0[role].launched)
        for role in ROLES
    }
    return {
        "cpu_s_code_server": round(spent["code_server"][0], 2),
        "cpu_s_run_workers": round(spent["code_server"][1], 2),
        "cpu_s_daemon": round(sum(spent["daemon"]), 2),
        "cpu_s_webserver": round(sum(spent["webserver"]), 2),
    }


def _verdicts(results: list[dict[str, Any]], cores: int) -> dict[str, Any]:
    big = results[-1]
    work = {r["sites"]: r["work_cpu_s_per_cycle"] for r in results}
    idle = sum(r["idle_cpu_per_s"] for r in results) / len(results)
    fit = sites_within(TARGET_UTILISATION, cores, idle, work)
    return {
        "target_cpu_s_per_site_per_cycle": f"<= {TARGET_CPU_PER_SITE} at 50 points",
        "largest_n_cpu_s_per_site_per_cycle_at_300s": big["cpu_s_per_site_per_cycle_at_300s"],
        "target_capacity": f">= {TARGET_SITES} sites of 50 points under {TARGET_UTILISATION:.0f} % of {cores} cores",
        "largest_n_sites_and_cpu_pct_at_300s": (big["sites"], big["cpu_pct_of_cores_at_300s"]),
        "sites_under_70pct_linear_extrapolation": fit,
        "target_lag_s": f"<= {TARGET_LAG_S:.0f}",
        "worst_lag_s_at_300s_any_n": max(r["lag_worst_s_at_300s"] for r in results),
        "lag_projection_is_an_upper_bound_at_n": [r["sites"] for r in results if not r["kept_up"]],
    }


def _table(results: list[dict[str, Any]], interval: int) -> str:
    head = (
        f"sites | CPU-s/cycle every {interval} s | CPU-s/cycle at 300 s | per site at 300 s (<= 0.5) | "
        "% of cores at 300 s | queued max/mean | running max | lag worst/p95 at 300 s (<= 600 s) | "
        "Dagster MB/files per site-month | runs created/not successful | kept up | peak RSS MiB"
    )
    rows = [
        f"{r['sites']} | {r['cpu_s_per_cycle_measured']} | {r['cpu_s_per_cycle_at_300s']} | "
        f"{r['cpu_s_per_site_per_cycle_at_300s']} | {r['cpu_pct_of_cores_at_300s']} | "
        f"{r['queued_max']}/{r['queued_mean']} | {r['running_max']} | "
        f"{r['lag_worst_s_at_300s']}/{r['lag_p95_s_at_300s']} | "
        f"{r['dagster_storage_MB_per_site_month']}/{r['dagster_storage_files_per_site_month']} | "
        f"{r['runs_created']}/{r['runs_not_successful']} | {'yes' if r['kept_up'] else 'no'} | {r['stack_peak_rss_MiB']}"
        for r in results
    ]
    return "\n".join([head, *rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", default="1,20,100,300", help="comma-separated site counts")
    parser.add_argument("--points", type=int, default=50, help="points per site")
    parser.add_argument("--cycles", type=int, default=3, help="sync rounds measured per site count")
    parser.add_argument("--interval", type=int, default=30, help="BV_SYNC_INTERVAL_SECONDS (>= 5)")
    parser.add_argument(
        "--idle-seconds", type=float, default=40.0, help="idle-CPU measurement per site count"
    )
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds allowed for warm-up and measure"
    )
    parser.add_argument("--from-midnight", action="store_true", help="no pre-seeded sync points")
    parser.add_argument("--sync-sensor", default=SYNC_SENSOR, help="the sensor stopped for the idle measure")
    parser.add_argument("--name", default="bench_scale", help="result name (bench/results/<name>.json)")
    args = parser.parse_args(argv)
    if args.interval < 5:
        parser.error("--interval must be >= 5 (BV_SYNC_INTERVAL_SECONDS's minimum)")
    counts = [int(n) for n in args.sites.split(",") if n.strip()]
    cores = os.cpu_count() or 1
    figures: dict[str, Any] = {
        "points_per_site": args.points,
        "interval_s": args.interval,
        "cycles": args.cycles,
        "cores": cores,
        "preseeded_sync_points": not args.from_midnight,
        "processes_counted": "code server (with every run worker it launched), dagster-daemon, dagster-webserver",
    }
    results = []
    for n in counts:
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"bv-bench-scale-{n}-") as tmp:
            result = Phase(args, n, Path(tmp)).run()
        result["phase_wall_s"] = round(time.monotonic() - started, 1)
        print(f"-- {n} sites: " + ", ".join(f"{k}={v}" for k, v in result.items()), flush=True)
        results.append(result)
        figures.update({f"n{n}_{k}": v for k, v in result.items() if k != "sites"})
    figures.update(_verdicts(results, cores))
    write_result(args.name, figures)
    print(_table(results, args.interval))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
