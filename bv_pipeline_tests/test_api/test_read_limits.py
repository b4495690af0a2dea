"""Memory and concurrency bounds of the read engine and server: answer cache, cold caches, query slots, workers."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio.to_thread
import pytest
from fastapi.testclient import TestClient

from bv_pipeline.api import server
from bv_pipeline.api.reader import TimeseriesReader
from bv_pipeline.config import ConfigError, Settings
from bv_pipeline.resources.manifest_store import ManifestStore
from bv_pipeline.storage.samples import day_bounds_ms
from bv_pipeline_tests.test_api import _data as D

COLD_LO = day_bounds_ms(D.COLD_DELETED[0])[0]
COLD_HI = day_bounds_ms(D.COLD_DELETED[-1])[1]


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> D.Dataset:
    return D.build(tmp_path_factory.mktemp("limits"))


@pytest.fixture
def reader(ds: D.Dataset) -> Iterator[TimeseriesReader]:
    r = TimeseriesReader(ds.hot, ds.cold, max_workers=4, answer_cache_bytes=8 << 20)
    yield r
    r.close()


def test_archived_window_is_answered_from_the_answer_cache(reader: TimeseriesReader) -> None:
    first = reader.query(D.SITE, [D.TEMP, D.DAMPER], COLD_LO, COLD_HI, max_points=500)
    again = reader.query(D.SITE, [D.TEMP, D.DAMPER], COLD_LO, COLD_HI, max_points=500)
    assert first.immutable and not first.answer_cached and first.cold_objects_read > 0
    assert again.answer_cached and again.cold_objects_read == 0
    assert again.frame.equals(first.frame)
    assert (again.source, again.cold_samples, again.downsampled) == (first.source, first.cold_samples, True)
    # Any other parameter is another answer.
    other = reader.query(D.SITE, [D.TEMP, D.DAMPER], COLD_LO, COLD_HI, max_points=400)
    assert not other.answer_cached
    agg = reader.query(D.SITE, [D.TEMP, D.DAMPER], COLD_LO, COLD_HI, interval="1h")
    assert not agg.answer_cached
    assert len(reader.answers.lru) == 3


def test_a_rearchived_day_misses_the_answer_cache(reader: TimeseriesReader, ds: D.Dataset) -> None:
    reader.query(D.SITE, [D.TEMP], COLD_LO, COLD_HI)
    assert reader.query(D.SITE, [D.TEMP], COLD_LO, COLD_HI).answer_cached
    manifest = ManifestStore(ds.cold)
    entry = manifest.get(D.SITE, D.COLD_DELETED[1])
    assert entry is not None
    try:
        # A new manifest checksum for one day (as a re-archive writes) names other content: read again. (The
        # local multi-file scan reads the files as they are, so the read itself succeeds here.)
        manifest.put(dataclasses.replace(entry, checksum=entry.checksum + "-rearchived"))
        res = reader.query(D.SITE, [D.TEMP], COLD_LO, COLD_HI)
        assert not res.answer_cached and res.cold_objects_read > 0
        assert len(reader.answers.lru) == 2
    finally:
        manifest.put(entry)
    assert reader.query(D.SITE, [D.TEMP], COLD_LO, COLD_HI).answer_cached


def test_windows_touching_hot_days_cache_only_their_archived_part(reader: TimeseriesReader) -> None:
    lo, hi = day_bounds_ms(D.COLD_DELETED[-2])[0], day_bounds_ms(D.OVERLAP)[1]
    for interval in (None, "1h"):
        first = reader.query(D.SITE, [D.TEMP, D.METER], lo, hi, interval=interval)
        again = reader.query(D.SITE, [D.TEMP, D.METER], lo, hi, interval=interval)
        # The answer is read again (hot days change with every sync), its archived days are not.
        assert not first.immutable and not again.answer_cached
        assert first.cold_objects_read > 0 and again.cold_objects_read == 0
        assert again.frame.equals(first.frame) and again.coverage == first.coverage
        assert (again.source, again.hot_samples, again.cold_samples, again.rollup_days) == (
            first.source,
            first.hot_samples,
            first.cold_samples,
            first.rollup_days,
        )
    assert first.rollup_days == 2  # the 1h window took its two archived days from rollups
    assert len(reader.answers.lru) == 2  # one archived part per interval kind (raw days, rollups)
    assert 0 < reader.answers.lru.current_bytes <= reader.answers.lru.max_bytes
    # Another point set or range is another archived part.
    reader.query(D.SITE, [D.TEMP], lo, hi)
    assert len(reader.answers.lru) == 3


def test_a_rearchived_day_misses_the_archived_part_cache(reader: TimeseriesReader, ds: D.Dataset) -> None:
    lo, hi = day_bounds_ms(D.COLD_DELETED[-2])[0], day_bounds_ms(D.OVERLAP)[1]
    expected = reader.query(D.SITE, [D.TEMP], lo, hi, interval="1h")
    assert reader.query(D.SITE, [D.TEMP], lo, hi, interval="1h").cold_objects_read == 0
    manifest = ManifestStore(ds.cold)
    entry = manifest.get(D.SITE, D.COLD_DELETED[-1])
    assert entry is not None and entry.rollup is not None
    try:
        # A rollup object replaced for the same raw content (its own checksum changes): read again.
        rollup = dataclasses.replace(entry.rollup, checksum=entry.rollup.checksum + "-rebuilt")
        manifest.put(dataclasses.replace(entry, rollup=rollup))
        res = reader.query(D.SITE, [D.TEMP], lo, hi, interval="1h")
        assert res.cold_objects_read > 0 and res.frame.equals(expected.frame)
    finally:
        manifest.put(entry)
    assert reader.query(D.SITE, [D.TEMP], lo, hi, interval="1h").cold_objects_read == 0


def test_answer_cache_stays_within_its_byte_bound(ds: D.Dataset) -> None:
    bound = 60_000
    r = TimeseriesReader(ds.hot, ds.cold, max_workers=2, answer_cache_bytes=bound)
    try:
        for day in D.COLD_DELETED:
            lo, hi = day_bounds_ms(day)
            for point in (D.TEMP, D.DAMPER, D.METER):
                r.query(D.SITE, [point], lo, hi)
                assert r.answers.lru.current_bytes <= bound
        assert 0 < len(r.answers.lru) < 12  # some were evicted
    finally:
        r.close()


def test_cold_caches_together_stay_within_cache_bytes(ds: D.Dataset) -> None:
    bound = 400_000
    r = TimeseriesReader(ds.hot, ds.cold, max_workers=4, cache_bytes=bound, scan_local_files=False)
    try:
        for point in D.POINTS:
            for day in D.COLD_DELETED:
                lo, hi = day_bounds_ms(day)
                r.query(D.SITE, [point], lo, hi)
                assert r.cache.current_bytes + r.footer_cache.current_bytes <= bound
        assert r.cache.current_bytes > 0 and r.footer_cache.current_bytes > 0
        assert r.cache.max_bytes + r.footer_cache.max_bytes == bound
    finally:
        r.close()


class CountingHot:
    """A hot store that counts reads in flight (each held briefly) and delegates everything else."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most = 0

    def read_samples(self, *args: Any) -> Any:
        return self._counted(self.inner.read_samples, *args)

    def read_frame(self, *args: Any) -> Any:  # what the reader uses on block stores
        return self._counted(self.inner.read_frame, *args)

    def _counted(self, read: Any, *args: Any) -> Any:
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        try:
            time.sleep(0.02)
            return read(*args)
        finally:
            with self.lock:
                self.in_flight -= 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize(("slots", "most"), [(2, 2), (0, 8)])
def test_query_slots_bound_queries_in_flight(ds: D.Dataset, slots: int, most: int) -> None:
    hot = CountingHot(ds.hot)
    r = TimeseriesReader(hot, ds.cold, max_workers=2, max_concurrent_queries=slots)  # type: ignore[arg-type]
    lo, hi = day_bounds_ms(D.HOT_ONLY[0])
    barrier = threading.Barrier(8)

    def run() -> None:
        barrier.wait()
        for _ in range(3):
            r.query(D.SITE, [D.TEMP], lo, hi)

    try:
        threads = [threading.Thread(target=run) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if slots:
            assert hot.most == most
        else:
            assert hot.most > 2  # unbounded: the same load overlaps more (sleeping reads always overlap)
    finally:
        r.close()


def _env(ds: D.Dataset, **extra: str) -> dict[str, str]:
    return {
        "BV_DATA_DIR": str(ds.root),
        "BV_SITES": D.SITE,
        "BV_API_TOKENS": "limits-token-0123456789",
        **extra,
    }


def test_worker_app_shares_the_memory_settings_and_limits_request_threads(
    ds: D.Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _env(
        ds,
        BV_API_WORKERS="4",
        BV_API_COLD_CACHE_MIB="200",
        BV_API_ANSWER_CACHE_MIB="40",
        BV_API_QUERY_CONCURRENCY="3",
    )
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    app = server.create_app_from_env()
    reader: TimeseriesReader = app.state.reader
    assert reader.cache.max_bytes + reader.footer_cache.max_bytes == 50 << 20  # 200 MiB / 4 workers
    assert reader.answers.lru.max_bytes == 10 << 20
    with TestClient(app) as client:
        tokens = client.portal.call(lambda: anyio.to_thread.current_default_thread_limiter().total_tokens)  # type: ignore[union-attr]
        assert tokens == 3
        lo, hi = day_bounds_ms(D.HOT_ONLY[0])
        resp = client.get(
            "/timeseries/query",
            params={"site_name": D.SITE, "point_names": D.TEMP, "start_time": lo, "end_time": hi - 1},
            headers={"Authorization": "Bearer limits-token-0123456789"},
        )
        assert resp.status_code == 200
    assert reader._pool._shutdown  # closed with the app


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BV_API_WORKERS", "0"),
        ("BV_API_WORKERS", "two"),
        ("BV_API_QUERY_CONCURRENCY", "0"),
        ("BV_API_ANSWER_CACHE_MIB", "-1"),
    ],
)
def test_invalid_server_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_server_settings_defaults() -> None:
    s = Settings.from_env({})
    assert 1 <= s.api_workers <= 4 and s.api_query_concurrency == 2 and s.api_answer_cache_mib == 64
    r2 = {
        "R2_ENDPOINT_URL": "https://example.r2.cloudflarestorage.com",
        "R2_BUCKET": "bv-cold",
        "R2_ACCESS_KEY_ID": "key",
        "R2_SECRET_ACCESS_KEY": "secret",
    }
    assert Settings.from_env(r2).api_query_concurrency == 4  # queries that wait on the network: more at once
    # Cold bytes: a local directory is in the shared page cache already; R2 GETs are worth caching.
    assert (s.api_cold_cache_mib, Settings.from_env(r2).api_cold_cache_mib) == (64, 256)
    assert Settings.from_env({**r2, "BV_API_QUERY_CONCURRENCY": "3"}).api_query_concurrency == 3
