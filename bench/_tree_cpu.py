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


@dataclass(frozen=True)
class TreeSplit:
    """A tree's CPU so far: its long-lived processes (the root and its direct children: e.g. the code server's
    supervisor and gRPC server) and everything they launched (run workers and their step processes)."""

    resident: float
    launched: float

    @property
    def total(self) -> float:
        return self.resident + self.launched


@dataclass
class TreeCpu:
    """Cumulative CPU of named process trees (role -> root pid)."""

    roots: dict[str, int]
    last_seen: dict[int, float] = field(default_factory=dict)  # pid -> own CPU at the last sample
    # Bytes: the largest sum of resident memory over all trees at one snapshot (shared pages count once per process).
    peak_rss: int = 0
    _rss: int = field(default=0, repr=False)  # the snapshot being taken

    def snapshot(self) -> dict[str, TreeSplit]:
        """Per role: CPU-seconds used so far by the root and all its descendants, live or reaped."""
        self._rss = 0
        result = {role: self._tree(pid) for role, pid in self.roots.items()}
        self.peak_rss = max(self.peak_rss, self._rss)
        return result

    def _tree(self, pid: int) -> TreeSplit:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return TreeSplit(0.0, 0.0)
        resident = launched = 0.0
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                self._rss += proc.memory_info().rss
                times = proc.cpu_times()
                own, reaped = _own(times), _reaped(times)
                self.last_seen[proc.pid] = own
                if proc.pid == pid or proc.ppid() == pid:
                    resident += own
                    launched += reaped
                else:
                    launched += own + reaped
        return TreeSplit(resident, launched)

    def mark(self) -> dict[int, float]:
        """The last-seen CPU of every process so far: the start of a window for ``sampled_since``."""
        return dict(self.last_seen)

    def sampled_since(self, mark: dict[int, float]) -> float:
        """The cross-check: own CPU seen, by sampling, since ``mark``, over every process met (a lower bound: a
        process's CPU after its last sample is missed)."""
        return sum(cpu - mark.get(pid, 0.0) for pid, cpu in self.last_seen.items())


def total(snapshot: dict[str, TreeSplit]) -> float:
    return sum(split.total for split in snapshot.values())


def process_cpu(pid: int) -> float:
    """Own plus reaped-children CPU of one process (0 when it is gone)."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return _own(times) + _reaped(times)
