"""Nothing a run needs lives on the disk of the machine that runs it, once the production backends are set.

Four "machines" share only what a multi-machine deployment shares: the Dagster instance on one real PostgreSQL
(``deploy/dagster.yaml`` + ``deploy/multi-machine/docker.yaml`` as shipped: compute logs in the bucket), the hot tier on D1 (the local D1-compatible endpoint, through the official
``cloudflare`` SDK), the cold tier on R2 (a moto S3 server), ACE (the simulator over HTTP) and the environment
file. Each machine gets its own fresh, empty ``BV_DATA_DIR``, temporary directory (``TMPDIR`` and Python's
``tempfile``), working directory and ``DAGSTER_HOME``, and builds its definitions and stores from the environment
through the production wiring (``Settings.from_env`` -> ``build_resources`` / ``build_stores``), with
``BV_REQUIRE_SHARED_BACKENDS=true``. Each machine's directories are deleted before the next one starts.

- machine A syncs two days into the hot tier (``hot_sync_job``);
- machine B archives the first (``nightly_archive_job``: settling pass, Parquet to R2, verification, manifest,
  rollup, then retention deletes it from D1), seeing A's partition and materialisation only through PostgreSQL;
- machine C serves the read API: the window answers the archived day from R2 and the other from D1, exactly;
  ``POST /exports`` writes the export's status to R2 and hands the launch to Dagster;
- machine D runs that ``export_job`` from the status document C wrote; C then answers the export's status and
  its presigned download, whose Parquet file is exact.

After each machine, its data, temporary and working directories are still empty and its DAGSTER_HOME holds only
dagster.yaml: no run left state on local disk. Machine D also deletes A's runs as the run-retention job does, and
their compute logs go from the bucket.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from fastapi.testclient import TestClient

from bv_pipeline.api.export_launcher import ExportLauncher, export_run_config, export_run_tags
from bv_pipeline.api.server import build_reader
from bv_pipeline.api.service import ApiConfig, create_app
from bv_pipeline.config import Settings
from bv_pipeline.definitions import build_definitions
from bv_pipeline.logic.run_retention import delete_run_completely
from bv_pipeline.partitions import site_day_key
from bv_pipeline.resources.clock import ClockResource
from bv_pipeline.resources.wiring import build_resources
from bv_pipeline.simulator import AceSimulator
from bv_pipeline.storage import cold_keys
from bv_pipeline.storage.exports import ExportStatus
from bv_pipeline.storage.samples import SAMPLE_SCHEMA, day_bounds_ms
from bv_pipeline_tests.daemon import ROOT, open_instance
from bv_pipeline_tests.fakes.d1_server import FakeD1
from bv_pipeline_tests.fixtures.ace import ACE_TEST_API_KEY, ACE_TEST_DAY, ACE_TEST_NOW_MS, ACE_TEST_SITE
from bv_pipeline_tests.fixtures.postgres import PostgresServer
from bv_pipeline_tests.fixtures.s3 import S3Bucket
from bv_pipeline_tests.stack import assert_same_samples

SITE = ACE_TEST_SITE
ARCHIVED_DAY = ACE_TEST_DAY  # synced on A, archived on B
HOT_DAY = ACE_TEST_DAY + dt.timedelta(days=1)  # synced on A, stays hot
TOKEN = "multi-machine-token-0123456789"
# Every variable a machine of the deployment gets from the shared environment file; nothing else is set.
PREFIXES = ("ACE_", "AWS_", "BV_", "CLOUDFLARE_", "D1_", "R2_", "DAGSTER_", "HOT_STORAGE_DAYS", "PROMETHEUS_")
IO_MANAGER_EVENTS = ("HANDLED_OUTPUT", "LOADED_INPUT")
LOG_PREFIX = "dagster-compute-logs/"  # deploy/multi-machine/docker.yaml
INSTANCE_YAML = (ROOT / "deploy" / "dagster.yaml").read_text() + (
    ROOT / "deploy" / "multi-machine" / "docker.yaml"
).read_text()


@dataclass
class Machine:
    name: str
    root: Path
    instance: dg.DagsterInstance
    settings: Settings

    @property
    def local_dirs(self) -> dict[str, Path]:
        return {d: self.root / d for d in ("data", "tmp", "cwd")}

    def defs(self) -> dg.Definitions:
        """The production definitions from this machine's environment; only the clock is pinned (the simulator's
        days are in the past of the real clock)."""
        resources = build_resources(self.settings)
        resources["clock"] = ClockResource(fixed_now_ms=ACE_TEST_NOW_MS)
        return build_definitions(self.settings, resources=resources)

    def run(self, job: str, **kwargs: Any) -> dg.ExecuteInProcessResult:
        result = self.defs().resolve_job_def(job).execute_in_process(instance=self.instance, **kwargs)
        assert result.success, f"{job} failed on machine {self.name}"
        # No step hands a value to an IO manager: with the default multiprocess executor that would be a pickle
        # under DAGSTER_HOME on the run's machine, read back by the next step (broken with a step per pod).
        io = [e.event_type_value for e in result.all_events if e.event_type_value in IO_MANAGER_EVENTS]
        assert io == [], f"{job} used an IO manager on machine {self.name}: {io}"
        return result

    def leftovers(self) -> dict[str, list[str]]:
        """Files this machine's runs left in its data, temporary and working directories and DAGSTER_HOME."""
        found = {d: _files(path) for d, path in self.local_dirs.items() if _files(path)}
        if _files(self.root / "dagster_home") != ["dagster.yaml"]:
            found["dagster_home"] = _files(self.root / "dagster_home")
        return found


@pytest.fixture
def shared_env(
    ace_server_url: str, fake_d1: FakeD1, s3_bucket: S3Bucket, postgres_server: PostgresServer
) -> dict[str, str]:
    """The environment file of the deployment: production backends, one Dagster instance on PostgreSQL."""
    return {
        "ACE_API_BASE": ace_server_url,
        "ACE_API_KEY": ACE_TEST_API_KEY,
        "BV_SITES": SITE,
        "BV_START_DATE": "2026-01-01",
        # A one-day hot window: the next night's retention retires the archived day from D1.
        "HOT_STORAGE_DAYS": "1",
        "CLOUDFLARE_ACCOUNT_ID": fake_d1.account_id,
        "CLOUDFLARE_API_TOKEN": fake_d1.token,
        "D1_DATABASE_ID": fake_d1.database_id,
        "CLOUDFLARE_BASE_URL": fake_d1.base_url,
        "R2_ENDPOINT_URL": s3_bucket.endpoint_url,
        "R2_BUCKET": s3_bucket.bucket,
        "R2_ACCESS_KEY_ID": s3_bucket.access_key_id,
        "R2_SECRET_ACCESS_KEY": s3_bucket.secret_access_key,
        # Dagster's S3 compute-log manager uses boto3's default credentials (deploy/multi-machine.md).
        "AWS_ACCESS_KEY_ID": s3_bucket.access_key_id,
        "AWS_SECRET_ACCESS_KEY": s3_bucket.secret_access_key,
        "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
        "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
        "BV_REQUIRE_SHARED_BACKENDS": "true",
        # ACE's request budget is shared by every machine through the same PostgreSQL server.
        "BV_ACE_RATE_LIMIT_URL": postgres_server.url,
        "BV_API_TOKENS": TOKEN,
        "BV_API_WORKERS": "1",
        **postgres_server.env(),
    }


@contextmanager
def machine(
    name: str, tmp_path: Path, shared_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Machine]:
    """A machine: the shared environment plus its own empty BV_DATA_DIR, temp dir, working dir, DAGSTER_HOME."""
    root = tmp_path / f"machine-{name}"
    home = root / "dagster_home"
    for d in ("data", "tmp", "cwd"):
        (root / d).mkdir(parents=True)
    home.mkdir(parents=True)
    instance_config = yaml.safe_load(INSTANCE_YAML)
    # Dagster stages compute logs in /tmp unless told otherwise: here, in this machine's temporary directory.
    instance_config["compute_logs"]["config"]["local_dir"] = str(root / "tmp")
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_config, sort_keys=False))
    with monkeypatch.context() as mp:
        for var in list(os.environ):
            if var.startswith(PREFIXES):
                mp.delenv(var)
        for var, value in {
            **shared_env,
            "BV_DATA_DIR": str(root / "data"),
            "DAGSTER_HOME": str(home),
            "TMPDIR": str(root / "tmp"),
        }.items():
            mp.setenv(var, value)
        mp.setattr(tempfile, "tempdir", str(root / "tmp"))
        mp.chdir(root / "cwd")
        settings = Settings.from_env()
        assert settings.use_d1 and settings.use_r2 and settings.require_shared_backends
        with open_instance(home) as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.compute_log_manager).__name__ == "S3ComputeLogManager"
            m = Machine(name, root, instance, settings)
            yield m
            assert m.leftovers() == {}, f"machine {name} left files on its local disk: {m.leftovers()}"
    shutil.rmtree(root)  # the machine is gone: nothing of it can be read by the next one


class DagsterExportLauncher(ExportLauncher):
    """Records each launch for machine D to run (as GraphQL hands it to the run queue); queued until then."""

    def __init__(self) -> None:
        self.launched: list[tuple[str, dict[str, Any], dict[str, str]]] = []

    def launch(self, status: ExportStatus, *, max_samples: int | None) -> str:
        run_id = f"pending-{status.export_id}"
        self.launched.append(
            (run_id, export_run_config(status, max_samples=max_samples), export_run_tags(status))
        )
        return run_id

    def run_state(self, run_id: str) -> str | None:
        return "QUEUED"


def _files(path: Path) -> list[str]:
    """Files under ``path`` (empty directories hold no state: Dagster leaves one per staged compute log)."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def _keys(bucket: S3Bucket) -> set[str]:
    pages = bucket.client.get_paginator("list_objects_v2").paginate(Bucket=bucket.bucket)
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def _truth(sim: AceSimulator, start_ms: int, end_ms: int) -> pa.Table:
    return sim.truth(SITE, start_ms, end_ms)


def _as_samples(table: pa.Table) -> pa.Table:
    """An API answer / export file (point_name, timestamp, value, value_text) as sample columns."""
    ts = table["timestamp"]
    if pa.types.is_timestamp(ts.type):
        ts = ts.cast(pa.int64())
    return pa.table(
        {
            "point": table["point_name"].cast(pa.string()),
            "ts_ms": ts,
            "value": table["value"],
            "value_text": table["value_text"],
        }
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sync_archive_read_and_export_on_four_machines(
    tmp_path: Path,
    shared_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    ace_simulator: AceSimulator,
    s3_bucket: S3Bucket,
) -> None:
    archived_start, archived_end = day_bounds_ms(ARCHIVED_DAY)
    _, hot_end = day_bounds_ms(HOT_DAY)

    with machine("a", tmp_path, shared_env, monkeypatch) as a:
        a.instance.add_dynamic_partitions("sites", [SITE])  # what ace_sync_sensor does on its first tick
        a_runs = [
            a.run("hot_sync_job", partition_key=site_day_key(SITE, day)).run_id
            for day in (ARCHIVED_DAY, HOT_DAY)
        ]
    assert _keys(s3_bucket) and all(k.startswith(LOG_PREFIX) for k in _keys(s3_bucket))  # only compute logs
    assert {run_id for run_id in a_runs if any(run_id in k for k in _keys(s3_bucket))} == set(a_runs)

    with machine("b", tmp_path, shared_env, monkeypatch) as b:
        assert b.instance.get_dynamic_partitions("sites") == [SITE]
        hot_mats = b.instance.fetch_materializations(dg.AssetKey("hot_timeseries"), limit=10).records
        assert len(hot_mats) == 2  # A's runs, seen through PostgreSQL
        result = b.run("nightly_archive_job", partition_key=site_day_key(SITE, ARCHIVED_DAY))
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks and all(checks.values()), checks
        [mat] = result.asset_materializations_for_node("cold_timeseries")
        rows = _truth(ace_simulator, archived_start, archived_end).num_rows
        assert mat.metadata["dagster/row_count"].value == rows
        # The next night's retention (as of HOT_DAY + 1) retires the archived day from D1, after reading R2.
        later = b.run(
            "nightly_archive_job",
            partition_key=site_day_key(SITE, HOT_DAY),
            asset_selection=[dg.AssetKey("hot_retention")],
        )
        [retention] = later.asset_materializations_for_node("hot_retention")
        assert retention.metadata["deleted_days"].value == ARCHIVED_DAY.isoformat()
        assert retention.metadata["rows_deleted"].value == rows
        b.run("rollup_compaction_job", partition_key=SITE)  # yearly rollups and monthly samples, R2 only
    keys = _keys(s3_bucket)
    assert {cold_keys.samples_key(SITE, ARCHIVED_DAY), cold_keys.rollup_key(SITE, ARCHIVED_DAY)} <= keys
    assert f"rollups/1h-year/site={SITE}/year={ARCHIVED_DAY.year}/index.json" in keys  # compaction's commit

    launcher = DagsterExportLauncher()
    with machine("c", tmp_path, shared_env, monkeypatch) as c:
        config = ApiConfig.from_settings(c.settings)
        reader = build_reader(c.settings, config)
        try:
            with TestClient(create_app(reader, config, export_launcher=launcher)) as api:
                auth = {"Authorization": f"Bearer {TOKEN}"}
                points = api.get(f"/sites/{SITE}/points", headers=auth).json()
                names = sorted(p["name"] for p in points["points"])
                assert len(names) == ace_simulator.config.points
                window = {
                    "site_name": SITE,
                    "point_names": ",".join(names),
                    "start_time": archived_start,
                    "end_time": hot_end - 1,  # inclusive
                }
                got = api.get(
                    "/timeseries/query",
                    params=window,
                    headers={**auth, "Accept": "application/vnd.apache.arrow.stream"},
                )
                assert got.status_code == 200, got.text
                table = pa.ipc.open_stream(got.content).read_all()
                coverage = orjson.loads(table.schema.metadata[b"metadata"])["coverage"]
                assert coverage == {ARCHIVED_DAY.isoformat(): "cold", HOT_DAY.isoformat(): "hot"}
                assert_same_samples(_as_samples(table), _truth(ace_simulator, archived_start, hot_end))

                body = {
                    "site_name": SITE,
                    "point_names": names[:5],
                    "start_time": archived_start,
                    "end_time": hot_end - 1,
                    "format": "parquet",
                }
                created = api.post("/exports", json=body, headers=auth)
                assert created.status_code == 202, created.text
                export_id = created.json()["export_id"]
        finally:
            reader.close()
    [(_, run_config, tags)] = launcher.launched

    with machine("d", tmp_path, shared_env, monkeypatch) as d:
        d.run("export_job", run_config=run_config, tags=tags)  # reads the status document C wrote to R2
        for run_id in a_runs:  # what dagster_run_retention_schedule does, on whichever machine runs it
            delete_run_completely(d.instance, run_id)
        assert all(d.instance.get_run_by_id(run_id) is None for run_id in a_runs)
    assert not [k for k in _keys(s3_bucket) if any(run_id in k for run_id in a_runs)]

    with machine("c2", tmp_path, shared_env, monkeypatch) as c2:
        config = ApiConfig.from_settings(c2.settings)
        reader = build_reader(c2.settings, config)
        try:
            with TestClient(create_app(reader, config, export_launcher=launcher)) as api:
                status = api.get(f"/exports/{export_id}", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        finally:
            reader.close()
    assert status["state"] == "succeeded", status
    url = status["download"]["url"]
    assert url.startswith(s3_bucket.endpoint_url)  # a presigned GET straight from the bucket
    exported = pq.read_table(io.BytesIO(httpx.get(url).content))
    expected = _truth(ace_simulator, archived_start, hot_end)
    expected = expected.filter(pa.compute.is_in(expected["point"], pa.array(names[:5])))
    assert exported.num_rows == status["rows"] == expected.num_rows > 0
    assert_same_samples(_as_samples(exported).cast(SAMPLE_SCHEMA), expected)
