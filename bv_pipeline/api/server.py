"""``bv-pipeline serve-api``: serve the chart read API with uvicorn on the configured stores.

Stores come from ``Settings.from_env()``: SQLite at ``settings.hot_db_path`` and a local directory at
``settings.cold_dir`` by default, D1 and R2 when their variables are all set.

Processes: with ``BV_API_WORKERS`` > 1 (default: one per CPU core, at most 4) uvicorn's supervisor runs that many worker
processes, each building its own stores and reader through ``create_app_from_env``; decoding, merging and encoding
hold the GIL for much of a query, so one process uses about one core. The supervisor imports only the settings
and uvicorn (~30 MB) and never the read engine.

Memory, measured under 50 concurrent clients (``bench/bench_api_load.py``): what grew was not the caches but
transient per-query buffers left in allocator arenas, multiplied by the number of threads that ran queries
(anyio's default 40 per process). So:

- ``BV_API_QUERY_CONCURRENCY`` caps the threads that run requests in each worker (anyio's thread limiter) and
  the queries the reader runs at once;
- each worker process starts with ``MALLOC_ARENA_MAX=2`` and Arrow's system allocator
  (``ARROW_DEFAULT_MEMORY_POOL=system``) unless those variables are already set: glibc's per-thread arenas and
  mimalloc's per-thread heaps each kept freed query buffers;
- the cache settings are totals for the whole server: each worker gets ``BV_API_COLD_CACHE_MIB`` / workers of
  cold cache and ``BV_API_ANSWER_CACHE_MIB`` / workers of answer cache.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import secrets
import subprocess
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bv_pipeline.config import ConfigError, Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from bv_pipeline.api.reader import TimeseriesReader
    from bv_pipeline.api.service import ApiConfig
    from bv_pipeline.storage.interfaces import HotStore, ObjectStore

MIB = 1024 * 1024
API_SQLITE_CACHE_MIB = 2  # page cache of each SQLite read connection of the API (up to ~8 per worker)
# Set for worker processes at start-up (allocators read them once, when the process starts).
WORKER_ALLOCATOR_ENV = {"MALLOC_ARENA_MAX": "2", "ARROW_DEFAULT_MEMORY_POOL": "system"}
_M_ARENA_MAX = -8  # glibc mallopt parameter


def build_stores(settings: Settings) -> tuple[HotStore, ObjectStore]:
    """The hot and cold stores the settings select: D1, per-site databases and R2 through the same resources the
    Dagster assets use; the embedded defaults (one SQLite file, a local directory) built directly as the plain
    stores those resources would return, so a worker on them does not import Dagster (~30 MiB per worker)."""
    return _hot_store(settings), _cold_store(settings)


def _hot_store(settings: Settings) -> HotStore:
    if settings.use_d1 or settings.hot_databases != "single":
        from bv_pipeline.resources.hot_store import (
            D1HotStoreResource,
            HotStoreResource,
            SqliteHotStoreResource,
        )

        env = os.environ
        res: HotStoreResource
        if settings.use_d1:
            res = D1HotStoreResource(
                account_id=env["CLOUDFLARE_ACCOUNT_ID"],
                database_id=env.get("D1_DATABASE_ID") or None,
                api_token=env["CLOUDFLARE_API_TOKEN"],
                base_url=env.get("CLOUDFLARE_BASE_URL") or None,
                databases=settings.hot_databases,
                site_groups=settings.hot_site_groups,
            )
        else:
            res = SqliteHotStoreResource(
                sqlite_path=str(settings.hot_db_path.resolve()),
                databases=settings.hot_databases,
                site_groups=settings.hot_site_groups,
            )
        return res.get_store()
    from bv_pipeline.resources.hot_store_sqlite import SqliteHotStore

    # The API only reads, and each request and hot-read thread holds its own connection: a small page cache each
    # (the OS page cache holds the file anyway) rather than up to 64 MiB per connection.
    store = SqliteHotStore(settings.hot_db_path.resolve(), cache_mib=API_SQLITE_CACHE_MIB)
    store.ensure_schema()  # as the resource does: a fresh data directory serves empty answers, not errors
    return store


def _cold_store(settings: Settings) -> ObjectStore:
    if settings.use_r2:
        from bv_pipeline.resources.cold_store import ColdStoreResource

        env = os.environ
        return ColdStoreResource(
            r2_endpoint_url=env["R2_ENDPOINT_URL"],
            r2_bucket=env["R2_BUCKET"],
            r2_access_key_id=env["R2_ACCESS_KEY_ID"],
            r2_secret_access_key=env["R2_SECRET_ACCESS_KEY"],
        ).get_store()
    from bv_pipeline.resources.local_store import LocalObjectStore

    return LocalObjectStore(settings.cold_dir.resolve())


def _prepare_metrics_dir() -> None:
    """Several workers share their /metrics through prometheus_client's multiprocess directory, which must be
    set before the workers import it and must start empty: use the operator's (emptied) or a fresh one."""
    import atexit
    import shutil
    import tempfile
    from pathlib import Path

    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
    if configured:
        for stale in Path(configured).glob("*.db"):  # values of a previous server's workers
            stale.unlink()
        return
    fresh = tempfile.mkdtemp(prefix="bv-api-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = fresh
    atexit.register(shutil.rmtree, fresh, ignore_errors=True)


def build_reader(settings: Settings, config: ApiConfig) -> TimeseriesReader:
    """One process's reader, with its share of the server-wide memory settings."""
    from bv_pipeline.api.reader import TimeseriesReader

    hot, cold = build_stores(settings)
    workers = max(1, settings.api_workers)
    return TimeseriesReader(
        hot,
        cold,
        max_workers=config.cold_fetch_threads,
        cache_bytes=config.cold_cache_mib * MIB // workers,
        max_concurrent_queries=settings.api_query_concurrency,
        answer_cache_bytes=settings.api_answer_cache_mib * MIB // workers,
    )


def create_app_from_env() -> FastAPI:
    """App factory for uvicorn worker processes: stores, reader and app from the environment."""
    import anyio.to_thread

    from bv_pipeline.api.service import ApiConfig, create_app

    settings = Settings.from_env()
    config = ApiConfig.from_settings(settings)
    reader = build_reader(settings, config)
    app = create_app(reader, config)

    def limit_request_threads() -> None:
        # Sync endpoints run on anyio's worker threads (40 by default); each thread that ran a query keeps its
        # freed buffers in its allocator arena, so the thread count, not the cache, set the memory.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_query_concurrency

    app.router.on_startup.append(limit_request_threads)
    app.router.on_shutdown.append(reader.close)
    return app


def check_api_config() -> None:
    """Exit 2 with a message naming the variable when a read-API setting is invalid."""
    from bv_pipeline.api.service import ApiConfig

    try:
        ApiConfig.from_settings(Settings.from_env())
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _limit_arenas_in_this_process() -> None:
    """The single-process server cannot get MALLOC_ARENA_MAX from its own start-up: set it through mallopt."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "mallopt"):
            libc.mallopt(_M_ARENA_MAX, 2)
    except OSError:
        pass  # not glibc: nothing to tune


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bv-pipeline serve-api", description="Serve the chart read API")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8800, help="TCP port (default 8800)")
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if not settings.api_tokens:
        # Fail closed but stay usable locally: a one-off token for this run only, printed once. Worker
        # processes read their settings from the environment, so it goes there (this process and its children).
        token = secrets.token_urlsafe(24)
        os.environ["BV_API_TOKENS"] = token
        print(
            "BV_API_TOKENS is not set: generated a token for this run only.\n"
            f"  Authorization: Bearer {token}",
            file=sys.stderr,
        )

    if settings.api_workers > 1:
        # The read API's own limits are validated by the app module, which the supervisor does not import (it
        # would hold the whole read engine in memory for nothing): check them in a short-lived child instead.
        check = subprocess.run(
            [sys.executable, "-c", "from bv_pipeline.api.server import check_api_config; check_api_config()"],
            capture_output=True,
            text=True,
            check=False,
        )
        if check.returncode != 0:
            print(check.stderr.strip().splitlines()[-1] if check.stderr.strip() else check, file=sys.stderr)
            return 2

    import uvicorn

    common = {"host": args.host, "port": args.port, "log_level": args.log_level, "access_log": False}
    if settings.api_workers > 1:
        for name, value in WORKER_ALLOCATOR_ENV.items():
            os.environ.setdefault(name, value)
        _prepare_metrics_dir()
        uvicorn.run(
            "bv_pipeline.api.server:create_app_from_env",
            factory=True,
            workers=settings.api_workers,
            **common,  # type: ignore[arg-type]
        )
        return 0
    _limit_arenas_in_this_process()
    try:
        app = create_app_from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(app, **common)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
