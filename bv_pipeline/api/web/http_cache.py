"""HTTP caching of query answers: ``Cache-Control`` by data age and ``If-None-Match`` matching."""

from __future__ import annotations

from bv_pipeline.api.reader import QueryResult
from bv_pipeline.storage.samples import MS_PER_DAY


def etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return etag in tags


def cache_control(result: QueryResult, now_s: float) -> str:
    """Windows touching today change every sync. Archived windows are not immutable either: the settling pass
    merges late samples and a correction replaces a day, so browsers revalidate (by ETag) after 5 minutes."""
    today = int(now_s // 86_400) * MS_PER_DAY
    if result.end_ms > today:
        return "private, max-age=60"
    return "private, max-age=300"
