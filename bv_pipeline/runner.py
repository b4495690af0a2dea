"""``bv-pipeline run``: the whole stack on one machine, and ``bv-pipeline check-config``.

Starts the chart read API (uvicorn) and ``dg dev`` (Dagster's webserver + daemon: the sync sensor and the
nightly schedules are on by default) with DAGSTER_HOME in the project directory unless DAGSTER_HOME is set.
With no configuration everything is embedded: the ACE simulator in-process, SQLite and a local cold
directory under BV_DATA_DIR.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bv_pipeline.config import ConfigError, Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _settings_or_exit() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def describe(settings: Settings) -> list[str]:
    return [
        f"ACE:   {'simulator (in-process), sites ' + ','.join(settings.sites) if settings.simulated else settings.ace_api_base}",
        f"ACE rate: {settings.ace_requests_per_minute}/min shared by every process through "
        f"{'PostgreSQL (BV_ACE_RATE_LIMIT_URL)' if settings.ace_rate_limit_url_set else f'SQLite {settings.ace_rate_limit_path}'}"
        f"; batch runs use at most {settings.ace_batch_share:.0%}, the live sync the rest",
        f"sites: {', '.join(settings.sites)}",
        f"hot:   {'Cloudflare D1' if settings.use_d1 else f'SQLite {settings.hot_db_path}'}",
        f"cold:  {'R2 bucket ' + str(settings.r2_bucket) if settings.use_r2 else f'local directory {settings.cold_dir}'}",
        *(
            ["shared backends required (BV_REQUIRE_SHARED_BACKENDS)"]
            if settings.require_shared_backends
            else []
        ),
        f"hot window: {settings.hot_storage_days} days; sync lookback {settings.sync_lookback_minutes} min",
        _describe_automation(settings),
        f"read API: {len(settings.api_tokens)} token(s), {settings.api_max_points} points/query, "
        f"{settings.api_rate_per_s}/s per token, cold cache {settings.api_cold_cache_mib} MiB",
        f"alerts: {'webhook (' + settings.alert_format + ')' if settings.alert_webhook_url else 'not sent (BV_ALERT_WEBHOOK_URL unset)'}, "
        f"stale after {settings.alert_stale_minutes} min, hot DB > {settings.alert_hot_db_mb} MB",
    ]


def _describe_automation(settings: Settings) -> str:
    a = settings.automation
    return (
        f"automation: sync every {a.sync_interval_seconds} s ({a.sync_workers} sites at a time, "
        f"{a.sync_sites_per_run} per run); archive {a.archive_time_utc:%H:%M}, compaction "
        f"{a.compaction_time_utc:%H:%M}, run retention {a.run_retention_time_utc:%H:%M} UTC; runs kept "
        f"{a.run_retention_days} days (failed {a.failed_run_retention_days})"
    )


def check_config_main(argv: Sequence[str]) -> int:
    settings = _settings_or_exit()
    print("\n".join(describe(settings)))
    return 0


def prepare_dagster_home(home: Path, shipped: Path = PROJECT_ROOT / "dagster.yaml") -> tuple[Path, str]:
    """Install the shipped dagster.yaml into ``home`` only if it has none: an operator's file is never replaced.

    Returns the home and a sentence saying what was done, for the start-up banner.
    """
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        shutil.copyfile(shipped, target)
        return home, f"installed {shipped.name} into {home}"
    if target.read_bytes() == shipped.read_bytes():
        return home, f"using {target} (same as the shipped {shipped.name})"
    return home, (
        f"using {target} as it is: it differs from the shipped {shipped.name}, which was NOT copied over it "
        f"(diff them after an upgrade)"
    )


def dg_command() -> list[str]:
    """``dg`` from this interpreter's environment (Dagster 1.13 supersedes ``dagster dev`` with ``dg dev``)."""
    beside = Path(sys.executable).parent / "dg"
    found = str(beside) if beside.exists() else shutil.which("dg")
    if not found:
        raise SystemExit(
            "`dg` not found: install the project (`pip install -e .`), it depends on dagster-dg-cli"
        )
    return [found]


def point_exports_at_webserver(env: dict[str, str], host: str, dagster_port: int) -> None:
    """POST /exports launches export runs through the webserver this command starts (unless set explicitly)."""
    if not env.get("BV_DAGSTER_GRAPHQL_URL", "").strip():
        env["BV_DAGSTER_GRAPHQL_URL"] = f"http://{host}:{dagster_port}/graphql"


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="bv-pipeline run")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--dagster-port", type=int, default=3000)
    parser.add_argument("--api-port", type=int, default=8800)
    parser.add_argument("--no-api", action="store_true", help="do not start the read API")
    args = parser.parse_args(list(argv))

    settings = _settings_or_exit()
    env = dict(os.environ)
    home, home_note = prepare_dagster_home(
        (settings.dagster_home or PROJECT_ROOT / ".dagster_home").resolve()
    )
    env["DAGSTER_HOME"] = str(home)
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    point_exports_at_webserver(env, args.host, args.dagster_port)

    token = None
    if not settings.api_tokens:
        # Demo only: a fresh random token per start, printed below. Production sets BV_API_TOKENS.
        token = secrets.token_urlsafe(24)
        env["BV_API_TOKENS"] = token
    else:
        token = settings.api_tokens[0]

    print("bv-pipeline starting")
    for line in describe(settings):
        print("  " + line)
    print(f"  dagster: {home_note}")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        if not args.no_api:
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "bv_pipeline.api.server",
                        "--host",
                        args.host,
                        "--port",
                        str(args.api_port),
                    ],
                    env=env,
                    cwd=PROJECT_ROOT,
                )
            )
        procs.append(
            subprocess.Popen(
                [
                    *dg_command(),
                    "dev",
                    "-w",
                    str(PROJECT_ROOT / "workspace.yaml"),
                    "-h",
                    args.host,
                    "-p",
                    str(args.dagster_port),
                ],
                env=env,
                cwd=PROJECT_ROOT,
            )
        )
        time.sleep(3)
        site = settings.sites[0]
        print(
            f"\n  Dagster UI:  http://{args.host}:{args.dagster_port}  (sensor ace_sync_sensor and "
            "schedule nightly_archive_schedule are on)\n"
            + (
                f"  Read API:    http://{args.host}:{args.api_port}/docs   demo token: {token}\n"
                f"  Try:  curl -H 'Authorization: Bearer {token}' "
                f"'http://{args.host}:{args.api_port}/sites/{site}/points?search=Temp'\n"
                if not args.no_api
                else ""
            )
            + "  Stop with Ctrl-C.\n",
            flush=True,
        )
        while all(p.poll() is None for p in procs):
            time.sleep(1)
        return next((p.returncode for p in procs if p.returncode), 0) or 0
    except KeyboardInterrupt:
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
