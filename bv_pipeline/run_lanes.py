"""Run-queue lanes: the tags ``dagster.yaml``'s run limits key on, so every kind of run has bounded capacity and
the live sync always finds a run slot (see the comments in ``dagster.yaml``)."""

from __future__ import annotations

LANE_TAG = "bv/lane"
# Nightly archive, settle, compaction, retention, cache rebuild, export cleanup and manual hot_sync_job runs:
# together at most the batch limit at once, whatever their number.
BATCH_TAGS: dict[str, str] = {LANE_TAG: "batch"}
