"""``AceResource``: the Dagster resource that builds ``AceClient``s (real API or the embedded simulator) with the
shared, laned rate limit."""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field

from bv_pipeline.resources.ace import SIM_BASE_URL, AceClient
from bv_pipeline.resources.ace_rate_limit import LaneLimiter, ace_buckets, shared_slot_store


class AceResource(dg.ConfigurableResource):
    """Dagster resource building an AceClient. ``base_url=None`` uses the embedded in-process simulator.

    The rate limit is shared by every process through ``rate_limit_url`` (PostgreSQL, several boxes) or else
    ``rate_limit_path`` (a SQLite file, one box); with neither, each client has its own bucket (tests, scripts).
    """

    base_url: str | None = None
    api_key: str | None = None
    sim_sites: list[str] = Field(default_factory=lambda: ["demo"])
    sim_points: int = 300
    sim_seed: int = 42
    requests_per_minute: int = 600
    batch_share: float = 0.5  # the most of requests_per_minute the "batch" lane may use
    rate_limit_path: str | None = None
    rate_limit_url: str | None = None
    max_attempts: int = 6
    timeout_s: float = 60
    page_size: int = 100_000

    def shared_limiter(self, lane: str) -> LaneLimiter | None:
        """The limiter of ``lane`` ("live" or "batch") on the shared store; None when no store is configured (the
        client then has its own bucket and lanes are moot)."""
        buckets = ace_buckets(self.requests_per_minute, self.batch_share, lane)  # validates lane and share
        if not (self.rate_limit_url or self.rate_limit_path):
            return None
        return LaneLimiter(shared_slot_store(url=self.rate_limit_url, path=self.rate_limit_path), buckets)

    def get_client(self, lane: str = "batch") -> AceClient:
        """A client whose requests take rate-limit slots in ``lane``: "live" for the live sync, else "batch"."""
        common: dict[str, Any] = {
            "timeout_s": self.timeout_s,
            "max_attempts": self.max_attempts,
            "requests_per_minute": self.requests_per_minute,
            "page_size": self.page_size,
            "limiter": self.shared_limiter(lane),
        }
        if self.base_url:
            return AceClient(self.base_url, self.api_key or "", **common)
        from bv_pipeline.simulator import AceSimulator, SimulatorConfig

        sim = AceSimulator(
            SimulatorConfig(sites=tuple(self.sim_sites), points=self.sim_points, seed=self.sim_seed)
        )
        # The simulator accepts any non-empty bearer key when none is configured, like a real key would be.
        return AceClient(
            SIM_BASE_URL, self.api_key or "embedded-simulator", transport=sim.transport(), **common
        )
