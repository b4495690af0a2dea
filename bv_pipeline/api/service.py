"""The chart read API over HTTP (FastAPI): ``create_app(reader, config) -> FastAPI``.

Endpoints: ``GET /timeseries/query`` (the old query worker's contract, plus aggregates, downsampling, columnar
JSON, MessagePack and Arrow IPC), ``GET /sites``, ``GET /sites/{site}/points``, ``GET /health``.

Hardening, after the review of the old worker (seeds/003): bearer tokens compared with ``hmac.compare_digest``;
a CORS allow-list (no ``*`` unless configured); every parameter validated with a JSON 400; a sample budget checked
*before* reading (413 with suggestions); a per-token token-bucket rate limit (429); site names must be slugs and
point names only ever travel as bound parameters; ETags are blake2b over the data (no weak 32-bit hashes).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Annotated, Any, Literal

import orjson
from fastapi import FastAPI, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from bv_pipeline.api import payloads
from bv_pipeline.api.aggregate import ROLLUP_INTERVALS
from bv_pipeline.api.cold_read import ColdReadError
from bv_pipeline.api.reader import QueryResult, TimeseriesReader
from bv_pipeline.config import SITE_SLUG, ConfigError, Settings
from bv_pipeline.storage.samples import MS_PER_DAY

MAX_TS_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: beyond this datetime arithmetic overflows
MAX_POINT_NAME = 512

# Module level so FastAPI can resolve the annotation (this module uses postponed annotations).
_bearer = HTTPBearer(auto_error=False, description="An API token from BV_API_TOKENS")
Auth = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]


@dataclass(frozen=True)
class ApiConfig:
    """Limits and security settings of the read API (defaults suit the embedded stack)."""

    api_tokens: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    max_points_per_query: int = 100
    max_range_days: int = 366
    max_raw_samples: int = 2_000_000  # estimated samples a raw (or sub-hour) query may read
    default_cadence_s: int = 60  # assumed when a point's collect interval is unknown
    max_output_points: int = 100_000  # upper bound of ``max_points``
    rate_limit_per_s: float = 20.0
    rate_limit_burst: int = 60
    max_list_points: int = 10_000
    cold_fetch_threads: int = (
        16  # cold day objects read at once (ranged GETs in flight); see TimeseriesReader
    )
    cold_cache_mib: int = 256  # in-memory cache of cold row-group byte ranges and rollup objects

    @classmethod
    def from_settings(cls, settings: Settings, env: Mapping[str, str] | None = None) -> ApiConfig:
        """Tokens and origins from Settings; limits from optional BV_API_* variables (validated)."""
        import os

        env = os.environ if env is None else env

        def num(
            name: str,
            default: float,
            cast: Callable[[str], float],
            minimum: float,
            maximum: float = math.inf,
        ) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = cast(raw)
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is not a number") from None
            if not math.isfinite(value) or value < minimum:
                raise ConfigError(f"{name}={raw!r} must be >= {minimum}")
            if value > maximum:
                raise ConfigError(f"{name}={raw!r} must be <= {maximum}")
            return value

        return cls(
            api_tokens=settings.api_tokens,
            allowed_origins=settings.allowed_origins,
            max_points_per_query=int(num("BV_API_MAX_POINTS", cls.max_points_per_query, int, 1)),
            max_raw_samples=int(num("BV_API_SAMPLE_BUDGET", cls.max_raw_samples, int, 1)),
            rate_limit_per_s=num("BV_API_RATE_PER_S", cls.rate_limit_per_s, float, 0.001),
            rate_limit_burst=int(num("BV_API_RATE_BURST", cls.rate_limit_burst, int, 1)),
            cold_fetch_threads=int(num("BV_API_COLD_FETCH_THREADS", cls.cold_fetch_threads, int, 1, 256)),
            cold_cache_mib=int(num("BV_API_COLD_CACHE_MIB", cls.cold_cache_mib, int, 0, 1 << 20)),
        )


class ApiError(Exception):
    """An error answered as ``{"error": ..., "detail": ...}`` (plus any extra fields) with ``status``."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: Any,
        *,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.extra = extra or {}
        self.headers = headers or {}


class TokenBucket:
    """Per-key token buckets: ``rate`` tokens/s refill up to ``burst``. Thread-safe."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._state: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0.0 when a token was taken, else the seconds until one is available."""
        now = self.clock()
        with self._lock:
            tokens, last = self._state.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._state[key] = (tokens - 1.0, now)
                return 0.0
            self._state[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


def _json(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
        headers=dict(headers or {}),
    )


def _error_body(exc: ApiError) -> dict[str, Any]:
    return {"error": exc.error, "detail": exc.detail, **exc.extra}


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x not in ("query", "path", "header")]
        out.append({"parameter": ".".join(loc) or "request", "message": str(err.get("msg", "invalid"))})
    return out


def _today_start_ms(now_s: float) -> int:
    return int(now_s // 86_400) * MS_PER_DAY


def _check_point_names(raw: str, limit: int) -> list[str]:
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


def _check_site(site: str) -> str:
    if not SITE_SLUG.fullmatch(site):
        raise ApiError(
            400,
            "invalid_parameter",
            "site_name must be a slug: lowercase letters, digits, '-' and '_', at most 63 characters",
        )
    return site


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return etag in tags


def create_app(
    reader: TimeseriesReader, config: ApiConfig | Settings, *, now: Callable[[], float] = time.time
) -> FastAPI:
    """Build the FastAPI app. ``config`` may be ``Settings`` (limits then take their defaults)."""
    cfg = config if isinstance(config, ApiConfig) else ApiConfig.from_settings(config, env={})
    limiter = TokenBucket(cfg.rate_limit_per_s, cfg.rate_limit_burst)
    token_bytes = [t.encode() for t in cfg.api_tokens]

    app = FastAPI(
        title="bv-pipeline chart read API",
        version="1.0.0",
        description=(
            "Time series of building-IoT points from the hot tier (recent days) and the cold tier (archived "
            "Parquet), merged without gaps or duplicates. Data endpoints need `Authorization: Bearer <token>`."
        ),
    )
    app.state.reader = reader
    app.state.config = cfg

    origins = list(cfg.allowed_origins)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"] if "*" in origins else origins,
        allow_credentials=False,  # bearer tokens, never cookies
        allow_methods=["GET", "OPTIONS"],
        allow_headers=["Authorization", "Accept", "If-None-Match", "Content-Type"],
        expose_headers=["ETag", "X-Query-Time-Ms", "Retry-After"],
        max_age=600,
    )

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        return _json(exc.status, _error_body(exc), exc.headers)

    @app.exception_handler(ColdReadError)
    async def _cold_read_error(_: Request, exc: ColdReadError) -> Response:
        # A day that cannot be read fails the whole query: a chart must not silently miss days.
        return _json(503, {"error": "cold_read_failed", "detail": str(exc)[:500]}, {"Retry-After": "5"})

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> Response:
        return _json(400, {"error": "invalid_parameter", "detail": _validation_detail(exc)})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        names = {404: "not_found", 405: "method_not_allowed"}
        return _json(
            exc.status_code,
            {"error": names.get(exc.status_code, "http_error"), "detail": exc.detail},
            exc.headers,
        )

    def authorize(creds: HTTPAuthorizationCredentials | None) -> str:
        if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
            raise ApiError(
                401,
                "unauthorized",
                "send Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        given = creds.credentials.encode()
        # Compare against every configured token so timing does not reveal which (if any) prefix matched.
        ok = False
        for t in token_bytes:
            ok |= hmac.compare_digest(given, t)
        if not ok:
            raise ApiError(403, "forbidden", "the bearer token is not valid for this API")
        key = hashlib.sha256(given).hexdigest()
        wait = limiter.take(key)
        if wait > 0:
            raise ApiError(
                429,
                "rate_limited",
                f"too many requests for this token; retry in {wait:.1f} s",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return key

    def known_site(site: str) -> str:
        _check_site(site)
        if site not in reader.list_sites():
            raise ApiError(404, "unknown_site", f"no site named {site!r}")
        return site

    @app.get("/health", summary="Liveness of both stores (no auth)", tags=["ops"])
    def health() -> Response:
        status = reader.ping()
        ok = all(v is None for v in status.values())
        body = {
            "status": "healthy" if ok else "unhealthy",
            "stores": {k: {"ok": v is None, **({"error": v} if v else {})} for k, v in status.items()},
        }
        return _json(200 if ok else 503, body, {"Cache-Control": "no-store"})

    @app.get("/sites", summary="Sites with data in the hot tier", tags=["discovery"])
    def sites(creds: Auth) -> Response:
        authorize(creds)
        return _json(200, {"sites": reader.list_sites()}, {"Cache-Control": "private, max-age=60"})

    @app.get("/sites/{site}/points", summary="Point discovery with metadata", tags=["discovery"])
    def points(
        creds: Auth,
        site: Annotated[str, Path(description="Site slug", max_length=63)],
        search: Annotated[
            str | None,
            Query(
                description="Case-insensitive substring of the name, kind, unit or a marker tag",
                max_length=200,
            ),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=10_000, description="Maximum points returned")] = 1000,
    ) -> Response:
        authorize(creds)
        known_site(site)
        cat = sorted(reader.catalogue(site).values(), key=lambda p: p.name)
        if search:
            needle = search.casefold()
            cat = [
                p
                for p in cat
                if needle in p.name.casefold()
                or needle in (p.kind or "").casefold()
                or needle in (p.unit or "").casefold()
                or any(needle in t.casefold() for t in p.marker_tags)
            ]
        total = len(cat)
        out = [asdict(p) for p in cat[: min(limit, cfg.max_list_points)]]
        return _json(
            200,
            {"site_name": site, "total": total, "returned": len(out), "points": out},
            {"Cache-Control": "private, max-age=60"},
        )

    @app.get(
        "/timeseries/query",
        summary="Samples of points over a time window, raw or aggregated",
        tags=["timeseries"],
        responses={
            200: {
                "description": "Samples (JSON rows by default; columnar, MessagePack or Arrow IPC on request)",
                "content": {m: {} for m in payloads.SUPPORTED_MEDIA},
            },
            304: {"description": "Not modified (If-None-Match matched the ETag)"},
            400: {"description": "Invalid parameter"},
            401: {"description": "Missing bearer token"},
            403: {"description": "Invalid bearer token"},
            404: {"description": "Unknown site"},
            413: {"description": "The raw request would exceed the sample budget"},
            429: {"description": "Rate limited"},
        },
    )
    def query(
        request: Request,
        creds: Auth,
        site_name: Annotated[str, Query(description="Site slug, e.g. ses_falls_city", max_length=200)],
        point_names: Annotated[
            str,
            Query(
                description="Comma-separated point names (case-sensitive; unique case-insensitive matches are resolved)",
                max_length=100_000,
            ),
        ],
        start_time: Annotated[
            int, Query(ge=0, le=MAX_TS_MS, description="Window start, UTC epoch milliseconds")
        ],
        end_time: Annotated[
            int,
            Query(
                ge=0,
                le=MAX_TS_MS,
                description="Window end, UTC epoch milliseconds, inclusive (as the old worker)",
            ),
        ],
        interval: Annotated[
            Literal["1min", "5min", "15min", "1h", "1d"] | None,
            Query(description="Bucket size for avg/min/max/count aggregates; omit for raw samples"),
        ] = None,
        max_points: Annotated[
            int | None, Query(ge=2, description="Downsample each series to at most this many points")
        ] = None,
        downsample: Annotated[Literal["minmax", "lttb"], Query(description="Downsampling method")] = "minmax",
        format: Annotated[
            Literal["rows", "columnar"],
            Query(
                description="rows: the old list of {point_name, timestamp, value}; columnar: series of arrays"
            ),
        ] = "rows",
    ) -> Response:
        t0 = time.perf_counter()
        authorize(creds)
        _check_site(site_name)
        names = _check_point_names(point_names, cfg.max_points_per_query)
        if start_time > end_time:
            raise ApiError(400, "invalid_time_range", "start_time is after end_time")
        end_excl = end_time + 1  # the old contract's end_time is inclusive
        if end_excl - start_time > cfg.max_range_days * MS_PER_DAY:
            raise ApiError(
                400,
                "range_too_long",
                f"the window spans more than {cfg.max_range_days} days; split the request",
            )
        if max_points is not None and max_points > cfg.max_output_points:
            raise ApiError(400, "invalid_parameter", f"max_points must be at most {cfg.max_output_points}")
        known_site(site_name)
        resolved, renamed, unknown = reader.resolve_points(site_name, names)
        _check_budget(reader, cfg, site_name, resolved, start_time, end_excl, interval)

        result = reader.query(
            site_name,
            resolved,
            start_time,
            end_excl,
            interval=interval,
            max_points=max_points,
            downsample_method=downsample,
        )
        media = payloads.negotiate(request.headers.get("accept"))
        meta = payloads.build_meta(result, unknown, renamed)
        request_key = "|".join([media, format, site_name, ",".join(names), str(start_time), str(end_time)])
        etag = payloads.data_etag(result, request_key, meta)
        headers = {
            "ETag": etag,
            "Cache-Control": _cache_control(result, now()),
            "Vary": "Accept, Authorization, Origin",
        }
        if _etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        elapsed = (time.perf_counter() - t0) * 1000
        if media == payloads.MEDIA_ARROW:
            body = payloads.encode_arrow(result, meta)
        elif media == payloads.MEDIA_MSGPACK:
            body = payloads.encode_msgpack(result, meta, format, elapsed)
        else:
            body = payloads.encode_json(result, meta, format, elapsed)
        headers["X-Query-Time-Ms"] = f"{elapsed:.2f}"
        return Response(body, media_type=media, headers=headers)

    return app


def _check_budget(
    reader: TimeseriesReader,
    cfg: ApiConfig,
    site: str,
    points: list[str],
    start_ms: int,
    end_ms: int,
    interval: str | None,
) -> None:
    """413 before reading when a raw or sub-hour request would read more than ``max_raw_samples``.

    Estimate = sum over points of window / cadence (the point's collect interval when known, else the default).
    ``1h``/``1d`` are exempt: cold days come from rollups (24 rows per point-day).
    """
    if interval in ROLLUP_INTERVALS or not points:
        return
    cat = reader.catalogue(site)
    span_ms = end_ms - start_ms
    estimate = 0
    for p in points:
        meta = cat.get(p)
        cadence_s = (
            meta.collect_interval_s if meta and meta.collect_interval_s else None
        ) or cfg.default_cadence_s
        estimate += math.ceil(span_ms / (cadence_s * 1000))
    if estimate <= cfg.max_raw_samples:
        return
    per_point = max(1, estimate // len(points))
    fit_points = max(0, cfg.max_raw_samples // per_point)
    fit_days = cfg.max_raw_samples * (span_ms / MS_PER_DAY) / estimate
    suggestions = ["use interval=1h (or 1d): cold days are then answered from hourly rollups"]
    if fit_points >= 1:
        suggestions.append(f"request at most {fit_points} points per query for this window")
    suggestions.append(f"shorten the window to about {fit_days:.1f} days for these points")
    raise ApiError(
        413,
        "too_many_samples",
        f"about {estimate:,} samples would be read; the budget is {cfg.max_raw_samples:,}",
        extra={
            "estimated_samples": estimate,
            "budget": cfg.max_raw_samples,
            "suggestions": suggestions,
        },
    )


def _cache_control(result: QueryResult, now_s: float) -> str:
    """Windows touching today change every sync. Archived windows are not immutable either: the settling pass
    merges late samples and a correction replaces a day, so browsers revalidate (by ETag) after 5 minutes."""
    today = _today_start_ms(now_s)
    if result.end_ms > today:
        return "private, max-age=60"
    return "private, max-age=300"
