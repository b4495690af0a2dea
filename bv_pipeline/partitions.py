"""Partitions: every tier is partitioned by (UTC day x site).

Sites are a *dynamic* dimension: the sync sensor registers every site named in ``BV_SITES`` on its first tick, so
adding a site is a configuration change, not a code change. Site names are validated slugs because Dagster
partition keys may not contain ``| [ ] ,`` and the UI mishandles commas (dagster issues #15105, #32183).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import dagster as dg

from bv_pipeline.config import validate_site_name

SITES_PARTITION_NAME = "sites"
DATE_DIM = "date"
SITE_DIM = "site"

sites_partitions = dg.DynamicPartitionsDefinition(name=SITES_PARTITION_NAME)


def build_site_days(start_date: dt.date) -> dg.MultiPartitionsDefinition:
    """Daily (UTC) x sites. ``end_offset=1`` makes today's (still growing) day a partition the sync can target."""
    daily = dg.DailyPartitionsDefinition(start_date=start_date.isoformat(), timezone="UTC", end_offset=1)
    return dg.MultiPartitionsDefinition({DATE_DIM: daily, SITE_DIM: sites_partitions})


@dataclass(frozen=True)
class SiteDay:
    site: str
    day: dt.date

    @property
    def key(self) -> dg.MultiPartitionKey:
        return site_day_key(self.site, self.day)


def site_day_key(site: str, day: dt.date) -> dg.MultiPartitionKey:
    validate_site_name(site)
    return dg.MultiPartitionKey({DATE_DIM: day.isoformat(), SITE_DIM: site})


def parse_site_day(partition_key: str | dg.MultiPartitionKey) -> SiteDay:
    """Read a partition key back; accepts the ``MultiPartitionKey`` or its ``"<date>|<site>"`` string form."""
    if isinstance(partition_key, dg.MultiPartitionKey):
        dims = partition_key.keys_by_dimension
        date_s, site = dims[DATE_DIM], dims[SITE_DIM]
    else:
        # Dimension values are joined with "|" in alphabetical order of dimension name: date before site.
        date_s, _, site = partition_key.partition("|")
    return SiteDay(site=validate_site_name(site), day=dt.date.fromisoformat(date_s))


def site_day_run_requests(
    context: dg.ScheduleEvaluationContext, kind: str, day: dt.date
) -> list[dg.RunRequest] | dg.SkipReason:
    """One run of ``day`` per registered site, run key ``<kind>|<site>|<day>`` (Dagster launches a key once)."""
    sites = sorted(context.instance.get_dynamic_partitions(SITES_PARTITION_NAME))
    if not sites:
        return dg.SkipReason("no site registered yet (ace_sync_sensor registers BV_SITES on its first tick)")
    return [
        dg.RunRequest(
            run_key=f"{kind}|{site}|{day.isoformat()}",
            partition_key=site_day_key(site, day),
            tags={"bv/site": site},
        )
        for site in sites
    ]
