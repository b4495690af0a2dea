"""Pure, vectorised parsing of ACE FlightDeck timeseries pages (no I/O, no HTTP).

Wire format::

    {"point_samples": [{"name": str, "value": str | null, "time": str}, ...], "next_cursor": str | null,
     "has_more": bool}

Decisions documented here because every tier inherits them:

- ``time`` is ISO-8601 meaning UTC: ``YYYY-MM-DDTHH:MM:SS`` with an optional fraction (1-9 digits, truncated to
  the millisecond) and an optional ``Z`` or ``+00:00`` suffix. Anything else (other offsets, no seconds, garbage)
  makes the page malformed.
- ``value`` is numeric exactly when Python's ``float()`` accepts the string: surrounding whitespace, ``1_000``,
  ``1e3``, ``inf``/``-Infinity`` and unicode digits all parse. The one exception is NaN (``"nan"``): it is kept as
  text, because SAMPLE_SCHEMA defines ``value`` as a finite or infinite number and SQLite would silently turn a NaN
  REAL into NULL, i.e. into "the source sent null". A numeric sample has ``value`` set and ``value_text`` null; a
  non-numeric one has ``value`` null and ``value_text`` = the original string (not stripped); JSON null gives both
  null. JSON numbers/booleans in ``value`` (not expected, the model allows them) are read as their JSON text.
- A sample without ``name`` or ``time``, or with an unparsable ``time``, makes the whole page malformed
  (``PageParseError``): the caller retries the request and then fails loudly; nothing is dropped silently.

The fast path is polars (Rust) for JSON, times and numbers; Python ``float()`` only runs on the *distinct* strings
polars' stricter parser rejected (enum texts such as ``"occupied"``), so the cost stays per distinct text, not per
sample.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import io
import json
import math
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

BUCKET_MS = 300_000  # the server orders rows (and builds cursors) by 5-minute buckets of sample time

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%.f"

PAGE_JSON_SCHEMA = {
    "point_samples": pl.List(pl.Struct({"name": pl.String, "value": pl.String, "time": pl.String})),
    "next_cursor": pl.String,
    "has_more": pl.Boolean,
}

# Column names of a parsed page frame; ``point``/``ts_ms``/``value``/``value_text`` match SAMPLE_SCHEMA.
FRAME_SCHEMA = {"point": pl.String, "ts_ms": pl.Int64, "value": pl.Float64, "value_text": pl.String}


class PageParseError(ValueError):
    """A response body that is not a well-formed timeseries page (truncated, malformed, or bad samples)."""


@dataclass(frozen=True)
class Cursor:
    """The decoded ``next_cursor``: row offset within the 5-minute bucket that starts at ``timestamp``."""

    offset: int
    timestamp: str  # naive ISO bucket start, kept verbatim so a cursor we echo back is byte-identical

    @property
    def bucket_ms(self) -> int:
        return parse_time_ms(self.timestamp)


@dataclass(frozen=True)
class ParsedPage:
    samples: pl.DataFrame  # FRAME_SCHEMA, in wire order (bucket, point name, time)
    next_cursor: str | None
    has_more: bool
    non_numeric: int
    nulls: int


def parse_time_ms(text: str) -> int:
    """One wire/cursor timestamp to UTC epoch ms, with the same rules as the vectorised parser."""
    out = parse_times_ms(pl.Series("time", [text], dtype=pl.String))
    return int(out[0])


def parse_times_ms(times: pl.Series) -> pl.Series:
    """Vectorised ``time`` strings -> Int64 UTC epoch ms. Raises PageParseError on any null or unparsable entry."""
    if times.null_count():
        raise PageParseError(f"{times.null_count()} sample(s) without a time")
    if times.len() == 0:
        return pl.Series("ts_ms", [], dtype=pl.Int64)
    stripped = times
    if stripped.str.ends_with("Z").any():
        stripped = stripped.str.strip_suffix("Z")
    if stripped.str.ends_with("+00:00").any():
        stripped = stripped.str.strip_suffix("+00:00")
    micros = _times_fast(stripped)
    if micros is None:
        micros = _times_reference(times, stripped)
    # Floor division so microsecond fractions truncate to the millisecond.
    return (micros // 1000).alias("ts_ms")


def _times_fast(stripped: pl.Series) -> pl.Series | None:
    """Arrow's ISO-8601 cast (about 10x faster than chrono); None when any entry needs the reference parser.

    Arrow also accepts shapes our rule rejects (no seconds, a space instead of ``T``), so those are screened out
    first: every accepted string is at least ``YYYY-MM-DDTHH:MM:SS`` with ``T`` at index 10.
    """
    if int(stripped.str.len_bytes().min()) < 19:  # type: ignore[arg-type]
        return None
    arrow = stripped.to_arrow().cast(pa.large_binary())
    if not pc.all(pc.equal(pc.binary_slice(arrow, 10, 11), b"T")).as_py():
        return None
    try:
        stamps = arrow.cast(pa.large_string()).cast(pa.timestamp("us"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return pl.Series("ts_us", stamps.cast(pa.int64()), dtype=pl.Int64)


def _times_reference(times: pl.Series, stripped: pl.Series) -> pl.Series:
    parsed = stripped.str.to_datetime(_TIME_FORMAT, time_unit="us", strict=False)
    bad = parsed.is_null()
    if bad.any():
        example = times.filter(bad).head(3).to_list()
        raise PageParseError(f"{int(bad.sum())} sample(s) with an unparsable time, e.g. {example!r}")
    return parsed.cast(pl.Int64)


def python_float(text: str) -> float | None:
    """The reference rule for "numeric": Python float(), except NaN which stays text (see module docstring)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def parse_values(values: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Vectorised value strings -> (value Float64, value_text String) following ``python_float``."""
    fast = values.cast(pl.Float64, strict=False)
    # polars accepts a strict subset of what float() accepts, so only its failures need the slow rule.
    failed = fast.is_null() & values.is_not_null()
    if failed.any():
        distinct = values.filter(failed).unique()
        rescued = {s: f for s in distinct.to_list() if (f := python_float(s)) is not None}
        if rescued:
            slow = values.replace_strict(
                list(rescued), list(rescued.values()), default=None, return_dtype=pl.Float64
            )
            fast = pl.select(pl.when(failed).then(slow).otherwise(fast)).to_series()
    fast = fast.fill_nan(None)  # NaN is text by decision; fill_nan keeps nulls null
    text = pl.select(pl.when(fast.is_null()).then(values).otherwise(None)).to_series()
    return fast.alias("value"), text.alias("value_text")


def frame_from_columns(names: pl.Series, times: pl.Series, values: pl.Series) -> pl.DataFrame:
    """Build a FRAME_SCHEMA frame from the three wire columns, validating names and times."""
    missing_names = int(names.null_count())
    if missing_names:
        raise PageParseError(f"{missing_names} sample(s) without a point name")
    ts = parse_times_ms(times)
    value, value_text = parse_values(values)
    return pl.DataFrame([names.alias("point"), ts, value, value_text])


def parse_page(body: bytes) -> ParsedPage:
    """Parse one ``/timeseries/paginated`` response body. Raises PageParseError when it is not a complete page."""
    try:
        raw = pl.read_json(io.BytesIO(body), schema=PAGE_JSON_SCHEMA)
    except Exception as exc:  # polars raises ComputeError/others for truncated or ill-typed JSON
        raise PageParseError(f"invalid JSON page ({len(body)} bytes): {str(exc)[:200]}") from exc
    if raw.height != 1:
        raise PageParseError(f"expected one JSON object, got {raw.height} rows")
    has_more = raw["has_more"][0]
    samples_list = raw["point_samples"]
    if samples_list.null_count() or has_more is None:
        raise PageParseError("page lacks point_samples or has_more")
    cursor = raw["next_cursor"][0]
    if has_more and not cursor:
        raise PageParseError("has_more is true but next_cursor is empty")
    flat = samples_list.explode().struct.unnest()
    if flat.height == 1 and samples_list.list.len()[0] == 0:
        flat = flat.clear()  # explode turns an empty list into one all-null row
    if int(flat.select(pl.all_horizontal(pl.all().is_null()).sum()).item()):
        raise PageParseError("point_samples contains null entries")
    frame = frame_from_columns(flat["name"], flat["time"], flat["value"])
    nulls = int(flat["value"].null_count())
    non_numeric = int(frame["value_text"].is_not_null().sum())
    return ParsedPage(frame, cursor, bool(has_more), non_numeric, nulls)


def decode_cursor(token: str | None) -> Cursor | None:
    """Decode a base64 JSON cursor; None when absent or not in the documented shape."""
    if not token:
        return None
    try:
        data = json.loads(base64.b64decode(token + "=" * (-len(token) % 4), validate=False))
        cursor = Cursor(int(data["offset"]), str(data["timestamp"]))
        cursor.bucket_ms  # noqa: B018 - validate the timestamp now, not when it is compared
    except (ValueError, KeyError, TypeError, binascii.Error, PageParseError):
        return None
    return cursor


def encode_cursor(cursor: Cursor) -> str:
    payload = json.dumps({"offset": cursor.offset, "timestamp": cursor.timestamp}, separators=(",", ":"))
    return base64.b64encode(payload.encode()).decode("ascii")


def format_bucket(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def repair_cursor(incoming: Cursor | None, page_ts_ms: pl.Series, server: Cursor | None) -> Cursor:
    """The cursor that resumes right after this page (cursor bug, reference §4.4).

    The server's outgoing offset counts only the rows taken from the page's last bucket and forgets the incoming
    offset when the page starts and ends in that same bucket, so we recompute it:
    ``offset = (incoming.offset if incoming bucket == last bucket else 0) + rows of the page in the last bucket``.
    """
    if page_ts_ms.len() == 0:
        raise PageParseError("cannot advance a cursor past an empty page")
    buckets = page_ts_ms // BUCKET_MS * BUCKET_MS
    last_bucket = int(buckets[-1])
    in_last = int((buckets == last_bucket).sum())
    carried = incoming.offset if incoming is not None and incoming.bucket_ms == last_bucket else 0
    # Reuse the server's spelling of the bucket when it agrees, so we only change what is wrong.
    if server is not None and server.bucket_ms == last_bucket:
        stamp = server.timestamp
    elif incoming is not None and incoming.bucket_ms == last_bucket:
        stamp = incoming.timestamp
    else:
        stamp = format_bucket(last_bucket)
    return Cursor(carried + in_last, stamp)


def page_fingerprint(frame: pl.DataFrame) -> tuple[object, ...]:
    """Cheap identity of a page's content: row count plus a hash of all rows."""
    if frame.height == 0:
        return (0,)
    return (frame.height, int(frame.hash_rows(seed=7).sum()))
