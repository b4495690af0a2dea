"""Export benchmark: a year of 20 simulated points (1-minute cadence, ~10.4 M rows) exported by ``run_export``.

    .venv/bin/python -m bench.bench_export [--points 20] [--days 365] [--chunk-samples 1000000] [--formats parquet,csv,csv.gz]

Builds the year straight into a local cold tier (the simulator's truth, encoded by the pipeline's own
``encode_day`` with a verified manifest entry per day), then runs the export job's function for each format with
the read engine over that store, and reports seconds, rows/s, file size and the peak RSS of a fresh child process
per format (the export's memory, not the data building's). Bounded memory is the point: the peak should depend on
``--chunk-samples``, not on the window.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import peak_rss_mib, write_result

SITE = "bench"
OWNER = "0" * 32


def build_year(root: Path, points: int, days: int) -> int:
    from bv_pipeline.resources.cold_store import LocalObjectStore
    from bv_pipeline.resources.hot_store import SqliteHotStore
    from bv_pipeline.resources.manifest_store import ManifestStore
    from bv_pipeline.simulator import AceSimulator, SimulatorConfig
    from bv_pipeline.storage import cold_keys, parquet_layout
    from bv_pipeline.storage.interfaces import ManifestEntry, PointMeta
    from bv_pipeline.storage.samples import day_bounds_ms

    sim = AceSimulator(SimulatorConfig(sites=(SITE,), points=points, seed=42))
    hot = SqliteHotStore(root / "hot.sqlite3")
    hot.ensure_schema()
    hot.upsert_points(
        SITE,
        [
            PointMeta(name=p.name, kind=p.kind, collect_interval_s=p.collect_interval_s)
            for p in sim.points(SITE)
        ],
    )
    cold = LocalObjectStore(root / "cold")
    total = 0
    for i in range(days):
        day = dt.date(2025, 1, 1) + dt.timedelta(days=i)
        lo, hi = day_bounds_ms(day)
        data, info = parquet_layout.encode_day(SITE, day, sim.truth(SITE, lo, hi), source="ace")
        key = cold_keys.samples_key(SITE, day)
        cold.put(key, data)
        ManifestStore(cold).put(  # the archive manifest lives in object storage
            ManifestEntry(
                SITE, day, key, info.rows, info.bytes, info.checksum, info.schema_version, hi, "ace", hi + 1
            )
        )
        total += info.rows
    return total


def export_once(job: tuple[str, str, int, int, int]) -> dict[str, Any]:
    """One export in this (fresh, spawned) process; returns its figures."""
    from bv_pipeline.api.reader import TimeseriesReader
    from bv_pipeline.logic.export import run_export
    from bv_pipeline.resources.cold_store import LocalObjectStore
    from bv_pipeline.resources.hot_store import SqliteHotStore
    from bv_pipeline.storage.exports import ExportSpec, ExportStatus, new_export_id
    from bv_pipeline.storage.samples import day_bounds_ms

    root, fmt, days, chunk_samples, _ = job
    hot = SqliteHotStore(Path(root) / "hot.sqlite3")
    store = LocalObjectStore(Path(root) / "cold")
    points = tuple(p.name for p in hot.list_points(SITE))
    first = dt.date(2025, 1, 1)
    spec = ExportSpec(
        site=SITE,
        points=points,
        start_ms=day_bounds_ms(first)[0],
        end_ms=day_bounds_ms(first + dt.timedelta(days=days - 1))[1],
        interval=None,
        format=fmt,  # type: ignore[arg-type]
    )
    now = int(time.time() * 1000)
    status = ExportStatus(new_export_id(now), OWNER, "queued", spec, now, now, now + 3_600_000)
    store.put(status.status_key, status.to_json())
    reader = TimeseriesReader(hot, store, max_workers=8, cache_bytes=64 * 1024 * 1024)
    base_rss = peak_rss_mib()
    t = time.perf_counter()
    done = run_export(
        reader,
        store,
        status,
        now_ms=lambda: int(time.time() * 1000),
        chunk_samples=chunk_samples,
        workdir=Path(root),
    )
    seconds = time.perf_counter() - t
    reader.close()
    return {
        "format": fmt,
        "rows": done.rows,
        "chunks": done.chunks_total,
        "seconds": round(seconds, 1),
        "rows_per_s": round(done.rows / seconds),
        "mb": round((done.bytes or 0) / 1e6, 1),
        "peak_rss_mib": round(peak_rss_mib()),
        "rss_before_mib": round(base_rss),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.bench_export")
    parser.add_argument("--points", type=int, default=20)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--chunk-samples", type=int, default=1_000_000)
    parser.add_argument("--formats", default="parquet,csv,csv.gz")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        t = time.perf_counter()
        rows = build_year(Path(tmp), args.points, args.days)
        build_s = time.perf_counter() - t
        ctx = mp.get_context("spawn")
        results = []
        for fmt in args.formats.split(","):
            with ctx.Pool(1) as pool:
                results.append(pool.apply(export_once, ((tmp, fmt, args.days, args.chunk_samples, 0),)))
        figures: dict[str, Any] = {
            "points": args.points,
            "days": args.days,
            "rows_in_cold": rows,
            "chunk_samples": args.chunk_samples,
            "build_cold_s": round(build_s, 1),
        }
        for r in results:
            assert r["rows"] == rows, (r, rows)
            figures[r["format"]] = r
        write_result("bench_export", figures)


if __name__ == "__main__":
    main()
