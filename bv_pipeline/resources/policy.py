"""Operating policy (windows and limits) as a resource, so every asset, sensor and schedule reads one source."""

from __future__ import annotations

import dagster as dg


class PolicyResource(dg.ConfigurableResource):
    hot_storage_days: int = 20  # HOT_STORAGE_DAYS: days kept in the hot tier before retention may delete them
    sync_lookback_minutes: int = 10  # BV_SYNC_LOOKBACK_MINUTES: re-read this much (late samples)
    sync_chunk_minutes: int = 60  # BV_SYNC_CHUNK_MINUTES: catch-up fetches this much per ACE window
    max_catchup_days: int = 20  # the sensor re-syncs unclosed days at most this far back
    sync_workers: int = 4  # BV_SYNC_WORKERS: sites synced concurrently by one live-sync run
    live_site_budget_seconds: float = (
        300  # a live run starts no new chunk for a site after this (the interval)
    )
    settle_delay_hours: int = (
        26  # BV_SETTLE_DELAY_HOURS: the second settling pass runs this long after a day ends
    )
    settle_warn_late_samples: int = (
        100  # BV_SETTLE_WARN_LATE_SAMPLES: a settling pass finding more late samples warns
    )

    @property
    def lookback_ms(self) -> int:
        return self.sync_lookback_minutes * 60_000
