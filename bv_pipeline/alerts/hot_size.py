"""Size of the hot database: the SQLite files on disk, or D1's ``file_size`` from Cloudflare's database API."""

from __future__ import annotations

from pathlib import Path

import cloudflare

from bv_pipeline.resources.hot_store import HotStoreResource


def hot_db_size(resource: HotStoreResource) -> tuple[int | None, str]:
    """(bytes or None when unknown, a label for messages)."""
    if resource.d1_account_id and resource.d1_database_id and resource.d1_api_token:
        with cloudflare.Cloudflare(
            api_token=resource.d1_api_token, base_url=resource.d1_base_url or None, max_retries=2
        ) as client:
            db = client.d1.database.get(resource.d1_database_id, account_id=resource.d1_account_id)
        return (int(db.file_size) if db.file_size is not None else None), f"D1 {resource.d1_database_id}"
    if not resource.sqlite_path:
        return None, "SQLite (path unknown)"
    path = Path(resource.sqlite_path)
    # The WAL holds committed pages not yet checkpointed into the main file: both count.
    files = [path, path.with_name(path.name + "-wal")]
    return sum(f.stat().st_size for f in files if f.exists()), f"SQLite {path.name}"
