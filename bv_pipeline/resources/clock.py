"""Wall clock as a resource, so tests (and replays) can pin "now" without patching time."""

from __future__ import annotations

import datetime as dt
import time

import dagster as dg


class ClockResource(dg.ConfigurableResource):
    """``fixed_now_ms`` unset: the real clock. Set: every call returns that instant (tests, reproducible replays)."""

    fixed_now_ms: int | None = None

    def now_ms(self) -> int:
        return self.fixed_now_ms if self.fixed_now_ms is not None else int(time.time() * 1000)

    def today(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.now_ms() / 1000, tz=dt.UTC).date()
