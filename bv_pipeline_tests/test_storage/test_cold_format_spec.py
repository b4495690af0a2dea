"""docs/cold-format.md is enough to read the archive: DuckDB, with only the spec's queries, reads an archived
day and its manifest and gets exactly the samples the source served."""

from __future__ import annotations

import datetime as dt
import struct
from pathlib import Path

import duckdb
import pytest

from bv_pipeline.logic.archive import archive_site_day
from bv_pipeline.logic.hot_sync import SyncMode, sync_site_day
from bv_pipeline.resources.ace import AceClient
from bv_pipeline.resources.cold_store import LocalObjectStore
from bv_pipeline.resources.hot_store import SqliteHotStore
from bv_pipeline.simulator import AceSimulator, SimulatorConfig
from bv_pipeline.storage.samples import day_bounds_ms

DAYS = [dt.date(2026, 3, 5), dt.date(2026, 3, 6)]
NOW_MS = day_bounds_ms(dt.date(2026, 3, 7))[0] + 3_600_000


def _bits(v: float | None) -> bytes | None:
    return None if v is None else struct.pack("<d", v)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, AceSimulator]:
    tmp = tmp_path_factory.mktemp("spec")
    sim = AceSimulator(SimulatorConfig(points=8, seed=11), clock=lambda: NOW_MS / 1000)
    ace = AceClient("http://ace-simulator/api", "k", transport=sim.transport(), sleep=lambda _s: None)
    hot = SqliteHotStore(tmp / "hot.sqlite3")
    hot.ensure_schema()
    cold = LocalObjectStore(tmp / "cold")
    for day in DAYS:
        sync_site_day(ace, hot, "demo", day, now_ms=NOW_MS, mode=SyncMode.FULL_DAY)
        archive_site_day(hot, cold, ace, "demo", day, now_ms=NOW_MS)
    return tmp, sim


def test_duckdb_reads_manifest_and_day_with_the_spec_queries(
    archive: tuple[Path, AceSimulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp, sim = archive
    monkeypatch.chdir(tmp)  # the spec's paths are relative to the cold directory's parent
    con = duckdb.connect()
    days = con.sql(
        "SELECT d.key AS day, d.value->>'checksum' AS checksum, (d.value->>'rows')::BIGINT AS rows "
        "FROM read_json_auto('cold/manifest/site=demo/month=2026-03/manifest.json') m, "
        "json_each(to_json(m.days)) d ORDER BY day"
    ).fetchall()
    assert [d for d, _, _ in days] == [d.isoformat() for d in DAYS]

    for day_s, checksum, rows in days:
        path = f"cold/timeseries/site=demo/date={day_s}/part-0.parquet"
        got = con.sql(
            f"SELECT point, epoch_ms(ts_ms) AS ts, value, value_text FROM read_parquet('{path}') "
            "ORDER BY point, ts_ms"
        ).fetchall()
        footer = con.sql(
            f"SELECT decode(value) FROM parquet_kv_metadata('{path}') WHERE decode(key) = 'bv.checksum'"
        ).fetchall()
        assert footer == [(checksum,)]
        start, end = day_bounds_ms(dt.date.fromisoformat(day_s))
        truth = sim.truth("demo", start, end)
        assert len(got) == rows == truth.num_rows
        want = zip(
            truth["point"].to_pylist(),
            truth["ts_ms"].to_pylist(),
            truth["value"].to_pylist(),
            truth["value_text"].to_pylist(),
            strict=True,
        )
        for (p, ts, v, t), (wp, wts, wv, wt) in zip(got, want, strict=True):
            assert (p, int(ts.timestamp() * 1000), _bits(v), t) == (wp, wts, _bits(wv), wt)

        rollup = f"cold/rollups/1h/site=demo/date={day_s}/part-0.parquet"
        source = con.sql(
            f"SELECT decode(value) FROM parquet_kv_metadata('{rollup}') WHERE decode(key) = 'bv.source_checksum'"
        ).fetchall()
        assert source == [(checksum,)]  # the rollup is current: built from exactly this raw object

    per_day = con.sql(
        "SELECT date, count(*) FROM read_parquet('cold/timeseries/site=demo/*/part-0.parquet', "
        "hive_partitioning = true) GROUP BY date ORDER BY date"
    ).fetchall()
    assert [(str(d), n) for d, n in per_day] == [(d, r) for d, _, r in days]
