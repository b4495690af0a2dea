"""CPU-seconds of whole process trees, including descendants that came and went (run workers).

At any instant, the CPU a tree has used is the sum over its live processes of their own user + system time plus
the time of the children they have already waited for (Linux adds a reaped child's whole time, its own reaped
children included, to the parent's ``cutime``/``cstime``). Dagster's code server waits for every run worker it
starts and each run worker for its step processes, so a snapshot of the live tree counts every process exactly
once, however short-lived, without having to see it alive. A descendant orphaned to init would be lost; as a
cross-check the sampler also keeps the last CPU time seen of every process it met (a lower bound).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import psutil


def _own(times: Any) -> float:
    return times.user + times.system


def _reaped(times: Any) -> float:
    return times.children_user + times.children_system


@dataclass
class TreeCpu:
    """Cumulative CPU of named process trees (role -> root pid)."""

    roots: dict[str, int]
    last_seen: dict[int, float] = field(default_factory=dict)  # pid -> own CPU at the last sample
    pids_by_role: dict[str, set[int]] = field(default_factory=dict)

    def snapshot(self) -> dict[str, float]:
        """Per role: CPU-seconds used so far by the root and all its descendants, live or reaped."""
        totals: dict[str, float] = {}
        for role, pid in self.roots.items():
            total = 0.0
            try:
                root = psutil.Process(pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                procs = []
            seen = self.pids_by_role.setdefault(role, set())
            for proc in procs:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                    times = proc.cpu_times()
                    total += _own(times) + _reaped(times)
                    self.last_seen[proc.pid] = _own(times)
                    seen.add(proc.pid)
            totals[role] = total
        return totals

    def sampled_total(self) -> float:
        """The cross-check: the sum of the last CPU time seen of every process ever sampled."""
        return sum(self.last_seen.values())

    def processes_seen(self) -> int:
        return len(self.last_seen)


def process_cpu(pid: int) -> float:
    """Own plus reaped-children CPU of one process (0 when it is gone)."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return _own(times) + _reaped(times)
