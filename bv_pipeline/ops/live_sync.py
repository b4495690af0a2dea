"""``live_sync_job``: one run syncs many sites' due days in-process and reports each site-day to Dagster as a
``hot_timeseries`` partition materialisation with its three checks.

Launched by ``ace_sync_sensor`` once per tick for every site not already in an in-flight live run (split into runs
of at most ``BV_SYNC_SITES_PER_RUN`` sites). One process per run (``in_process_executor``) instead of a run
worker plus a step worker per site-day: the Dagster overhead (process start, definitions load, run events) is paid
once per run, not per site. Per site-day the UI still shows the partition's materialisation, metadata and checks.
A failed site fails the run only at the end, after every other site's events are recorded; the site is due again
on the next tick (no in-run retry: the next run resumes from its last committed chunk).

Not in the ``ace_api`` pool: live sync has its own run-queue capacity (``dagster.yaml``), so backfills and the
nightly archival holding the pool's slots never delay it.
"""
# No "from __future__ import annotations": Dagster resolves Config/resource annotations at definition time.

import datetime as dt
from collections.abc import Iterator

import dagster as dg
from pydantic import Field

from bv_pipeline.assets.hot_events import HOT_TIMESERIES, check_evaluation, hot_check_results, sync_metadata
from bv_pipeline.config import ConfigError, validate_site_name
from bv_pipeline.logic.live_sync import LivePolicy, SiteOutcome, iter_sync_sites
from bv_pipeline.partitions import SITES_PARTITION_NAME, site_day_key
from bv_pipeline.resources.ace_resource import AceResource
from bv_pipeline.resources.clock import ClockResource
from bv_pipeline.resources.hot_store import HotStoreResource
from bv_pipeline.resources.policy import PolicyResource

LIVE_SYNC_JOB = "live_sync_job"
LIVE_SYNC_OP = "live_sync"
LIVE_SYNC_TAG = "bv/live-sync"
# The run queue dequeues higher priorities first (QueuedRunCoordinator): live runs pass queued batch runs.
LIVE_SYNC_PRIORITY = 10
# A live run normally ends within one sync interval (each site's work is time-boxed). If the code server dies with
# it, the default launcher cannot tell; run monitoring fails it after this long, so its sites are synced again.
LIVE_SYNC_MAX_RUNTIME_SECONDS = 3600
MAX_ERROR_CHARS = 300  # per site, in the run's failure message


class LiveSyncConfig(dg.Config):
    sites: list[str] = Field(description="Sites to sync (registered as partitions of the 'sites' dimension)")
    days: list[str] | None = Field(
        default=None,
        description="UTC days (YYYY-MM-DD) to sync for every site; default: each site's due days (today and "
        "unclosed earlier days, from the hot tier's sync state)",
    )


@dg.op(
    name=LIVE_SYNC_OP,
    out=dg.Out(dg.Nothing),
    description="Sync the configured sites' due days from ACE into the hot tier, sites concurrently "
    "(BV_SYNC_WORKERS), and record each site-day as a hot_timeseries materialisation with its checks.",
)
def live_sync(
    context: dg.OpExecutionContext,
    config: LiveSyncConfig,
    ace: AceResource,
    hot_store: HotStoreResource,
    clock: ClockResource,
    policy: PolicyResource,
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation | dg.Output[None]]:
    try:
        sites = list(dict.fromkeys(validate_site_name(s, variable="config.sites") for s in config.sites))
        days = [dt.date.fromisoformat(d) for d in config.days] if config.days is not None else None
    except (ConfigError, ValueError) as exc:
        raise dg.Failure(f"invalid run config: {exc}") from None
    registered = set(context.instance.get_dynamic_partitions(SITES_PARTITION_NAME))
    if missing := [s for s in sites if s not in registered]:
        context.instance.add_dynamic_partitions(SITES_PARTITION_NAME, missing)

    hot = hot_store.get_store()
    now_ms = clock.now_ms()
    live = LivePolicy(
        lookback_minutes=policy.sync_lookback_minutes,
        chunk_minutes=policy.sync_chunk_minutes,
        max_catchup_days=policy.max_catchup_days,
        workers=policy.sync_workers,
        budget_s=policy.live_site_budget_seconds,
    )
    # Per-site hot-store request counts are only exact when one thread uses the store.
    attributable = min(live.workers, len(sites)) == 1
    requests_before = hot.requests_made
    failed: list[SiteOutcome] = []
    synced = rows = deferred = 0
    for outcome in iter_sync_sites(
        sites, now_ms=now_ms, hot=hot, ace_factory=lambda: ace.get_client("live"), policy=live, days=days
    ):
        for day in outcome.days:
            partition = str(site_day_key(outcome.site, day.result.day))
            yield dg.AssetMaterialization(
                asset_key=HOT_TIMESERIES,
                partition=partition,
                metadata=sync_metadata(day.result, hot.backend, hot_requests=attributable),
            )
            for check in hot_check_results(day.result, day.stats, now_ms):
                yield check_evaluation(check, partition)
            synced += 1
            rows += day.result.rows_upserted
        if outcome.failed:
            failed.append(outcome)
        deferred += outcome.deferred
        context.log.info(_site_line(outcome))

    summary = {
        "sites": len(sites),
        "sites_failed": len(failed),
        "sites_deferred": deferred,
        "site_days_synced": synced,
        "rows_upserted": rows,
        "workers": min(live.workers, max(1, len(sites))),
        "hot_api_requests": hot.requests_made - requests_before,
    }
    if failed:
        raise dg.Failure(
            description=f"{len(failed)} of {len(sites)} sites failed (due again next tick): "
            + "; ".join(
                f"{o.site} ({o.failed_day or 'before syncing'}): {_short(o.error)}" for o in failed[:20]
            )
            + (f"; and {len(failed) - 20} more (metadata failed_sites)" if len(failed) > 20 else ""),
            metadata={
                **summary,
                "failed_sites": dg.MetadataValue.json(
                    {o.site: {"day": str(o.failed_day), "error": o.error} for o in failed}
                ),
            },
        )
    yield dg.Output(None, metadata=summary)


def _short(text: str | None) -> str:
    text = text or ""
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def _site_line(o: SiteOutcome) -> str:
    """One compact line per site: what each day got, and the failure if any."""
    parts = [
        f"{d.result.day}: {d.result.rows_upserted} rows, {d.result.chunks} chunks"
        + (f", {d.result.new_points} new points" if d.result.new_points else "")
        for d in o.days
    ]
    if o.deferred_days:
        parts.append(f"deferred (time budget): {', '.join(map(str, o.deferred_days))}")
    if o.error:
        parts.append(f"FAILED on {o.failed_day or 'due days'}: {_short(o.error)}")
    if o.deferred:
        parts.append("not started: the run's time budget was spent, next tick")
    return f"{o.site} in {o.seconds:.2f} s: " + ("; ".join(parts) or "nothing due")


@dg.job(
    name=LIVE_SYNC_JOB,
    executor_def=dg.in_process_executor,
    tags={
        LIVE_SYNC_TAG: "true",
        "dagster/priority": str(LIVE_SYNC_PRIORITY),
        "dagster/max_runtime": str(LIVE_SYNC_MAX_RUNTIME_SECONDS),
    },
    description="Live sync of many sites in one process (launched by ace_sync_sensor every "
    "BV_SYNC_INTERVAL_SECONDS); each site-day shows up as a hot_timeseries partition materialisation.",
)
def live_sync_job() -> None:
    live_sync()
