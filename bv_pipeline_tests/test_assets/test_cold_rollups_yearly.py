"""cold_rollups_yearly through Dagster, on SQLite + a local cold directory and on D1 + R2 (moto)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest

from bv_pipeline.api.reader import TimeseriesReader
from bv_pipeline.assets.rollup_year import CHECK_NAME
from bv_pipeline.logic.rollup_compaction import read_index
from bv_pipeline.storage import cold_keys, rollups
from bv_pipeline.storage.samples import day_bounds_ms
from bv_pipeline_tests.stack import Stack, remote_backends

DAYS = [dt.date(2025, 12, 31), dt.date(2026, 1, 1)]  # two calendar years
JOB = "rollup_compaction_job"


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture(params=["sqlite+local", "d1+r2"])
def backends(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    if request.param == "sqlite+local":
        yield {}
    else:
        with remote_backends(request.getfixturevalue("s3_bucket")) as kwargs:
            yield kwargs


def compact(stack: Stack, instance: dg.DagsterInstance, **kw: Any) -> dg.ExecuteInProcessResult:
    return stack.defs().resolve_job_def(JOB).execute_in_process(partition_key="demo", instance=instance, **kw)


def yearly_check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    # The job also materializes cold_samples_monthly, which has its own check.
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == CHECK_NAME]
    return check


def metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    [mat] = result.asset_materializations_for_node("cold_rollups_yearly")
    return {k: v.value for k, v in mat.metadata.items()}


def test_compaction_publishes_each_year_and_is_idempotent(
    tmp_path: Path, instance: dg.DagsterInstance, backends: dict[str, Any]
) -> None:
    stack = Stack(tmp_path, points=12, **backends)
    stack.set_now(dt.datetime(2026, 1, 2, 3, 30, tzinfo=dt.UTC))
    for day in DAYS:  # history: straight from ACE to cold, with its daily rollup
        stack.run("nightly_archive_job", "demo", day, instance)

    first = compact(stack, instance)
    md = metadata(first)
    assert md["years"] == "2025, 2026" and md["published_years"] == "2025, 2026"
    assert md["days_added"] == 2 and md["days_total"] == 2 and md["dagster/row_count"] > 0
    check = yearly_check(first)
    assert check.passed, check.metadata
    for day in DAYS:
        index = read_index(stack.cold, "demo", day.year)
        entry = stack.hot.manifest_get("demo", day)
        assert index is not None and entry is not None and index.days == {day: entry.checksum}

    # The read API answers from the yearly objects exactly what the daily rollups give.
    lo, hi = day_bounds_ms(DAYS[0])[0], day_bounds_ms(DAYS[-1])[1]
    rollup = rollups.decode_rollup(stack.cold.get(cold_keys.rollup_key("demo", DAYS[0])))
    points = sorted(set(rollup["point"].cast(pa.string()).to_pylist()))[:4]
    compacted = TimeseriesReader(stack.hot, stack.cold, max_workers=2)
    daily = TimeseriesReader(stack.hot, stack.cold, max_workers=2, use_compacted_rollups=False)
    a = compacted.query("demo", points, lo, hi, interval="1h")
    assert a.frame.height > 0 and a.frame.equals(daily.query("demo", points, lo, hi, interval="1h").frame)
    compacted.close()
    daily.close()

    keys = stack.cold.list(cold_keys.ROLLUP_1H_YEAR_PREFIX + "/")
    second = compact(stack, instance)
    md = metadata(second)
    assert md["published_years"] == "none" and md["days_added"] == 0 and md["days_total"] == 2
    assert stack.cold.list(cold_keys.ROLLUP_1H_YEAR_PREFIX + "/") == keys


def test_years_can_be_chosen_and_missing_rollups_warn(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    stack = Stack(tmp_path, points=12)
    stack.set_now(dt.datetime(2026, 1, 2, 3, 30, tzinfo=dt.UTC))
    for day in DAYS:
        stack.run("nightly_archive_job", "demo", day, instance)
    stack.cold.delete(cold_keys.rollup_key("demo", DAYS[1]))  # its rollup is not there (yet)
    result = compact(
        stack, instance, run_config={"ops": {"cold_rollups_yearly": {"config": {"years": [2026]}}}}
    )
    md = metadata(result)
    assert md["years"] == "2026" and md["days_added"] == 0
    check = yearly_check(result)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert read_index(stack.cold, "demo", 2025) is None
