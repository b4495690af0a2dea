"""``bv-pipeline serve-api``: serve the chart read API with uvicorn on the configured stores.

Stores come from ``Settings.from_env()``: SQLite at ``settings.hot_db_path`` and a local directory at
``settings.cold_dir`` by default, D1 and R2 when their variables are all set.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Sequence

from bv_pipeline.api.reader import TimeseriesReader
from bv_pipeline.api.service import ApiConfig, create_app
from bv_pipeline.config import ConfigError, Settings
from bv_pipeline.storage.interfaces import HotStore, ObjectStore


def build_stores(settings: Settings) -> tuple[HotStore, ObjectStore]:
    """The hot and cold stores the settings select, via the same resources the Dagster assets use."""
    from bv_pipeline.resources.cold_store import ColdStoreResource
    from bv_pipeline.resources.hot_store import D1HotStoreResource, HotStoreResource, SqliteHotStoreResource

    env = os.environ
    hot_res: HotStoreResource
    if settings.use_d1:
        hot_res = D1HotStoreResource(
            account_id=env["CLOUDFLARE_ACCOUNT_ID"],
            database_id=env.get("D1_DATABASE_ID") or None,
            api_token=env["CLOUDFLARE_API_TOKEN"],
            base_url=env.get("CLOUDFLARE_BASE_URL") or None,
            databases=settings.hot_databases,
            site_groups=settings.hot_site_groups,
        )
    else:
        hot_res = SqliteHotStoreResource(
            sqlite_path=str(settings.hot_db_path.resolve()),
            databases=settings.hot_databases,
            site_groups=settings.hot_site_groups,
        )
    if settings.use_r2:
        cold_res = ColdStoreResource(
            r2_endpoint_url=env["R2_ENDPOINT_URL"],
            r2_bucket=env["R2_BUCKET"],
            r2_access_key_id=env["R2_ACCESS_KEY_ID"],
            r2_secret_access_key=env["R2_SECRET_ACCESS_KEY"],
        )
    else:
        cold_res = ColdStoreResource(local_dir=str(settings.cold_dir.resolve()))
    return hot_res.get_store(), cold_res.get_store()


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
        config = ApiConfig.from_settings(settings)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if not config.api_tokens:
        # Fail closed but stay usable locally: a one-off token for this process only, printed once.
        token = secrets.token_urlsafe(24)
        config = ApiConfig(**{**config.__dict__, "api_tokens": (token,)})
        print(
            "BV_API_TOKENS is not set: generated a token for this run only.\n"
            f"  Authorization: Bearer {token}",
            file=sys.stderr,
        )
    hot, cold = build_stores(settings)
    reader = TimeseriesReader(
        hot, cold, max_workers=config.cold_fetch_threads, cache_bytes=config.cold_cache_mib * 1024 * 1024
    )
    app = create_app(reader, config)

    import uvicorn

    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    finally:
        reader.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
