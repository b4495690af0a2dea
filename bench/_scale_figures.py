"""The arithmetic of ``bench_scale``: pure functions and small accumulators fed with samples, no processes.

Time compression: the benchmark runs the sync every ``interval`` seconds (shorter than production's 300 s) so it
finishes in minutes. A cycle's CPU is then the sync work of one round (per round, whatever the interval) plus the
stack's idle CPU over the interval (daemon loops, code server and webserver heartbeats, the other sensors). The
figure "at 300 s" keeps the measured work and replaces the idle part by 300 s of idle CPU, measured separately with
the sync sensor stopped. Sync lag is projected the same way: the measured lag minus the interval, plus 300 s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from bench._common import percentile

PRODUCTION_CYCLE_S = 300.0
SYNCS_PER_MONTH = 288 * 30  # every 5 minutes, 30 days


@dataclass(frozen=True)
class CpuWindow:
    """Stack CPU over a measured window of whole sync rounds."""

    cpu_s: float  # CPU-seconds of the whole stack over the window
    window_s: float  # wall seconds of the window
    cycles: float  # sync rounds completed in it (site syncs / sites)
    idle_cpu_per_s: float  # the stack's CPU rate with the sync sensor stopped

    def __post_init__(self) -> None:
        if self.cycles <= 0 or self.window_s <= 0:
            raise ValueError("a CPU window needs at least one cycle and a positive duration")

    @property
    def cpu_per_cycle(self) -> float:
        """As measured, at the benchmark's interval."""
        return self.cpu_s / self.cycles

    @property
    def work_per_cycle(self) -> float:
        """The sync rounds' own CPU: the window minus the stack's idle CPU over it, per round (never negative)."""
        return max(0.0, self.cpu_s - self.idle_cpu_per_s * self.window_s) / self.cycles

    def cpu_per_cycle_at(self, cycle_s: float = PRODUCTION_CYCLE_S) -> float:
        """CPU-seconds per cycle if the rounds ran every ``cycle_s`` seconds."""
        return self.work_per_cycle + self.idle_cpu_per_s * cycle_s


def utilisation_pct(cpu_s_per_cycle: float, cycle_s: float, cores: int) -> float:
    """Average CPU use of the stack as a percentage of ``cores`` whole cores."""
    return 100.0 * cpu_s_per_cycle / (cycle_s * cores)


def sites_within(
    target_pct: float,
    cores: int,
    idle_cpu_per_s: float,
    points: Mapping[int, float],
    cycle_s: float = PRODUCTION_CYCLE_S,
) -> int | None:
    """How many sites fit under ``target_pct`` of ``cores`` at ``cycle_s``, extrapolated linearly through the work
    per cycle of the two largest site counts measured (``points``: sites -> work CPU-s per cycle). None when fewer
    than two site counts were measured or the work does not grow with sites."""
    if len(points) < 2:
        return None
    (n1, w1), (n2, w2) = sorted(points.items())[-2:]
    per_site = (w2 - w1) / (n2 - n1)
    if per_site <= 0:
        return None
    fixed = w2 - per_site * n2
    budget = target_pct / 100.0 * cores * cycle_s - idle_cpu_per_s * cycle_s - fixed
    return max(0, math.floor(budget / per_site + 1e-9))  # 1e-9: binary fractions of exact quotients


def project_lag_s(lag_s: float, interval_s: float, cycle_s: float = PRODUCTION_CYCLE_S) -> float:
    """A lag measured with syncs every ``interval_s`` seconds, had they run every ``cycle_s`` seconds."""
    return lag_s - interval_s + cycle_s


def storage_per_site_month(grown: float, cycles: float, sites: int) -> float:
    """Growth (bytes or files) over ``cycles`` rounds of ``sites`` sites, per site per 30 days of 5-minute syncs."""
    return grown / cycles / sites * SYNCS_PER_MONTH


@dataclass
class SyncRounds:
    """Counts each site's syncs by watching its sync point (``as_of``) move; a round is one sync of every site."""

    sites: tuple[str, ...]
    last: dict[str, int | None] = field(default_factory=dict)
    advances: dict[str, int] = field(default_factory=dict)

    def start(self, as_of: Mapping[str, int | None]) -> None:
        self.last = {s: as_of.get(s) for s in self.sites}
        self.advances = dict.fromkeys(self.sites, 0)

    def observe(self, as_of: Mapping[str, int | None]) -> None:
        for site in self.sites:
            now = as_of.get(site)
            if now is not None and now != self.last.get(site):
                self.advances[site] += 1
                self.last[site] = now

    @property
    def fewest(self) -> int:
        return min(self.advances.values()) if self.advances else 0

    @property
    def rounds(self) -> float:
        return sum(self.advances.values()) / len(self.sites)


@dataclass
class LagTracker:
    """Per site, the worst ``now - as_of`` seen over the measurement (a site never synced counts from ``since``)."""

    sites: tuple[str, ...]
    since_ms: int
    worst_s: dict[str, float] = field(default_factory=dict)

    def observe(self, now_ms: int, as_of: Mapping[str, int | None]) -> None:
        for site in self.sites:
            synced = as_of.get(site)
            lag = (now_ms - (synced if synced is not None else self.since_ms)) / 1000
            if lag > self.worst_s.get(site, -math.inf):
                self.worst_s[site] = lag

    def worst(self) -> float:
        return max(self.worst_s.values())

    def p95(self) -> float:
        return percentile(list(self.worst_s.values()), 95)


@dataclass
class QueueDepth:
    """Queued and running runs, sampled."""

    queued: list[int] = field(default_factory=list)
    running: list[int] = field(default_factory=list)

    def observe(self, queued: int, running: int) -> None:
        self.queued.append(queued)
        self.running.append(running)

    def summary(self) -> dict[str, float]:
        if not self.queued:
            return {"queued_max": 0, "queued_mean": 0.0, "running_max": 0, "running_mean": 0.0}
        return {
            "queued_max": max(self.queued),
            "queued_mean": round(sum(self.queued) / len(self.queued), 2),
            "running_max": max(self.running),
            "running_mean": round(sum(self.running) / len(self.running), 2),
        }
