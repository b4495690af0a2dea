"""Checks of request parameters the schema cannot express; each failure is a JSON 400 or 404."""

from __future__ import annotations

from bv_pipeline.api.reader import TimeseriesReader
from bv_pipeline.api.web.errors import ApiError
from bv_pipeline.config_values import SITE_SLUG

MAX_TS_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: beyond this datetime arithmetic overflows
MAX_POINT_NAME = 512
MAX_OUTPUT_POINTS = 100_000  # upper bound of ``max_points``
# At least one name (a character that is neither a separator nor blank) and no control characters anywhere.
POINT_NAMES_PATTERN = r"^[^\x00-\x1f\x7f]*[^,\s\x00-\x1f\x7f\x85\xa0][^\x00-\x1f\x7f]*$"
SITE_PATTERN = SITE_SLUG.pattern  # in the OpenAPI document, so generated clients and tests send slugs


def check_point_names(raw: str, limit: int) -> list[str]:
    names = list(dict.fromkeys(p.strip() for p in raw.split(",") if p.strip()))
    if not names:
        raise ApiError(400, "invalid_parameter", "point_names must name at least one point (comma-separated)")
    if len(names) > limit:
        raise ApiError(
            400,
            "too_many_points",
            f"{len(names)} points requested; at most {limit} per query",
            extra={"limit": limit},
        )
    for n in names:
        if len(n) > MAX_POINT_NAME:
            raise ApiError(
                400, "invalid_parameter", f"a point name is longer than {MAX_POINT_NAME} characters"
            )
        if any(ord(c) < 32 or ord(c) == 127 for c in n):
            raise ApiError(400, "invalid_parameter", "point names must not contain control characters")
    return names


def check_site(site: str) -> str:
    if not SITE_SLUG.fullmatch(site):
        raise ApiError(
            400,
            "invalid_parameter",
            "site_name must be a slug: lowercase letters, digits, '-' and '_', at most 63 characters",
        )
    return site


def known_site(reader: TimeseriesReader, site: str) -> str:
    check_site(site)
    if site not in reader.list_sites():
        raise ApiError(404, "unknown_site", f"no site named {site!r}")
    return site
