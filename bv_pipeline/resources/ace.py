"""ACE FlightDeck API client (``AceClient``); its Dagster resource is ``resources.ace_resource.AceResource`` and
the pure page handling is ``storage.ace_pages``.

Design:

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

import httpx
import polars as pl
import pyarrow as pa

from bv_pipeline.resources.ace_rate_limit import LaneLimiter, RateLimiter
from bv_pipeline.storage import ace_pages, ace_parse
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


def _iso_param(ms: int) -> str:
    """Query-parameter timestamp: UTC ISO with ``Z``, milliseconds only when needed."""
    text = ace_parse.format_bucket(ms - ms % 1000)
    return f"{text}.{ms % 1000:03d}Z" if ms % 1000 else f"{text}Z"


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
                    last_error = f"HTTP 429 rate limited: {ace_pages.server_message(body)}"
                    delay = ace_pages.retry_after_seconds(response.headers.get("Retry-After"), time.time())
                    if delay:
                        self.limiter.hold(delay)  # ACE's budget is everybody's: the other processes wait too
                elif status >= 500:
                    message = ace_pages.server_message(body)
                    last_error = f"HTTP {status}: {message}"
                    if status == 500 and INVALID_KEY_MESSAGE in message and not self._succeeded_once:
                        invalid_key_hint = True
                        log.warning("ACE %s answered 500 %r: the API key may be invalid", endpoint, message)
                elif status >= 300:
                    # 401 missing key, 403 unknown site, 400 validation, 404: retrying cannot help.
                    raise AceError(
                        f"ACE {endpoint} failed: HTTP {status}: {ace_pages.server_message(body)} (params {params})",
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
            envelope = self._get(path, {"page": page, "per_page": per_page}, ace_pages.parse_envelope, stats)
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
            return [ace_pages.point_meta(item) for item in items]
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
        names = ace_pages.Interner()
        texts = ace_pages.Interner()
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
        table, duplicates = ace_pages.assemble_samples(chunks, names.values, texts.values)
        stats.duplicates = duplicates
        return table, stats


def rate_limit_metadata(client: AceClient) -> dict[str, int | float]:
    """Materialisation metadata showing ACE throttling: requests that waited for a rate-limit slot, and how long."""
    return {"ace_rate_limit_waits": client.rate_waits, "ace_rate_limit_wait_s": round(client.rate_wait_s, 3)}
