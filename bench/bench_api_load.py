"""Read-API load benchmark: 50 concurrent clients for 60 s against ``serve-api`` (uvicorn workers) on a 300-point site.

    .venv/bin/python -m bench.bench_api_load [--clients 50] [--seconds 60] [--workers N] [--data-dir DIR]

What is built (once per ``--data-dir``; reused when the parameters match):

- A 300-point site from the ACE simulator (1-minute cadence, ~430k samples a day): one simulated day, shifted
  to every date, as ``bench_query`` does (the day is prepared once, each date gets its ``ts_ms`` shifted and a
  small value offset so days differ).
- Cold tier, a local directory (the embedded default): ``--cold-days`` day objects plus hourly rollups, manifest
  entries with ``hot_deleted_ms`` set, then the real compactions (``compact_rollups_year`` per year,
  ``compact_samples_month`` per closed month).
- Hot tier: ``--hot-days`` days of all 300 points in SQLite, after the cold days, in sealed hour blocks (as a
  running sync leaves past hours).

The API runs as a real server: ``python -m bv_pipeline.api.server --workers N`` (uvicorn worker processes) with
``BV_DATA_DIR`` pointing at the data. The load client is one process: ``--clients`` asyncio tasks, each with
its own keep-alive HTTP/1.1 connection and a minimal request loop (no HTTP library: the client must not take
the CPU the server is measured on). Each request picks a kind (equal weights) and a random point of the 300:

- ``hot_1pt_7d``: 1 point x the last 7 hot days, raw;
- ``split_1pt_30d_1h``: 1 point x 30 days at ``interval=1h`` (20 hot days + 10 cold days from rollups);
- ``cold_1pt_90d``: 1 point x 90 archived days, raw, ``max_points=2000`` (a chart's request);
- ``hot_5pt_1d``: 5 points x 1 random hot day, raw;

all ``format=columnar``, half MessagePack and half Arrow IPC. Memory is the sum of RSS over the server's whole
process tree (supervisor plus workers), sampled every 0.2 s; the peak is reported, with the per-process figures.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from bench._common import percentile, write_result
from bench._http_load import (
    Connection,
    MemorySampler,
    connections_per_process,
    tree_cpu_s,
    tree_rss_mib,
)
from bv_pipeline.storage.samples import MS_PER_DAY, day_bounds_ms

SITE = "bench"
TOKEN = "bench-load-token-0123456789"
KINDS = ("hot_1pt_7d", "split_1pt_30d_1h", "cold_1pt_90d", "hot_5pt_1d")
MEDIA = ("application/x-msgpack", "application/vnd.apache.arrow.stream")


# ---- data -------------------------------------------------------------------------------------------------------


def build_site(root: Path, points: int, cold_days: int, hot_days: int) -> dict[str, Any]:
    """Hot SQLite + local cold directory under ``root`` (``BV_DATA_DIR`` layout); returns what the load needs."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from bv_pipeline.logic.raw_compaction import compact_samples_month
    from bv_pipeline.logic.rollup_compaction import compact_rollups_year
    from bv_pipeline.resources.cold_store import LocalObjectStore
    from bv_pipeline.resources.hot_store import SqliteHotStore
    from bv_pipeline.resources.manifest_store import ManifestStore
    from bv_pipeline.simulator import AceSimulator, SimulatorConfig
    from bv_pipeline.storage import cold_keys, parquet_layout, rollups
    from bv_pipeline.storage.interfaces import ManifestEntry, PointMeta, RollupState

    params = {"points": points, "cold_days": cold_days, "hot_days": hot_days, "layout": 2}
    stamp = root / "bench_params.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("params") == params:
        return json.loads(stamp.read_text())["site"]
    root.mkdir(parents=True, exist_ok=True)
    for name in ("hot.sqlite3", "hot.sqlite3-wal", "hot.sqlite3-shm"):
        (root / name).unlink(missing_ok=True)
    t_all = time.perf_counter()
    today = dt.date(2026, 6, 1)
    cold = [today - dt.timedelta(days=hot_days + cold_days - i) for i in range(cold_days)]
    hot_list = [today - dt.timedelta(days=hot_days - i) for i in range(hot_days)]
    base_day = cold[0]
    sim = AceSimulator(SimulatorConfig(sites=(SITE,), points=points, seed=7))
    lo, hi = day_bounds_ms(base_day)
    samples = sim.truth(SITE, lo, hi, as_of_ms=hi + MS_PER_DAY)
    _, base_info = parquet_layout.encode_day(SITE, base_day, samples, source="ace")
    prepared = parquet_layout._prepare_day(base_day, samples)[0]  # sorted, point ids: encode_day's table
    rollup = rollups.hourly_rollup(samples)

    store = LocalObjectStore(root / "cold")
    hot = SqliteHotStore(root / "hot.sqlite3")
    hot.ensure_schema()
    names = sorted(set(samples["point"].to_pylist()))
    hot.upsert_points(SITE, [PointMeta(name=n, collect_interval_s=60) for n in names])
    for day in cold:
        shift = (day - base_day).days * MS_PER_DAY
        table = prepared.set_column(
            prepared.schema.get_field_index("ts_ms"), "ts_ms", pc.add(prepared["ts_ms"], shift)
        )
        offset = (day.toordinal() % 97) * 0.01
        table = table.set_column(
            table.schema.get_field_index("value"), "value", pc.add(table["value"], offset)
        )
        info = parquet_layout.DayFileInfo(
            site=SITE,
            day=day,
            rows=table.num_rows,
            bytes=0,
            checksum=f"bench-shifted-{day.isoformat()}",
            schema_version=parquet_layout.SCHEMA_VERSION,
            point_count=base_info.point_count,
            source="ace",
        )
        data = parquet_layout._write_parquet(table, parquet_layout._metadata(info))
        key = cold_keys.samples_key(SITE, day)
        store.put(key, data)
        roll = rollup.set_column(1, "hour_ms", pc.add(rollup["hour_ms"], shift))
        rdata, rinfo = rollups.encode_rollup_day(SITE, day, roll, source="ace", source_checksum=info.checksum)
        rkey = cold_keys.rollup_key(SITE, day)
        store.put(rkey, rdata)
        verified = day_bounds_ms(day)[1] + 3_600_000
        # The archive manifest lives in object storage (the hot table is only a cache of it).
        ManifestStore(store).put(
            ManifestEntry(
                SITE, day, key, table.num_rows, len(data), info.checksum,
                parquet_layout.SCHEMA_VERSION, verified, "ace", verified,
                RollupState(rkey, rinfo.rows, len(rdata), rinfo.checksum, info.checksum, verified),
            )
        )  # fmt: skip
    now_ms = day_bounds_ms(today)[0]
    for year in sorted({d.year for d in cold}):
        compact_rollups_year(ManifestStore(store), store, SITE, year, now_ms=now_ms)
    for month in sorted({d.replace(day=1) for d in cold}):
        compact_samples_month(ManifestStore(store), store, SITE, month, now_ms=now_ms)
    # As a running sync leaves it: past hours sealed into blocks (a sync seals each hour once its lookback has
    # passed), so they load straight into blocks; only the running hour of today would be staging rows.
    hot.seal(SITE, day_bounds_ms(today)[0])
    for day in hot_list:
        shift = (day - base_day).days * MS_PER_DAY
        hot.upsert_samples(SITE, samples.set_column(1, "ts_ms", pc.add(samples["ts_ms"], shift)))
    site = {
        "points": names,
        "cold_first_ms": day_bounds_ms(cold[0])[0],
        "hot_first_ms": day_bounds_ms(hot_list[0])[0],
        "end_ms": day_bounds_ms(hot_list[-1])[1],
        "hot_days": hot_days,
        "samples_per_day": samples.num_rows,
        "build_s": round(time.perf_counter() - t_all, 1),
    }
    del pa
    stamp.write_text(json.dumps({"params": params, "site": site}))
    return site


# ---- server and memory ------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    data_dir: Path, port: int, workers: int, extra_env: dict[str, str]
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "BV_DATA_DIR": str(data_dir),
        "BV_SITES": SITE,
        "BV_API_TOKENS": TOKEN,
        "BV_API_RATE_PER_S": "1000000",
        "BV_API_RATE_BURST": "1000000",
        **({"BV_API_WORKERS": str(workers)} if workers > 0 else {}),
        **extra_env,
    }
    cmd = [sys.executable, "-m", "bv_pipeline.api.server", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API server exited with {proc.returncode}")
        try:
            status, _, _ = asyncio.run(_one_request(port, "/health"))
            if status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the API server did not become healthy")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _one_request(port: int, target: str) -> tuple[int, dict[str, str], bytes]:
    conn = Connection(port)
    try:
        return await conn.request(target, {"Authorization": f"Bearer {TOKEN}"})
    finally:
        await conn.close()


def make_request(kind: str, site: dict[str, Any], rng: random.Random) -> str:
    names: list[str] = site["points"]
    end = site["end_ms"]
    params: dict[str, Any] = {"site_name": SITE, "format": "columnar"}
    if kind == "hot_1pt_7d":
        params.update(point_names=rng.choice(names), start_time=end - 7 * MS_PER_DAY, end_time=end - 1)
    elif kind == "split_1pt_30d_1h":
        params.update(
            point_names=rng.choice(names), start_time=end - 30 * MS_PER_DAY, end_time=end - 1, interval="1h"
        )
    elif kind == "cold_1pt_90d":
        lo = site["cold_first_ms"]
        params.update(point_names=rng.choice(names), start_time=lo, end_time=lo + 90 * MS_PER_DAY - 1)
        params["max_points"] = 2000
    else:
        day = rng.randrange(site["hot_days"])
        lo = site["hot_first_ms"] + day * MS_PER_DAY
        params.update(point_names=",".join(rng.sample(names, 5)), start_time=lo, end_time=lo + MS_PER_DAY - 1)
    return "/timeseries/query?" + urllib.parse.urlencode(params)


async def run_load(
    port: int, site: dict[str, Any], clients: int, seconds: float, seed: int
) -> dict[str, Any]:
    results: list[tuple[str, int, float, int]] = []  # kind, status (0: error), ms, bytes
    errors: list[str] = []
    deadline = time.monotonic() + seconds

    async def client(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        conn = Connection(port)
        while time.monotonic() < deadline:
            kind = rng.choice(KINDS)
            headers = {"Authorization": f"Bearer {TOKEN}", "Accept": rng.choice(MEDIA)}
            target = make_request(kind, site, rng)
            t = time.perf_counter()
            try:
                status, _, body = await conn.request(target, headers)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                errors.append(f"{kind}: {type(exc).__name__}: {exc}")
                results.append((kind, 0, (time.perf_counter() - t) * 1000, 0))
                await conn.close()
                continue
            results.append((kind, status, (time.perf_counter() - t) * 1000, len(body)))
            if status != 200 and len(errors) < 20:
                errors.append(f"{kind}: HTTP {status}: {body[:200]!r}")
        await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    wall = time.perf_counter() - t0
    out: dict[str, Any] = {"wall_s": round(wall, 1), "requests": len(results)}
    ok = [r for r in results if r[1] == 200]
    out["requests_per_s"] = round(len(ok) / wall, 1)
    out["errors"] = len(results) - len(ok)
    out["error_samples"] = errors[:5]
    all_ms = [r[2] for r in ok]
    if all_ms:
        out["all"] = _latency(all_ms)
    for kind in KINDS:
        ms = [r[2] for r in ok if r[0] == kind]
        if ms:
            out[kind] = {
                **_latency(ms),
                "kb_mean": round(sum(r[3] for r in ok if r[0] == kind) / len(ms) / 1e3, 1),
            }
    return out


def _latency(ms: list[float]) -> dict[str, float]:
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 1),
        "p95_ms": round(percentile(ms, 95), 1),
        "p99_ms": round(percentile(ms, 99), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_api_load")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=0, help="uvicorn workers (0: the server's default)")
    parser.add_argument("--points", type=int, default=300)
    parser.add_argument("--cold-days", type=int, default=100)
    parser.add_argument("--hot-days", type=int, default=20)
    parser.add_argument("--data-dir", default="", help="where the site is built (default: a temp directory)")
    parser.add_argument("--warmup-s", type=float, default=5.0, help="load before measuring (not counted)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--env", action="append", default=[], help="extra server variable NAME=VALUE")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    import tempfile

    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="bench_api_load_"))
    t = time.perf_counter()
    site = build_site(data_dir, args.points, args.cold_days, args.hot_days)
    figures: dict[str, Any] = {
        "points": args.points,
        "cold_days": args.cold_days,
        "hot_days": args.hot_days,
        "samples_per_day": site["samples_per_day"],
        "build_s": round(time.perf_counter() - t, 1),
        "clients": args.clients,
        "seconds": args.seconds,
    }
    extra_env = dict(e.split("=", 1) for e in args.env)
    port = _free_port()
    workers = args.workers or 0
    proc = start_server(data_dir, port, workers, extra_env)
    try:
        idle = tree_rss_mib(proc.pid)
        figures["server_processes"] = len(idle)
        figures["idle_rss_mib_total"] = round(sum(idle.values()), 1)
        if args.warmup_s > 0:
            asyncio.run(run_load(port, site, args.clients, args.warmup_s, args.seed + 99))
        sampler = MemorySampler(proc.pid)
        sampler.start()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        server_cpu0 = tree_cpu_s(proc.pid)
        split: list[list[int]] = []
        probe = threading.Timer(args.seconds / 2, lambda: split.append(connections_per_process(port)))
        probe.start()
        load = asyncio.run(run_load(port, site, args.clients, args.seconds, args.seed))
        probe.join()
        server_cpu = tree_cpu_s(proc.pid) - server_cpu0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        sampler.stop()
        figures.update(load)
        # CPU the server actually got: on a shared machine its throughput is bounded by this, not by its cores.
        figures["server_cpu_s"] = round(server_cpu, 1)
        figures["server_cores_used"] = round(server_cpu / load["wall_s"], 2)
        ok = load["requests"] - load["errors"]
        figures["server_cpu_ms_per_request"] = round(server_cpu * 1000 / max(1, ok), 1)
        figures["requests_per_s_per_core_used"] = round(ok / max(server_cpu, 1e-9), 1)
        figures["peak_rss_mib_all_api_processes"] = round(sampler.peak_total, 1)
        figures["peak_rss_mib_per_process"] = [round(v, 1) for v in sampler.peak_detail.values()]
        figures["memory_samples"] = sampler.samples
        figures["load_client_cpu_s"] = round(
            (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime), 1
        )
        # Connections per worker mid-run: uvicorn's workers share one listening socket and each accepts a burst
        # of pending connections at once, so the split can be very uneven; clients of the fuller worker wait longer.
        figures["connections_per_worker"] = split[0] if split else []
        figures["extra_env"] = extra_env
        figures["loadavg_after"] = os.getloadavg()
    finally:
        stop_server(proc)
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    write_result("bench_api_load", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
