"""What one site-day costs on D1: the real code paths against the local D1-compatible endpoint.

One simulated UTC day at 4,583 points and a 1-minute cadence (2 % of samples arrive late, up to 8 minutes):

1. 288 incremental syncs, one every 5 minutes with the 10-minute lookback, each followed by the asset's checks
   (``window_stats``), plus the syncs after midnight that close the day;
2. the nightly archival of the day (read from hot, written to a local cold directory, verified);
3. a typical day of chart reads through ``TimeseriesReader`` (raw and hourly, 1 and 50 points);
4. retention of the day once it is older than the 20-day hot window (``DROP TABLE``).

Rows written/read are the endpoint's ``meta`` figures summed over every request (exact D1 counting once the
endpoint applies Cloudflare's row-count patch; the plain fake reports ``changes`` and rows returned). The bill
uses the reference's D1 price table (Workers Paid: $5 minimum including 50 M rows written, 25 B rows read and
5 GB storage per account; $1.00 per extra million rows written, $0.001 per extra million read, $0.75 per GB-month)
with the hot window's storage at its 20-day peak. R2 (cold tier) is not included.

    .venv/bin/python -m bench.bench_cost [--points 4583] [--reads 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import peak_rss_mib, write_result

SITE = "bench"
DAY = dt.date(2026, 8, 7)
MIN_MS = 60_000
HOT_DAYS = 20


def monthly_bill(
    sites: int, written_per_site_day: float, read_per_site_day: float, gb_per_site: float
) -> float:
    written = written_per_site_day * 30 * sites
    read = read_per_site_day * 30 * sites
    storage = gb_per_site * sites
    return round(
        5.0
        + max(0.0, written - 50e6) / 1e6 * 1.00
        + max(0.0, read - 25e9) / 1e6 * 0.001
        + max(0.0, storage - 5.0) * 0.75,
        2,
    )


class Meter:
    """Per-phase deltas of the store's rows written/read (D1 meta) and requests."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.phases: dict[str, dict[str, int]] = {}

    def snap(self) -> tuple[int, int, int]:
        return self.store.rows_written, self.store.rows_read, self.store.requests_made

    def add(self, phase: str, before: tuple[int, int, int]) -> None:
        w, r, q = (a - b for a, b in zip(self.snap(), before, strict=True))
        p = self.phases.setdefault(phase, {"rows_written": 0, "rows_read": 0, "requests": 0})
        p["rows_written"] += w
        p["rows_read"] += r
        p["requests"] += q


def _db_bytes(fake: Any) -> tuple[int, int]:
    page = fake.sql("PRAGMA page_size")[0][0]
    count = fake.sql("PRAGMA page_count")[0][0]
    free = fake.sql("PRAGMA freelist_count")[0][0]
    return count * page, (count - free) * page


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.bench_cost")
    ap.add_argument("--points", type=int, default=4583)
    ap.add_argument("--reads", type=int, default=1, help="scale of the day's chart reads (1 = 240 queries)")
    args = ap.parse_args(argv)

    from bv_pipeline.api.reader import TimeseriesReader
    from bv_pipeline.assets.hot import _hot_checks
    from bv_pipeline.logic.archive import apply_retention, archive_site_day
    from bv_pipeline.logic.hot_sync import SyncMode, sync_site_day
    from bv_pipeline.resources.ace import AceClient
    from bv_pipeline.resources.cold_store import LocalObjectStore
    from bv_pipeline.resources.hot_store import D1HotStore
    from bv_pipeline.simulator import AceSimulator, SimulatorConfig
    from bv_pipeline.simulator.faults import FaultConfig
    from bv_pipeline.storage.samples import day_bounds_ms
    from bv_pipeline_tests.fakes.d1_server import run_fake_d1

    day_start, day_end = day_bounds_ms(DAY)
    clock = {"ms": day_start}
    sim = AceSimulator(
        SimulatorConfig(
            sites=(SITE,),
            points=args.points,
            faults=FaultConfig(late_fraction=0.02, late_max_minutes=8, seed=7),
        ),
        clock=lambda: clock["ms"] / 1000,
        sleep=lambda _s: None,
    )
    client = AceClient("http://ace-simulator/api", "k", transport=sim.transport(), sleep=lambda _s: None)
    figures: dict[str, Any] = {"points": args.points, "day": DAY.isoformat()}
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, run_fake_d1() as fake:
        d1 = D1HotStore(fake.account_id, fake.database_id, fake.token, base_url=fake.base_url)
        d1.ensure_schema()
        meter = Meter(d1)
        base_bytes = _db_bytes(fake)[1]
        peak_bytes = 0

        # 1. the day's syncs (each with the asset's checks), then the ones that close the day
        sync_s: list[float] = []
        failed_checks = 0
        slots = [day_start + k * 5 * MIN_MS + 20_000 for k in range(1, 289)]
        slots += [day_end + k * 5 * MIN_MS + 20_000 for k in range(1, 3)]
        for now in slots:
            clock["ms"] = now
            t = time.perf_counter()
            before = meter.snap()
            result = sync_site_day(
                client, d1, SITE, DAY, now_ms=now, mode=SyncMode.INCREMENTAL, lookback_minutes=10
            )
            meter.add("sync", before)
            before = meter.snap()
            checks = _hot_checks(d1, result, now)
            meter.add("checks", before)
            failed_checks += sum(1 for c in checks if not c.passed and c.check_name != "latest_sample_fresh")
            sync_s.append(time.perf_counter() - t)
            if len(sync_s) % 24 == 0:
                print(
                    f"  .. {len(sync_s)} syncs, {meter.phases['sync']['rows_written']} rows written",
                    flush=True,
                )
            peak_bytes = max(peak_bytes, _db_bytes(fake)[0])
        stored = d1.count_samples(SITE, day_start, day_end)
        truth = sim.truth(SITE, day_start, day_end).num_rows
        figures["syncs"] = len(slots)
        figures["sync_s_median"] = round(sorted(sync_s)[len(sync_s) // 2], 3)
        figures["samples_stored"] = stored
        figures["samples_in_source"] = truth
        figures["failed_checks"] = failed_checks
        total, live = _db_bytes(fake)
        figures["db_bytes_after_day"] = total
        figures["bytes_per_sample"] = round((live - base_bytes) / max(stored, 1), 2)

        # 2. nightly archival
        cold = LocalObjectStore(Path(tmp) / "cold")
        before = meter.snap()
        t = time.perf_counter()
        archive_site_day(d1, cold, client, SITE, DAY, now_ms=day_end + 3_600_000)
        meter.add("archive", before)
        figures["archive_s"] = round(time.perf_counter() - t, 2)

        # 3. a typical day of chart reads (the day is still hot)
        reader = TimeseriesReader(d1, cold)
        names = [p.name for p in d1.list_points(SITE)]
        before = meter.snap()
        t = time.perf_counter()
        n_queries = 0
        for i in range(200 * args.reads):  # one point, the whole day, raw
            reader.query(SITE, [names[(i * 37) % len(names)]], day_start, day_end)
            n_queries += 1
        for i in range(40 * args.reads):  # fifty points, the whole day, hourly
            pts = [names[(i * 50 + j) % len(names)] for j in range(50)]
            reader.query(SITE, pts, day_start, day_end, interval="1h")
            n_queries += 1
        reader.close()
        meter.add("reads", before)
        figures["read_queries"] = n_queries
        figures["reads_s"] = round(time.perf_counter() - t, 2)

        # 4. retention once the day left the hot window
        before = meter.snap()
        ret = apply_retention(
            d1, cold, client, SITE, today=DAY + dt.timedelta(days=HOT_DAYS + 1), hot_days=HOT_DAYS
        )
        meter.add("retention", before)
        figures["retention_deleted_days"] = [d.isoformat() for d in ret.deleted_days]
        figures["db_bytes_after_retention"] = _db_bytes(fake)[1]
        d1.close()

    ph = meter.phases
    per_day_written = sum(p["rows_written"] for p in ph.values())
    per_day_read = sum(p["rows_read"] for p in ph.values())
    figures["phases"] = ph
    figures["rows_written_per_site_day"] = per_day_written
    figures["rows_read_per_site_day"] = per_day_read
    figures["requests_per_site_day"] = sum(p["requests"] for p in ph.values())
    day_gb = (figures["bytes_per_sample"] * figures["samples_stored"]) / 1e9
    figures["peak_db_gb_per_site_20_days"] = round(day_gb * HOT_DAYS, 3)
    figures["monthly_bill_usd"] = {
        n: monthly_bill(n, per_day_written, per_day_read, day_gb * HOT_DAYS) for n in (1, 3, 10, 20)
    }
    figures["elapsed_s"] = round(time.perf_counter() - t_all, 1)
    figures["peak_rss_mib"] = round(peak_rss_mib(), 1)
    name = "bench_cost" if args.points == 4583 else f"bench_cost_{args.points}p"
    write_result(name, figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
