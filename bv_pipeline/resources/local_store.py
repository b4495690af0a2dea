"""The local-directory object store: the cold tier's embedded default, with the same keys and semantics as R2."""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from pathlib import Path

from bv_pipeline.storage.cold_keys import ColdKeyError, validate_object_key, validate_prefix
from bv_pipeline.storage.interfaces import PreconditionFailed, Versioned

_TMP_PREFIX = ".tmp-"  # in-flight local writes; keys cannot start with '.', so these never list as objects
_LOCK_PREFIX = ".lock-"  # per-key lock files of conditional local writes (hidden like temp files)


def check_range(start: int, end: int) -> None:
    """Reject a byte range [start, end) that is negative or reversed (both stores share this)."""
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
        check_range(start, end)
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
