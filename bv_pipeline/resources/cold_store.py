"""Object stores for the cold tier: a local directory and S3/R2, both behind ``ObjectStore``.

``ColdStoreResource`` picks the backend from its config: R2 (through dagster-aws's ``S3Resource``) when the
endpoint, bucket and both keys are set, else the local directory.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import urllib3
from botocore.exceptions import ClientError
from dagster import ConfigurableResource

from bv_pipeline.storage.cold_keys import ColdKeyError, validate_object_key, validate_prefix
from bv_pipeline.storage.interfaces import ObjectStore, PreconditionFailed, Versioned

_TMP_PREFIX = ".tmp-"  # in-flight local writes; keys cannot start with '.', so these never list as objects
_LOCK_PREFIX = ".lock-"  # per-key lock files of conditional local writes (hidden like temp files)
CHECKSUM_ENV = {
    "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
    "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
}


def _check_range(start: int, end: int) -> None:
    if start < 0 or end < start:
        raise ValueError(f"invalid byte range [{start}, {end})")


def content_etag(data: bytes) -> str:
    """The ETag S3 and R2 give a single-part upload (quoted MD5 hex), which the local store uses too."""
    return f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'


class LocalObjectStore:
    """Objects as files under ``root`` with the same keys as R2 (``root/<key>``).

    Writes are atomic (temp file in the target directory, fsync, ``os.replace``), so a reader never sees half an
    object, and keys are validated so nothing resolves outside ``root``.

    Conditional writes (``put_if``) compare and replace under an exclusive ``flock`` on a hidden per-key lock file
    beside the object, so two writers (threads or processes) can never both pass the comparison; the replace is
    still the atomic rename, so readers take no lock. A local directory is one machine's store: ``flock`` does not
    order writers on different hosts sharing it over NFS (use R2 for that). ETags are the content MD5, as S3's.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / validate_object_key(key)).resolve()
        if not path.is_relative_to(self.root):  # belt and braces: validation already forbids '..'
            raise ColdKeyError(f"object key {key!r} escapes the store root")
        return path

    def local_path(self, key: str) -> Path:
        """The file holding ``key`` (validated like every other access), for readers that scan files in place."""
        return self._path(key)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise KeyError(key) from None

    def get_versioned(self, key: str, if_none_match: str | None = None) -> Versioned | None:
        data = self.get(key)
        etag = content_etag(data)
        return None if etag == if_none_match else Versioned(data, etag)

    def list_etags(self, prefix: str) -> dict[str, str]:
        return {key: content_etag(self.get(key)) for key in self.list(prefix)}

    def put_if(self, key: str, data: bytes, *, if_match: str | None) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(path.parent / f"{_LOCK_PREFIX}{path.name}", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            try:
                current: str | None = content_etag(path.read_bytes())
            except FileNotFoundError:
                current = None
            if current != if_match:
                want = "absent" if if_match is None else if_match
                raise PreconditionFailed(f"{key}: expected {want}, found {current or 'absent'}")
            self.put(key, data)
        finally:
            os.close(lock_fd)  # closing releases the flock
        return content_etag(data)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes [start, end), clamped to the object's end like an HTTP Range read."""
        _check_range(start, end)
        try:
            with self._path(key).open("rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if start == end:
                    return b""
                if start >= size:
                    raise ValueError(f"range start {start} is beyond the end of {key!r} ({size} bytes)")
                fh.seek(start)
                return fh.read(end - start)
        except (FileNotFoundError, IsADirectoryError):
            raise KeyError(key) from None

    def size(self, key: str) -> int | None:
        path = self._path(key)
        return path.stat().st_size if path.is_file() else None

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        # Drop now-empty day/site directories so listings and disk stay tidy; stop at the root.
        parent = path.parent
        while parent != self.root and parent.is_relative_to(self.root):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def list(self, prefix: str) -> list[str]:
        validate_prefix(prefix)
        # Walk only the deepest directory the prefix names fully, then filter by the partial tail.
        base = self.root / prefix.rpartition("/")[0] if "/" in prefix else self.root
        if not base.is_dir():
            return []
        keys = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if name.startswith("."):
                    continue
                key = name if rel_dir == "." else f"{rel_dir}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)


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
        _check_range(start, end)
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
