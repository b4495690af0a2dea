"""Hot-store benchmark: SQLite whole-day upsert, SQLite 5-minute batch, D1 packing against the fake endpoint.

    .venv/bin/python -m bench.bench_hot_store            # full scale: 4,583 points x 1 day at 1-min cadence
    .venv/bin/python -m bench.bench_hot_store --minutes 120 --no-sort   # quick, and the unsorted-insert baseline

Data is synthetic (numpy, seeded), generated time-major (all points for each minute, the order a sync produces):
per-point poll phase 0-5 s plus N(0, 200 ms) jitter, ~0.8 % random gaps, a point mix of temperatures, positions,
binaries and meters, and ~1 % enum points whose values are text.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from bench._common import peak_rss_mib, write_result
from bv_pipeline.resources.hot_store import D1HotStore, SqliteHotStore
from bv_pipeline.storage.samples import SAMPLE_SCHEMA
from bv_pipeline_tests.fakes.d1_server import run_fake_d1

DAY0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SITE = "bench"


def point_names(n_points: int) -> list[str]:
    names = []
    for i in range(n_points):
        if i % 2:
            names.append(f"Building1.HVAC.AHU-{i // 40}.Point{i:05d}")
        else:
            names.append(f"Bldg1/VAV-{i // 12}/Pt{i:05d}")
    return names


def synthetic(n_points: int, start_minute: int, minutes: int, seed: int = 42) -> pa.Table:
    """Time-major samples for minutes [start_minute, start_minute + minutes) of day 0."""
    rng = np.random.default_rng(seed + start_minute)
    names = point_names(n_points)
    kind = np.arange(n_points) % 10  # 0-2 temps, 3-5 positions, 6-7 binary, 8 meter, 9 enum (text on 1 in 10)
    phase = np.random.default_rng(seed).integers(0, 5_000, n_points)
    m = np.arange(start_minute, start_minute + minutes)
    pid = np.tile(np.arange(n_points), minutes)
    minute = np.repeat(m, n_points)
    ts = DAY0_MS + minute * 60_000 + phase[pid] + rng.normal(0, 200, pid.size).round().astype(np.int64)
    k = kind[pid]
    diurnal = 21 + 3 * np.sin(2 * np.pi * minute / 1440)
    value = np.where(k <= 2, np.round(diurnal + rng.normal(0, 0.3, pid.size), 1), 0.0)
    value = np.where((k >= 3) & (k <= 5), np.round(rng.uniform(0, 100, pid.size), 1), value)
    value = np.where((k == 6) | (k == 7), (rng.random(pid.size) < 0.3).astype(float), value)
    value = np.where(k == 8, np.round(1000 + pid * 10 + minute * 0.37, 2), value)
    value = np.where(k == 9, rng.integers(0, 4, pid.size).astype(float), value)
    keep = rng.random(pid.size) >= 0.008
    is_text = (k == 9) & (pid % 100 == 9)
    texts = np.array(["occupied", "unoccupied", "standby", "bypass"], dtype=object)
    value_text = pa.array(np.where(is_text, texts[value.astype(int) % 4], None)[keep], pa.string())
    value_arr = pa.array(value[keep], pa.float64(), mask=is_text[keep])
    point = pa.DictionaryArray.from_arrays(pa.array(pid[keep], pa.int32()), pa.array(names)).cast(pa.string())
    return pa.Table.from_arrays([point, pa.array(ts[keep]), value_arr, value_text], schema=SAMPLE_SCHEMA)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=4_583)
    ap.add_argument("--minutes", type=int, default=1_440, help="minutes in the bulk load (default one day)")
    ap.add_argument("--no-sort", action="store_true", help="insert in time-major order (baseline)")
    ap.add_argument("--dir", type=Path, default=None, help="where the SQLite file goes (default: a temp dir)")
    args = ap.parse_args(argv)

    figures: dict[str, object] = {
        "points": args.points,
        "bulk_minutes": args.minutes,
        "sorted": not args.no_sort,
    }
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        # (1) bulk load into SQLite
        t0 = time.perf_counter()
        bulk = synthetic(args.points, 0, args.minutes)
        figures["generate_s"] = round(time.perf_counter() - t0, 2)
        store = SqliteHotStore(Path(tmp) / "hot.sqlite3")
        store.ensure_schema()
        t0 = time.perf_counter()
        stats = store.upsert_samples(SITE, bulk)
        bulk_s = time.perf_counter() - t0
        store._writer_conn().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db_bytes = sum(p.stat().st_size for p in Path(tmp).glob("hot.sqlite3*"))
        figures |= {
            "bulk_rows": stats.rows,
            "bulk_upsert_s": round(bulk_s, 2),
            "bulk_rows_per_s": round(stats.rows / bulk_s),
            "db_bytes_per_sample": round(db_bytes / stats.rows, 1),
        }
        del bulk

        # (2) one 5-minute batch after the bulk load (median of 3 distinct windows)
        times = []
        five_min_rows = 0
        for i in range(3):
            batch = synthetic(args.points, args.minutes + 5 * i, 5)
            five_min_rows = batch.num_rows
            t0 = time.perf_counter()
            store.upsert_samples(SITE, batch)
            times.append((time.perf_counter() - t0) * 1000)
        figures["sqlite_5min_rows"] = five_min_rows
        figures["sqlite_5min_ms_median"] = round(sorted(times)[1], 1)
        store.close()

        # (3) D1 path against the fake endpoint: a first sync (point ids unknown) and a steady-state sync.
        with run_fake_d1(Path(tmp) / "fake_d1.sqlite3") as fake:
            d1 = D1HotStore(fake.account_id, fake.database_id, fake.token, base_url=fake.base_url)
            d1.ensure_schema()
            for label, start in (("first", 0), ("steady", 5)):
                batch = synthetic(args.points, start, 5)
                fake.reset_log()
                before = d1.requests_made
                t0 = time.perf_counter()
                st = d1.upsert_samples(SITE, batch)
                d1.set_watermark(SITE, int(batch["ts_ms"].to_numpy().max()))
                ms = (time.perf_counter() - t0) * 1000
                log = list(fake.requests)
                figures |= {
                    f"d1_{label}_rows": st.rows,
                    f"d1_{label}_requests": d1.requests_made - before,
                    f"d1_{label}_statements": sum(r.statements for r in log),
                    f"d1_{label}_body_bytes": sum(r.body_bytes for r in log),
                    f"d1_{label}_max_request_bytes": max(r.body_bytes for r in log),
                    f"d1_{label}_max_statement_bytes": max(r.max_sql_bytes for r in log),
                    f"d1_{label}_max_params": max(r.max_params for r in log),
                    f"d1_{label}_ms_against_fake": round(ms),
                }
            d1.close()
    figures["peak_rss_mib"] = round(peak_rss_mib())
    write_result("hot_store", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
