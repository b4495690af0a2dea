"""A separate process taking ACE rate-limit slots from a shared store; prints the slots it got as JSON.

``python -m bv_pipeline_tests.test_resources.ace_rate_worker '<json job>'``, job keys:

- ``store``: ``{"path": ...}`` (SQLite) or ``{"url": ...}`` (PostgreSQL);
- ``lane``, ``per_minute``, ``batch_share``;
- ``mode``: ``"reserve"`` takes ``count`` slots through a ``LaneLimiter`` whose clock is frozen at ``now`` and whose
  sleep does nothing (so every process reserves against one shared virtual time); ``"fetch"`` fetches ``hours``
  of site ``demo`` from the simulator at ``base_url`` with a real ``AceClient`` (real clock, real sleeps).

The parent starts all workers, then writes a line to their stdin so they begin at the same moment.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from bv_pipeline.resources.ace_rate_limit import (
    Bucket,
    LaneLimiter,
    PostgresSlotStore,
    Slot,
    SlotStore,
    SqliteSlotStore,
    ace_buckets,
)

HOUR_MS = 3_600_000


class RecordingStore(SlotStore):
    """Passes reservations to a real store and keeps (bucket, send_at) of every slot."""

    def __init__(self, inner: SlotStore) -> None:
        self.inner = inner
        self.slots: list[tuple[str, float]] = []

    def reserve(self, bucket: Bucket, now: float | None = None) -> Slot:
        slot = self.inner.reserve(bucket, now)
        self.slots.append((bucket.name, slot.send_at))
        return slot

    def hold(self, bucket: Bucket, seconds: float, now: float | None = None) -> None:
        self.inner.hold(bucket, seconds, now)


def run(job: dict[str, Any]) -> dict[str, Any]:
    spec = job["store"]
    store = RecordingStore(PostgresSlotStore(spec["url"]) if "url" in spec else SqliteSlotStore(spec["path"]))
    buckets = ace_buckets(job["per_minute"], job["batch_share"], job["lane"])
    sys.stdin.readline()  # the start signal
    started = time.perf_counter()
    out: dict[str, Any] = {}
    if job["mode"] == "reserve":
        frozen = float(job["now"])
        limiter = LaneLimiter(store, buckets, clock=lambda: frozen, sleep=lambda _s: None)
        for _ in range(job["count"]):
            limiter.acquire()
    else:
        # Imported here: it imports Dagster, which only the fetching workers need to pay for.
        from bv_pipeline.resources.ace import AceClient

        client = AceClient(job["base_url"], "test-key", limiter=LaneLimiter(store, buckets), concurrency=2)
        start = job["start_ms"]
        with client:
            table, stats = client.fetch_samples("demo", start, start + job["hours"] * HOUR_MS)
        out |= {"rows": table.num_rows, "requests": stats.requests, "rate_wait_s": stats.rate_wait_s}
    out["elapsed_s"] = time.perf_counter() - started
    store.inner.close()
    return out | {"slots": store.slots}


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))))
