"""Conditional writes on both object stores and the archive manifest built on them.

Concurrency is tested for real: threads and separate processes race on one key of the moto S3 server or of a
local directory; exactly one conditional write per version wins, and read-modify-write updates lose nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import multiprocessing as mp
import threading
from pathlib import Path
from typing import Any

import pytest

from bv_pipeline.resources.cold_store import LocalObjectStore, S3ObjectStore, content_etag, make_s3_client
from bv_pipeline.resources.manifest_store import ManifestStore
from bv_pipeline.storage import cold_keys
from bv_pipeline.storage import manifest as fmt
from bv_pipeline.storage.interfaces import ManifestEntry, ObjectStore, PreconditionFailed, RollupState
from bv_pipeline.storage.parquet_layout import ColdVerificationError
from bv_pipeline_tests.fixtures.s3 import S3Bucket

SITE = "demo"
MONTH = dt.date(2025, 3, 1)
KEY = "manifest/site=demo/month=2025-03/manifest.json"


def _s3(bucket: S3Bucket) -> S3ObjectStore:
    client = make_s3_client(bucket.endpoint_url, "us-east-1", bucket.access_key_id, bucket.secret_access_key)
    return S3ObjectStore(client, bucket.bucket)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(tmp_path / "cold")
    return _s3(request.getfixturevalue("s3_bucket"))


def entry(day: dt.date, n: int = 1, **kw: Any) -> ManifestEntry:
    return ManifestEntry(
        site=SITE,
        day=day,
        key=cold_keys.samples_key(SITE, day),
        rows=100 * n,
        bytes=1000 * n,
        checksum=f"blake2b:{n:040x}",
        schema_version=1,
        verified_ms=1_741_000_000_000 + n,
        source="hot",
        **kw,
    )


# ---- conditional writes ------------------------------------------------------------------------------------


def test_create_only_and_if_match(store: ObjectStore) -> None:
    etag = store.put_if(KEY, b"v1", if_match=None)
    assert etag == content_etag(b"v1")  # the local store uses S3's single-part ETag (quoted MD5)
    with pytest.raises(PreconditionFailed):
        store.put_if(KEY, b"other", if_match=None)  # exists: create-only loses
    with pytest.raises(PreconditionFailed):
        store.put_if(KEY, b"other", if_match='"0123456789abcdef0123456789abcdef"')
    etag2 = store.put_if(KEY, b"v2", if_match=etag)
    assert store.get(KEY) == b"v2"
    with pytest.raises(PreconditionFailed):
        store.put_if(KEY, b"v3", if_match=etag)  # the old version is gone
    with pytest.raises(PreconditionFailed):
        store.put_if("manifest/site=demo/month=2025-04/manifest.json", b"x", if_match=etag2)  # absent key


def test_versioned_get_revalidates_by_etag(store: ObjectStore) -> None:
    with pytest.raises(KeyError):
        store.get_versioned(KEY)
    etag = store.put_if(KEY, b"v1", if_match=None)
    got = store.get_versioned(KEY)
    assert got is not None and got.data == b"v1" and got.etag == etag
    assert store.get_versioned(KEY, if_none_match=etag) is None  # 304: unchanged
    store.put(KEY, b"v2")
    fresh = store.get_versioned(KEY, if_none_match=etag)
    assert fresh is not None and fresh.data == b"v2"


def _race_once(store: ObjectStore, writers: int) -> list[int]:
    current = store.get_versioned(KEY) if store.size(KEY) is not None else None
    base = store.put_if(KEY, b"base", if_match=current.etag if current else None)
    barrier = threading.Barrier(writers)
    wins: list[int] = []

    def write(i: int) -> None:
        barrier.wait()
        try:
            store.put_if(KEY, f"writer {i}".encode(), if_match=base)
            wins.append(i)
        except PreconditionFailed:
            pass

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return wins


def test_racing_threads_exactly_one_wins(store: ObjectStore) -> None:
    for _ in range(10):
        wins = _race_once(store, 8)
        assert len(wins) == 1
        assert store.get(KEY) == f"writer {wins[0]}".encode()


def _bump_days(args: tuple[str, str, list[int]]) -> int:
    """Process body: one manifest update per day number, all into the same month document."""
    kind, where, days = args
    if kind == "local":
        cold: ObjectStore = LocalObjectStore(where)
    else:
        endpoint, bucket = where.split("|")
        client = make_s3_client(endpoint, "us-east-1", "moto-test-key", "moto-test-secret")
        cold = S3ObjectStore(client, bucket)
    manifest = ManifestStore(cold)
    for d in days:
        manifest.put(entry(dt.date(2025, 3, d), d))
    return manifest.conflicts


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_concurrent_processes_lose_no_update(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Four processes add 28 days to one month document at once: every day survives, each exactly once."""
    if kind == "local":
        where = str(tmp_path / "cold")
        cold: ObjectStore = LocalObjectStore(where)
    else:
        bucket: S3Bucket = request.getfixturevalue("s3_bucket")
        where = f"{bucket.endpoint_url}|{bucket.bucket}"
        cold = _s3(bucket)
    jobs = [(kind, where, list(range(1 + w, 29, 4))) for w in range(4)]
    with mp.get_context("spawn").Pool(4) as pool:
        pool.map(_bump_days, jobs)
    doc, _ = ManifestStore(cold).read_month(SITE, MONTH)
    assert sorted(d.day for d in doc.days) == list(range(1, 29))
    assert all(doc.days[dt.date(2025, 3, d)] == entry(dt.date(2025, 3, d), d) for d in range(1, 29))


def test_concurrent_thread_updates_reapply_on_conflict(store: ObjectStore) -> None:
    """Many threads flip fields of one day with read-modify-write functions: no flip is lost."""
    manifest = ManifestStore(store)
    day = dt.date(2025, 3, 7)
    manifest.put(dataclasses.replace(entry(day), rows=0))
    barrier = threading.Barrier(6)

    def bump() -> None:
        barrier.wait()
        for _ in range(5):
            own = ManifestStore(store)
            own.update(SITE, day, lambda e: dataclasses.replace(e, rows=e.rows + 1) if e else None)

    threads = [threading.Thread(target=bump) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = ManifestStore(store).get(SITE, day)
    assert got is not None and got.rows == 30


# ---- the manifest document ---------------------------------------------------------------------------------


def test_round_trip_and_listing(store: ObjectStore) -> None:
    manifest = ManifestStore(store)
    rollup = RollupState(
        key=cold_keys.rollup_key(SITE, dt.date(2025, 3, 2)),
        rows=24,
        bytes=999,
        checksum="blake2b:" + "a" * 40,
        source_checksum=entry(dt.date(2025, 3, 2), 2).checksum,
        verified_ms=5,
    )
    e1, e2 = entry(dt.date(2025, 2, 28), 1), entry(dt.date(2025, 3, 2), 2, rollup=rollup)
    manifest.put(e1)
    manifest.put(e2)
    assert e2.rollup_current and not e1.rollup_current
    assert ManifestStore(store).list(SITE, dt.date(2025, 2, 1), dt.date(2025, 3, 31)) == [e1, e2]
    assert ManifestStore(store).list(SITE, dt.date(2025, 3, 1), dt.date(2025, 3, 1)) == []
    assert manifest.months(SITE) == [dt.date(2025, 2, 1), MONTH]
    assert manifest.sites() == [SITE]
    assert ManifestStore(store).list_all(SITE) == [e1, e2]
    manifest.update(SITE, e1.day, lambda _e: None)
    assert ManifestStore(store).get(SITE, e1.day) is None


def test_a_reader_sees_another_writers_commit_at_once(store: ObjectStore) -> None:
    reader, writer = ManifestStore(store), ManifestStore(store)
    day = dt.date(2025, 3, 3)
    writer.put(entry(day, 1))
    assert reader.get(SITE, day) == entry(day, 1)
    writer.put(entry(day, 2))
    assert reader.get(SITE, day) == entry(day, 2)  # revalidated by ETag, not served from its cache


def test_invalid_documents_are_rejected() -> None:
    good = fmt.ManifestMonth(SITE, MONTH, {dt.date(2025, 3, 2): entry(dt.date(2025, 3, 2))}).to_json()
    assert fmt.ManifestMonth.from_json(good, site=SITE, month=MONTH).days
    with pytest.raises(ColdVerificationError, match="expected"):
        fmt.ManifestMonth.from_json(good, site="other", month=MONTH)
    for bad in (
        b"not json",
        b"{}",
        good.replace(b'"rows": 100', b'"rows": -1'),
        good.replace(b'"format_version": 1', b'"format_version": 2'),
        good.replace(b"2025-03-02/part-0", b"2025-03-09/part-0"),
        good.replace(b'"source": "hot"', b'"source": "hot", "extra": 1'),
    ):
        with pytest.raises(ColdVerificationError):
            fmt.ManifestMonth.from_json(bad, site=SITE, month=MONTH)
    assert fmt.parse_manifest_key(KEY) == (SITE, MONTH)
    assert fmt.parse_manifest_key("manifest/site=demo/month=2025-13/manifest.json") is None
    assert fmt.manifest_key(SITE, dt.date(2025, 3, 17)) == KEY


def test_long_spans_revalidate_through_one_listing(store: ObjectStore) -> None:
    """Spans of 3+ months revalidate by one listing (ETags) and fetch only changed months."""
    writer, reader = ManifestStore(store), ManifestStore(store)
    days = [dt.date(2025, m, 10) for m in (1, 2, 3, 4)]
    for i, d in enumerate(days, 1):
        writer.put(entry(d, i))
    span = (dt.date(2025, 1, 1), dt.date(2025, 5, 31))  # May has no document
    assert reader.list(SITE, *span) == [entry(d, i) for i, d in enumerate(days, 1)]
    writer.put(entry(days[2], 9))
    gets: list[str] = []
    real = store.get_versioned

    def counting(key: str, if_none_match: str | None = None) -> Any:
        gets.append(key)
        return real(key, if_none_match)

    store.get_versioned = counting  # type: ignore[method-assign]
    assert reader.list(SITE, *span)[2] == entry(days[2], 9)
    assert gets == [fmt.manifest_key(SITE, days[2])]  # only the changed month was fetched


def test_racing_index_publishes_exactly_one_wins(store: ObjectStore) -> None:
    """Compactions planned from the same published index race to replace it: one publishes, the rest conflict."""
    from bv_pipeline.logic.generations import CompactionConflict, publish_index, stored_version

    key = "rollups/1h-year/site=demo/year=2025/index.json"
    store.put_if(key, b"generation 0", if_match=None)
    start = stored_version(store, key)
    assert start is not None
    barrier = threading.Barrier(6)
    outcomes: dict[int, str] = {}

    def publish(i: int) -> None:
        data = f"generation {i}".encode()
        barrier.wait()
        try:
            publish_index(store, key, data, expected_etag=start.etag, read_back=bytes, expected=data)
            outcomes[i] = "published"
        except CompactionConflict:
            outcomes[i] = "conflict"

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, o in outcomes.items() if o == "published"]
    assert len(winners) == 1 and len(outcomes) == 6
    assert store.get(key) == f"generation {winners[0]}".encode()
