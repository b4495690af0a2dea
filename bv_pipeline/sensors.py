"""``ace_sync_sensor``: every 5 minutes (``BV_SYNC_INTERVAL_SECONDS``), live-sync runs for every configured site.

The sensor is deliberately cheap: it reads no hot-store state (on D1 that would be one billed request per site per
tick); the run decides each site's days from the hot tier's per-day sync state. Per tick it reads the few
in-flight ``live_sync_job`` runs (their run config names their sites), leaves those sites out, and asks for one
run per ``BV_SYNC_SITES_PER_RUN`` of the others. Run keys include the interval's slot, so a duplicated tick
launches nothing twice. The cursor is only informational.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import dagster as dg

from bv_pipeline.ops.live_sync import LIVE_SYNC_JOB, LIVE_SYNC_OP, LIVE_SYNC_TAG
from bv_pipeline.partitions import SITES_PARTITION_NAME, sites_partitions
from bv_pipeline.resources.clock import ClockResource

SYNC_INTERVAL_SECONDS = 300  # default of BV_SYNC_INTERVAL_SECONDS
SYNC_SITES_PER_RUN = 100  # default of BV_SYNC_SITES_PER_RUN
SITE_TAG = "bv/site"
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
# Runs listed per tick to find the in-flight sites: far more than can be in flight (the run queue lets two live
# runs execute at once and the sensor never queues a site twice).
MAX_IN_FLIGHT_RUNS = 1000


def live_sync_run_config(sites: Sequence[str]) -> dict[str, object]:
    return {"ops": {LIVE_SYNC_OP: {"config": {"sites": list(sites)}}}}


def sites_in_flight(instance: dg.DagsterInstance) -> set[str]:
    """Sites of every queued or running live-sync run (one runs query, whatever the number of sites)."""
    runs = instance.get_runs(
        filters=dg.RunsFilter(job_name=LIVE_SYNC_JOB, statuses=IN_FLIGHT), limit=MAX_IN_FLIGHT_RUNS
    )
    busy: set[str] = set()
    for run in runs:
        config = (run.run_config or {}).get("ops", {}).get(LIVE_SYNC_OP, {}).get("config", {})
        busy.update(config.get("sites") or [])
    return busy


def build_ace_sync_sensor(
    sites: tuple[str, ...],
    interval_seconds: int = SYNC_INTERVAL_SECONDS,
    sites_per_run: int = SYNC_SITES_PER_RUN,
) -> dg.SensorDefinition:
    @dg.sensor(
        name="ace_sync_sensor",
        job_name=LIVE_SYNC_JOB,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Every {interval_seconds} s: one live_sync_job run per {sites_per_run} configured sites (sites "
            "still in an in-flight live run are left out); each run syncs today and unclosed earlier days."
        ),
    )
    def ace_sync_sensor(context: dg.SensorEvaluationContext, clock: ClockResource) -> dg.SensorResult:
        now_ms = clock.now_ms()
        slot = now_ms // (interval_seconds * 1000)
        registered = set(context.instance.get_dynamic_partitions(SITES_PARTITION_NAME))
        new_sites = [s for s in sites if s not in registered]

        busy = sites_in_flight(context.instance)
        skipped = [s for s in sites if s in busy]
        # Shards are cut from the configured list, not from the sites due now, so a site stays in the same shard
        # from tick to tick (its runs form one series: run-failure alerts key on the shard tag).
        shards = [list(sites[i : i + sites_per_run]) for i in range(0, len(sites), sites_per_run)]
        requests = []
        for index, shard in enumerate(shards):
            due = [s for s in shard if s not in busy]
            if not due:
                continue
            tags = {LIVE_SYNC_TAG: f"{index + 1}/{len(shards)}"}
            if len(shard) == 1:  # one site per run: the UI's run list can be filtered by site
                tags[SITE_TAG] = shard[0]
            requests.append(
                dg.RunRequest(
                    run_key=f"live-sync|{slot}|{index}", run_config=live_sync_run_config(due), tags=tags
                )
            )
        cursor = json.dumps(
            {
                "last_tick_ms": now_ms,
                "slot": slot,
                "runs": len(requests),
                "sites": len(sites) - len(skipped),
                "skipped_in_flight": skipped,
            }
        )
        return dg.SensorResult(
            run_requests=requests,
            cursor=cursor,
            dynamic_partitions_requests=[sites_partitions.build_add_request(new_sites)]
            if new_sites
            else None,
            skip_reason=None
            if requests
            else f"every site is still in an in-flight live sync run: {', '.join(skipped)}",
        )

    return ace_sync_sensor
