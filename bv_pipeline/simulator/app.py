"""The simulated ACE FlightDeck API: routing, auth, pagination, faults, and the ground truth.

Routes are relative to a base path ending in ``/api`` (like ``https://flightdeck.aceiot.cloud/api``)::

    GET /sites/                                   page envelope {items, page, pages, per_page, total} of Site
    GET /sites/{site}                             Site
    GET /sites/{site}/configured_points           page envelope of Point (``/points`` is the same list here)
    GET /sites/{site}/timeseries/paginated        {point_samples, next_cursor, has_more}

How a client reads point metadata from a Point object:

- kind: ``kv_tags["kind"]``, one of temperature | position | binary | setpoint | meter | analog | enum;
- unit: ``kv_tags["unit"]`` (absent for unitless binary/enum points); ``bacnet_data["object_units"]`` carries
  the BACnet engineering-units name of the same unit;
- marker tags: ``marker_tags`` (Haystack-style markers such as ``["point", "sensor", "temp", "air", "zone"]``);
- ``kv_tags`` also has ``equip``, ``system`` and ``description`` (the readable point name, useful for
  BACnet-path names); every kv_tags value is a string.

Timeseries semantics: the window is [start_time, end_time). Raw rows are ordered by 5-minute bucket of sample
time, then point name, then time. Aggregated rows (``raw_data`` false, the default) exist for every bucket
whose start lies in the window; each is the mean (numeric) or last label (enum) of all samples of that whole
bucket that are visible at request time, stamped with the bucket start. A sample is visible once the
simulator clock has reached its time (plus its delay when the late-samples fault picked it).

Error statuses follow the real API: missing key 401, wrong key 500 "An unhandled exception occurred.",
unknown site 403 with a null-filled Site (for ``/sites/{site}`` and its timeseries), configured points of an
unknown site 404, bad parameters 400 in the Flask-RESTX shape, unknown routes 404, other methods 405.
"""

from __future__ import annotations

import math
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from .building import CLIENT, SimPoint, building_points
from .faults import FAULT_KINDS, FaultConfig, fault_draw, malform, truncate
from .generator import BUCKET_MS, Samples, SiteModel, aggregate, stable_hash64
from .wire import (
    ParamError,
    RowFormatter,
    decode_cursor,
    encode_cursor,
    format_wire_time,
    page_body,
    parse_bool,
    parse_choice,
    parse_query_time,
    row_bytes,
)

PER_PAGE_CHOICES = (2, 10, 20, 30, 40, 50, 100, 500, 1000, 5000, 10000, 100000)
PAGE_SIZE_CHOICES = (3, 10, 50, 100, 500, 1000, 5000, 10000, 50000, 100000, 300000, 500000)
DEFAULT_PER_PAGE = 10
DEFAULT_PAGE_SIZE = 10000
IN_PROCESS_BASE_URL = "http://ace-simulator.invalid/api"  # any host works for the in-process transport

CLIENT_ID = 1
_UNHANDLED = {"message": "An unhandled exception occurred."}
_BACNET_UNITS = {
    "°F": "degreesFahrenheit",
    "%": "percent",
    "%RH": "percentRelativeHumidity",
    "cfm": "cubicFeetPerMinute",
    "gpm": "usGallonsPerMinute",
    "ppm": "partsPerMillion",
    "inH2O": "inchesOfWater",
    "kWh": "kilowattHours",
    "kW": "kilowatts",
}
_NULL_SITE = dict.fromkeys(
    (
        "id",
        "name",
        "client",
        "client_id",
        "address",
        "nice_name",
        "ansible_user",
        "vtron_user",
        "vtron_ip",
        "geo_location",
        "mqtt_prefix",
        "latitude",
        "longitude",
        "archived",
    )
)
_CACHE_BUCKETS = 24  # ~2.3 MB of rows per bucket at 4,583 points; sequential paging needs only the last one


@dataclass(frozen=True)
class SimulatorConfig:
    sites: tuple[str, ...] = ("demo",)
    points: int = 300
    cadence_s: int = 60
    seed: int = 42
    api_key: str | None = None  # None: any non-empty bearer key is accepted
    missing_fraction: float = 0.01
    faults: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        if not self.sites or len(set(self.sites)) != len(self.sites) or not all(self.sites):
            raise ValueError("SimulatorConfig.sites must be non-empty, unique site names")
        if self.points < 1:
            raise ValueError("SimulatorConfig.points must be >= 1")
        # Phase (<= cadence/4) plus jitter must stay inside one cadence slot so each point's samples stay ordered.
        if not 10 <= self.cadence_s <= 86_400:
            raise ValueError("SimulatorConfig.cadence_s must be within [10, 86400]")
        if not 0.0 <= self.missing_fraction < 1.0:
            raise ValueError("SimulatorConfig.missing_fraction must be within [0, 1)")
        if self.api_key is not None and not self.api_key:
            raise ValueError("SimulatorConfig.api_key must be None or non-empty")


@dataclass
class _Bucket:
    samples: Samples | None  # all generated samples (raw buckets only)
    rows: pa.Array  # JSON rows, in wire order
    max_visible: int  # the bucket is complete (nothing more will appear) once the clock reaches this


class _Response(Exception):
    """Short-circuits request handling with a finished response."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


class AceSimulator:
    """An in-process ACE FlightDeck API. Thread-safe: the HTTP server calls ``handle`` from many threads."""

    def __init__(
        self,
        config: SimulatorConfig = SimulatorConfig(),
        clock: Callable[[], float] = time.time,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._requests = 0
        self._cache: OrderedDict[tuple[str, bool, int], _Bucket] = OrderedDict()
        self._inflight: dict[tuple[str, bool, int], threading.Event] = {}
        self._prefetcher: ThreadPoolExecutor | None = None
        self.fault_counts: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)
        faults = config.faults
        self._points: dict[str, list[SimPoint]] = {}
        self._models: dict[str, SiteModel] = {}
        self._formatters: dict[str, RowFormatter] = {}
        for site in config.sites:
            points = building_points(site, config.points, config.seed, cadence_s=config.cadence_s)
            model = SiteModel(
                site,
                points,
                seed=config.seed,
                cadence_s=config.cadence_s,
                missing_fraction=config.missing_fraction,
                late_fraction=faults.late_fraction,
                late_max_minutes=faults.late_max_minutes,
                late_seed=faults.seed,
            )
            self._points[site] = points
            self._models[site] = model
            self._formatters[site] = RowFormatter(model.names, model.labels)

    # ------------------------------------------------------------------ public helpers

    @property
    def requests_served(self) -> int:
        return self._requests

    def transport(self) -> httpx.BaseTransport:
        return httpx.MockTransport(self.handle)

    def points(self, site: str) -> list[SimPoint]:
        return list(self._points[site])

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def truth(self, site: str, start_ms: int, end_ms: int, *, as_of_ms: int | None = None) -> pa.Table:
        """The distinct raw samples the API serves for [start_ms, end_ms) at time ``as_of_ms`` (default: now),
        as SAMPLE_SCHEMA sorted by (point, ts_ms)."""
        model = self._models[site]
        as_of = self.now_ms() if as_of_ms is None else as_of_ms
        samples = model.window(start_ms, min(end_ms, as_of + 1))
        return model.to_table(samples.select(samples.visible_from <= as_of))

    def truth_aggregated(
        self, site: str, start_ms: int, end_ms: int, *, as_of_ms: int | None = None
    ) -> pa.Table:
        """What ``raw_data=false`` serves for [start_ms, end_ms) at ``as_of_ms``: one row per point and bucket
        (ts_ms = bucket start), SAMPLE_SCHEMA sorted by (point, ts_ms)."""
        model = self._models[site]
        as_of = self.now_ms() if as_of_ms is None else as_of_ms
        parts = []
        for b in range(_ceil_bucket(start_ms), end_ms, BUCKET_MS):
            if b > as_of:
                break
            s = model.bucket(b)
            parts.append(aggregate(s.select(s.visible_from <= as_of), b))
        merged = Samples.concat(parts)
        # Buckets are in time order, so a stable sort on the point position yields (point, time) order.
        return model.to_table(merged.select(np.argsort(merged.pos, kind="stable")))

    # ------------------------------------------------------------------ HTTP entry point

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self._requests += 1
            request_no = self._requests
        try:
            status, body, headers = self._dispatch(request, request_no)
        except _Response as r:
            status, body, headers = r.status, r.body, r.headers
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        if status == 200:
            content = self._corrupt(content, request_no)
        return httpx.Response(
            status, headers={"content-type": "application/json", **headers}, content=content
        )

    def _dispatch(self, request: httpx.Request, request_no: int) -> tuple[int, Any, dict[str, str]]:
        raw_path = request.url.raw_path.split(b"?", 1)[0].decode("ascii", "replace")
        if raw_path != "/api" and not raw_path.startswith("/api/"):
            raise _Response(404, {"message": f"No route for {raw_path}"})
        # Split before unquoting so a percent-encoded "/" inside a site name stays part of the name.
        parts = [unquote(s) for s in raw_path[len("/api/") :].split("/")]
        if parts and parts[-1] == "" and len(parts) > 1:
            parts.pop()
        route: Callable[[], tuple[int, Any]]
        params = request.url.params
        if parts == ["sites"]:
            route = lambda: self._list_sites(params)  # noqa: E731
        elif len(parts) == 2 and parts[0] == "sites":
            route = lambda: self._site(parts[1])  # noqa: E731
        elif len(parts) == 3 and parts[0] == "sites" and parts[2] in ("configured_points", "points"):
            route = lambda: self._list_points(parts[1], params)  # noqa: E731
        elif len(parts) == 4 and parts[0] == "sites" and parts[2:] == ["timeseries", "paginated"]:
            route = lambda: self._timeseries(parts[1], params)  # noqa: E731
        else:
            raise _Response(404, {"message": "The requested URL was not found on the server."})
        if request.method != "GET":
            raise _Response(405, {"message": "The method is not allowed for the requested URL."})
        self._authenticate(request)
        self._inject_request_faults(request_no)
        try:
            status, body = route()
        except ParamError as e:
            raise _Response(
                400, {"message": "Input payload validation failed", "errors": {e.field: e.message}}
            ) from None
        return status, body, {}

    def _authenticate(self, request: httpx.Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _Response(401, {"message": "Missing Authorization Header"})
        if self.config.api_key is not None and token.strip() != self.config.api_key:
            # The real API answers an invalid key with a generic 500, not 401/403.
            raise _Response(500, _UNHANDLED)

    def _count(self, kind: str) -> None:
        with self._lock:
            self.fault_counts[kind] += 1

    def _inject_request_faults(self, request_no: int) -> None:
        faults = self.config.faults
        if not faults.any_request_fault:
            return
        seed = faults.seed
        if faults.rate_429 and fault_draw(seed, request_no, "429")[0] < faults.rate_429:
            self._count("429")
            raise _Response(
                429, {"message": "Too Many Requests"}, {"Retry-After": f"{faults.retry_after_s:g}"}
            )
        if faults.rate_5xx:
            u, bits = fault_draw(seed, request_no, "5xx")
            if u < faults.rate_5xx:
                self._count("5xx")
                status = (500, 502, 503)[bits % 3]
                if status == 502:
                    raise _Response(502, b"<html><head><title>502 Bad Gateway</title></head></html>")
                raise _Response(status, _UNHANDLED if status == 500 else {"message": "Service Unavailable"})
        if faults.rate_slow and fault_draw(seed, request_no, "slow")[0] < faults.rate_slow:
            self._count("slow")
            self._sleep(faults.slow_s)

    def _corrupt(self, content: bytes, request_no: int) -> bytes:
        faults = self.config.faults
        if faults.rate_truncated:
            u, bits = fault_draw(faults.seed, request_no, "truncated")
            if u < faults.rate_truncated:
                self._count("truncated")
                return truncate(content, bits)
        if faults.rate_malformed:
            u, bits = fault_draw(faults.seed, request_no, "malformed")
            if u < faults.rate_malformed:
                self._count("malformed")
                return malform(content, bits)
        return content

    # ------------------------------------------------------------------ sites and points

    def _site_obj(self, site: str) -> dict[str, Any]:
        position = self.config.sites.index(site)
        h = stable_hash64(f"geo:{site}")
        lat = round(25.0 + (h % 20_000) / 1000.0, 4)
        lon = round(-120.0 + ((h >> 20) % 45_000) / 1000.0, 4)
        return {
            "id": 10 + position,
            "name": site,
            "client": CLIENT,
            "client_id": CLIENT_ID,
            "address": None,
            "nice_name": site.replace("_", " ").replace("-", " ").title(),
            "ansible_user": None,
            "vtron_user": None,
            "vtron_ip": None,
            # PostGIS WKB hex of POINT(lon lat), as the real API returns it.
            "geo_location": "0101000000" + struct.pack("<dd", lon, lat).hex(),
            "mqtt_prefix": None,
            "latitude": lat,
            "longitude": lon,
            "archived": False,
        }

    def _require_site(self, site: str, status: int = 403) -> None:
        if site not in self._models:
            raise _Response(status, _NULL_SITE if status == 403 else {"message": f"Site {site} not found"})

    def _list_sites(self, params: httpx.QueryParams) -> tuple[int, Any]:
        page, per_page = _paging(params)
        parse_bool(params.get("collect_enabled"), "collect_enabled", True)
        parse_bool(params.get("show_archived"), "show_archived", False)
        sites = list(self.config.sites)
        items = [self._site_obj(s) for s in sites[(page - 1) * per_page : page * per_page]]
        return 200, _envelope(items, page, per_page, len(sites))

    def _site(self, site: str) -> tuple[int, Any]:
        self._require_site(site)
        return 200, self._site_obj(site)

    def _list_points(self, site: str, params: httpx.QueryParams) -> tuple[int, Any]:
        self._require_site(site, 404)
        page, per_page = _paging(params)
        points = self._points[site]
        chosen = points[(page - 1) * per_page : page * per_page]
        present = self._present_values(site, chosen)
        site_id = 10 + self.config.sites.index(site)
        items = [self._point_obj(site, site_id, p, present.get(p.index)) for p in chosen]
        return 200, _envelope(items, page, per_page, len(points))

    def _present_values(self, site: str, chosen: list[SimPoint]) -> dict[int, str]:
        """The latest visible wire value of each chosen point (BACnet ``present_value``)."""
        if not chosen:
            return {}
        model = self._models[site]
        now = self.now_ms()
        wanted = {p.name for p in chosen}
        rows = np.array([i for i, p in enumerate(model.points) if p.name in wanted], dtype=np.int64)
        s = model.generate(
            rows, now - 3 * model.cadence_ms - model.max_offset_ms - model.max_late_ms, now + 1
        )
        s = s.select(s.visible_from <= now)
        if len(s) == 0:
            return {}
        last = np.flatnonzero(np.r_[s.pos[1:] != s.pos[:-1], True])
        table = model.to_table(s.select(last))
        texts = pc.coalesce(pc.cast(table["value"], pa.string()), table["value_text"]).to_pylist()
        index_of = {p.name: p.index for p in model.points}
        return {index_of[n]: t for n, t in zip(table["point"].to_pylist(), texts, strict=True)}

    def _point_obj(self, site: str, site_id: int, p: SimPoint, present: str | None) -> dict[str, Any]:
        address, _, device_id = p.bacnet_device.partition("-")
        created = format_wire_time(1_707_939_787_623 + p.index * 1_000 + 281)
        return {
            "id": site_id * 1_000_000 + p.index + 1,
            "name": p.name,
            "client": CLIENT,
            "client_id": CLIENT_ID,
            "site": site,
            "site_id": site_id,
            "kv_tags": dict(p.kv_tags),
            "bacnet_data": {
                "device_address": address,
                "device_id": int(device_id),
                "device_name": p.equip,
                "device_description": f"{p.equip} controller",
                "object_type": p.object_type,
                "object_index": p.object_instance,
                "object_name": p.description,
                "object_description": p.description,
                "object_units": _BACNET_UNITS.get(p.unit or "", "noUnits"),
                "present_value": present,
            },
            "marker_tags": list(p.marker_tags),
            "collect_config": {},
            "point_type": None,
            "collect_enabled": True,
            "collect_interval": p.collect_interval_s,
            "updated": format_wire_time(1_764_632_772_058 + p.index * 7),
            "created": created,
        }

    # ------------------------------------------------------------------ timeseries

    def _timeseries(self, site: str, params: httpx.QueryParams) -> tuple[int, bytes]:
        self._require_site(site)
        start = parse_query_time(params.get("start_time"), "start_time")
        end = parse_query_time(params.get("end_time"), "end_time")
        if start > end:
            raise ParamError("start_time", "start_time must not be after end_time")
        page_size = parse_choice(params.get("page_size"), "page_size", PAGE_SIZE_CHOICES, DEFAULT_PAGE_SIZE)
        raw = parse_bool(params.get("raw_data"), "raw_data", False)
        cursor = params.get("cursor")
        offset, cursor_bucket = decode_cursor(cursor) if cursor else (0, None)
        as_of = self.now_ms()

        first = start - start % BUCKET_MS if raw else _ceil_bucket(start)
        b = first if cursor_bucket is None else max(first, cursor_bucket)
        skip, need = offset, page_size
        chunks: list[memoryview] = []
        last_bucket, last_from, last_to = 0, 0, 0
        has_more = False
        while b < end and b <= as_of:
            rows = self._bucket_rows(site, raw, b, start, end, as_of)
            count = len(rows)
            if skip >= count:
                skip -= count
            elif need == 0:
                has_more = True  # a further row exists beyond this full page
                break
            else:
                take = min(need, count - skip)
                chunks.append(row_bytes(rows, skip, skip + take))
                last_bucket, last_from, last_to = b, skip, skip + take
                need -= take
                skip = 0
                if need == 0 and last_to < count:
                    has_more = True
                    break
            b += BUCKET_MS

        next_cursor = None
        if has_more:
            # Correct: rows of the last bucket consumed so far in total. The real server's bug counts only
            # the rows taken from that bucket on this page, so a page inside one bucket repeats its cursor.
            offset_out = last_to
            if self.config.faults.cursor_stall and last_from:
                offset_out = last_to - last_from
                self._count("cursor_stall")
            next_cursor = encode_cursor(offset_out, last_bucket)
            self._prefetch(site, last_bucket + BUCKET_MS, end, page_size)
        return 200, page_body(chunks, next_cursor, has_more)

    def _bucket_rows(self, site: str, raw: bool, b: int, start: int, end: int, as_of: int) -> pa.Array:
        """Wire rows of bucket ``b`` visible at ``as_of``: raw rows inside [start, end), or aggregated rows."""
        entry = self._raw_bucket(site, b)
        assert entry.samples is not None
        complete = as_of >= entry.max_visible
        if raw:
            if complete and start <= b and b + BUCKET_MS <= end:
                return entry.rows
            s = entry.samples
            mask = (s.ts >= start) & (s.ts < end) & (s.visible_from <= as_of)
            return entry.rows.filter(pa.array(mask))
        key = (site, False, b)
        if complete:
            with self._lock:
                cached = self._cache.get(key)
                if cached is not None:
                    self._cache.move_to_end(key)
                    return cached.rows
        s = entry.samples
        rows = self._formatters[site].rows(aggregate(s if complete else s.select(s.visible_from <= as_of), b))
        if complete:
            self._remember(key, _Bucket(None, rows, entry.max_visible))
        return rows

    def _raw_bucket(self, site: str, b: int) -> _Bucket:
        key = (site, True, b)
        while True:
            with self._lock:
                cached = self._cache.get(key)
                if cached is not None:
                    self._cache.move_to_end(key)
                    return cached
                event = self._inflight.get(key)
                owner = event is None
                if event is None:
                    event = self._inflight[key] = threading.Event()
            if not owner:
                # Another thread (usually the prefetcher) is building this bucket: wait instead of duplicating
                # the work, then re-check the cache (if it was evicted meanwhile, build it here).
                event.wait()
                continue
            try:
                samples = self._models[site].bucket(b)
                rows = self._formatters[site].rows(samples)
                entry = _Bucket(samples, rows, int(samples.visible_from.max(initial=b)))
                self._remember(key, entry)
                return entry
            finally:
                with self._lock:
                    self._inflight.pop(key, None)
                event.set()

    def _prefetch(self, site: str, first: int, end: int, page_size: int) -> None:
        """Build the buckets the next page will need on a background thread, so generation overlaps with the
        client parsing this page (the server is otherwise idle between sequential page requests)."""
        model = self._models[site]
        rows_per_bucket = max(1, len(model) * BUCKET_MS // model.cadence_ms)
        count = min(_CACHE_BUCKETS // 3, -(-page_size // rows_per_bucket) + 1)
        buckets = [b for b in range(first, min(end, first + count * BUCKET_MS), BUCKET_MS)]
        with self._lock:
            missing = [
                b
                for b in buckets
                if (site, True, b) not in self._cache and (site, True, b) not in self._inflight
            ]
            if not missing:
                return
            if self._prefetcher is None:
                self._prefetcher = ThreadPoolExecutor(1, thread_name_prefix="ace-sim-prefetch")
            prefetcher = self._prefetcher
        prefetcher.submit(lambda: [self._raw_bucket(site, b) for b in missing])

    def _remember(self, key: tuple[str, bool, int], entry: _Bucket) -> None:
        with self._lock:
            self._cache[key] = entry
            self._cache.move_to_end(key)
            while len(self._cache) > _CACHE_BUCKETS:
                self._cache.popitem(last=False)


def _ceil_bucket(ms: int) -> int:
    return -(-ms // BUCKET_MS) * BUCKET_MS


def _paging(params: httpx.QueryParams) -> tuple[int, int]:
    raw_page = params.get("page")
    page = 1
    if raw_page is not None:
        try:
            page = int(raw_page)
        except ValueError:
            raise ParamError("page", f"invalid literal for int() with base 10: {raw_page!r}") from None
        if page < 1:
            raise ParamError("page", "page must be >= 1")
    per_page = parse_choice(params.get("per_page"), "per_page", PER_PAGE_CHOICES, DEFAULT_PER_PAGE)
    return page, per_page


def _envelope(items: list[dict[str, Any]], page: int, per_page: int, total: int) -> dict[str, Any]:
    return {
        "items": items,
        "page": page,
        "pages": math.ceil(total / per_page),
        "per_page": per_page,
        "total": total,
    }
