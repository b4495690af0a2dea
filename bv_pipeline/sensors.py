"""``ace_sync_sensor``: every 5 minutes (``BV_SYNC_INTERVAL_SECONDS``), one hot-sync run per site for today (and
for any earlier day that is not closed yet: yesterday just after midnight, or every day of a downtime, at most the
hot window back).

The sensor never decides the window; the run reads its per-day sync state from the hot store. The cursor is only
informational. Run keys include the interval's slot, so a duplicated tick launches nothing twice, and a site-day
whose previous sync run is still queued or running is skipped instead of piling up runs.
"""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg

from bv_pipeline.logic.hot_sync import SyncMode, days_to_sync
from bv_pipeline.partitions import SITES_PARTITION_NAME, site_day_key, sites_partitions
from bv_pipeline.resources.clock import ClockResource
from bv_pipeline.resources.hot_store import HotStoreResource
from bv_pipeline.resources.policy import PolicyResource

SYNC_INTERVAL_SECONDS = 300  # default of BV_SYNC_INTERVAL_SECONDS
# A sync run takes seconds to minutes. If its whole process tree dies with the code server (host restart, OOM of
# everything), the default run launcher cannot see that the worker is gone; run monitoring fails the run after
# this long instead, which also frees its ACE pool slot and unblocks the site-day for the sensor.
SYNC_MAX_RUNTIME_SECONDS = 3600
SYNC_TAG = "bv/sync"
SITE_TAG = "bv/site"
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
INCREMENTAL_RUN_CONFIG = {"ops": {"hot_timeseries": {"config": {"mode": SyncMode.INCREMENTAL.value}}}}


def sync_tag(site: str, day: dt.date) -> str:
    return f"{site}|{day.isoformat()}"


def build_ace_sync_sensor(
    sites: tuple[str, ...],
    job: dg.UnresolvedAssetJobDefinition,
    interval_seconds: int = SYNC_INTERVAL_SECONDS,
) -> dg.SensorDefinition:
    @dg.sensor(
        name="ace_sync_sensor",
        job=job,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Every {interval_seconds} s: sync each configured site's current day (and unclosed earlier days) into the hot tier.",
    )
    def ace_sync_sensor(
        context: dg.SensorEvaluationContext,
        hot_store: HotStoreResource,
        clock: ClockResource,
        policy: PolicyResource,
    ) -> dg.SensorResult:
        now_ms = clock.now_ms()
        today = clock.today()
        slot = now_ms // (interval_seconds * 1000)
        registered = set(context.instance.get_dynamic_partitions(SITES_PARTITION_NAME))
        new_sites = [s for s in sites if s not in registered]

        hot = hot_store.get_store()
        requests: list[dg.RunRequest] = []
        skipped_in_flight: list[str] = []
        for site in sites:
            since = today - dt.timedelta(days=policy.max_catchup_days)
            state = hot.list_sync_as_of(site, since, today)
            days = days_to_sync(
                today,
                state,
                lookback_ms=policy.lookback_ms,
                max_catchup_days=policy.max_catchup_days,
                has_any_state=bool(state) or hot.get_watermark(site) is not None,
            )
            for day in days:
                tag = sync_tag(site, day)
                in_flight = context.instance.get_run_records(
                    filters=dg.RunsFilter(tags={SYNC_TAG: tag}, statuses=IN_FLIGHT), limit=1
                )
                if in_flight:
                    skipped_in_flight.append(tag)
                    continue
                requests.append(
                    dg.RunRequest(
                        run_key=f"hot-sync|{tag}|{slot}",
                        partition_key=site_day_key(site, day),
                        run_config=INCREMENTAL_RUN_CONFIG,
                        tags={
                            SYNC_TAG: tag,
                            SITE_TAG: site,
                            "dagster/max_runtime": str(SYNC_MAX_RUNTIME_SECONDS),
                        },
                    )
                )
        cursor = json.dumps(
            {
                "last_tick_ms": now_ms,
                "requested": [r.tags[SYNC_TAG] for r in requests],
                "skipped_in_flight": skipped_in_flight,
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
            else f"every site-day already in flight: {', '.join(skipped_in_flight)}",
        )

    return ace_sync_sensor
