"""Read-API query benchmark: hot (SQLite), cold (S3 via a moto server) and split queries at 4,583 points.

    .venv/bin/python -m bench.bench_query [--cold-days 365] [--hot-days 20] [--hot-points 200] [--reps 15]

What is built (and why, given a ~10-minute budget on 2 cores):

- One real site-day of 4,583 points from the ACE simulator (``AceSimulator.truth``), about 6.5 M samples.
- Cold tier: ``--cold-days`` day objects in a moto S3 server (``ThreadedMotoServer`` in a child process, so its
  request handling does not share our GIL). The day is encoded once by ``parquet_layout.encode_day`` (its
  sort and point ids are reused); every other date is the same prepared table with ``ts_ms`` shifted by whole
  days and written with the same Parquet writer settings. Byte-identical copies under every date key would not
  work: the reader prunes row groups by ``ts_ms`` statistics, so a copy holding another date's timestamps is
  never read. Each day also gets its hourly rollup (``rollups.hourly_rollup`` once, shifted, then
  ``encode_rollup_day``) and a manifest entry with ``hot_deleted_ms`` set. The rollup's varying hours (min < max)
  get a per-day random factor (1 +- 0.1 %), as real days differ: shifted copies with identical values would make
  the compacted yearly object (which stores a point's year contiguously) compress unrealistically well.
- Compacted yearly rollups: built from those daily rollups by the real ``compact_rollups_year`` (one object per
  calendar year the cold days touch). Q4 is measured on both paths in the same run: compacted (the default
  reader) and daily rollups only (``use_compacted_rollups=False``, the before).
- Compacted monthly raw samples: built from the day objects by the real ``compact_samples_month``, one month
  per spawned process (``--compact-workers``), figures per month. Q3 is measured on both paths in the same run:
  compacted (the default reader) and day objects only (``use_compacted_samples=False``, the before). Every
  shifted day also gets a small per-day value offset, so a compacted point-month does not share one value
  dictionary across identical days.
- Hot tier: ``--hot-days`` days in SQLite for ``--hot-points`` points (default 200 of the 4,583, 1-minute
  cadence), the same simulated day shifted. A full-scale hot day costs about 25 s to insert, so 20 days would
  not fit; per-point reads of a WITHOUT ROWID (point, ts) B-tree depend on the rows of that point, not on how
  many other points the table holds, so the 1-point queries measure the same work.
- DuckDB comparison: DuckDB's httpfs extension cannot be fetched offline, so DuckDB reads the *same objects
  downloaded to local files* (page cache warm), while our reader fetches them from the S3 server. That favours
  DuckDB. DuckDB is also timed over the compacted monthly parts as local files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from bench._common import peak_rss_mib, percentile, write_result
from bv_pipeline.resources.manifest_store import ManifestStore
from bv_pipeline.storage import manifest as manifest_format
from bv_pipeline.storage.interfaces import RollupState
from bv_pipeline.storage.samples import MS_PER_DAY, day_bounds_ms

SITE = "bench"
BUCKET = "bench-cold"
POINTS = 4583
WORKER_STATE: dict[str, Any] = {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_moto(port: int) -> subprocess.Popen[bytes]:
    code = (
        "import time\n"
        "from moto.server import ThreadedMotoServer\n"
        f"s = ThreadedMotoServer(ip_address='127.0.0.1', port={port}, verbose=False)\n"
        "s.start()\n"
        "time.sleep(10**9)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("moto server did not start")


def _s3_client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    from bv_pipeline.resources.cold_store import ensure_checksum_when_required

    ensure_checksum_when_required()  # as production's make_s3_client: no checksum work on every GET

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        region_name="us-east-1",
        config=Config(max_pool_connections=32, retries={"max_attempts": 2}),
    )


def _init_worker(
    prepared: pa.Table, point_count: int, rollup: pa.Table, base_day: dt.date, endpoint: str
) -> None:
    WORKER_STATE.update(
        prepared=prepared,
        point_count=point_count,
        rollup=rollup,
        base_day=base_day,
        client=_s3_client(endpoint),
    )


def _vary(roll: pa.Table, day: dt.date) -> pa.Table:
    """Scale the varying hours' statistics by a per-row factor drawn from the day: realistic day-to-day change."""
    import numpy as np

    rng = np.random.default_rng(day.toordinal())
    varying = pc.fill_null(pc.less(roll["min"], roll["max"]), False).to_numpy(zero_copy_only=False)
    factor = pa.array(np.where(varying, 1 + rng.normal(0, 1e-3, roll.num_rows), 1.0))
    for name in ("sum", "avg", "min", "max"):
        roll = roll.set_column(roll.schema.get_field_index(name), name, pc.multiply(roll[name], factor))
    return roll


def _write_day(day: dt.date) -> tuple[str, int, int, str, RollupState]:
    """Shift the prepared base day to ``day``, encode it and its rollup, PUT both. Returns manifest data."""
    from bv_pipeline.resources.cold_store import S3ObjectStore
    from bv_pipeline.storage import cold_keys, parquet_layout, rollups

    st = WORKER_STATE
    store = S3ObjectStore(st["client"], BUCKET)
    shift = (day - st["base_day"]).days * MS_PER_DAY
    table = st["prepared"]
    table = table.set_column(table.schema.get_field_index("ts_ms"), "ts_ms", pc.add(table["ts_ms"], shift))
    # A per-day offset on the values: days differ as real days do, so a compacted month of one point does not
    # share one value dictionary across its days (which would compress unrealistically well).
    offset = (day.toordinal() % 97) * 0.01
    table = table.set_column(table.schema.get_field_index("value"), "value", pc.add(table["value"], offset))
    info = parquet_layout.DayFileInfo(
        site=SITE,
        day=day,
        rows=table.num_rows,
        bytes=0,
        checksum=f"bench-shifted-{day.isoformat()}",
        schema_version=parquet_layout.SCHEMA_VERSION,
        point_count=st["point_count"],
        source="ace",
    )
    # The same writer call encode_day makes, minus its sort (the prepared table is already sorted).
    data = parquet_layout._write_parquet(table, parquet_layout._metadata(info))
    key = cold_keys.samples_key(SITE, day)
    store.put(key, data)
    roll = st["rollup"]
    roll = _vary(roll.set_column(1, "hour_ms", pc.add(roll["hour_ms"], shift)), day)
    rdata, rinfo = rollups.encode_rollup_day(SITE, day, roll, source="ace", source_checksum=info.checksum)
    rkey = cold_keys.rollup_key(SITE, day)
    store.put(rkey, rdata)
    verified = day_bounds_ms(day)[1] + 3_600_000
    state = RollupState(rkey, rinfo.rows, len(rdata), rinfo.checksum, info.checksum, verified)
    return key, table.num_rows, len(data), info.checksum, state


def _compact_month(job: tuple[str, str, dt.date, int]) -> dict[str, Any]:
    """Compact one site-month with the real ``compact_samples_month`` (in a spawned process: its own GIL)."""
    from bv_pipeline.logic.raw_compaction import compact_samples_month
    from bv_pipeline.resources.cold_store import S3ObjectStore

    endpoint, _hot_path, month, now_ms = job
    t = time.perf_counter()
    store = S3ObjectStore(_s3_client(endpoint), BUCKET)
    r = compact_samples_month(
        ManifestStore(store),
        store,
        SITE,
        month,
        now_ms=now_ms,
    )
    return {
        "month": f"{month:%Y-%m}",
        "days": r.days_total,
        "skipped": len(r.days_skipped),
        "rows": r.rows,
        "mb": round(r.bytes / 1e6, 1),
        "source_mb": round(r.source_bytes / 1e6, 1),
        "parts": r.parts,
        "seconds": round(time.perf_counter() - t, 1),
        "phases": {k: round(v, 1) for k, v in r.phase_seconds.items()},
        "peak_rss_mib": round(peak_rss_mib(), 0),
    }


def _timed(fn: Callable[[], Any], reps: int) -> tuple[list[float], Any]:
    times, out = [], None
    for _ in range(reps):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return times, out


def _stats(times: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(times, 50), 1),
        "p95_ms": round(percentile(times, 95), 1),
        "n": len(times),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_query")
    parser.add_argument("--cold-days", type=int, default=365)
    parser.add_argument("--hot-days", type=int, default=20)
    parser.add_argument("--hot-points", type=int, default=200)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--workers", type=int, default=2, help="threads encoding and uploading cold days")
    parser.add_argument("--compact-workers", type=int, default=2, help="processes compacting months")
    args = parser.parse_args([] if argv is None else argv)

    import duckdb

    from bv_pipeline.api import payloads
    from bv_pipeline.api.reader import TimeseriesReader
    from bv_pipeline.logic.rollup_compaction import compact_rollups_year
    from bv_pipeline.resources.cold_store import LocalObjectStore, S3ObjectStore
    from bv_pipeline.resources.hot_store import SqliteHotStore
    from bv_pipeline.simulator import AceSimulator, SimulatorConfig
    from bv_pipeline.storage import cold_keys, parquet_layout, rollups
    from bv_pipeline.storage.interfaces import ManifestEntry, PointMeta

    figures: dict[str, Any] = {
        "points": POINTS,
        "cold_days": args.cold_days,
        "hot_days": args.hot_days,
        "hot_points": args.hot_points,
    }
    t_all = time.perf_counter()
    today = dt.date(2026, 6, 1)
    cold_days = [today - dt.timedelta(days=args.hot_days + args.cold_days - i) for i in range(args.cold_days)]
    hot_days = [today - dt.timedelta(days=args.hot_days - i) for i in range(args.hot_days)]
    base_day = cold_days[0]

    t = time.perf_counter()
    sim = AceSimulator(SimulatorConfig(sites=(SITE,), points=POINTS, seed=7))
    lo, hi = day_bounds_ms(base_day)
    samples = sim.truth(SITE, lo, hi, as_of_ms=hi + MS_PER_DAY)
    figures["generate_day_s"] = round(time.perf_counter() - t, 1)
    figures["samples_per_day"] = samples.num_rows

    t = time.perf_counter()
    base_bytes, base_info = parquet_layout.encode_day(SITE, base_day, samples, source="ace")
    prepared = parquet_layout._prepare_day(base_day, samples)[
        0
    ]  # the sorted, point-id'd table encode_day wrote
    rollup = rollups.hourly_rollup(samples)
    figures["encode_day_s"] = round(time.perf_counter() - t, 1)
    figures["day_object_mb"] = round(len(base_bytes) / 1e6, 1)

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = _start_moto(port)
    tmp = Path(tempfile.mkdtemp(prefix="bench_query_"))
    try:
        client = _s3_client(endpoint)
        client.create_bucket(Bucket=BUCKET)
        cold = S3ObjectStore(client, BUCKET)
        hot = SqliteHotStore(tmp / "hot.sqlite3")
        hot.ensure_schema()

        # ---- cold tier: one object (+ rollup) per day, written by worker processes ----------------------------
        t = time.perf_counter()
        # Threads, not processes: Polars and Arrow thread pools can deadlock in forked children, and the
        # Parquet writer and zstd release the GIL for most of their work.
        _init_worker(prepared, base_info.point_count, rollup, base_day, endpoint)
        with ThreadPoolExecutor(args.workers) as pool:
            written = list(pool.map(_write_day, cold_days))
        manifest = ManifestStore(cold)
        for day, (key, rows, size, checksum, rollup_state) in zip(cold_days, written, strict=True):
            verified = day_bounds_ms(day)[1] + 3_600_000
            manifest.put(
                ManifestEntry(
                    SITE,
                    day,
                    key,
                    rows,
                    size,
                    checksum,
                    parquet_layout.SCHEMA_VERSION,
                    verified,
                    "ace",
                    verified,
                    rollup_state,
                )
            )
        figures["cold_build_s"] = round(time.perf_counter() - t, 1)
        figures["cold_total_gb"] = round(sum(w[2] for w in written) / 1e9, 2)

        # ---- compacted yearly rollups, through the real compaction logic ------------------------------------------
        t = time.perf_counter()
        compactions = [
            compact_rollups_year(ManifestStore(cold), cold, SITE, year, now_ms=day_bounds_ms(today)[0])
            for year in sorted({d.year for d in cold_days})
        ]
        figures["compaction_s"] = round(time.perf_counter() - t, 1)
        figures["compacted"] = [
            {
                "year": c.year,
                "days": c.days_total,
                "rows": c.rows,
                "mb": round(c.bytes / 1e6, 1),
                "parts": c.parts,
            }
            for c in compactions
        ]
        # ---- compacted monthly raw samples, through the real compaction logic, two months at a time ------------
        import multiprocessing

        t = time.perf_counter()
        months = sorted({d.replace(day=1) for d in cold_days})
        jobs = [(endpoint, str(tmp / "hot.sqlite3"), m, day_bounds_ms(today)[0]) for m in months]
        with multiprocessing.get_context("spawn").Pool(args.compact_workers) as procs:
            figures["compacted_months"] = procs.map(_compact_month, jobs, chunksize=1)
        figures["month_compaction_s"] = round(time.perf_counter() - t, 1)
        month_rows = sum(m["rows"] for m in figures["compacted_months"])
        figures["month_compaction_rows_per_s"] = round(month_rows / figures["month_compaction_s"])
        figures["compacted_months_total_gb"] = round(
            sum(m["mb"] for m in figures["compacted_months"]) / 1e3, 2
        )

        figures["daily_rollups_mb"] = round(
            sum(cold.size(cold_keys.rollup_key(SITE, d)) or 0 for d in cold_days) / 1e6, 1
        )

        # ---- hot tier: a subset of points, every hot day ------------------------------------------------------
        t = time.perf_counter()
        names = sorted(set(samples["point"].to_pylist()))
        rng = random.Random(11)
        hot_names = sorted(rng.sample(names, args.hot_points))
        hot.upsert_points(SITE, [PointMeta(name=n, collect_interval_s=60) for n in names])
        hot.seal(SITE, day_bounds_ms(today)[0])  # past days are sealed hours: loaded straight into blocks
        hot_base = samples.filter(pc.is_in(samples["point"], value_set=pa.array(hot_names)))
        for day in hot_days:
            shift = (day - base_day).days * MS_PER_DAY
            hot.upsert_samples(SITE, hot_base.set_column(1, "ts_ms", pc.add(hot_base["ts_ms"], shift)))
        figures["hot_build_s"] = round(time.perf_counter() - t, 1)
        figures["hot_rows"] = hot_base.num_rows * len(hot_days)

        # The same objects in a local directory with the same keys: the reader's own cost without moto, and the
        # files DuckDB reads.
        t = time.perf_counter()
        local = LocalObjectStore(tmp / "cold")
        for day in cold_days:
            for key in (cold_keys.samples_key(SITE, day), cold_keys.rollup_key(SITE, day)):
                local.put(key, cold.get(key))
        for prefix in (
            cold_keys.rollup_year_site_prefix(SITE),
            cold_keys.samples_month_site_prefix(SITE),
            manifest_format.site_prefix(SITE),  # the archive manifest: without it nothing is archived
        ):
            for key in cold.list(prefix):
                local.put(key, cold.get(key))
        figures["download_to_local_s"] = round(time.perf_counter() - t, 1)
        if len(ManifestStore(local).list_all(SITE)) != len(cold_days):
            raise RuntimeError("the local copy's archive manifest does not list every cold day")

        # moto's cost per ranged GET (it copies the whole object per request and serialises on its GIL).
        key0 = cold_keys.samples_key(SITE, cold_days[0])
        gets, _ = _timed(lambda: cold.get_range(key0, 1_000_000, 1_150_000), 20)
        figures["moto_ranged_get_ms_p50"] = round(percentile(gets, 50), 1)

        end_ms = day_bounds_ms(today)[0]
        year_lo, year_hi = day_bounds_ms(cold_days[0])[0], day_bounds_ms(cold_days[-1])[1]
        hot_point = hot_names[len(hot_names) // 2]
        reps_long = max(3, args.reps // 3)

        # Q1: 1 point x 7 days raw, hot only
        reader = TimeseriesReader(hot, local, max_workers=16)
        times, res = _timed(
            lambda: reader.query(SITE, [hot_point], end_ms - 7 * MS_PER_DAY, end_ms), args.reps
        )
        figures["q1_hot_1pt_7d"] = {**_stats(times), "samples": res.frame.height, "source": res.source}

        stores = {"local": local, "s3": cold}
        for backend, store in stores.items():
            r = TimeseriesReader(hot, store, max_workers=16, cache_bytes=1024 * 1024 * 1024)
            # Q2: 1 point x 30 days split (10 cold + 20 hot). A different point each run, so cold row groups are
            # fetched every time; footers stay cached after the first query (the steady state).
            q2_points = [hot_names[(7 * i) % len(hot_names)] for i in range(args.reps + 1)]
            r.query(SITE, [q2_points[-1]], end_ms - 30 * MS_PER_DAY, end_ms)
            it2 = iter(q2_points)
            times, res = _timed(
                lambda r=r, it=it2: r.query(SITE, [next(it)], end_ms - 30 * MS_PER_DAY, end_ms), args.reps
            )
            figures[f"q2_split_1pt_30d_{backend}"] = {
                **_stats(times),
                "samples": res.frame.height,
                "source": res.source,
                "hot_samples": res.hot_samples,
                "cold_samples": res.cold_samples,
            }
            # Q3: 1 point x 365 days raw from cold, with a reader whose caches start empty, on both paths: the
            # compacted monthly objects (the default reader) and the day objects only (the before). The first run
            # fetches indexes, footers and row groups; then a new random point per run (footers of parts and days
            # already touched stay cached, row-group bytes do not: the cache-cold figure the target is judged
            # on); then the same point again (row groups cached: warm).
            q3_answers = {}
            # The same point on both paths: their answers must be identical.
            q3_check_point = rng.choice(names)
            for path, flags in (("", {}), ("_daily_objects", {"use_compacted_samples": False})):
                r3 = TimeseriesReader(hot, store, max_workers=16, cache_bytes=1024 * 1024 * 1024, **flags)
                q3_points = rng.sample(names, reps_long + 1)
                t = time.perf_counter()
                first = r3.query(SITE, [q3_points[0]], year_lo, year_hi)
                first_ms = (time.perf_counter() - t) * 1000
                it3 = iter(q3_points[1:])
                times, res = _timed(
                    lambda r=r3, it=it3: r.query(SITE, [next(it)], year_lo, year_hi), reps_long
                )
                warm, wres = _timed(
                    lambda r=r3, p=q3_points[-1]: r.query(SITE, [p], year_lo, year_hi), reps_long
                )
                figures[f"q3_cold_1pt_365d_{backend}{path}"] = {
                    **_stats(times),
                    "what": "p50/p95: a new point per run, footers cached, row-group bytes not (cache-cold)",
                    "first_run_empty_caches_ms": round(first_ms, 1),
                    "first_run_bytes_fetched_mb": round(first.cold_bytes_fetched / 1e6, 1),
                    "bytes_fetched_mb_per_query": round(res.cold_bytes_fetched / 1e6, 1),
                    "objects_per_query": res.cold_objects_read,
                    "warm_same_point_p50_ms": _stats(warm)["p50_ms"],
                    "warm_bytes_fetched_mb": round(wres.cold_bytes_fetched / 1e6, 1),
                    "samples": res.frame.height,
                    "source": res.source,
                }
                q3_answers[path] = r3.query(SITE, [q3_check_point], year_lo, year_hi).frame
                r3.close()
            figures[f"q3_paths_identical_{backend}"] = q3_answers[""].equals(q3_answers["_daily_objects"])
            # Q4: 50 random points x 365 days at 1 h from the hourly rollups of the cold days, on the compacted
            # yearly objects (new reader: first run fetches the index and part footers) and, as the before, on
            # the daily rollups only (first run fetches them). A new random point set per run.
            sets = [rng.sample(names, 50) for _ in range(2 * reps_long + 2)]
            readers = {
                "compacted": r,
                "daily": TimeseriesReader(
                    hot, store, max_workers=16, cache_bytes=1024 * 1024 * 1024, use_compacted_rollups=False
                ),
            }
            answers = {}
            for path, rq in readers.items():
                path_sets = sets[: reps_long + 1] if path == "compacted" else sets[reps_long + 1 :]
                t = time.perf_counter()
                first4 = rq.query(SITE, path_sets[0], year_lo, year_hi, interval="1h")
                q4_first = (time.perf_counter() - t) * 1000
                it4 = iter(path_sets[1:])
                times, r4 = _timed(
                    lambda rq=rq, it=it4: rq.query(SITE, next(it), year_lo, year_hi, interval="1h"), reps_long
                )
                figures[f"q4_cold_50pt_365d_1h_{backend}_{path}"] = {
                    **_stats(times),
                    "first_run_ms": round(q4_first, 1),
                    "first_run_bytes_fetched_mb": round(first4.cold_bytes_fetched / 1e6, 1),
                    "bytes_fetched_mb_per_query": round(r4.cold_bytes_fetched / 1e6, 1),
                    "objects_per_query": r4.cold_objects_read,
                    "buckets": r4.frame.height,
                    "rollup_days": r4.rollup_days,
                }
                answers[path] = rq.query(SITE, sets[0], year_lo, year_hi, interval="1h").frame
            figures[f"q4_paths_identical_{backend}"] = answers["compacted"].equals(answers["daily"])
            readers["daily"].close()
            r.close()

        # DuckDB over the same day objects as local files (httpfs cannot be installed offline).
        paths = [str(local.root / cold_keys.samples_key(SITE, d)) for d in cold_days]
        con = duckdb.connect()
        con.execute("PRAGMA threads=2")
        sql = (
            "SELECT point, ts_ms, value, value_text FROM read_parquet($paths) "
            "WHERE point = $p AND ts_ms >= $lo AND ts_ms < $hi ORDER BY ts_ms"
        )
        dk_points = iter(rng.sample(names, 2 * reps_long + 1))
        con.execute(
            sql, {"paths": paths, "p": next(dk_points), "lo": year_lo, "hi": year_hi}
        ).fetchall()  # warm-up

        def duck_on(files: list[str]) -> int:
            params = {"paths": files, "p": next(dk_points), "lo": year_lo, "hi": year_hi}
            return len(con.execute(sql, params).fetchnumpy()["ts_ms"])

        def duck() -> int:
            return duck_on(paths)

        dtimes, drows = _timed(duck, reps_long)
        figures["q3_duckdb_local_files"] = {**_stats(dtimes), "rows": drows}
        # DuckDB over the compacted monthly parts as local files, for comparison (same predicate).
        month_paths = [
            str(local.root / k)
            for k in local.list(cold_keys.samples_month_site_prefix(SITE))
            if k.endswith(".parquet")
        ]
        mtimes, mrows = _timed(lambda: duck_on(month_paths), reps_long)
        figures["q3_duckdb_local_month_parts"] = {**_stats(mtimes), "rows": mrows}
        figures["q3_speedup_vs_duckdb_p50_local"] = round(
            percentile(dtimes, 50) / figures["q3_cold_1pt_365d_local"]["p50_ms"], 2
        )
        figures["q3_speedup_vs_duckdb_p50_s3"] = round(
            percentile(dtimes, 50) / figures["q3_cold_1pt_365d_s3"]["p50_ms"], 2
        )
        for b in ("local", "s3"):
            figures[f"q3_speedup_vs_duckdb_month_parts_p50_{b}"] = round(
                percentile(mtimes, 50) / figures[f"q3_cold_1pt_365d_{b}"]["p50_ms"], 2
            )
            figures[f"q3_speedup_vs_duckdb_p50_{b}_daily_objects"] = round(
                percentile(dtimes, 50) / figures[f"q3_cold_1pt_365d_{b}_daily_objects"]["p50_ms"], 2
            )
        for b in ("local", "s3"):
            figures[f"q3_speedup_vs_duckdb_warm_cache_{b}"] = round(
                percentile(dtimes, 50) / figures[f"q3_cold_1pt_365d_{b}"]["warm_same_point_p50_ms"], 2
            )

        # Payloads: 1 point x 7 days raw (the anchors' §6 case)
        res = reader.query(SITE, [hot_point], end_ms - 7 * MS_PER_DAY, end_ms)
        meta = payloads.build_meta(res, [], {})
        old = payloads.encode_json(res, meta, "rows", 1.0)
        col = payloads.encode_json(res, meta, "columnar", 1.0)
        arrow = payloads.encode_arrow(res, meta)
        figures["payload_1pt_7d"] = {
            "samples": res.frame.height,
            "json_rows_bytes": len(old),
            "json_columnar_bytes": len(col),
            "arrow_zstd_bytes": len(arrow),
            "rows_over_columnar": round(len(old) / len(col), 2),
        }
        reader.close()
    finally:
        moto.terminate()
        moto.wait(timeout=30)
        for p in sorted(tmp.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        tmp.rmdir()

    figures["total_s"] = round(time.perf_counter() - t_all, 1)
    figures["peak_rss_mib"] = round(peak_rss_mib(), 0)
    figures["targets"] = {
        "q1_hot_7d_p50_lt_20ms": figures["q1_hot_1pt_7d"]["p50_ms"] < 20,
        **{
            f"q2_split_30d_p50_lt_100ms_{b}": figures[f"q2_split_1pt_30d_{b}"]["p50_ms"] < 100
            for b in ("local", "s3")
        },
        **{
            f"q3_cold_365d_p50_lt_1s_{b}": figures[f"q3_cold_1pt_365d_{b}"]["p50_ms"] < 1000
            for b in ("local", "s3")
        },
        **{
            f"q3_warm_cache_365d_p50_lt_1s_{b}": figures[f"q3_cold_1pt_365d_{b}"]["warm_same_point_p50_ms"]
            < 1000
            for b in ("local", "s3")
        },
        "q3_ge_1_5x_duckdb_local": figures["q3_speedup_vs_duckdb_p50_local"] >= 1.5,
        "q3_ge_1_5x_duckdb_s3_vs_duckdb_local_files": figures["q3_speedup_vs_duckdb_p50_s3"] >= 1.5,
        **{
            f"q4_50pt_365d_1h_p50_lt_1s_{b}": figures[f"q4_cold_50pt_365d_1h_{b}_compacted"]["p50_ms"] < 1000
            for b in ("local", "s3")
        },
        "columnar_ge_5x_smaller": figures["payload_1pt_7d"]["rows_over_columnar"] >= 5,
    }
    write_result("bench_query", figures)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")
    raise SystemExit(main(sys.argv[1:]))
