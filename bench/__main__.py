"""Run every benchmark module in bench/ in turn."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> int:
    here = Path(__file__).resolve().parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))
    failed = 0
    for name in names:
        mod = importlib.import_module(f"bench.{name}")
        try:
            mod.main([])
        except Exception as exc:  # keep going: one broken benchmark should not hide the others' figures
            failed += 1
            print(f"!! bench.{name} failed: {exc!r}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
