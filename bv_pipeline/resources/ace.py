"""ACE FlightDeck API client (``AceClient``) and its Dagster resource (``AceResource``).

Design (contract and quirks: ``/work/shared/reference/cloudflare-and-ace.md`` §4):

- **Windowing.** A fetch window is split into sub-windows of ``window_minutes`` (default 60) aligned to the UTC
  epoch, so re-fetches hit the same sub-windows, cursors stay small and a failed page only repeats within its
  sub-window. Each sub-window is paged with ``page_size`` (default 100,000, from the server's closed set). Up to
  ``concurrency`` (default 2) sub-windows are fetched at once so the server prepares pages while the client
  parses; results keep time order. Memory is bounded by ``concurrency + 1`` sub-windows of parsed pages.
  ``fetch_samples`` keeps each page as 24 B/sample of integer ids and numbers and builds the string columns
  once at the end (a 6.5 M-sample site-day peaks below 1 GiB in the client).
- **Cursor repair.** The server forgets the incoming offset when a page starts and ends in one 5-minute bucket,
  so ``next_cursor`` can stall. The client never sends the server's cursor; it recomputes it from the page just
  read (``ace_parse.repair_cursor``) and counts a repair whenever the two differ. A page whose content repeats
  within a sub-window raises ``AceError`` instead of looping.
- **Retries.** Timeouts, connection errors, 5xx and truncated/malformed pages are retried with exponential
  backoff and jitter; 429 waits ``Retry-After`` (seconds or HTTP date) and holds the shared rate limit that long,
  so every other process waits too. Other 4xx fail at once with the server's message. After ``max_attempts``
  attempts of one request, ``AceError`` names the endpoint, status, attempts and last error. GCRA token buckets keep the long-run rate at ``requests_per_minute``: shared by every process
  through a SQLite file or PostgreSQL when the resource names one, with a "live" lane for the live sync and a
  "batch" lane capped at ``batch_share`` of the rate (``bv_pipeline.resources.ace_rate_limit``). The seconds spent
  waiting for a slot are counted (``FetchStats.rate_wait_s``, ``AceClient.rate_wait_s``).
- **Parsing** is vectorised (``bv_pipeline.storage.ace_parse``); samples are returned as ``SAMPLE_SCHEMA``.
"""

from __future__ import annotations

import email.utils
import itertools
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import dagster as dg
import httpx
import numpy as np
import orjson
import polars as pl
import pyarrow as pa
from pydantic import Field

from bv_pipeline.resources.ace_rate_limit import LaneLimiter, RateLimiter, ace_buckets, shared_slot_store
from bv_pipeline.storage import ace_parse
from bv_pipeline.storage.ace_parse import Cursor, PageParseError
from bv_pipeline.storage.interfaces import PointMeta
from bv_pipeline.storage.samples import SAMPLE_SCHEMA

log = logging.getLogger(__name__)

T = TypeVar("T")

TIMESERIES_PAGE_SIZES = (3, 10, 50, 100, 500, 1000, 5000, 10000, 50000, 100000, 300000, 500000)
LIST_PER_PAGE_SIZES = (2, 10, 20, 30, 40, 50, 100, 500, 1000, 5000, 10000, 100000)
POINTS_PER_PAGE = 1000
SIM_BASE_URL = "http://ace-simulator/api"
INVALID_KEY_MESSAGE = "An unhandled exception occurred."
RETRY_AFTER_MAX_S = 300.0  # a server asking for more than 5 minutes is treated as asking for 5
MINUTE_MS = 60_000


class AceError(RuntimeError):
    """An ACE request failed for good: the message names the endpoint, status, attempts and last error."""

    def __init__(
        self, message: str, *, endpoint: str = "", status: int | None = None, attempts: int = 0
    ) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.status = status
        self.attempts = attempts


@dataclass
class FetchStats:
    """Counters of one fetch. ``samples`` counts rows received; the result holds ``samples - duplicates`` rows."""

    requests: int = 0  # HTTP requests sent, retries included
    pages: int = 0  # timeseries pages parsed successfully
    retries: int = 0  # requests repeated after a retryable failure
    samples: int = 0
    duplicates: int = 0  # (point, ts_ms) repeats removed by fetch_samples
    non_numeric: int = 0  # samples kept as value_text
    nulls: int = 0  # samples whose value was JSON null
    cursor_repairs: int = 0  # pages whose server next_cursor differed from the recomputed one
    rate_limited: int = 0  # 429 responses
    bytes: int = 0  # response body bytes
    rate_waits: int = 0  # requests that waited for a rate-limit slot
    rate_wait_s: float = 0.0  # seconds those requests waited in total

    def add(self, other: FetchStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


def retry_after_seconds(header: str | None, now_epoch_s: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or HTTP date); None when absent/invalid."""
    if header is None or not header.strip():
        return None
    text = header.strip()
    try:
        return min(max(0.0, float(text)), RETRY_AFTER_MAX_S)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return min(max(0.0, when.timestamp() - now_epoch_s), RETRY_AFTER_MAX_S)


def _iso_param(ms: int) -> str:
    """Query-parameter timestamp: UTC ISO with ``Z``, milliseconds only when needed."""
    text = ace_parse.format_bucket(ms - ms % 1000)
    return f"{text}.{ms % 1000:03d}Z" if ms % 1000 else f"{text}Z"


def _server_message(body: bytes) -> str:
    """The ``message`` (plus Flask-RESTX ``errors``) of an error body, else the start of the body."""
    text = body[:300].decode("utf-8", "replace")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return text
    if isinstance(data, dict):
        message = str(data.get("message") or "")
        errors = data.get("errors")
        if errors:
            message = f"{message} {errors}".strip()
        return message or text
    return text


def _meta_from_point(item: dict[str, Any]) -> PointMeta:
    """Map an ACE Point object to PointMeta; kind/unit come from kv_tags (ACE has no dedicated fields)."""
    raw_kv = item.get("kv_tags") or {}
    kv = {str(k): str(v) for k, v in raw_kv.items() if v is not None} if isinstance(raw_kv, dict) else {}
    markers = tuple(str(m) for m in (item.get("marker_tags") or ()))
    bacnet = item.get("bacnet_data") or {}
    unit = kv.get("unit") or kv.get("units") or (bacnet.get("units") if isinstance(bacnet, dict) else None)
    kind = kv.get("kind") or item.get("point_type")
    interval = item.get("collect_interval")
    return PointMeta(
        name=str(item["name"]),
        kind=str(kind) if kind else None,
        unit=str(unit) if unit else None,
        marker_tags=markers,
        kv_tags=kv,
        collect_interval_s=int(interval) if interval is not None else None,
    )


class AceClient:
    """Synchronous FlightDeck client; one per run (cheap to build). Call it from one thread at a time: it runs
    its own worker threads for concurrent sub-windows."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = 60,
        max_attempts: int = 6,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30,
        requests_per_minute: int = 600,
        page_size: int = 100_000,
        sleep: Callable[[float], None] = time.sleep,
        window_minutes: int = 60,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        concurrency: int = 2,
        limiter: LaneLimiter | None = None,
    ) -> None:
        if page_size not in TIMESERIES_PAGE_SIZES:
            raise ValueError(f"page_size {page_size} is not one the API accepts: {TIMESERIES_PAGE_SIZES}")
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if window_minutes < 5 or window_minutes % 5:
            raise ValueError("window_minutes must be a positive multiple of 5 (the server's bucket size)")
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url + "/",
            transport=transport,
            timeout=httpx.Timeout(timeout_s),
            headers=headers,
        )
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.page_size = page_size
        self.window_ms = window_minutes * MINUTE_MS
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.concurrency = concurrency
        # Without a shared limiter (direct use, tests) the client has its own bucket.
        self.limiter = limiter or RateLimiter(requests_per_minute, clock=clock, sleep=sleep)
        self.rate_waits = 0  # over the client's life, metadata requests included
        self.rate_wait_s = 0.0
        self._rate_lock = threading.Lock()
        self._succeeded_once = False  # a 500 before any success hints at an invalid key

    # -- plumbing ------------------------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def backoff_s(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random, capped at backoff_max_s."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _get(self, path: str, params: dict[str, Any], parse: Callable[[bytes], T], stats: FetchStats) -> T:
        """GET with rate limiting and the retry policy; ``parse`` errors (PageParseError) are retried too."""
        endpoint = f"GET /{path}"
        last_error = "no attempt made"
        last_status: int | None = None
        invalid_key_hint = False
        for attempt in range(1, self.max_attempts + 1):
            waited = self.limiter.acquire()
            stats.requests += 1
            if waited:
                stats.rate_waits += 1
                stats.rate_wait_s += waited
                with self._rate_lock:  # sub-window workers run on several threads
                    self.rate_waits += 1
                    self.rate_wait_s += waited
            delay: float | None = None
            try:
                # Streamed and joined by hand: response.read() caches the body on the Response, which sits in
                # a reference cycle, so every page's bytes would linger until the next GC pass.
                with self._http.stream("GET", path, params=params) as response:
                    body = b"".join(response.iter_bytes())
            except httpx.TimeoutException as exc:
                last_status, last_error = None, f"timeout ({type(exc).__name__})"
            except httpx.TransportError as exc:
                # Includes a body cut short mid-stream (RemoteProtocolError): retry like a 5xx.
                last_status, last_error = None, f"connection error ({type(exc).__name__}: {exc})"
            else:
                stats.bytes += len(body)
                status = response.status_code
                last_status = status
                if status == 429:
                    stats.rate_limited += 1
                    last_error = f"HTTP 429 rate limited: {_server_message(body)}"
                    delay = retry_after_seconds(response.headers.get("Retry-After"), time.time())
                    if delay:
                        self.limiter.hold(delay)  # ACE's budget is everybody's: the other processes wait too
                elif status >= 500:
                    message = _server_message(body)
                    last_error = f"HTTP {status}: {message}"
                    if status == 500 and INVALID_KEY_MESSAGE in message and not self._succeeded_once:
                        invalid_key_hint = True
                        log.warning("ACE %s answered 500 %r: the API key may be invalid", endpoint, message)
                elif status >= 300:
                    # 401 missing key, 403 unknown site, 400 validation, 404: retrying cannot help.
                    raise AceError(
                        f"ACE {endpoint} failed: HTTP {status}: {_server_message(body)} (params {params})",
                        endpoint=endpoint,
                        status=status,
                        attempts=attempt,
                    )
                else:
                    try:
                        result = parse(body)
                    except PageParseError as exc:
                        last_error = f"malformed response (HTTP {status}, {len(body)} bytes): {exc}"
                    else:
                        self._succeeded_once = True
                        return result
            if attempt == self.max_attempts:
                break
            stats.retries += 1
            wait = delay if delay is not None else self.backoff_s(attempt)
            log.info("ACE %s attempt %d failed (%s); retrying in %.2fs", endpoint, attempt, last_error, wait)
            self._sleep(wait)
        hint = (
            " (HTTP 500 before any successful request: the API key may be invalid)"
            if invalid_key_hint
            else ""
        )
        raise AceError(
            f"ACE {endpoint} failed after {self.max_attempts} attempts; last error: {last_error}{hint} "
            f"(params {params})",
            endpoint=endpoint,
            status=last_status,
            attempts=self.max_attempts,
        )

    def _get_list(self, path: str, per_page: int, stats: FetchStats) -> list[dict[str, Any]]:
        """All items of a paginated list endpoint; stops on the last page, an empty/short page, or ``total``."""
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            envelope = self._get(path, {"page": page, "per_page": per_page}, _parse_envelope, stats)
            batch = envelope["items"]
            items.extend(batch)
            pages, total = envelope.get("pages"), envelope.get("total")
            if (
                not batch
                or len(batch) < per_page
                or (isinstance(pages, int) and page >= pages)
                or (isinstance(total, int) and len(items) >= total)
            ):
                return items
            page += 1

    # -- metadata ------------------------------------------------------------------------------------------------

    def list_sites(self) -> list[dict[str, Any]]:
        return self._get_list("sites/", POINTS_PER_PAGE, FetchStats())

    def list_points(self, site: str) -> list[PointMeta]:
        """Configured (collect-enabled) points of a site, all pages, as PointMeta."""
        items = self._get_list(
            f"sites/{quote(site, safe='')}/configured_points", POINTS_PER_PAGE, FetchStats()
        )
        try:
            return [_meta_from_point(item) for item in items]
        except (KeyError, TypeError, ValueError) as exc:
            raise AceError(f"ACE configured_points of {site!r}: malformed point object ({exc!r})") from exc

    # -- samples -------------------------------------------------------------------------------------------------

    def sub_windows(self, start_ms: int, end_ms: int) -> list[tuple[int, int]]:
        """[start, end) split on multiples of ``window_minutes`` since the epoch."""
        out: list[tuple[int, int]] = []
        lo = start_ms
        while lo < end_ms:
            hi = min(end_ms, (lo // self.window_ms + 1) * self.window_ms)
            out.append((lo, hi))
            lo = hi
        return out

    def _window_frames(
        self, path: str, lo: int, hi: int, raw: bool, stats: FetchStats, cancel: threading.Event
    ) -> Iterator[pl.DataFrame]:
        """Page through one sub-window with repaired cursors; yields the non-empty parsed pages."""
        params: dict[str, Any] = {
            "start_time": _iso_param(lo),
            "end_time": _iso_param(hi),
            "page_size": self.page_size,
            "raw_data": "true" if raw else "false",
        }
        cursor: Cursor | None = None
        seen: set[tuple[object, ...]] = set()
        while not cancel.is_set():
            if cursor is not None:
                params["cursor"] = ace_parse.encode_cursor(cursor)
            page = self._get(path, params, ace_parse.parse_page, stats)
            stats.pages += 1
            frame = page.samples
            fingerprint = ace_parse.page_fingerprint(frame)
            if fingerprint in seen:
                raise AceError(
                    f"ACE GET /{path}: the server returned the same page twice ({frame.height} rows) for "
                    f"[{params['start_time']}, {params['end_time']}) at cursor {params.get('cursor')!r}; "
                    "refusing to loop",
                    endpoint=f"GET /{path}",
                    status=200,
                )
            seen.add(fingerprint)
            stats.samples += frame.height
            stats.non_numeric += page.non_numeric
            stats.nulls += page.nulls
            if page.has_more:
                if frame.height == 0:
                    raise AceError(f"ACE GET /{path}: empty page with has_more=true at cursor {cursor}")
                server = ace_parse.decode_cursor(page.next_cursor)
                ours = ace_parse.repair_cursor(cursor, frame["ts_ms"], server)
                if server is None or (server.offset, server.bucket_ms) != (ours.offset, ours.bucket_ms):
                    stats.cursor_repairs += 1
                cursor = ours
            # Keep only the sub-window: a server with an inclusive end would otherwise duplicate boundaries.
            ts = frame["ts_ms"]
            if frame.height and (int(ts.min()) < lo or int(ts.max()) >= hi):  # type: ignore[arg-type]
                frame = frame.filter((pl.col("ts_ms") >= lo) & (pl.col("ts_ms") < hi))
            if frame.height:
                yield frame
            if not page.has_more:
                return

    def _iter_frames(
        self, site: str, start_ms: int, end_ms: int, raw: bool, stats: FetchStats
    ) -> Iterator[pl.DataFrame]:
        """Parsed pages of [start_ms, end_ms), sub-window by sub-window in time order.

        With ``concurrency`` > 1, up to that many sub-windows are fetched at once on worker threads, so the
        server prepares the next pages while this thread parses (polars releases the GIL). A worker collects its
        whole sub-window, so memory is bounded by ``concurrency + 1`` sub-windows, never the whole fetch.
        """
        path = f"sites/{quote(site, safe='')}/timeseries/paginated"
        windows = self.sub_windows(start_ms, end_ms)
        cancel = threading.Event()
        if self.concurrency == 1 or len(windows) == 1:
            for lo, hi in windows:
                yield from self._window_frames(path, lo, hi, raw, stats, cancel)
            return

        def collect(lo: int, hi: int) -> tuple[list[pl.DataFrame], FetchStats]:
            own = FetchStats()  # per worker, merged on this thread: no shared counters across threads
            return list(self._window_frames(path, lo, hi, raw, own, cancel)), own

        pending: deque[Future[tuple[list[pl.DataFrame], FetchStats]]] = deque()
        todo = iter(windows)
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="ace-fetch") as pool:
            try:
                for lo, hi in itertools.islice(todo, self.concurrency):
                    pending.append(pool.submit(collect, lo, hi))
                while pending:
                    frames, own = pending.popleft().result()
                    stats.add(own)
                    for lo, hi in itertools.islice(todo, 1):
                        pending.append(pool.submit(collect, lo, hi))
                    yield from frames
            finally:
                # On error or an abandoned generator: stop the other workers after their current request.
                cancel.set()
                for future in pending:
                    future.cancel()

    def iter_samples(
        self, site: str, start_ms: int, end_ms: int, *, raw: bool = True, stats: FetchStats | None = None
    ) -> Iterator[pa.Table]:
        """Stream [start_ms, end_ms) as SAMPLE_SCHEMA tables, one per page, sub-windows in time order.

        Rows keep the wire order (bucket, point, time) and are not de-duplicated across pages; ``stats`` (if given)
        is updated as pages (with concurrency > 1: whole sub-windows) arrive. Memory stays bounded however long
        the window is.
        """
        stats = stats if stats is not None else FetchStats()
        for frame in self._iter_frames(site, start_ms, end_ms, raw, stats):
            yield frame.to_arrow().cast(SAMPLE_SCHEMA)

    def fetch_samples(
        self, site: str, start_ms: int, end_ms: int, *, raw: bool = True
    ) -> tuple[pa.Table, FetchStats]:
        """The whole window as one SAMPLE_SCHEMA table, de-duplicated on (point, ts_ms) and sorted by it.

        Pages are kept compactly while fetching (point and text as integer ids, 24 B/sample); strings are attached
        once at the end through dictionaries, so a site-day (6.5 M samples) stays well under 1 GiB.
        """
        stats = FetchStats()
        names = _Interner()
        texts = _Interner()
        chunks: list[pl.DataFrame] = []
        for frame in self._iter_frames(site, start_ms, end_ms, raw, stats):
            # Integer ids only: a polars string column would pin the whole page's string buffer in memory.
            chunks.append(
                pl.DataFrame(
                    [
                        names.ids(frame["point"]).alias("pid"),
                        frame["ts_ms"],
                        frame["value"],
                        texts.ids(frame["value_text"]).alias("tid"),
                    ]
                )
            )
        if not chunks:
            return SAMPLE_SCHEMA.empty_table(), stats
        table, duplicates = _assemble(chunks, names.values, texts.values)
        stats.duplicates = duplicates
        return table, stats


def rate_limit_metadata(client: AceClient) -> dict[str, int | float]:
    """Materialisation metadata showing ACE throttling: requests that waited for a rate-limit slot, and how long."""
    return {"ace_rate_limit_waits": client.rate_waits, "ace_rate_limit_wait_s": round(client.rate_wait_s, 3)}


class _Interner:
    """Maps strings to dense UInt32 ids; per page it only looks at the page's distinct strings."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self.values: list[str] = []

    def ids(self, column: pl.Series) -> pl.Series:
        if column.null_count() == column.len():
            return pl.Series(column.name, [None] * column.len(), dtype=pl.UInt32)
        distinct = column.drop_nulls().unique().to_list()
        for text in distinct:
            if text not in self._ids:
                self._ids[text] = len(self.values)
                self.values.append(text)
        return column.replace_strict(
            distinct, [self._ids[t] for t in distinct], default=None, return_dtype=pl.UInt32
        )


def _parse_envelope(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PageParseError(f"invalid JSON ({len(body)} bytes): {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise PageParseError("list response without an items array")
    return data


def _assemble(chunks: list[pl.DataFrame], names: list[str], texts: list[str]) -> tuple[pa.Table, int]:
    """Concatenate compact chunks, sort by (point name, ts), drop repeats keeping the last fetched, attach strings.

    Works on 24 B/sample integer columns; the string columns are built once, from dictionaries, at the end.
    """
    order = sorted(range(len(names)), key=names.__getitem__)
    rank = np.empty(len(names), dtype=np.uint32)
    rank[order] = np.arange(len(names), dtype=np.uint32)
    df = pl.concat(chunks, rechunk=True)
    chunks.clear()  # drop the per-page frames as soon as they are copied
    df = df.with_columns(pl.Series("rank", rank).gather(df["pid"])).drop("pid")
    # A stable permutation instead of sorting the frame, so only one sorted column exists at a time; among equal
    # (point, ts) the last fetched stays last and is the one kept below.
    perm = df.select(pl.arg_sort_by(["rank", "ts_ms"], maintain_order=True)).to_series()
    ranks, ts = df["rank"].gather(perm), df["ts_ms"].gather(perm)
    df = df.drop("rank", "ts_ms")
    is_dup = (ranks == ranks.shift(-1)) & (ts == ts.shift(-1))
    duplicates = int(is_dup.sum())
    if duplicates:
        keep = ~is_dup.fill_null(False)
        perm, ranks, ts = perm.filter(keep), ranks.filter(keep), ts.filter(keep)
    # Strings are gathered in polars (which reuses memory freed by parsing and sorting) and exported to Arrow
    # without a second copy of the character data.
    point = _string_column(pl.Series([names[i] for i in order], dtype=pl.String).gather(ranks))
    del ranks
    value = df["value"].gather(perm).to_arrow()
    # Mostly null: an Arrow take makes only offsets and validity, where a polars gather would make 16 B views.
    value_text = pa.array(texts, type=pa.string()).take(df["tid"].gather(perm).to_arrow())
    del df, perm
    table = pa.Table.from_arrays([point, ts.to_arrow(), value, value_text], schema=SAMPLE_SCHEMA)
    return table, duplicates


_STRING_SLICE_ROWS = 1 << 21  # x 512-byte maximum name length stays far below pa.string()'s 2 GiB per array


def _string_column(series: pl.Series) -> pa.ChunkedArray:
    """A polars String column as a ``pa.string()`` chunked array.

    polars exports ``large_string``; casting it in slices only rewrites the offsets and keeps every slice below
    the 2 GiB limit of 32-bit offsets.
    """
    large = series.to_arrow()
    del series
    slices = [
        large.slice(i, _STRING_SLICE_ROWS).cast(pa.string()) for i in range(0, len(large), _STRING_SLICE_ROWS)
    ]
    return pa.chunked_array(slices, type=pa.string())


class AceResource(dg.ConfigurableResource):
    """Dagster resource building an AceClient. ``base_url=None`` uses the embedded in-process simulator.

    The rate limit is shared by every process through ``rate_limit_url`` (PostgreSQL, several boxes) or else
    ``rate_limit_path`` (a SQLite file, one box); with neither, each client has its own bucket (tests, scripts).
    """

    base_url: str | None = None
    api_key: str | None = None
    sim_sites: list[str] = Field(default_factory=lambda: ["demo"])
    sim_points: int = 300
    sim_seed: int = 42
    requests_per_minute: int = 600
    batch_share: float = 0.5  # the most of requests_per_minute the "batch" lane may use
    rate_limit_path: str | None = None
    rate_limit_url: str | None = None
    max_attempts: int = 6
    timeout_s: float = 60
    page_size: int = 100_000

    def shared_limiter(self, lane: str) -> LaneLimiter | None:
        """The limiter of ``lane`` ("live" or "batch") on the shared store; None when no store is configured (the
        client then has its own bucket and lanes are moot)."""
        buckets = ace_buckets(self.requests_per_minute, self.batch_share, lane)  # validates lane and share
        if not (self.rate_limit_url or self.rate_limit_path):
            return None
        return LaneLimiter(shared_slot_store(url=self.rate_limit_url, path=self.rate_limit_path), buckets)

    def get_client(self, lane: str = "batch") -> AceClient:
        """A client whose requests take rate-limit slots in ``lane``: "live" for the live sync, else "batch"."""
        common: dict[str, Any] = {
            "timeout_s": self.timeout_s,
            "max_attempts": self.max_attempts,
            "requests_per_minute": self.requests_per_minute,
            "page_size": self.page_size,
            "limiter": self.shared_limiter(lane),
        }
        if self.base_url:
            return AceClient(self.base_url, self.api_key or "", **common)
        from bv_pipeline.simulator import AceSimulator, SimulatorConfig

        sim = AceSimulator(
            SimulatorConfig(sites=tuple(self.sim_sites), points=self.sim_points, seed=self.sim_seed)
        )
        # The simulator accepts any non-empty bearer key when none is configured, like a real key would be.
        return AceClient(
            SIM_BASE_URL, self.api_key or "embedded-simulator", transport=sim.transport(), **common
        )
