"""cold_samples_monthly through Dagster, on SQLite + a local cold directory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from bv_pipeline.assets.raw_month import CHECK_NAME, COLD_SAMPLES_MONTHLY
from bv_pipeline.logic.raw_compaction import read_month_index
from bv_pipeline.storage import cold_keys, raw_month
from bv_pipeline_tests.raw_month_data import archive_day
from bv_pipeline_tests.stack import Stack

SITE = "demo"
JAN, FEB, MAR = dt.date(2025, 1, 1), dt.date(2025, 2, 1), dt.date(2025, 3, 1)
DAYS = [dt.date(2025, 1, 30), dt.date(2025, 1, 31), dt.date(2025, 2, 1), dt.date(2025, 2, 2)]
RUNNING = dt.date(2025, 3, 1)  # in the month still running on the pinned "today"
JOB = "rollup_compaction_job"


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def stack(tmp_path: Path, instance: dg.DagsterInstance) -> Stack:
    stack = Stack(tmp_path, points=4)
    stack.set_now(dt.datetime(2025, 3, 2, 3, 30, tzinfo=dt.UTC))
    instance.add_dynamic_partitions("sites", [SITE])
    return stack


def archive(stack: Stack, days: list[dt.date]) -> dict[dt.date, pl.DataFrame]:
    """Archived days (object + verified manifest entry) written straight into the stack's stores."""
    return {d: archive_day(stack.hot, stack.cold, d, site=SITE) for d in days}


def compact(
    stack: Stack, instance: dg.DagsterInstance, months: list[str] | None = None, **kw: Any
) -> dg.ExecuteInProcessResult:
    run_config = (
        {"ops": {"cold_samples_monthly": {"config": {"months": months}}}} if months is not None else None
    )
    return (
        stack.defs()
        .resolve_job_def(JOB)
        .execute_in_process(
            partition_key=SITE,
            instance=instance,
            asset_selection=[COLD_SAMPLES_MONTHLY],
            run_config=run_config,
            **kw,
        )
    )


def metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    [mat] = result.asset_materializations_for_node("cold_samples_monthly")
    return {k: v.value for k, v in mat.metadata.items()}


def check_of(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == CHECK_NAME]
    return check


def test_compaction_publishes_closed_months_and_is_idempotent(
    stack: Stack, instance: dg.DagsterInstance
) -> None:
    frames = archive(stack, [*DAYS, RUNNING])

    first = compact(stack, instance)
    md = metadata(first)
    assert md["months"] == "2025-01, 2025-02" and md["published_months"] == "2025-01, 2025-02"
    assert md["dagster/row_count"] == sum(frames[d].height for d in DAYS)
    assert md["days_total"] == 4 and md["days_skipped"] == 0 and md["parts"] >= 2
    assert {m: v["status"] for m, v in md["per_month"].items()} == {
        "2025-01": "published",
        "2025-02": "published",
    }
    check = check_of(first)
    assert check.passed, check.metadata
    for month in (JAN, FEB):
        index = read_month_index(stack.cold, SITE, month)
        assert index is not None
        assert md["per_month"][f"{month:%Y-%m}"]["generation"] == index.generation
        included = [d for d in DAYS if raw_month.month_of(d) == month]
        assert index.days == {d: e.checksum for d in included if (e := stack.hot.manifest_get(SITE, d))}
        assert index.rows == sum(frames[d].height for d in included)
    assert read_month_index(stack.cold, SITE, MAR) is None  # the running month stays with its day objects

    keys = stack.cold.list(cold_keys.SAMPLES_MONTH_PREFIX + "/")
    second = compact(stack, instance)
    md = metadata(second)
    assert md["published_months"] == "none" and md["months"] == "2025-01, 2025-02"
    assert md["dagster/row_count"] == sum(frames[d].height for d in DAYS) and md["days_total"] == 4
    assert {v["status"] for v in md["per_month"].values()} == {"unchanged"}
    assert check_of(second).passed
    assert stack.cold.list(cold_keys.SAMPLES_MONTH_PREFIX + "/") == keys


def test_months_can_be_chosen_and_skipped_days_warn(stack: Stack, instance: dg.DagsterInstance) -> None:
    archive(stack, DAYS)
    # One January day object no longer matches its manifest entry: compacted without it, the check warns.
    stack.cold.put(cold_keys.samples_key(SITE, DAYS[0]), stack.cold.get(cold_keys.samples_key(SITE, DAYS[2])))
    result = compact(stack, instance, months=["2025-01"])
    md = metadata(result)
    assert md["months"] == "2025-01" and md["published_months"] == "2025-01"
    assert md["days_total"] == 1 and md["days_skipped"] == 1
    assert list(md["per_month"]["2025-01"]["skipped"]) == [DAYS[0].isoformat()]
    check = check_of(result)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["days_missing"].value == {"2025-01": DAYS[0].isoformat()}
    assert read_month_index(stack.cold, SITE, FEB) is None


@pytest.mark.parametrize("month", ["2025-13", "1969-12"])
def test_invalid_month_fails_clearly(stack: Stack, instance: dg.DagsterInstance, month: str) -> None:
    archive(stack, DAYS[:1])
    result = compact(stack, instance, months=[month], raise_on_error=False)
    assert not result.success
    failure = result.failure_data_for_node("cold_samples_monthly")
    assert failure is not None
    text = " ".join(
        str(x) for x in (failure.error.message if failure.error else "", failure.user_failure_data) if x
    )
    assert month in text and "YYYY-MM" in text
    assert stack.cold.list(cold_keys.SAMPLES_MONTH_PREFIX + "/") == []
