"""Per-site hot databases: configuration, routing, and D1 databases looked up by name or created (through the
SDK against the local endpoint)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest

from bv_pipeline.config import ConfigError, Settings
from bv_pipeline.resources.hot_store import D1HotStoreResource, SqliteHotStoreResource
from bv_pipeline.resources.hot_store_routing import HotDatabases, RoutedHotStore
from bv_pipeline.storage.interfaces import HotStore, ManifestEntry
from bv_pipeline.storage.samples import SAMPLE_SCHEMA
from bv_pipeline_tests.fakes.d1_server import run_fake_d1

T0 = 1_767_225_600_000


def batch(point: str, n: int) -> pa.Table:
    return pa.table(
        {
            "point": [point] * n,
            "ts_ms": [T0 + i * 60_000 for i in range(n)],
            "value": [1.0] * n,
            "value_text": [None] * n,
        },
        schema=SAMPLE_SCHEMA,
    )


def test_layout_parsing_and_grouping() -> None:
    assert HotDatabases.parse("").group_of("x") == "default"
    per = HotDatabases.parse("per-site", "east:a,b; west:c")
    assert [per.group_of(s) for s in ("a", "b", "c", "d")] == ["east", "east", "west", "d"]
    for mode, groups in (("sharded", ""), ("per-site", "east"), ("per-site", "e:a;w:a"), ("single", "e:a")):
        with pytest.raises(ValueError):
            HotDatabases.parse(mode, groups)


def test_settings_validate_the_variables() -> None:
    s = Settings.from_env({"BV_HOT_DATABASES": "per-site", "BV_HOT_SITE_GROUPS": "g:a,b"})
    assert (s.hot_databases, s.hot_site_groups) == ("per-site", "g:a,b")
    with pytest.raises(ConfigError, match="BV_HOT_DATABASES"):
        Settings.from_env({"BV_HOT_DATABASES": "many"})
    # Per-site D1 needs no database id (databases are looked up by name); single still does.
    env = {"CLOUDFLARE_ACCOUNT_ID": "a", "CLOUDFLARE_API_TOKEN": "t"}
    assert Settings.from_env({**env, "BV_HOT_DATABASES": "per-site"}).use_d1
    with pytest.raises(ConfigError, match="D1_DATABASE_ID"):
        Settings.from_env(env)


def _exercise(store: HotStore) -> None:
    assert isinstance(store, HotStore) and isinstance(store, RoutedHotStore)
    store.upsert_samples("a", batch("p", 3))
    store.upsert_samples("b", batch("p", 5))
    store.upsert_samples("c", batch("q", 7))
    day = dt.date(2026, 1, 1)
    store.manifest_put(ManifestEntry("c", day, "k", 7, 1, "x", 1, T0, "hot"))
    assert store.count_samples("a", 0, 2**53) == 3
    assert store.count_samples("b", 0, 2**53) == 5
    assert store.read_samples("c", None, 0, 2**53).num_rows == 7
    assert store.manifest_get("c", day) is not None and store.manifest_get("a", day) is None
    assert store.list_sites() == ["a", "b", "c"]


def test_sqlite_per_site_files(tmp_path: Path) -> None:
    res = SqliteHotStoreResource(
        sqlite_path=str(tmp_path / "hot.sqlite3"), databases="per-site", site_groups="ab:a,b"
    )
    _exercise(res.get_store())
    assert sorted(p.name for p in tmp_path.glob("hot-*.sqlite3")) == ["hot-ab.sqlite3", "hot-c.sqlite3"]
    # A new resource (another process) finds every site's database again.
    again = SqliteHotStoreResource(
        sqlite_path=str(tmp_path / "hot.sqlite3"), databases="per-site"
    ).get_store()
    assert again.list_sites() == ["a", "b", "c"]


def test_d1_per_site_databases_are_created_once_and_found_by_name() -> None:
    with run_fake_d1() as fake:
        kw = dict(
            account_id=fake.account_id, api_token=fake.token, base_url=fake.base_url, databases="per-site"
        )
        res = D1HotStoreResource(site_groups="ab:a,b", **kw)  # type: ignore[arg-type]
        _exercise(res.get_store())
        names = {fake.database(d).name for d in fake.database_ids}
        assert {"bv-hot-ab", "bv-hot-c"} <= names
        before = len(fake.database_ids)
        other = D1HotStoreResource(site_groups="ab:a,b", **kw).get_store()  # type: ignore[arg-type]
        assert other.count_samples("b", 0, 2**53) == 5
        assert other.list_sites() == ["a", "b", "c"]
        assert len(fake.database_ids) == before  # looked up, not created again
