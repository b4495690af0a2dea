"""The vendor's raw samples: an external asset, so lineage starts at ACE in the Dagster UI."""

from __future__ import annotations

import dagster as dg

ACE_TIMESERIES = dg.AssetKey("ace_timeseries")


def build_ace_timeseries(site_days: dg.PartitionsDefinition) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=ACE_TIMESERIES,
        partitions_def=site_days,
        group_name="source",
        kinds={"api"},
        description=(
            "Raw samples served by the ACE FlightDeck API (`/sites/{site}/timeseries/paginated`, raw_data=true). "
            "Owned by the vendor; materialised only as the input of the hot and cold tiers."
        ),
    )
