"""The read API's side of asynchronous exports: create (limits, status, launch), look up, reconcile, download.

The export's ``status.json`` in object storage is the source of truth, written by the API when it is created
and by the run as it progresses. The API consults Dagster only for exports still queued or running, to notice a
run that died without writing its final status (killed, out of memory, canceled while queued).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from bv_pipeline.api.export_launcher import TERMINAL_RUN_STATES, ExportLauncher, LaunchError
from bv_pipeline.api.web.errors import ApiError
from bv_pipeline.resources.export_files import local_file, presigned_url
from bv_pipeline.storage.exports import (
    ACTIVE_STATES,
    STATUS_NAME,
    ExportError,
    ExportSpec,
    ExportStatus,
    check_export_id,
    download_filename,
    new_export_id,
    owner_prefix,
    run_key,
    status_key,
)
from bv_pipeline.storage.interfaces import ObjectStore

PRESIGNED_URL_TTL_S = 3600
NEVER_LAUNCHED_AFTER_MS = 10 * 60_000  # a queued export with no run id this old was never launched


@dataclass(frozen=True)
class ExportLimits:
    ttl_hours: int = 168
    max_active_per_token: int = 2
    max_samples: int = 100_000_000


@dataclass(frozen=True)
class Download:
    url: str | None  # presigned URL (S3/R2)
    path: Path | None  # local file to stream
    filename: str
    expires_ms: int | None  # when ``url`` stops working


class ExportService:
    """Exports of one API process. Thread-safe: creation is serialised so a token's limit holds in-process."""

    def __init__(
        self,
        store: ObjectStore,
        launcher: ExportLauncher,
        limits: ExportLimits,
        clock_s: Callable[[], float],
    ) -> None:
        self.store = store
        self.launcher = launcher
        self.limits = limits
        self._clock_s = clock_s
        self._create_lock = threading.Lock()

    def now_ms(self) -> int:
        return int(self._clock_s() * 1000)

    # ---- create ---------------------------------------------------------------------------------------------

    def create(self, owner: str, spec: ExportSpec, estimated_samples: int) -> ExportStatus:
        with self._create_lock:
            active = [s for s in self.list(owner) if s.state in ACTIVE_STATES]
            if len(active) >= self.limits.max_active_per_token:
                raise ApiError(
                    429,
                    "too_many_active_exports",
                    f"{len(active)} exports of this token are queued or running; at most "
                    f"{self.limits.max_active_per_token} at a time. Retry when one has finished.",
                    extra={"active_exports": [s.export_id for s in active]},
                    headers={"Retry-After": "30"},
                )
            now = self.now_ms()
            status = ExportStatus(
                export_id=new_export_id(now),
                owner=owner,
                state="queued",
                spec=spec,
                created_ms=now,
                updated_ms=now,
                expires_ms=now + self.limits.ttl_hours * 3_600_000,
                estimated_samples=estimated_samples,
            )
            self.store.put(status.status_key, status.to_json())
        try:
            run_id = self.launcher.launch(status, max_samples=self.limits.max_samples)
        except LaunchError as exc:
            failed = status.advance(self.now_ms(), state="failed", error=str(exc))
            self.store.put(failed.status_key, failed.to_json())
            raise ApiError(
                503,
                "dagster_unavailable",
                f"the export could not be launched: {exc}",
                extra={"export_id": status.export_id},
                headers={"Retry-After": "30"},
            ) from exc
        self.store.put(run_key(owner, status.export_id), orjson.dumps({"run_id": run_id}))
        return status.advance(status.updated_ms, run_id=run_id)

    # ---- look up --------------------------------------------------------------------------------------------

    def get(self, owner: str, export_id: str) -> ExportStatus:
        """The export's status (reconciled with Dagster while active); 404 for unknown ids or other tokens'."""
        try:
            check_export_id(export_id)
            status = ExportStatus.from_json(self.store.get(status_key(owner, export_id)))
        except (KeyError, ExportError):
            raise ApiError(404, "unknown_export", f"no export {export_id!r} for this token") from None
        return self._reconcile(status)

    def list(self, owner: str) -> list[ExportStatus]:
        out = []
        for key in self.store.list(owner_prefix(owner)):
            if not key.endswith("/" + STATUS_NAME):
                continue
            try:
                out.append(self._reconcile(ExportStatus.from_json(self.store.get(key))))
            except (KeyError, ExportError):
                continue  # deleted by cleanup meanwhile, or not ours to read
        return sorted(out, key=lambda s: s.export_id)

    def run_id(self, status: ExportStatus) -> str | None:
        if status.run_id:
            return status.run_id
        try:
            return str(orjson.loads(self.store.get(run_key(status.owner, status.export_id)))["run_id"])
        except (KeyError, orjson.JSONDecodeError, TypeError):
            return None

    def _reconcile(self, status: ExportStatus) -> ExportStatus:
        if status.state not in ACTIVE_STATES:
            return status
        run_id = self.run_id(status)
        if run_id is None:
            if status.state == "queued" and self.now_ms() - status.created_ms > NEVER_LAUNCHED_AFTER_MS:
                # The API stopped between writing the status and launching: no run will ever pick it up.
                failed = status.advance(self.now_ms(), state="failed", error="the export was never launched")
                self.store.put(failed.status_key, failed.to_json())
                return failed
            return status
        state = self.launcher.run_state(run_id)
        if state not in TERMINAL_RUN_STATES:
            return status
        # The run ended; re-read in case it wrote its final status after our first read.
        try:
            latest = ExportStatus.from_json(self.store.get(status.status_key))
        except (KeyError, ExportError):
            return status
        if latest.state not in ACTIVE_STATES:
            return latest
        failed = latest.advance(
            self.now_ms(),
            state="failed",
            run_id=run_id,
            error=f"the Dagster run {run_id} ended {state} before the export finished",
        )
        self.store.put(failed.status_key, failed.to_json())
        return failed

    # ---- download -------------------------------------------------------------------------------------------

    def download(self, status: ExportStatus) -> Download:
        if status.state != "succeeded":
            raise ApiError(
                409, "export_not_ready", f"the export is {status.state}", extra={"state": status.state}
            )
        now = self.now_ms()
        if status.expires_ms <= now:
            raise ApiError(410, "export_expired", "the export expired and is being deleted")
        filename = download_filename(status)
        ttl_s = min(PRESIGNED_URL_TTL_S, max(1, (status.expires_ms - now) // 1000))
        url = presigned_url(self.store, status.data_key, expires_in_s=ttl_s, filename=filename)
        if url is not None:
            return Download(url=url, path=None, filename=filename, expires_ms=now + ttl_s * 1000)
        path = local_file(self.store, status.data_key)
        if path is None:
            raise ApiError(410, "export_missing", "the export's data object is gone (deleted or expired)")
        return Download(url=None, path=path, filename=filename, expires_ms=None)
