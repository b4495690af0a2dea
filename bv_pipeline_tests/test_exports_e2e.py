"""End to end: a year of 20 points exported through the read API, a real Dagster webserver and the run queue.

A year of the simulator's data (2025, 20 points at 1-minute cadence, 10.4 M samples) is written straight into a
local cold tier with the pipeline's own encoder and archive manifest (what a backfill produces, without fetching
it through ACE). A `dagster-webserver` subprocess serves GraphQL on the production `dagster.yaml` (queued run
coordinator); the read API launches `export_job` through it with its default launcher (`launchRun`), the
queued-run coordinator daemon is ticked in this process (as `test_backfill_e2e` does), and the run executes in
its own process. The test polls `GET /exports/{id}` until it succeeds, downloads the Parquet file and checks the
row count and the exact values of a few days against the simulator's truth.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from fastapi.testclient import TestClient

from bv_pipeline.api.reader import TimeseriesReader
from bv_pipeline.api.web.app import create_app
from bv_pipeline.api.web.config import ApiConfig
from bv_pipeline.resources.cold_store import LocalObjectStore
from bv_pipeline.resources.hot_store import SqliteHotStore
from bv_pipeline.resources.manifest_store import ManifestStore
from bv_pipeline.simulator import AceSimulator, SimulatorConfig
from bv_pipeline.storage import cold_keys, parquet_layout
from bv_pipeline.storage.interfaces import ManifestEntry, PointMeta
from bv_pipeline.storage.samples import day_bounds_ms, sort_samples

ROOT = Path(__file__).resolve().parent.parent
SITE = "yr"
POINTS = 20
SEED = 42
FIRST, LAST = dt.date(2025, 1, 1), dt.date(2025, 12, 31)
TOKEN = "export-e2e-token-0123456789"
WEBSERVER = (sys.executable, "-m", "dagster_webserver")
CHECK_DAYS = (dt.date(2025, 1, 1), dt.date(2025, 7, 14), dt.date(2025, 12, 31))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_year(data_dir: Path, sim: AceSimulator) -> int:
    """Every day of FIRST..LAST as a verified, hot-deleted cold object; returns the total rows."""
    hot = SqliteHotStore(data_dir / "hot.sqlite3")
    hot.ensure_schema()
    hot.upsert_points(
        SITE,
        [
            PointMeta(
                name=p.name,
                kind=p.kind,
                unit=p.unit,
                marker_tags=p.marker_tags,
                kv_tags=p.kv_tags,
                collect_interval_s=p.collect_interval_s,
            )
            for p in sim.points(SITE)
        ],
    )
    cold = LocalObjectStore(data_dir / "cold")
    manifest = ManifestStore(cold)  # the archive manifest lives in object storage
    total = 0
    day = FIRST
    while day <= LAST:
        lo, hi = day_bounds_ms(day)
        data, info = parquet_layout.encode_day(SITE, day, sim.truth(SITE, lo, hi), source="ace")
        key = cold_keys.samples_key(SITE, day)
        cold.put(key, data)
        manifest.put(
            ManifestEntry(
                site=SITE,
                day=day,
                key=key,
                rows=info.rows,
                bytes=info.bytes,
                checksum=info.checksum,
                schema_version=info.schema_version,
                verified_ms=hi + 3_600_000,
                source="ace",
                hot_deleted_ms=hi + 3_600_001,
            )
        )
        total += info.rows
        day += dt.timedelta(days=1)
    return total


def _start_webserver(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [*WEBSERVER, "-w", str(ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _wait_until_serving(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dagster-webserver exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"dagster-webserver did not start: {log.read_text()[-3000:]}")


@pytest.mark.slow
def test_year_of_20_points_exported_through_dagster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir, home = tmp_path / "data", tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")  # the production instance config
    for var in ("ACE_API_BASE", "ACE_API_KEY", "CLOUDFLARE_ACCOUNT_ID", "R2_BUCKET", "R2_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    settings_env = {
        "DAGSTER_HOME": str(home),
        "BV_DATA_DIR": str(data_dir),
        "BV_SITES": SITE,
        "BV_SIM_POINTS": str(POINTS),
        "BV_SIM_SEED": str(SEED),
    }
    for k, v in settings_env.items():
        monkeypatch.setenv(k, v)

    t0 = time.perf_counter()
    # The webserver loads the code location (which needs no data) while the year is written.
    port, log = _free_port(), tmp_path / "webserver.log"
    webserver = _start_webserver(port, dict(os.environ), log)
    try:
        sim = AceSimulator(SimulatorConfig(sites=(SITE,), points=POINTS, seed=SEED))
        total_rows = build_year(data_dir, sim)
        assert total_rows > 10_000_000
        t_data = time.perf_counter()
        _wait_until_serving(webserver, port, log)
    except BaseException:
        webserver.kill()
        raise
    t_web = time.perf_counter()
    hot = SqliteHotStore(data_dir / "hot.sqlite3")
    reader = TimeseriesReader(hot, LocalObjectStore(data_dir / "cold"), max_workers=4)
    try:
        cfg = ApiConfig(
            api_tokens=(TOKEN,),
            rate_limit_per_s=1000.0,
            rate_limit_burst=1000,
            dagster_graphql_url=f"http://127.0.0.1:{port}/graphql",
        )
        api = TestClient(create_app(reader, cfg))
        auth = {"Authorization": f"Bearer {TOKEN}"}
        names = [p.name for p in sim.points(SITE)]
        start, end = day_bounds_ms(FIRST)[0], day_bounds_ms(LAST)[1] - 1

        # The query is refused by the sample budget and links to the equivalent export.
        refused = api.get(
            "/timeseries/query",
            params={"site_name": SITE, "point_names": ",".join(names), "start_time": start, "end_time": end},
            headers=auth,
        )
        assert refused.status_code == 413
        body = refused.json()["links"]["export"]["body"] | {"format": "parquet"}
        created = api.post("/exports", json=body, headers=auth)
        assert created.status_code == 202, created.text
        export = created.json()
        assert export["state"] == "queued" and export["run_id"]
        assert created.headers["location"] == f"/exports/{export['export_id']}"

        with dg.DagsterInstance.get() as instance:
            run = instance.get_run_by_id(export["run_id"])
            assert run is not None and run.job_name == "export_job"
            assert run.tags["bv/export"] == export["export_id"]
            assert run.status == dg.DagsterRunStatus.QUEUED  # through the instance's run queue
            target = ModuleTarget(
                module_name="bv_pipeline.definitions",
                attribute="defs",
                working_directory=str(ROOT),
                location_name="bv_pipeline",
            )
            with create_test_daemon_workspace_context(target, instance) as workspace:
                queue = QueuedRunCoordinatorDaemon(interval_seconds=1)
                states, status = [], {}
                deadline = time.monotonic() + 900
                while time.monotonic() < deadline:
                    list(queue.run_iteration(workspace))
                    status = api.get(f"/exports/{export['export_id']}", headers=auth).json()
                    states.append((status["state"], status["progress"]["rows"]))
                    if status["state"] in ("succeeded", "failed"):
                        break
                    time.sleep(1)
                final_run = instance.get_run_by_id(export["run_id"])
                for _ in range(60):  # the run finishes just after writing its final status
                    if final_run is not None and final_run.is_finished:
                        break
                    time.sleep(0.5)
                    final_run = instance.get_run_by_id(export["run_id"])

        t_run = time.perf_counter()
        print(
            f"\nyear of {POINTS} points: {total_rows:,} rows; data {t_data - t0:.1f} s, webserver "
            f"{t_web - t_data:.1f} s, export {t_run - t_web:.1f} s, {status.get('bytes')} bytes"
        )
        assert status["state"] == "succeeded", status
        assert final_run is not None and final_run.status == dg.DagsterRunStatus.SUCCESS
        running = [rows for state, rows in states if state == "running"]
        assert all(a <= b for a, b in itertools.pairwise(running))  # progress only grows
        assert any(0 < rows < total_rows for rows in running)  # rows so far were reported while running
        assert status["rows"] == total_rows
        assert status["progress"]["chunks_done"] == status["progress"]["chunks_total"] > 1
        assert status["download"]["url"] == f"/exports/{export['export_id']}/download"

        got = api.get(status["download"]["url"], headers=auth)
        assert got.status_code == 200
        assert got.headers["content-type"] == "application/vnd.apache.parquet"
        assert int(got.headers["content-length"]) == status["bytes"] == len(got.content)
        table = pq.read_table(io.BytesIO(got.content))
        assert table.num_rows == total_rows
        ts = table["timestamp"].cast(pa.int64())
        assert ts.to_pylist()[:1] and pc.min(ts).as_py() >= start and pc.max(ts).as_py() <= end
        for day in CHECK_DAYS:
            lo, hi = day_bounds_ms(day)
            mask = pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi))
            part = table.filter(mask)
            got_day = sort_samples(
                pa.table(
                    {
                        "point": part["point_name"].cast(pa.string()),
                        "ts_ms": part["timestamp"].cast(pa.int64()),
                        "value": part["value"],
                        "value_text": part["value_text"],
                    }
                )
            )
            want = sort_samples(sim.truth(SITE, lo, hi))
            assert got_day.num_rows == want.num_rows
            assert got_day["point"].to_pylist() == want["point"].to_pylist()
            assert got_day["ts_ms"].to_pylist() == want["ts_ms"].to_pylist()
            assert got_day["value_text"].to_pylist() == want["value_text"].to_pylist()
            assert _same_bits(got_day["value"], want["value"])  # exact float64 bits, NaN and -0.0 too
    finally:
        reader.close()
        webserver.terminate()
        try:
            webserver.wait(timeout=30)
        except subprocess.TimeoutExpired:
            webserver.kill()


def _same_bits(a: pa.ChunkedArray, b: pa.ChunkedArray) -> bool:
    import struct

    def bits(x: float | None) -> bytes | None:
        return None if x is None else struct.pack("<d", x)

    return [bits(x) for x in a.to_pylist()] == [bits(x) for x in b.to_pylist()]
