"""Size of the largest hot database: the SQLite files on disk, or D1's ``file_size`` from Cloudflare's database
API. With per-site databases every one counts (each has its own 10 GB cap), so the largest is reported."""

from __future__ import annotations

from pathlib import Path

import cloudflare

from bv_pipeline.resources.hot_store import D1HotStoreResource, HotStoreResource, SqliteHotStoreResource
from bv_pipeline.resources.hot_store_resource import SQLITE_GROUP_PREFIX


def _sqlite_file_size(path: Path) -> int:
    # The WAL holds committed pages not yet checkpointed into the main file: both count.
    return sum(f.stat().st_size for f in (path, path.with_name(path.name + "-wal")) if f.exists())


def _largest(sizes: dict[str, int | None], kind: str) -> tuple[int | None, str]:
    known = {name: size for name, size in sizes.items() if size is not None}
    if not known:
        return None, f"{kind} (size unknown)"
    name = max(known, key=lambda n: known[n])
    return known[name], f"{kind} {name}"


def hot_db_size(resource: HotStoreResource) -> tuple[int | None, str]:
    """(bytes of the largest hot database or None when unknown, a label naming it for messages)."""
    if isinstance(resource, D1HotStoreResource):
        with cloudflare.Cloudflare(
            api_token=resource.api_token, base_url=resource.base_url or None, max_retries=2
        ) as client:
            if resource.databases == "single" and resource.database_id:
                db = client.d1.database.get(resource.database_id, account_id=resource.account_id)
                return _largest({resource.database_id: db.file_size}, "D1")
            sizes: dict[str, int | None] = {}
            for db in client.d1.database.list(account_id=resource.account_id, name=resource.database_prefix):
                # The name filter matches substrings: keep only this pipeline's databases.
                if db.name and db.name.startswith(resource.database_prefix) and db.uuid:
                    sizes[db.name] = int(db.file_size) if db.file_size is not None else None
            return _largest(sizes, "D1")
    if isinstance(resource, SqliteHotStoreResource):
        if not resource.sqlite_path:
            return None, "SQLite (path unknown)"
        path = Path(resource.sqlite_path)
        files = (
            [path]
            if resource.databases == "single"
            else sorted(path.parent.glob(f"{SQLITE_GROUP_PREFIX}*.sqlite3"))
        )
        return _largest({f.name: _sqlite_file_size(f) for f in files if f.exists()}, "SQLite")
    return None, f"{type(resource).__name__} (size unknown)"
