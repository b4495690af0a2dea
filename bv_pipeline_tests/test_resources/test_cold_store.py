from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from bv_pipeline.resources.cold_store import (
    CHECKSUM_ENV,
    ColdStoreResource,
    LocalObjectStore,
    S3ObjectStore,
    make_s3_client,
)
from bv_pipeline.storage.cold_keys import ColdKeyError, samples_key
from bv_pipeline.storage.interfaces import ObjectStore
from bv_pipeline.storage.parquet_layout import encode_day, read_points, verify_object
from bv_pipeline.storage.samples import SAMPLE_SCHEMA, day_bounds_ms
from bv_pipeline_tests.fixtures.s3 import S3Bucket  # the fixtures come via the root conftest's pytest_plugins

DAY = dt.date(2025, 3, 4)
KEY = samples_key("demo", DAY)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return LocalObjectStore(tmp_path / "cold")
    bucket: S3Bucket = request.getfixturevalue("s3_bucket")
    # Region "auto" as for R2; built through dagster-aws like production.
    client = make_s3_client(bucket.endpoint_url, "auto", bucket.access_key_id, bucket.secret_access_key)
    return S3ObjectStore(client, bucket.bucket, page_size=2)  # tiny pages so listing really paginates


def test_implements_the_protocol(store: ObjectStore) -> None:
    assert isinstance(store, ObjectStore)


def test_put_get_overwrite_and_size(store: ObjectStore) -> None:
    store.put(KEY, b"first version")
    assert store.get(KEY) == b"first version"
    store.put(KEY, b"v2")
    assert store.get(KEY) == b"v2"
    assert store.size(KEY) == 2
    store.put("empty/object.bin", b"")
    assert store.get("empty/object.bin") == b"" and store.size("empty/object.bin") == 0


def test_absent_keys(store: ObjectStore) -> None:
    with pytest.raises(KeyError):
        store.get(KEY)
    with pytest.raises(KeyError):
        store.get_range(KEY, 0, 10)
    assert store.size(KEY) is None
    store.delete(KEY)  # deleting an absent object is not an error (S3 semantics)
    assert store.list("timeseries/") == []


def test_ranged_reads(store: ObjectStore) -> None:
    data = bytes(range(256)) * 4
    store.put(KEY, data)
    assert store.get_range(KEY, 0, 10) == data[:10]
    assert store.get_range(KEY, 500, 777) == data[500:777]
    assert store.get_range(KEY, 1000, 5000) == data[1000:]  # clamped at the end, like HTTP Range
    assert store.get_range(KEY, 7, 7) == b""
    with pytest.raises(ValueError):
        store.get_range(KEY, 2000, 2001)
    with pytest.raises(ValueError):
        store.get_range(KEY, 10, 5)


def test_list_filters_by_prefix_sorted_and_paginated(store: ObjectStore) -> None:
    keys = [samples_key("demo", DAY + dt.timedelta(days=d)) for d in (3, 0, 1, 40)]
    keys += [samples_key("other", DAY), "rollups/1h/site=demo/date=2025-03-04/part-0.parquet"]
    for k in keys:
        store.put(k, k.encode())
    demo = sorted(k for k in keys if k.startswith("timeseries/site=demo/"))
    assert store.list("timeseries/site=demo/") == demo
    assert store.list("timeseries/site=demo/date=2025-03") == demo[:3]
    assert store.list("") == sorted(keys)
    assert store.list("timeseries/site=nobody/") == []
    store.delete(demo[0])
    assert store.list("timeseries/site=demo/") == demo[1:]
    assert store.size(demo[0]) is None


@pytest.mark.parametrize("bad", ["../escape", "/abs/path", "a/../../b", "a//b", ".hidden"])
def test_unsafe_keys_are_rejected_everywhere(store: ObjectStore, bad: str) -> None:
    for call in (
        lambda: store.put(bad, b"x"),
        lambda: store.get(bad),
        lambda: store.get_range(bad, 0, 1),
        lambda: store.size(bad),
        lambda: store.delete(bad),
    ):
        with pytest.raises(ColdKeyError):
            call()
    with pytest.raises(ColdKeyError):
        store.list("../")


def test_selective_read_through_the_store(store: ObjectStore) -> None:
    start, _ = day_bounds_ms(DAY)
    n = 150_000  # 3 row groups
    samples = pa.table(
        {
            "point": [f"p{i % 50:02d}" for i in range(n)],
            "ts_ms": [start + (i // 50) * 1000 for i in range(n)],
            "value": np.random.default_rng(5).normal(
                size=n
            ),  # incompressible: a realistic multi-row-group file
            "value_text": pa.nulls(n, pa.string()),
        },
        schema=SAMPLE_SCHEMA,
    )
    data, info = encode_day("demo", DAY, samples, source="hot")
    store.put(KEY, data)
    verify_object(store.get(KEY), info)
    size = store.size(KEY)
    assert size == len(data)
    fetched: list[int] = []

    def fetch(a: int, b: int) -> bytes:
        fetched.append(b - a)
        return store.get_range(KEY, a, b)

    got = read_points(fetch, size, ["p07"], start, start + 86_400_000, footer_cache={}, cache_key=KEY)
    assert got["value"].to_pylist() == samples["value"].to_pylist()[7::50]
    assert sum(fetched) < len(data) / 2


def test_local_writes_are_atomic_and_leave_no_temp_files(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    store.put(KEY, b"abc")
    assert (tmp_path / KEY).read_bytes() == b"abc"
    day_dir = (tmp_path / KEY).parent
    assert [p.name for p in day_dir.iterdir()] == ["part-0.parquet"]
    (day_dir / ".tmp-crashed").write_bytes(b"half")  # a crashed writer's leftover is never listed
    assert store.list("timeseries/") == [KEY]
    (day_dir / ".tmp-crashed").unlink()
    store.delete(KEY)
    assert not (tmp_path / "timeseries").exists()  # empty site/day directories are removed


def test_local_store_refuses_symlinked_escape(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(ColdKeyError):
        LocalObjectStore(root).put("link/x.bin", b"x")
    assert list(outside.iterdir()) == []


# ------------------------------------------------------------------------------ ColdStoreResource


def r2_resource(bucket: S3Bucket, **overrides: Any) -> ColdStoreResource:
    fields = {
        "r2_endpoint_url": bucket.endpoint_url,
        "r2_bucket": bucket.bucket,
        "r2_access_key_id": bucket.access_key_id,
        "r2_secret_access_key": bucket.secret_access_key,
        **overrides,
    }
    return ColdStoreResource(**fields)


def test_resource_uses_local_dir_when_r2_is_not_configured(tmp_path: Path) -> None:
    store = ColdStoreResource(local_dir=str(tmp_path)).get_store()
    assert isinstance(store, LocalObjectStore) and store.root == tmp_path.resolve()


def test_resource_uses_r2_when_fully_configured(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store = r2_resource(s3_bucket, local_dir=str(tmp_path)).get_store()
    assert isinstance(store, S3ObjectStore) and store.bucket == s3_bucket.bucket
    assert store.client.meta.region_name == "auto"
    store.put(KEY, b"to r2")
    assert s3_bucket.client.get_object(Bucket=s3_bucket.bucket, Key=KEY)["Body"].read() == b"to r2"
    assert list(tmp_path.iterdir()) == []


def test_resource_rejects_half_or_no_configuration(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="half configured"):
        r2_resource(s3_bucket, r2_secret_access_key=None, local_dir=str(tmp_path)).get_store()
    with pytest.raises(ValueError, match="local_dir"):
        ColdStoreResource().get_store()


def put_headers(store: S3ObjectStore) -> dict[str, str]:
    seen: dict[str, str] = {}

    def capture(request: Any, **_: Any) -> None:
        seen.update(
            {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        )

    store.client.meta.events.register("before-send.s3.PutObject", capture)
    store.put(KEY, b"checksum probe")
    return seen


def test_r2_client_only_checksums_when_required(
    s3_bucket: S3Bucket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in CHECKSUM_ENV:
        monkeypatch.delenv(name, raising=False)
    store = r2_resource(s3_bucket).get_store()
    assert isinstance(store, S3ObjectStore)
    assert store.client.meta.config.request_checksum_calculation == "when_required"
    assert store.client.meta.config.response_checksum_validation == "when_required"
    headers = put_headers(store)
    assert "x-amz-trailer" not in headers
    assert "aws-chunked" not in headers.get("content-encoding", "")
    assert not any(h.startswith("x-amz-checksum-") for h in headers)


def test_explicit_checksum_env_wins_and_the_header_probe_sees_it(
    s3_bucket: S3Bucket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Contrast case: boto3's default sends a CRC32, which the probe above would have caught."""
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_supported")
    store = r2_resource(s3_bucket).get_store()
    assert isinstance(store, S3ObjectStore)
    assert store.client.meta.config.request_checksum_calculation == "when_supported"
    headers = put_headers(store)
    assert any(h.startswith("x-amz-checksum-") or h == "x-amz-trailer" for h in headers)


@pytest.mark.parametrize("presigned", [True, False], ids=["presigned_http", "boto3"])
def test_s3_ranged_reads_agree_with_and_without_presigned_urls(s3_bucket: S3Bucket, presigned: bool) -> None:
    client = make_s3_client(
        s3_bucket.endpoint_url, "auto", s3_bucket.access_key_id, s3_bucket.secret_access_key
    )
    store = S3ObjectStore(client, s3_bucket.bucket, presigned_range_reads=presigned)
    data = bytes(range(256)) * 40
    store.put(KEY, data)
    for a, b in [(0, 10), (500, 777), (1000, 20_000), (7, 7)]:
        assert store.get_range(KEY, a, b) == data[a:b]
    assert store.get_range(KEY, 3, 9) == data[3:9]  # the cached URL serves another range
    with pytest.raises(ValueError):
        store.get_range(KEY, 20_000, 20_001)
    with pytest.raises(KeyError):
        store.get_range(samples_key("demo", DAY + dt.timedelta(days=1)), 0, 10)
