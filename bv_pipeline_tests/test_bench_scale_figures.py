"""bench_scale's arithmetic on fake samples (CPU per cycle projected to the 300 s cadence, lag, storage per
site-month, queue depth, capacity) and its process-tree CPU accounting on two tiny processes. No Dagster."""

from __future__ import annotations

import pytest

from bench._scale_figures import (
    SYNCS_PER_MONTH,
    CpuWindow,
    LagTracker,
    QueueDepth,
    SyncRounds,
    project_lag_s,
    sites_within,
    storage_per_site_month,
    utilisation_pct,
)


def test_cpu_window_replaces_the_idle_share_of_a_short_interval_by_300_seconds_of_idle() -> None:
    # 4 rounds in 120 s (30 s interval): 50 CPU-s, of which 0.05 CPU-s/s x 120 s = 6 idle; work 44 -> 11 a round.
    window = CpuWindow(cpu_s=50.0, window_s=120.0, cycles=4, idle_cpu_per_s=0.05)
    assert window.cpu_per_cycle == 12.5
    assert window.work_per_cycle == pytest.approx(11.0)
    assert window.cpu_per_cycle_at(300) == pytest.approx(11.0 + 15.0)
    assert window.cpu_per_cycle_at(30) == pytest.approx(window.cpu_per_cycle)  # the measured interval itself
    assert utilisation_pct(window.cpu_per_cycle_at(300), 300, 2) == pytest.approx(100 * 26 / 600)


def test_cpu_window_work_is_never_negative_and_needs_a_cycle() -> None:
    assert CpuWindow(cpu_s=1.0, window_s=100.0, cycles=1, idle_cpu_per_s=0.05).work_per_cycle == 0.0
    with pytest.raises(ValueError, match="at least one cycle"):
        CpuWindow(cpu_s=1.0, window_s=10.0, cycles=0, idle_cpu_per_s=0.0)


def test_sync_rounds_count_each_sites_sync_point_moves() -> None:
    rounds = SyncRounds(("a", "b"))
    rounds.start({"a": 100, "b": None})
    rounds.observe({"a": 100, "b": None})  # nothing moved
    assert (rounds.fewest, rounds.rounds) == (0, 0.0)
    rounds.observe({"a": 200, "b": 150})
    rounds.observe({"a": 300, "b": 150})
    assert rounds.advances == {"a": 2, "b": 1}
    assert (rounds.fewest, rounds.rounds) == (1, 1.5)


def test_lag_is_the_worst_now_minus_sync_point_per_site_then_worst_and_p95_across_sites() -> None:
    sites = tuple(f"s{i:02d}" for i in range(20))
    lag = LagTracker(sites, since_ms=0)
    # At t=100 s site i synced at (100 - i) s, at t=200 s every site at 190 s (lag 10 s): worst per site is i s,
    # except sites synced less than 10 s before: the later sample's 10 s.
    lag.observe(100_000, {s: 100_000 - i * 1000 for i, s in enumerate(sites)})
    lag.observe(200_000, dict.fromkeys(sites, 190_000))
    assert lag.worst_s["s00"] == 10.0
    assert lag.worst_s["s15"] == 15.0
    assert lag.worst() == 19.0
    assert lag.p95() == 18.0  # nearest rank of 20 values: the 19th smallest
    lag.observe(300_000, {s: None for s in sites})  # never synced counts from since_ms
    assert lag.worst() == 300.0


def test_projections_to_the_production_cadence() -> None:
    assert project_lag_s(42.0, interval_s=30) == 312.0
    # 3 rounds of 20 sites grew DAGSTER_HOME by 6 MB and 12 files: 0.1 MB and 0.2 files per site-sync.
    assert storage_per_site_month(6_000_000, 3, 20) == pytest.approx(100_000 * SYNCS_PER_MONTH)
    assert storage_per_site_month(12, 3, 20) == pytest.approx(0.2 * 8640)


def test_queue_depth_summary() -> None:
    queue = QueueDepth()
    assert queue.summary()["queued_max"] == 0
    for queued, running in ((0, 1), (3, 4), (1, 4)):
        queue.observe(queued, running)
    assert queue.summary() == {"queued_max": 3, "queued_mean": 1.33, "running_max": 4, "running_mean": 3.0}


def test_sites_within_extrapolates_through_the_two_largest_counts() -> None:
    # Work = 4 + 0.1 x sites CPU-s per cycle; idle 0.02 CPU-s/s = 6 per 300 s; 70 % of 2 cores x 300 s = 420.
    work = {1: 4.1, 20: 6.0, 100: 14.0}
    assert sites_within(70, 2, 0.02, work) == 4100  # (420 - 6 - 4) / 0.1
    assert sites_within(70, 2, 0.02, {100: 14.0}) is None
    assert sites_within(70, 2, 0.02, {20: 6.0, 100: 6.0}) is None


def test_tree_cpu_counts_a_worker_that_exited_before_any_sample() -> None:
    """A child burns 0.3 CPU-s and exits before the first snapshot: its time is found in its parent's reaped-children
    time (a short-lived run worker is never missed)."""
    import subprocess
    import sys

    from bench._tree_cpu import TreeCpu

    burn = "import time\nwhile time.process_time() < 0.3:\n    pass"
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys, time\nsubprocess.run([sys.executable, '-c', {burn!r}], check=True)\n"
            "print('reaped', flush=True)\ntime.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "reaped"
        tree = TreeCpu({"worker_parent": parent.pid})
        split = tree.snapshot()["worker_parent"]
        assert split.launched >= 0.25  # /proc counts clock ticks (10 ms), sampled: allow a few ticks' error
        assert list(tree.last_seen) == [parent.pid]  # the worker itself was never seen alive
    finally:
        parent.kill()
        parent.wait()
