"""Cost of ACE's shared rate limit: slot reservations per second through the SQLite file (one box) and PostgreSQL
(several boxes), from 1 and 4 processes reserving back to back (a frozen clock: no sleeping, pure store cost).

ACE's budget is 600 requests/minute (10/s) by default and a batch request takes two slots (batch, then global), so
the store needs ~20 reservations/s; the figures show how far below its capacity that is.

    python -m bench.bench_ace_rate_limit [--per-process 2000]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from bench._common import write_result
from bv_pipeline_tests.fixtures.postgres import private_postgres
from bv_pipeline_tests.test_resources.test_ace_rate_limit import run_workers


def _measure(store: dict[str, str], processes: int, per_process: int) -> dict[str, Any]:
    jobs = [
        {"store": store, "lane": "live", "per_minute": 600, "batch_share": 0.5, "mode": "reserve"}
        | {"count": per_process, "now": 1_000_000.0}
        for _ in range(processes)
    ]
    answers = run_workers(jobs)
    assert sum(len(a["slots"]) for a in answers) == processes * per_process
    wall = max(a["elapsed_s"] for a in answers)
    per_s = processes * per_process / wall
    return {
        "processes": processes,
        "reservations_per_s": round(per_s),
        "us_per_reservation": round(1e6 / per_s, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-process", type=int, default=2000)
    args = parser.parse_args(argv)
    figures: dict[str, Any] = {"per_process": args.per_process}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1, 4):
            path = Path(tmp) / f"rl-{n}.sqlite"
            figures[f"sqlite_{n}_processes"] = _measure({"path": str(path)}, n, args.per_process)
    with private_postgres() as pg:
        for n in (1, 4):
            figures[f"postgres_{n}_processes"] = _measure({"url": pg.url}, n, args.per_process)
    write_result("bench_ace_rate_limit", figures)


if __name__ == "__main__":
    main()
