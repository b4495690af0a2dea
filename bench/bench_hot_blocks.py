"""Hot-tier block codec benchmark: bytes per sample, encode/decode throughput, staging row sizes.

    .venv/bin/python -m bench.bench_hot_blocks               # full scale: 300 and 4,583 points, 24 hours
    .venv/bin/python -m bench.bench_hot_blocks --hours 2     # quick

Data is the ACE simulator's (``AceSimulator.truth``): 1-minute cadence with per-point poll phase, +/-200 ms jitter,
~1 % missing samples, float32-register points ("1.6100000143051147"), meters, binaries and enum texts.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow as pa

from bench._common import peak_rss_mib, write_result
from bv_pipeline.simulator import AceSimulator, SimulatorConfig
from bv_pipeline.storage.hot_blocks import decode_blocks, encode_table_blocks
from bv_pipeline.storage.hot_staging import decode_staging, encode_staging

DAY0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z (a Thursday: occupancy schedules switch during the day)
SYNC_MS = 300_000
GROUP = 1_000  # points per staging row


def _building(points: int, hours: int) -> pa.Table:
    sim = AceSimulator(
        SimulatorConfig(sites=("bench",), points=points), clock=lambda: DAY0_MS / 1000 + 86_400 * 30
    )
    return sim.truth("bench", DAY0_MS, DAY0_MS + hours * 3_600_000)


class _Timer:
    """Wall and CPU seconds of a block: the machine is shared, so CPU time is the steadier figure."""

    def __enter__(self) -> _Timer:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def _stats(samples: pa.Table) -> dict[str, float | int]:
    with _Timer() as enc:
        blocks = encode_table_blocks(samples)
    texts = [b for _, _, b, _ in blocks]
    names = [p for p, _, _, _ in blocks]
    with _Timer() as dec:
        decoded = decode_blocks(texts, names)
    expected = samples.sort_by([("point", "ascending"), ("ts_ms", "ascending")])
    assert decoded.equals(expected), "round trip is not exact"
    n = samples.num_rows
    total = sum(len(b.encode()) for b in texts)
    per_kind = {"f32": 0, "dict": 0, "text_inline": 0, "f64": 0}
    samples_kind = dict.fromkeys(per_kind, 0)
    for b, (*_, s) in zip(texts, blocks, strict=True):
        kind = "dict" if '"d":' in b else "f32" if '"f":1' in b else "text_inline" if '"x":1' in b else "f64"
        per_kind[kind] += len(b)
        samples_kind[kind] += s.n
    figures: dict[str, float | int] = {
        "samples": n,
        "blocks": len(blocks),
        "bytes_per_sample": round(total / n, 3),
        "block_bytes_median": int(np.median([len(b) for b in texts])),
        "block_bytes_max": max(len(b) for b in texts),
        "encode_s": round(enc.wall, 3),
        "encode_cpu_s": round(enc.cpu, 3),
        "encode_samples_per_cpu_s": round(n / enc.cpu),
        "decode_s": round(dec.wall, 3),
        "decode_cpu_s": round(dec.cpu, 3),
        "decode_samples_per_cpu_s": round(n / dec.cpu),
    }
    for kind, size in per_kind.items():
        if samples_kind[kind]:
            figures[f"bytes_per_sample_{kind}"] = round(size / samples_kind[kind], 3)
    # ~10,000 samples: the decode of one chart's worth of blocks (about 170 blocks).
    k = max(1, 10_000 * len(texts) // n)
    with _Timer() as small_t:
        for _ in range(20):
            small = decode_blocks(texts[:k], names[:k])
    scale = 1000 * 10_000 / small.num_rows / 20
    figures["decode_10k_samples_ms"] = round(small_t.wall * scale, 3)
    figures["decode_10k_samples_cpu_ms"] = round(small_t.cpu * scale, 3)
    return figures


def _staging(samples: pa.Table) -> dict[str, float | int]:
    """One 5-minute sync of the last hour, split in groups of GROUP points, ids as point references."""
    start = (
        DAY0_MS + 10 * 3_600_000 if samples["ts_ms"].to_numpy().max() > DAY0_MS + 11 * 3_600_000 else DAY0_MS
    )
    ts = samples["ts_ms"].to_numpy()
    sync = samples.filter(pa.array((ts >= start) & (ts < start + SYNC_MS)))
    names = sorted(set(sync["point"].to_pylist()))
    ids = {name: i + 1 for i, name in enumerate(names)}
    by_id = {i: name for name, i in ids.items()}
    sizes = []
    t_enc = t_dec = 0.0  # CPU seconds
    points = np.asarray(sync["point"].to_pylist(), dtype=object)
    for g in range(0, len(names), GROUP):
        group = set(names[g : g + GROUP])
        part = sync.filter(pa.array([p in group for p in points]))
        t = time.process_time()
        row = encode_staging(part, ids)
        t_enc += time.process_time() - t
        t = time.process_time()
        back = decode_staging(row, by_id)
        t_dec += time.process_time() - t
        assert back.equals(part.sort_by([("point", "ascending"), ("ts_ms", "ascending")]))
        sizes.append(len(row.encode()))
    return {
        "sync_samples": sync.num_rows,
        "staging_rows": len(sizes),
        "staging_row_bytes_max": max(sizes),
        "staging_bytes_per_sample": round(sum(sizes) / sync.num_rows, 3),
        "staging_encode_cpu_ms": round(t_enc * 1000, 1),
        "staging_decode_cpu_ms": round(t_dec * 1000, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--points", type=int, nargs="*", default=[300, 4583])
    args = parser.parse_args(argv)
    figures: dict[str, object] = {"hours": args.hours}
    for points in args.points:
        samples = _building(points, args.hours)
        figures[f"points_{points}"] = {**_stats(samples), **_staging(samples)}
    figures["peak_rss_mib"] = round(peak_rss_mib())
    write_result("hot_blocks", figures)


if __name__ == "__main__":
    main()
