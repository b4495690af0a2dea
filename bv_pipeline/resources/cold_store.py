"""Object stores for the cold tier: a local directory and S3/R2, both behind ``ObjectStore``.

``ColdStoreResource`` picks the backend from its config: R2 (through dagster-aws's ``S3Resource``) when the
endpoint, bucket and both keys are set, else the local directory.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import urllib3
from botocore.exceptions import ClientError
from dagster import ConfigurableResource

from bv_pipeline.resources.local_store import LocalObjectStore, check_range, content_etag
from bv_pipeline.storage.cold_keys import validate_object_key, validate_prefix
from bv_pipeline.storage.interfaces import ObjectStore, PreconditionFailed, Versioned

__all__ = ["ColdStoreResource", "LocalObjectStore", "S3ObjectStore", "content_etag", "make_s3_client"]

CHECKSUM_ENV = {
    "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
    "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
}


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


_PRESIGN_TTL_S = 3600  # lifetime of a presigned GET URL; reused for half of it
_PRESIGN_CACHE_MAX = 50_000  # URLs kept (one per object); about 15 MB at most
_HTTP_RETRY = urllib3.util.Retry(
    total=3,
    backoff_factor=0.2,
    status_forcelist=(500, 502, 503, 504),
    allowed_methods=frozenset({"GET"}),
    raise_on_status=False,
)
_HTTP_TIMEOUT = urllib3.util.Timeout(connect=10.0, read=60.0)  # botocore's defaults


class S3ObjectStore:
    """Objects in an S3-compatible bucket (Cloudflare R2 in production, moto in tests).

    With ``presigned_range_reads`` (the default) ``get_range`` sends a plain HTTP GET with a ``Range`` header to a
    presigned URL, cached per key for half its hour of validity, over a urllib3 connection pool of
    ``http_pool_size``. botocore spends ~3 ms of GIL-holding CPU per ``get_object`` call (measured), which for a
    365-day query's 365 row-group GETs is more than decoding them; a presigned GET costs ~1 ms. The ``Range``
    header is not part of a presigned GET's signature, so one URL serves every range of an object. Other
    operations go through the boto3 client. TLS is verified against certifi's CA bundle, as botocore does.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        page_size: int = 1000,
        presigned_range_reads: bool = True,
        http_pool_size: int = 32,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.page_size = page_size  # ListObjectsV2 MaxKeys; 1000 is the S3/R2 maximum
        self.presigned_range_reads = presigned_range_reads
        self.http_pool_size = http_pool_size
        self._http: urllib3.PoolManager | None = None
        self._urls: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=validate_object_key(key), Body=data)

    def get_versioned(self, key: str, if_none_match: str | None = None) -> Versioned | None:
        extra = {"IfNoneMatch": if_none_match} if if_none_match else {}
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=validate_object_key(key), **extra)
        except ClientError as exc:
            code = _error_code(exc)
            if code in ("NoSuchKey", "404", "NotFound"):
                raise KeyError(key) from None
            if code in ("304", "NotModified"):
                return None
            raise
        return Versioned(resp["Body"].read(), str(resp["ETag"]))

    def put_if(self, key: str, data: bytes, *, if_match: str | None) -> str:
        cond = {"IfNoneMatch": "*"} if if_match is None else {"IfMatch": if_match}
        try:
            resp = self.client.put_object(Bucket=self.bucket, Key=validate_object_key(key), Body=data, **cond)
        except ClientError as exc:
            # 412: the condition failed. 409 ConditionalRequestConflict: S3 saw a concurrent conditional write to
            # the key; either way another writer won and the caller must re-read.
            # If-Match on an absent key is a 404: also a lost race (someone deleted it).
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            lost = ("PreconditionFailed", "ConditionalRequestConflict", *(("NoSuchKey",) if if_match else ()))
            if _error_code(exc) in lost or status in (409, 412) or (if_match and status == 404):
                raise PreconditionFailed(f"{key}: conditional write lost ({_error_code(exc)})") from None
            raise
        return str(resp["ETag"])

    def get(self, key: str) -> bytes:
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=validate_object_key(key))
        except ClientError as exc:
            if _error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                raise KeyError(key) from None
            raise
        return resp["Body"].read()

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes [start, end) via ``Range: bytes=start-(end-1)``; clamped to the object's end by S3."""
        check_range(start, end)
        validate_object_key(key)
        if start == end:  # HTTP cannot express an empty range
            if self.size(key) is None:
                raise KeyError(key)
            return b""
        if self.presigned_range_reads:
            return self._get_range_presigned(key, start, end)
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}")
        except ClientError as exc:
            code = _error_code(exc)
            if code in ("NoSuchKey", "404", "NotFound"):
                raise KeyError(key) from None
            if code == "InvalidRange":
                raise ValueError(f"range start {start} is beyond the end of {key!r}") from None
            raise
        return resp["Body"].read()

    def _pool(self) -> urllib3.PoolManager:
        with self._lock:
            if self._http is None:
                import certifi

                # block=False: a burst beyond the pool opens extra connections rather than waiting for one.
                self._http = urllib3.PoolManager(
                    maxsize=self.http_pool_size, cert_reqs="CERT_REQUIRED", ca_certs=certifi.where()
                )
            return self._http

    def _presigned_url(self, key: str, *, fresh: bool = False) -> str:
        now = time.monotonic()
        with self._lock:
            hit = self._urls.get(key)
        if hit is not None and hit[0] > now and not fresh:
            return hit[1]
        url = str(
            self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=_PRESIGN_TTL_S
            )
        )
        with self._lock:
            if len(self._urls) >= _PRESIGN_CACHE_MAX:
                self._urls.clear()  # crude but bounded; re-signing costs ~0.3 ms
            self._urls[key] = (now + _PRESIGN_TTL_S / 2, url)
        return url

    def _get_range_presigned(self, key: str, start: int, end: int) -> bytes:
        headers = {"Range": f"bytes={start}-{end - 1}"}
        for attempt in range(2):
            url = self._presigned_url(key, fresh=attempt > 0)
            resp = self._pool().request(
                "GET", url, headers=headers, retries=_HTTP_RETRY, timeout=_HTTP_TIMEOUT, preload_content=True
            )
            if resp.status == 206:
                return bytes(resp.data)
            if resp.status == 200:  # the server ignored Range and sent the whole object
                return bytes(resp.data[start:end])
            if resp.status == 404:
                raise KeyError(key)
            if resp.status == 416:
                raise ValueError(f"range start {start} is beyond the end of {key!r}")
            if resp.status == 403 and attempt == 0:
                continue  # an expired URL or a clock step: sign afresh once
            break
        body = resp.data[:300].decode("utf-8", "replace")
        raise OSError(f"ranged GET of {key!r} bytes [{start}, {end}) failed: HTTP {resp.status}: {body}")

    def size(self, key: str) -> int | None:
        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=validate_object_key(key))
        except ClientError as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(resp["ContentLength"])

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=validate_object_key(key))

    def list(self, prefix: str) -> list[str]:
        return sorted(self.list_etags(prefix))

    def list_etags(self, prefix: str) -> dict[str, str]:
        validate_prefix(prefix)
        out: dict[str, str] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, PaginationConfig={"PageSize": self.page_size}
        ):
            out.update((obj["Key"], str(obj["ETag"])) for obj in page.get("Contents", []))
        return out


def ensure_checksum_when_required() -> None:
    """Make botocore compute/validate checksums only when an operation requires them.

    boto3 >= 1.36 sends a CRC32 on every PutObject, over HTTPS as an ``aws-chunked`` body with an
    ``x-amz-trailer``; R2 rejects that upload (seen as a misleading 401/501). dagster-aws's ``S3Resource`` has no
    config field for this, and botocore reads these variables when a client is created, so they are set here
    (only when unset: an operator's explicit choice wins) before every client is built.
    """
    for name, value in CHECKSUM_ENV.items():
        os.environ.setdefault(name, value)


def make_s3_client(
    endpoint_url: str, region_name: str, aws_access_key_id: str, aws_secret_access_key: str
) -> Any:
    """An S3 client for R2 (or any S3-compatible endpoint) built through dagster-aws's ``S3Resource``."""
    from dagster_aws.s3 import S3Resource

    ensure_checksum_when_required()
    return S3Resource(
        endpoint_url=endpoint_url,
        region_name=region_name,
        aws_access_key_id=aws_access_key_id,
        aws_secret_access_key=aws_secret_access_key,
    ).get_client()


class ColdStoreResource(ConfigurableResource):
    """The cold tier's object store: Cloudflare R2 when fully configured, else a local directory.

    Wire R2 with ``EnvVar("R2_ENDPOINT_URL")``, ``EnvVar("R2_BUCKET")``, ``EnvVar("R2_ACCESS_KEY_ID")`` and
    ``EnvVar("R2_SECRET_ACCESS_KEY")``; set ``local_dir`` for the embedded default.
    """

    local_dir: str | None = None
    r2_endpoint_url: str | None = None
    r2_bucket: str | None = None
    r2_access_key_id: str | None = None
    r2_secret_access_key: str | None = None
    region_name: str = "auto"

    @property
    def uses_r2(self) -> bool:
        fields = (self.r2_endpoint_url, self.r2_bucket, self.r2_access_key_id, self.r2_secret_access_key)
        present = [bool(f and f.strip()) for f in fields]
        if any(present) and not all(present):
            raise ValueError(
                "ColdStoreResource: R2 is half configured; set r2_endpoint_url, r2_bucket, r2_access_key_id and "
                "r2_secret_access_key together (or none of them to use local_dir)"
            )
        return all(present)

    def get_store(self) -> ObjectStore:
        if self.uses_r2:
            assert (
                self.r2_endpoint_url
                and self.r2_bucket
                and self.r2_access_key_id
                and self.r2_secret_access_key
            )
            client = make_s3_client(
                self.r2_endpoint_url, self.region_name, self.r2_access_key_id, self.r2_secret_access_key
            )
            return S3ObjectStore(client, self.r2_bucket)
        if self.local_dir:
            return LocalObjectStore(Path(self.local_dir))
        raise ValueError("ColdStoreResource needs local_dir or the four r2_* fields")
