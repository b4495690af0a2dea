"""Hot-tier reads through ``TimeseriesReader`` on the block layout, SQLite and D1 (local endpoint).

20 hot days of ``--points`` points (default 200 of the 4,583: a block read seeks one rowid range per point, so
other points' blocks do not change a point's cost) at a 1-minute cadence, one simulated day shifted, loaded as
sealed hours. Measured: 1 point x 7 days raw (p50, target < 20 ms on SQLite); 50 points x 20 days at 1 h (target
< 1 s, and < 5 MB read from D1: whole hours come from the block summary columns, no block is read).

    .venv/bin/python -m bench.bench_hot_reads [--points 200] [--reps 15]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import median, write_result

SITE = "bench"
HOT_DAYS = 20
MS_PER_DAY = 86_400_000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.bench_hot_reads")
    ap.add_argument("--points", type=int, default=200)
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args(argv)

    import pyarrow as pa
    import pyarrow.compute as pc

    from bv_pipeline.api.reader import TimeseriesReader
    from bv_pipeline.resources.cold_store import LocalObjectStore
    from bv_pipeline.resources.hot_store import D1HotStore, SqliteHotStore
    from bv_pipeline.simulator import AceSimulator, SimulatorConfig
    from bv_pipeline.storage.samples import day_bounds_ms
    from bv_pipeline_tests.fakes.d1_server import run_fake_d1

    today = dt.date(2026, 6, 1)
    days = [today - dt.timedelta(days=HOT_DAYS - i) for i in range(HOT_DAYS)]
    sim = AceSimulator(SimulatorConfig(sites=(SITE,), points=4583, seed=7))
    lo, hi = day_bounds_ms(days[0])
    day = sim.truth(SITE, lo, hi, as_of_ms=hi + MS_PER_DAY)
    names = sorted(set(day["point"].to_pylist()))
    chosen = sorted(random.Random(11).sample(names, args.points))
    base = day.filter(pc.is_in(day["point"], value_set=pa.array(chosen)))
    figures: dict[str, Any] = {
        "points": args.points,
        "hot_days": HOT_DAYS,
        "samples": base.num_rows * HOT_DAYS,
    }
    start, end = day_bounds_ms(days[0])[0], day_bounds_ms(today)[0]
    rng = random.Random(3)

    def load(store: Any) -> float:
        t = time.perf_counter()
        store.seal(SITE, end)  # past hours: straight into blocks
        for i in range(HOT_DAYS):
            store.upsert_samples(SITE, base.set_column(1, "ts_ms", pc.add(base["ts_ms"], i * MS_PER_DAY)))
        return round(time.perf_counter() - t, 1)

    def queries(reader: TimeseriesReader, prefix: str) -> None:
        week: list[float] = []
        for _ in range(args.reps):
            p = rng.choice(chosen)
            t = time.perf_counter()
            r = reader.query(SITE, [p], end - 7 * MS_PER_DAY, end)
            week.append((time.perf_counter() - t) * 1000)
            assert r.frame.height > 9_000
        figures[f"{prefix}_1pt_7d_raw_p50_ms"] = round(median(week), 1)
        hourly: list[float] = []
        for _ in range(max(3, args.reps // 3)):
            pts = rng.sample(chosen, 50)
            t = time.perf_counter()
            r = reader.query(SITE, pts, start, end, interval="1h")
            hourly.append((time.perf_counter() - t) * 1000)
            assert 0 < r.frame.height <= 50 * 24 * HOT_DAYS  # text-only points have no hourly average
        figures[f"{prefix}_50pt_20d_1h_p50_ms"] = round(median(hourly), 1)

    with tempfile.TemporaryDirectory() as tmp:
        cold = LocalObjectStore(Path(tmp) / "cold")
        lite = SqliteHotStore(Path(tmp) / "hot.sqlite3")
        lite.ensure_schema()
        figures["sqlite_load_s"] = load(lite)
        reader = TimeseriesReader(lite, cold)
        queries(reader, "sqlite")
        reader.close()
        lite.close()

        with run_fake_d1() as fake:
            d1 = D1HotStore(fake.account_id, fake.database_id, fake.token, base_url=fake.base_url)
            d1.ensure_schema()
            figures["d1_load_s"] = load(d1)
            reader = TimeseriesReader(d1, cold)
            queries(reader, "d1")
            fake.reset_log()
            pts = rng.sample(chosen, 50)
            reader.query(SITE, pts, start, end, interval="1h")
            figures["d1_50pt_20d_1h_result_mb"] = round(sum(r.result_bytes for r in fake.requests) / 1e6, 3)
            figures["d1_50pt_20d_1h_rows_read"] = sum(r.rows_read for r in fake.requests)
            figures["d1_50pt_20d_1h_requests"] = len(fake.requests)
            fake.reset_log()
            reader.query(SITE, [pts[0]], end - 7 * MS_PER_DAY, end)
            figures["d1_1pt_7d_raw_result_mb"] = round(sum(r.result_bytes for r in fake.requests) / 1e6, 3)
            figures["d1_1pt_7d_raw_rows_read"] = sum(r.rows_read for r in fake.requests)
            reader.close()
            d1.close()
    write_result("bench_hot_reads", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
