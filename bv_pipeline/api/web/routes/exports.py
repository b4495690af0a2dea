"""``POST /exports``, ``GET /exports``, ``GET /exports/{id}``, ``GET /exports/{id}/download``: asynchronous exports.

A request too big for ``/timeseries/query`` (its 413 links here with the equivalent body) becomes a Dagster run
(``export_job``) that reads the window in chunks and writes CSV or Parquet to object storage; the client polls the
status and downloads the result (a presigned URL on R2/S3, streamed by the API from a local directory).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from starlette.responses import FileResponse, RedirectResponse, Response

from bv_pipeline.api.aggregate import INTERVALS_MS
from bv_pipeline.api.web.deps import Config, Reader
from bv_pipeline.api.web.errors import ApiError, json_response
from bv_pipeline.api.web.export_service import ExportService
from bv_pipeline.api.web.schemas import (
    AUTH_ERRORS,
    PARAMETER_ERROR,
    RETRY_AFTER,
    ExportAnswer,
    ExportList,
    ExportRequest,
    error,
    header,
)
from bv_pipeline.api.web.security import Authorized
from bv_pipeline.api.web.validation import check_point_names, known_site
from bv_pipeline.storage.exports import (
    MEDIA_TYPES,
    ExportSpec,
    ExportStatus,
    estimate_samples,
    owner_of,
    point_cadences,
)
from bv_pipeline.storage.samples import MS_PER_DAY

router = APIRouter(tags=["exports"])
EXPORT_ID_PATTERN = r"^\d{8}T\d{6}Z-[0-9a-f]{16}$"


def _service(request: Request) -> ExportService:
    return request.app.state.exports


Exports = Annotated[ExportService, Depends(_service)]
ExportId = Annotated[str, Path(description="Export id from POST /exports", pattern=EXPORT_ID_PATTERN)]


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return (
        dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def describe(status: ExportStatus, service: ExportService) -> dict[str, Any]:
    """The JSON answer for one export (also the body of POST's 202)."""
    spec = status.spec
    run_id = service.run_id(status)
    base = f"/exports/{status.export_id}"
    done = status.state == "succeeded"
    return {
        "export_id": status.export_id,
        "state": status.state,
        "request": {
            "site_name": spec.site,
            "point_names": list(spec.points),
            "start_time": spec.start_ms,
            "end_time": spec.end_ms - 1,
            "interval": spec.interval,
            "format": spec.format,
        },
        "progress": {
            "rows": status.rows,
            "estimated_rows": status.estimated_samples,
            "chunks_done": status.chunks_done,
            "chunks_total": status.chunks_total,
        },
        "rows": status.rows if done else None,
        "bytes": status.bytes if done else None,
        "error": status.error,
        "created_at": _iso(status.created_ms),
        "updated_at": _iso(status.updated_ms),
        "expires_at": _iso(status.expires_ms),
        "run_id": run_id,
        "run_url": service.launcher.run_url(run_id) if run_id else None,
        "links": {"self": base, **({"download": f"{base}/download"} if done else {})},
    }


@router.post(
    "/exports",
    status_code=202,
    summary="Start an asynchronous export of points over a window (CSV or Parquet)",
    operation_id="create_export",
    responses={
        202: {
            "model": ExportAnswer,
            "description": "Accepted: the export is queued as a Dagster run; poll the Location",
            "headers": {"Location": header("The export's status URL")},
        },
        **PARAMETER_ERROR,
        404: error("Unknown site"),
        413: error("The export would exceed BV_EXPORT_MAX_SAMPLES rows"),
        **AUTH_ERRORS,
        429: error(
            "Rate limited, or BV_EXPORT_MAX_ACTIVE_PER_TOKEN exports of this token are queued or running",
            RETRY_AFTER,
        ),
        503: error("Dagster could not be reached to launch the run", RETRY_AFTER),
    },
)
def create_export(
    body: ExportRequest, token_key: Authorized, reader: Reader, cfg: Config, service: Exports
) -> Response:
    site = known_site(reader, body.site_name)
    names = check_point_names(",".join(body.point_names), cfg.max_points_per_query)
    if body.start_time > body.end_time:
        raise ApiError(400, "invalid_time_range", "start_time is after end_time")
    end_excl = body.end_time + 1
    if end_excl - body.start_time > cfg.max_range_days * MS_PER_DAY:
        raise ApiError(
            400, "range_too_long", f"the window spans more than {cfg.max_range_days} days; split the export"
        )
    found, _, unknown = reader.resolve_points(site, names)
    resolved = list(dict.fromkeys(found))  # two spellings of one point export it once
    if unknown:
        raise ApiError(
            400,
            "unknown_points",
            "some points are not known for this site",
            extra={"unknown_points": unknown},
        )
    cadences = point_cadences(reader.catalogue(site), resolved, cfg.default_cadence_s)
    interval_ms = INTERVALS_MS[body.interval] if body.interval else None
    estimate = estimate_samples(cadences, body.start_time, end_excl, interval_ms)
    if estimate > service.limits.max_samples:
        raise ApiError(
            413,
            "export_too_large",
            f"about {estimate:,} rows; an export may write at most {service.limits.max_samples:,}",
            extra={"estimated_samples": estimate, "budget": service.limits.max_samples},
        )
    spec = ExportSpec(
        site=site,
        points=tuple(resolved),
        start_ms=body.start_time,
        end_ms=end_excl,
        interval=body.interval,
        format=body.format,
    )
    status = service.create(owner_of(token_key), spec, estimate)
    return json_response(202, describe(status, service), {"Location": f"/exports/{status.export_id}"})


@router.get(
    "/exports",
    summary="This token's exports (newest last)",
    operation_id="list_exports",
    responses={200: {"model": ExportList, "description": "Exports not yet deleted"}, **AUTH_ERRORS},
)
def list_exports(token_key: Authorized, service: Exports) -> Response:
    statuses = service.list(owner_of(token_key))
    return json_response(
        200, {"exports": [describe(s, service) for s in statuses]}, {"Cache-Control": "no-store"}
    )


@router.get(
    "/exports/{export_id}",
    summary="Status and progress of an export; a download link once it succeeded",
    operation_id="get_export",
    responses={
        200: {"model": ExportAnswer, "description": "queued, running (rows so far), succeeded or failed"},
        **PARAMETER_ERROR,
        404: error("No such export for this token"),
        **AUTH_ERRORS,
    },
)
def get_export(export_id: ExportId, token_key: Authorized, service: Exports) -> Response:
    status = service.get(owner_of(token_key), export_id)
    body = describe(status, service)
    if status.state == "succeeded" and status.expires_ms > service.now_ms():
        try:
            d = service.download(status)
        except ApiError as exc:  # the data object is gone (deleted by hand): the status still answers
            body["error"] = exc.detail
            return json_response(200, body, {"Cache-Control": "no-store"})
        body["download"] = {
            "url": d.url or body["links"]["download"],
            "url_expires_at": _iso(d.expires_ms),
            "filename": d.filename,
            "media_type": MEDIA_TYPES[status.spec.format],
        }
    return json_response(200, body, {"Cache-Control": "no-store"})


@router.get(
    "/exports/{export_id}/download",
    summary="The export's data: a redirect to a presigned URL (R2/S3) or the file itself (local directory)",
    operation_id="download_export",
    responses={
        200: {
            "description": "The file (local-directory cold tier)",
            "content": {"text/csv": {}, "application/gzip": {}, "application/vnd.apache.parquet": {}},
        },
        307: {
            "description": "Redirect to a time-limited presigned URL",
            "headers": {"Location": header("URL")},
        },
        **PARAMETER_ERROR,
        404: error("No such export for this token"),
        409: error("The export has not succeeded (yet)"),
        410: error("The export expired"),
        **AUTH_ERRORS,
    },
)
def download_export(export_id: ExportId, token_key: Authorized, service: Exports) -> Response:
    status = service.get(owner_of(token_key), export_id)
    d = service.download(status)
    if d.url is not None:
        return RedirectResponse(d.url, status_code=307, headers={"Cache-Control": "no-store"})
    assert d.path is not None
    return FileResponse(
        d.path,
        media_type=MEDIA_TYPES[status.spec.format],
        filename=d.filename,
        headers={"Cache-Control": "private, no-store"},
    )
