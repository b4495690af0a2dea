"""Export results in the cold tier's object store: upload from a file, download link, local file.

Results can be hundreds of MB, so they are never held in memory: an S3/R2 upload goes through boto3's managed
transfer (multipart, bounded buffers), a local directory gets the file moved into place atomically. Downloads
are presigned GET URLs on S3/R2 (the client fetches straight from the bucket) or a path the API streams.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, TypeGuard

from bv_pipeline.resources.local_store import LocalObjectStore
from bv_pipeline.storage.cold_keys import validate_object_key
from bv_pipeline.storage.interfaces import ObjectStore

if TYPE_CHECKING:
    from bv_pipeline.resources.cold_store import S3ObjectStore

MULTIPART_CHUNK_BYTES = 16 * 1024 * 1024  # every part but the last the same size (S3 and R2 semantics)
MULTIPART_THRESHOLD_BYTES = MULTIPART_CHUNK_BYTES  # smaller files are one PUT


def _is_s3(store: ObjectStore) -> TypeGuard[S3ObjectStore]:
    """Whether ``store`` is an ``S3ObjectStore``, without importing its module (and with it Dagster) into a
    process that never made one, such as an API worker on a local cold tier: no instance exists before it."""
    module = sys.modules.get("bv_pipeline.resources.cold_store")
    return module is not None and isinstance(store, module.S3ObjectStore)


def put_file(store: ObjectStore, key: str, path: Path) -> None:
    """Store the file at ``path`` as ``key`` without reading it into memory. ``path`` may be consumed."""
    validate_object_key(key)
    if _is_s3(store):
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD_BYTES,
            multipart_chunksize=MULTIPART_CHUNK_BYTES,
            max_concurrency=4,
        )
        store.client.upload_file(str(path), store.bucket, key, Config=config)
    elif isinstance(store, LocalObjectStore):
        target = store.local_path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        os.close(fd)
        try:
            shutil.move(str(path), tmp)  # a rename on one file system, else a streamed copy
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    else:  # any other ObjectStore: no streaming upload, so the file is read whole
        store.put(key, path.read_bytes())


def presigned_url(store: ObjectStore, key: str, *, expires_in_s: int, filename: str) -> str | None:
    """A time-limited GET URL for ``key`` that downloads as ``filename``; None when the store has no URLs."""
    if not _is_s3(store):
        return None
    return str(
        store.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": store.bucket,
                "Key": validate_object_key(key),
                "ResponseContentDisposition": f'attachment; filename="{filename}"',
            },
            ExpiresIn=max(1, expires_in_s),
        )
    )


def local_file(store: ObjectStore, key: str) -> Path | None:
    """The file holding ``key`` in a local-directory store (None for other stores or a missing object)."""
    if not isinstance(store, LocalObjectStore):
        return None
    path = store.local_path(key)
    return path if path.is_file() else None
