"""Cold-tier layout benchmark: one site-day in our layout vs the old system's, plus an S3 (moto server) round trip.

Run: ``.venv/bin/python -m bench.bench_cold_layout`` (full scale: 4,583 points at 1-minute cadence, about
6.5 M samples) or ``--points 300`` for a quick run. Targets: <= 2.6 B/sample and >= 5x smaller than the old layout.
Sizes are measured on two datasets in one run: the simulator's day and the anchors' synthetic point mix.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench._common import median, peak_rss_mib, write_result
from bv_pipeline.storage import parquet_layout
from bv_pipeline.storage.parquet_layout import (
    decode_day,
    encode_day,
    encode_old_layout,
    read_points,
    verify_object,
)
from bv_pipeline.storage.samples import SAMPLE_SCHEMA, day_bounds_ms

# The anchors' point mix (performance-anchors.md, "Caveats"): 4,583 points in these proportions.
POINT_MIX = {"temp": 1232, "position": 1234, "binary": 703, "setpoint": 615, "meter": 120, "analog": 679}
ANCHOR_POINTS = sum(POINT_MIX.values())


def _names(kinds: np.ndarray) -> list[str]:
    """Point names in the two ACE styles the anchors describe."""
    suffix = {
        "temp": "SupplyAirTemp",
        "position": "DamperPos",
        "binary": "FanStatus",
        "setpoint": "ZoneTempSp",
        "meter": "EnergyKWh",
        "analog": "AirFlow",
    }
    out = []
    for i, kind in enumerate(kinds):
        if i % 2:
            out.append(f"Building1.HVAC.AHU-{i // 40}.{suffix[kind]}{i}")
        else:
            out.append(f"Bldg1/VAV-{i}/{suffix[kind][:6]}")
    return out


def synthetic_day(day: dt.date, points: int, *, seed: int = 7) -> pa.Table:
    """numpy synthetic site-day close to the anchors' generator: 1-minute cadence, per-point poll phase 0-5 s plus
    N(0, 200 ms) jitter kept at ms resolution, 0.8 % random gaps. Rows come back time-major (ingest order)."""
    rng = np.random.default_rng(seed)
    scale = points / ANCHOR_POINTS
    kinds_list: list[str] = []
    for kind, n in POINT_MIX.items():
        kinds_list += [kind] * max(1, round(n * scale))
    kinds = np.array(kinds_list[:points] + ["analog"] * max(0, points - len(kinds_list)))
    start_ms, end_ms = day_bounds_ms(day)
    minutes = np.arange(1440)
    phase = rng.integers(0, 5000, size=points)
    ts = start_ms + minutes[None, :] * 60_000 + phase[:, None] + np.rint(rng.normal(0, 200, (points, 1440)))
    ts = np.clip(ts.astype(np.int64), start_ms, end_ms - 1)
    hours = minutes / 60.0
    values = np.empty((points, 1440))
    for p in range(points):
        kind = kinds[p]
        if kind == "temp":
            noise = np.cumsum(rng.normal(0, 0.05, 1440)) * 0.3
            values[p] = np.round(21 + 2 * np.sin((hours - 9) / 24 * 2 * np.pi) + noise, 1)
        elif kind == "position":
            steps = np.cumsum(rng.normal(0, 1.5, 1440))
            raw = np.clip(50 + steps, 0, 100)
            values[p] = np.round(raw) if p % 2 else np.round(raw, 1)
        elif kind == "binary":
            values[p] = ((hours >= 6 + p % 3) & (hours < 18 + p % 4)).astype(float)
        elif kind == "setpoint":
            values[p] = np.where((hours >= 7) & (hours < 19), 21.0, 21.0 if p % 2 else 17.0)
        elif kind == "meter":
            values[p] = np.round(1000 * p + np.cumsum(rng.uniform(0, 0.5, 1440)), 2)
        else:
            values[p] = np.round(400 + 50 * np.sin(hours / 3) + rng.normal(0, 5, 1440), 1)
    keep = rng.random((points, 1440)) >= 0.008
    # Time-major, as samples arrive from ACE minute by minute.
    ts_t, values_t, keep_t = ts.T, values.T, keep.T
    point_idx = np.broadcast_to(np.arange(points, dtype=np.int32)[None, :], (1440, points))
    idx = point_idx[keep_t]
    names = pa.array(_names(kinds), pa.string())
    return pa.table(
        {
            "point": pa.DictionaryArray.from_arrays(pa.array(idx), names).cast(pa.string()),
            "ts_ms": pa.array(ts_t[keep_t]),
            "value": pa.array(values_t[keep_t]),
            "value_text": pa.nulls(int(keep.sum()), pa.string()),
        },
        schema=SAMPLE_SCHEMA,
    )


def _simulated_day(site: str, day: dt.date, points: int) -> pa.Table | None:
    """The project's ACE simulator when it is present (another module; optional here)."""
    try:
        from bv_pipeline.simulator import AceSimulator, SimulatorConfig  # type: ignore[attr-defined]
    except ImportError:
        return None
    start_ms, end_ms = day_bounds_ms(day)
    truth = AceSimulator(SimulatorConfig(sites=(site,), points=points)).truth(
        site, start_ms, end_ms, as_of_ms=end_ms
    )
    return truth.select([f.name for f in SAMPLE_SCHEMA]).cast(SAMPLE_SCHEMA)


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[Any, float]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return result, median(times)


def _s3_round_trip(data: bytes, key: str) -> dict[str, Any]:
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request access log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        bucket = f"bench-{uuid.uuid4().hex[:12]}"
        creds: dict[str, Any] = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}
        boto3.client(
            "s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1", **creds
        ).create_bucket(Bucket=bucket)
        from bv_pipeline.resources.cold_store import S3ObjectStore, make_s3_client

        store = S3ObjectStore(make_s3_client(f"http://{host}:{port}", "auto", "bench", "bench"), bucket)
        t0 = time.perf_counter()
        store.put(key, data)
        upload_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        back = store.get(key)
        get_s = time.perf_counter() - t0
        return {"upload_s": round(upload_s, 3), "get_s": round(get_s, 3), "store": store, "back": back}
    finally:
        server.stop()


def _per_column(data: bytes, n: int) -> dict[str, float]:
    meta = pq.read_metadata(pa.BufferReader(data))
    return {
        meta.schema.column(i).name: round(
            sum(meta.row_group(g).column(i).total_compressed_size for g in range(meta.num_row_groups)) / n, 3
        )
        for i in range(meta.num_columns)
    }


def _delta_entropy_b_per_sample(samples: pa.Table) -> dict[str, float]:
    """Zero-order entropy of each point's successive ts and value differences: roughly what an ideal
    delta + entropy coder would need, i.e. how far any Parquet encoding is from the data's information content."""
    import polars as pl

    df = pl.from_arrow(samples.select(["point", "ts_ms", "value"])).sort(["point", "ts_ms"])
    df = df.with_columns(dts=pl.col("ts_ms").diff().over("point"), dv=pl.col("value").diff().over("point"))
    out = {}
    for col in ("dts", "dv"):
        g = df.drop_nulls(col).group_by(["point", col]).len()
        g = g.with_columns(p=pl.col("len") / pl.col("len").sum().over("point"))
        out[col] = round(float((-g["p"].log(2) * g["len"]).sum()) / 8 / samples.num_rows, 3)
    return {"ts_ms": out["dts"], "value": out["dv"]}


def _bss_value_size(site: str, day: dt.date, samples: pa.Table) -> int:
    """The same file with ``value`` BYTE_STREAM_SPLIT (the anchors' choice), for comparison."""
    table, _ = parquet_layout._prepare_day(day, samples)
    data = parquet_layout._write_parquet(
        table, {}, column_encoding={**parquet_layout.DAY_COLUMN_ENCODING, "value": "BYTE_STREAM_SPLIT"}
    )
    return len(data)


def _sizes(site: str, day: dt.date, samples: pa.Table, repeat: int) -> tuple[dict[str, Any], bytes, Any]:
    """Size figures for one dataset: our layout, the old layout, the BYTE_STREAM_SPLIT variant, entropy."""
    n = samples.num_rows
    (new, info), write_s = _timed(lambda: encode_day(site, day, samples, source="bench"), repeat)
    # The old system wrote rows as they arrived from ACE: time-major (every point of a minute, then the next).
    ingest_order = samples.take(pa.array(np.argsort(samples["ts_ms"].to_numpy(), kind="stable")))
    old, old_write_s = _timed(lambda: encode_old_layout(site, ingest_order), repeat)
    bss = _bss_value_size(site, day, samples)
    meta = pq.read_metadata(pa.BufferReader(new))
    figures = {
        "samples": n,
        "new_mb": round(len(new) / 1e6, 2),
        "new_b_per_sample": round(len(new) / n, 3),
        "new_b_per_sample_by_column": _per_column(new, n),
        "value_byte_stream_split_variant_b_per_sample": round(bss / n, 3),
        "delta_entropy_b_per_sample": _delta_entropy_b_per_sample(samples),
        "old_mb": round(len(old) / 1e6, 2),
        "old_b_per_sample": round(len(old) / n, 3),
        "ratio_old_over_new": round(len(old) / len(new), 2),
        "new_row_groups": meta.num_row_groups,
        "new_footer_bytes": meta.serialized_size,
        "new_write_s": round(write_s, 3),
        "old_write_s": round(old_write_s, 3),
        "target_b_per_sample_le_2_6": len(new) / n <= 2.6,
        "target_ratio_ge_5": len(old) / len(new) >= 5,
    }
    return figures, new, info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_cold_layout", description=__doc__)
    parser.add_argument("--points", type=int, default=ANCHOR_POINTS)
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions of encode/verify (median)")
    parser.add_argument(
        "--synthetic", action="store_true", help="only the anchors' numpy mix (skip the simulator's day)"
    )
    parser.add_argument("--no-s3", action="store_true", help="skip the moto-server upload")
    args = parser.parse_args(argv)

    site, day = "bench", dt.date(2025, 3, 4)
    figures: dict[str, Any] = {"points": args.points}
    # Both datasets in one run: the simulator's day (what the pipeline stores in the demo and tests) and the
    # anchors' synthetic mix (the data the 2.6 B/sample target was measured on).
    t0 = time.perf_counter()
    sim = None if args.synthetic else _simulated_day(site, day, args.points)
    sim_gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    anchors = synthetic_day(day, args.points)
    figures["anchors_synthetic"], _, _ = _sizes(site, day, anchors, args.repeat)
    figures["anchors_synthetic"]["generate_s"] = round(time.perf_counter() - t0, 2)
    del anchors
    if sim is not None:
        figures["simulator"], new, info = _sizes(site, day, sim, args.repeat)
        figures["simulator"]["generate_s"] = round(sim_gen_s, 2)
        samples = sim
    else:
        samples = synthetic_day(day, args.points)
        _, new, info = _sizes(site, day, samples, 1)
    figures["timings_on"] = "simulator" if sim is not None else "anchors_synthetic"

    _, verify_s = _timed(lambda: verify_object(new, info), args.repeat)
    _, decode_s = _timed(lambda: decode_day(new), args.repeat)

    # One point, whole day, through the selective reader: bytes fetched vs the object.
    fetched: list[int] = []

    def fetch(a: int, b: int) -> bytes:
        fetched.append(b - a)
        return new[a:b]

    one_point = str(pc.min(samples["point"]).as_py())
    start_ms, end_ms = day_bounds_ms(day)
    one, one_s = _timed(
        lambda: (fetched.clear(), read_points(fetch, len(new), [one_point], start_ms, end_ms))[1], 3
    )
    figures.update(
        {
            "new_verify_s": round(verify_s, 3),
            "new_decode_s": round(decode_s, 3),
            "one_point_rows": one.num_rows,
            "one_point_read_s": round(one_s, 4),
            "one_point_bytes_fetched": sum(fetched),
            "one_point_requests": len(fetched),
        }
    )
    if not args.no_s3:
        s3 = _s3_round_trip(new, f"timeseries/site={site}/date={day.isoformat()}/part-0.parquet")
        t0 = time.perf_counter()
        verify_object(s3["back"], info)
        figures["s3_upload_s"] = s3["upload_s"]
        figures["s3_get_s"] = s3["get_s"]
        figures["s3_readback_verify_s"] = round(s3["get_s"] + time.perf_counter() - t0, 3)
    figures["peak_rss_mib"] = round(peak_rss_mib(), 1)
    write_result("cold_layout", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
