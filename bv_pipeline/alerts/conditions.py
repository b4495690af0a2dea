"""What is wrong right now: each function returns the alerts firing at ``now_ms`` (empty when all is well).

They read Dagster's instance (runs, backfills, materialisations, check evaluations) and the hot store; they
send nothing. ``open_keys`` are the keys of incidents still open, so a condition keeps evaluating them even
after they left its normal window (an archive day stays watched until it is verified).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.execution.backfill import BulkActionsFilter
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    BACKFILL_ID_TAG,
    PARTITION_NAME_TAG,
    WILL_RETRY_TAG,
)

from bv_pipeline.alerts.model import Alert
from bv_pipeline.alerts.runs import run_error_text
from bv_pipeline.assets.cold import COLD_TIMESERIES, HOT_RETENTION
from bv_pipeline.assets.hot import HOT_TIMESERIES
from bv_pipeline.jobs import HOT_SYNC_JOB, NIGHTLY_ARCHIVE_JOB
from bv_pipeline.ops.live_sync import LIVE_SYNC_JOB, LIVE_SYNC_OP
from bv_pipeline.partitions import parse_site_day, site_day_key
from bv_pipeline.storage.interfaces import HotStore

HOT_STALE = "hot_stale"
HOT_DB_SIZE = "hot_db_size"
ARCHIVE_UNVERIFIED = "archive_unverified"
BACKFILL_FAILED = "backfill_failed"
ACE_AUTH = "ace_auth"

MS_PER_MIN = 60_000
BACKFILL_WINDOW_DAYS = 7
ACE_AUTH_LOOKBACK_HOURS = 24
# AceError texts: 401/403 fail at once; the real API answers an invalid key with HTTP 500, which the client
# retries and then reports with its "the API key may be invalid" hint.
ACE_AUTH_ERROR = re.compile(
    r"ACE (?P<endpoint>GET \S+) failed(?:: HTTP (?P<status>401|403)\b"
    r"| after \d+ attempts; last error: HTTP (?P<invalid_key>500)\b.*?the API key may be invalid)"
)
MAX_RUNS_SCANNED = 1000
MAX_PARTITIONS_CHECKED = 50
# A live_sync_job run counts for every site of its run config (its failure metadata says which of them failed).
ACE_JOBS = frozenset({HOT_SYNC_JOB, LIVE_SYNC_JOB, NIGHTLY_ARCHIVE_JOB})
ACE_ASSETS = frozenset({HOT_TIMESERIES, COLD_TIMESERIES, HOT_RETENTION})  # backfills select assets


def _utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def _iso(ms: int) -> str:
    return _utc(ms).isoformat(timespec="seconds").replace("+00:00", "Z")


def stale_sites(hot: HotStore, sites: Iterable[str], now_ms: int, stale_minutes: int) -> list[Alert]:
    """Sites whose newest hot sample is older than ``stale_minutes`` (sites without any sample are not stale:
    a site that never synced shows up as failed runs)."""
    out = []
    for site in sorted(sites):
        newest = hot.max_ts(site)
        if newest is None:
            continue
        age_min = (now_ms - newest) // MS_PER_MIN
        if age_min > stale_minutes:
            out.append(
                Alert(
                    HOT_STALE,
                    site,
                    f"newest hot sample of {site} is {age_min} min old (threshold {stale_minutes} min)",
                    {"newest_sample": _iso(newest), "age_minutes": int(age_min)},
                )
            )
    return out


def oversized_hot_db(size_bytes: int | None, max_mb: int, what: str) -> list[Alert]:
    if size_bytes is None or size_bytes <= max_mb * 1_000_000:
        return []
    mb = round(size_bytes / 1_000_000, 1)
    return [
        Alert(
            HOT_DB_SIZE,
            "hot",
            f"hot database {what} is {mb} MB (threshold {max_mb} MB)",
            {"size_mb": mb, "threshold_mb": max_mb},
        )
    ]


def unverified_archives(
    instance: dg.DagsterInstance,
    hot: HotStore,
    sites: Iterable[str],
    now_ms: int,
    due_hours: float,
    open_keys: set[str],
) -> list[Alert]:
    """Site-days whose ``cold_timeseries`` is missing once due, or whose latest materialisation has a failed
    ERROR-severity check. Day D is due ``due_hours`` after its end (the archive time on D+1 plus a grace
    period), for every site the hot tier synced that day (a site registered today has nothing to archive yet)."""
    now = _utc(now_ms)
    due_days = []
    for back in range(1, 4):  # due_hours < 48 (archive time + grace): the last three days cover every setting
        day = now.date() - dt.timedelta(days=back)
        day_end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
        if now >= day_end + dt.timedelta(hours=due_hours):
            due_days.append(day)

    records: dict[
        str, dg.EventLogRecord | None
    ] = {}  # each site-day's latest cold materialisation, looked up once

    def latest_cold(site: str, day: dt.date) -> dg.EventLogRecord | None:
        key = f"{site}|{day.isoformat()}"
        if key not in records:
            partition = str(site_day_key(site, day))
            result = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=COLD_TIMESERIES, asset_partitions=[partition]), limit=1
            )
            records[key] = result.records[0] if result.records else None
        return records[key]

    # Dagster's own records first: only a site with a due day that has no cold materialisation costs a hot-store
    # request (one range query over its due days), so in steady state this check reads nothing from D1.
    wanted = set(open_keys)
    if due_days:
        for site in sites:
            missing = [day for day in due_days if latest_cold(site, day) is None]
            # Archived days stay candidates for the failed-check test below.
            wanted |= {f"{site}|{day.isoformat()}" for day in due_days if day not in missing}
            if missing:
                synced = hot.list_sync_as_of(site, min(missing), max(missing))
                wanted |= {f"{site}|{day.isoformat()}" for day in missing if day in synced}
    out = []
    for key in sorted(wanted):
        site, _, day_s = key.partition("|")
        day = dt.date.fromisoformat(day_s)
        partition = str(site_day_key(site, day))
        record = latest_cold(site, day)
        if record is None:
            out.append(
                Alert(
                    ARCHIVE_UNVERIFIED,
                    key,
                    f"no verified cold object for {site} {day_s} ({due_hours:g} h after the day's end)",
                    {"partition": partition},
                )
            )
            continue
        failed = _failed_checks(instance, record.run_id)
        if failed:
            out.append(
                Alert(
                    ARCHIVE_UNVERIFIED,
                    key,
                    f"cold object for {site} {day_s} failed verification checks: {', '.join(failed)}",
                    {"partition": partition, "run_id": record.run_id},
                )
            )
    return out


def _failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    failed = []
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        ev = entry.dagster_event.event_specific_data if entry.dagster_event else None
        if (
            ev is not None
            and ev.asset_key == COLD_TIMESERIES
            and not ev.passed
            and ev.severity == dg.AssetCheckSeverity.ERROR
        ):
            failed.append(ev.check_name)
    return sorted(set(failed))


def _partition_label(run: dg.DagsterRun) -> str:
    if PARTITION_NAME_TAG in run.tags:
        return run.tags[PARTITION_NAME_TAG]
    start, end = run.tags.get(ASSET_PARTITION_RANGE_START_TAG), run.tags.get(ASSET_PARTITION_RANGE_END_TAG)
    return f"{start}...{end}" if start else "-"


def _recovered(instance: dg.DagsterInstance, failed: dg.RunRecord) -> bool:
    """A later successful run covered the failed run's partition and assets (a re-execution, another backfill)."""
    run = failed.dagster_run
    partition = run.tags.get(PARTITION_NAME_TAG)
    if partition is None:
        return False
    later = instance.get_run_records(
        filters=dg.RunsFilter(
            tags={PARTITION_NAME_TAG: partition},
            statuses=[dg.DagsterRunStatus.SUCCESS],
            created_after=failed.create_timestamp,
        ),
        limit=20,
    )
    wanted = run.asset_selection
    for r in later:
        got = r.dagster_run.asset_selection
        if (wanted and got and wanted <= got) or (not wanted and r.dagster_run.job_name == run.job_name):
            return True
    return False


def failed_backfills(instance: dg.DagsterInstance, now_ms: int, open_keys: set[str]) -> list[Alert]:
    """Backfills (created in the last week, or still open as incidents) with failed partitions that no later
    successful run has covered."""
    since = _utc(now_ms) - dt.timedelta(days=BACKFILL_WINDOW_DAYS)
    backfills = {
        b.backfill_id: b for b in instance.get_backfills(filters=BulkActionsFilter(created_after=since))
    }
    for backfill_id in open_keys - backfills.keys():
        b = instance.get_backfill(backfill_id)
        if b is not None:
            backfills[backfill_id] = b
    out = []
    for backfill_id, backfill in sorted(backfills.items()):
        failed_runs = instance.get_run_records(
            filters=dg.RunsFilter(
                tags={BACKFILL_ID_TAG: backfill_id}, statuses=[dg.DagsterRunStatus.FAILURE]
            ),
            limit=MAX_RUNS_SCANNED,
        )
        latest_by_partition: dict[str, dg.RunRecord] = {}
        for r in failed_runs:  # newest first
            if r.dagster_run.tags.get(WILL_RETRY_TAG, "").lower() == "true":
                continue
            latest_by_partition.setdefault(_partition_label(r.dagster_run), r)
        # Each partition costs a query: stop counting at MAX_PARTITIONS_CHECKED (one is enough to fire).
        unrecovered: list[str] = []
        for partition, record in sorted(latest_by_partition.items()):
            if len(unrecovered) == MAX_PARTITIONS_CHECKED:
                break
            if not _recovered(instance, record):
                unrecovered.append(partition)
        if unrecovered:
            count = f"{len(unrecovered)}{'+' if len(unrecovered) == MAX_PARTITIONS_CHECKED else ''}"
            shown = ", ".join(unrecovered[:10]) + (" ..." if len(unrecovered) > 10 else "")
            out.append(
                Alert(
                    BACKFILL_FAILED,
                    backfill_id,
                    f"backfill {backfill_id} has {count} failed partition(s): {shown}",
                    {"failed_partitions": count, "backfill_status": backfill.status.value},
                )
            )
    return out


def _run_site(run: dg.DagsterRun) -> str | None:
    if "bv/site" in run.tags:
        return run.tags["bv/site"]
    partition = run.tags.get(PARTITION_NAME_TAG)
    if not partition:
        return None
    try:
        return parse_site_day(partition).site if "|" in partition else partition
    except ValueError:
        return None


def _live_sites(run: dg.DagsterRun) -> list[str]:
    config = (run.run_config or {}).get("ops", {}).get(LIVE_SYNC_OP, {}).get("config", {})
    return [s for s in config.get("sites") or [] if isinstance(s, str)]


def _live_failed_sites(instance: dg.DagsterInstance, run_id: str) -> dict[str, str] | None:
    """A failed live-sync run's per-site errors (its failure's ``failed_sites`` metadata); None when the run
    failed without them (a crash: every site counts as failed)."""
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        data = entry.dagster_event.step_failure_data if entry.dagster_event else None
        user = data.user_failure_data if data is not None else None
        value = user.metadata.get("failed_sites") if user is not None else None
        if value is not None and isinstance(value.value, dict):
            return {site: str(info.get("error", "")) for site, info in value.value.items()}
    return None


@dataclass
class _SiteOutcome:
    record: dg.RunRecord
    failed: bool
    error: str | None = None  # known error text (live runs); None: read the run's failure when needed


def _site_outcomes(instance: dg.DagsterInstance, record: dg.RunRecord) -> list[tuple[str, _SiteOutcome]]:
    """Which sites a finished run speaks for, and whether each failed in it. A live-sync run of several sites
    speaks for each of them: a site it does not list as failed succeeded."""
    run = record.dagster_run
    failed = run.status == dg.DagsterRunStatus.FAILURE
    if run.job_name == LIVE_SYNC_JOB and "bv/site" not in run.tags:
        errors = _live_failed_sites(instance, run.run_id) if failed else {}
        return [
            (site, _SiteOutcome(record, errors is None or site in errors, (errors or {}).get(site)))
            for site in _live_sites(run)
        ]
    site = _run_site(run)
    return [(site, _SiteOutcome(record, failed))] if site is not None else []


def _calls_ace(run: dg.DagsterRun) -> bool:
    """Runs whose outcome says something about ACE access (a compaction's success does not)."""
    return run.job_name in ACE_JOBS or bool(run.asset_selection and run.asset_selection & ACE_ASSETS)


def ace_auth_failures(instance: dg.DagsterInstance, now_ms: int, threshold: int) -> list[Alert]:
    """Sites whose last ``threshold`` finished runs all failed because ACE answered 401 or 403."""
    since = _utc(now_ms) - dt.timedelta(hours=ACE_AUTH_LOOKBACK_HOURS)
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE], updated_after=since
        ),
        limit=MAX_RUNS_SCANNED,
    )
    by_site: dict[str, list[_SiteOutcome]] = defaultdict(list)
    for r in sorted(records, key=lambda r: r.create_timestamp, reverse=True):
        if not _calls_ace(r.dagster_run):
            continue
        for site, outcome in _site_outcomes(instance, r):
            if len(by_site[site]) < threshold:
                by_site[site].append(outcome)
    out = []
    for site, outcomes in sorted(by_site.items()):
        if len(outcomes) < threshold or not all(o.failed for o in outcomes):
            continue
        recent = [o.record for o in outcomes]
        matches = [
            ACE_AUTH_ERROR.search(
                o.error if o.error is not None else run_error_text(instance, o.record.dagster_run.run_id)
            )
            for o in outcomes
        ]
        if all(matches):
            statuses = sorted({m["status"] or f"{m['invalid_key']} (invalid key)" for m in matches if m})
            endpoint = matches[0]["endpoint"] if matches[0] else "?"
            out.append(
                Alert(
                    ACE_AUTH,
                    site,
                    f"ACE answered HTTP {'/'.join(statuses)} to the last {threshold} runs for {site} "
                    "(API key missing/revoked, or no access to the site)",
                    {"endpoint": endpoint, "last_run_id": recent[0].dagster_run.run_id},
                )
            )
    return out
