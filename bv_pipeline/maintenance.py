"""``bv-pipeline rebuild-cache`` and the ``rebuild_cache_job`` Dagster job: refill hot-side caches from object
storage (``logic.manifest_cache``)."""

# No "from __future__ import annotations": Dagster resolves Config/resource annotations at definition time.

import argparse
import sys
from collections.abc import Sequence

import dagster as dg
from pydantic import Field

from bv_pipeline.logic.manifest_cache import rebuild_hot_cache
from bv_pipeline.resources.cold_store import ColdStoreResource
from bv_pipeline.resources.hot_store import HotStoreResource
from bv_pipeline.resources.manifest_store import ManifestStore
from bv_pipeline.run_lanes import BATCH_TAGS

REBUILD_CACHE_JOB = "rebuild_cache_job"


class RebuildCacheConfig(dg.Config):
    sites: list[str] = Field(
        default_factory=list,
        description="Sites to rebuild; empty: every site with a manifest in object storage",
    )


@dg.op(description="Refill the hot tier's archive-manifest cache from the manifests in object storage.")
def rebuild_hot_manifest_cache(
    context: dg.OpExecutionContext,
    config: RebuildCacheConfig,
    hot_store: HotStoreResource,
    cold_store: ColdStoreResource,
) -> None:
    hot = hot_store.get_store()
    results = rebuild_hot_cache(hot, ManifestStore(cold_store.get_store()), list(config.sites) or None)
    for r in results:
        context.log.info(
            f"{r.site}: {r.entries} entries in {r.months} months, {r.written} cache rows rewritten, "
            f"{r.points_added} points registered"
        )


@dg.job(
    name=REBUILD_CACHE_JOB,
    tags=BATCH_TAGS,
    description="Rebuild hot-side caches (archive manifest) from object storage.",
)
def rebuild_cache_job() -> None:
    rebuild_hot_manifest_cache()


def main(argv: Sequence[str] | None = None) -> int:
    from bv_pipeline.api.server import build_stores
    from bv_pipeline.config import ConfigError, Settings

    parser = argparse.ArgumentParser(
        prog="bv-pipeline rebuild-cache",
        description="Refill the hot tier's archive-manifest cache from the manifests in object storage",
    )
    parser.add_argument("--site", action="append", default=[], help="only this site (repeatable)")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    hot, cold = build_stores(settings)
    hot.ensure_schema()
    for r in rebuild_hot_cache(hot, ManifestStore(cold), args.site or None):
        print(
            f"{r.site}: {r.entries} archived days in {r.months} manifest months; {r.written} cache rows rewritten, "
            f"{r.points_added} points registered"
        )
    return 0
