"""Cost of the archive manifest in object storage on the read path, against the hot-table manifest it replaced.

A 365-day query revalidates the 13 site-month manifest documents it spans (conditional GETs, 304 when
unchanged, fetched concurrently). Measured on the moto S3 server and a local directory, next to SQLite's
``manifest_list`` (what the reader used before), plus the cost of one conditional manifest update.

    python -m bench.bench_manifest [--days 365] [--reps 30]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import median
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from bv_pipeline.resources.cold_store import LocalObjectStore, S3ObjectStore
from bv_pipeline.resources.hot_store import SqliteHotStore
from bv_pipeline.resources.manifest_store import ManifestStore
from bv_pipeline.storage import cold_keys
from bv_pipeline.storage.interfaces import ManifestEntry, ObjectStore, RollupState

SITE = "bench"
RESULTS = Path(__file__).parent / "results" / "bench_manifest.json"


def _entries(days: list[dt.date]) -> list[ManifestEntry]:
    out = []
    for i, d in enumerate(days):
        checksum = f"blake2b:{i:040x}"
        rollup = RollupState(
            cold_keys.rollup_key(SITE, d), 110_000, 1_200_000, "blake2b:" + "r" * 40, checksum, 1
        )
        out.append(
            ManifestEntry(
                SITE,
                d,
                cold_keys.samples_key(SITE, d),
                6_500_000,
                17_000_000,
                checksum,
                1,
                1,
                "ace",
                2,
                rollup,
            )
        )
    return out


def _timed(fn: Any, reps: int) -> dict[str, float]:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"p50_ms": round(median(times), 2), "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2)}


def _measure(cold: ObjectStore, entries: list[ManifestEntry], reps: int) -> dict[str, Any]:
    writer = ManifestStore(cold)
    t = time.perf_counter()
    for e in entries:
        writer.put(e)
    put_ms = (time.perf_counter() - t) * 1000 / len(entries)
    first, last = entries[0].day, entries[-1].day
    with ThreadPoolExecutor(8) as pool:
        cold_list = _timed(lambda: ManifestStore(cold, pool=pool).list(SITE, first, last), reps)
        reader = ManifestStore(cold, pool=pool)
        assert reader.list(SITE, first, last) == entries
        warm = _timed(lambda: reader.list(SITE, first, last), reps)
    return {
        "update_ms_mean": round(put_ms, 2),
        "list_365d_empty_cache": cold_list,
        "list_365d_revalidate_304": warm,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    days = [dt.date(2025, 1, 1) + dt.timedelta(days=i) for i in range(args.days)]
    entries = _entries(days)
    figures: dict[str, Any] = {"days": args.days}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        client = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        client.create_bucket(Bucket="bench-manifest")
        figures["s3_server"] = _measure(S3ObjectStore(client, "bench-manifest"), entries, args.reps)
        with tempfile.TemporaryDirectory() as tmp:
            figures["local_dir"] = _measure(LocalObjectStore(Path(tmp) / "cold"), entries, args.reps)
            hot = SqliteHotStore(Path(tmp) / "hot.sqlite3")
            hot.ensure_schema()
            for e in entries:
                hot.manifest_put(e)
            figures["sqlite_manifest_list_365d"] = _timed(
                lambda: hot.manifest_list(SITE, days[0], days[-1]), args.reps
            )
            hot.close()
    finally:
        server.stop()
    for k, v in figures.items():
        print(f"  {k}: {v}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=1))
    print(f"  (written to {RESULTS})")


if __name__ == "__main__":
    main()
