"""The ``bv-pipeline`` console script.

Subcommands dispatch to the module that owns them; imports are lazy so ``bv-pipeline --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS: dict[str, tuple[str, str]] = {
    "run": (
        "bv_pipeline.runner",
        "Run everything on the configured (default: embedded) stack: Dagster UI + daemon + read API",
    ),
    "simulate-ace": ("bv_pipeline.simulator.server", "Serve the ACE FlightDeck simulator over HTTP"),
    "serve-api": ("bv_pipeline.api.server", "Serve the chart read API over HTTP"),
    "rebuild-cache": (
        "bv_pipeline.maintenance",
        "Refill the hot tier's archive-manifest cache from the manifests in object storage",
    ),
    "send-test-alert": ("bv_pipeline.alerts.send_test", "Send a test message to BV_ALERT_WEBHOOK_URL"),
    "check-config": (
        "bv_pipeline.runner",
        "Validate the environment configuration and print the resolved settings",
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="bv-pipeline", description="Building-IoT time series pipeline")
    parser.add_argument(
        "command", choices=sorted(COMMANDS), help="; ".join(f"{k}: {v[1]}" for k, v in COMMANDS.items())
    )
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    args = parser.parse_args(argv[:1])
    module = importlib.import_module(COMMANDS[args.command][0])
    entry = getattr(module, "check_config_main" if args.command == "check-config" else "main")
    return int(entry(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
