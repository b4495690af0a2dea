"""FlightDeck wire formats: query-time parsing, cursors, and vectorised JSON row assembly.

Rows are built as one Arrow string per sample, ``{"name":"…","value":"…","time":"…"},`` (trailing comma
included), so a page body is a contiguous byte slice of the Arrow value buffer: serialising a page costs a
memory copy, not a Python loop per sample. Point names never need JSON escaping (asserted in ``building.py``)
and neither do values (shortest-repr numbers, ASCII labels) or times.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .generator import BUCKET_MS, Samples

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class ParamError(ValueError):
    """A bad query parameter; ``field`` names it in the Flask-RESTX 400 body."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def parse_query_time(text: str | None, field: str) -> int:
    """ISO-8601 query time to epoch ms. Naive means UTC; ``Z`` and offsets are honoured; fraction optional."""
    if text is None or not text.strip():
        raise ParamError(field, f"Missing required parameter {field}")
    raw = text.strip()
    try:
        parsed = dt.datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw)
    except ValueError:
        raise ParamError(field, f"time data {raw!r} is not ISO-8601") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    delta = parsed - _EPOCH
    # Integer arithmetic: float timestamps would round some microsecond values to the wrong millisecond.
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def format_wire_time(ts_ms: int) -> str:
    """Naive UTC ISO time as FlightDeck prints it: microseconds only when the millisecond part is non-zero."""
    base = (_EPOCH + dt.timedelta(milliseconds=ts_ms)).replace(tzinfo=None)
    return base.isoformat(timespec="microseconds" if ts_ms % 1000 else "seconds")


def parse_bool(text: str | None, field: str, default: bool) -> bool:
    if text is None:
        return default
    if text in ("true", "True", "1"):
        return True
    if text in ("false", "False", "0"):
        return False
    raise ParamError(field, f"{text!r} is not a valid boolean")


def parse_choice(text: str | None, field: str, choices: tuple[int, ...], default: int) -> int:
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ParamError(field, f"invalid literal for int() with base 10: {text!r}") from None
    if value not in choices:
        raise ParamError(field, f"{value} is not a valid choice ({', '.join(map(str, choices))})")
    return value


def encode_cursor(offset: int, bucket_ms: int) -> str:
    payload = json.dumps({"offset": offset, "timestamp": format_wire_time(bucket_ms)}, separators=(",", ":"))
    return base64.b64encode(payload.encode()).decode("ascii")


def decode_cursor(text: str) -> tuple[int, int]:
    """``(offset, bucket start ms)`` of a cursor; the timestamp is floored to its 5-minute bucket."""
    try:
        padded = text + "=" * (-len(text) % 4)
        data = json.loads(
            base64.b64decode(padded.encode("ascii"), altchars=b"-_" if "-" in text or "_" in text else None)
        )
        offset = data["offset"]
        timestamp = data["timestamp"]
        if (
            not isinstance(offset, int)
            or isinstance(offset, bool)
            or offset < 0
            or not isinstance(timestamp, str)
        ):
            raise ValueError("bad cursor fields")
        ts = parse_query_time(timestamp, "cursor")
    except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error, ParamError):
        raise ParamError("cursor", "Invalid cursor") from None
    return offset, ts - ts % BUCKET_MS


def _seconds_table() -> pa.Array:
    """Index ``ms within the minute`` -> ``SS[.mmm000]"},`` (the tail of every JSON row)."""
    out = []
    for ms in range(60_000):
        sec, frac = divmod(ms, 1000)
        out.append(f'{sec:02d}"}},' if frac == 0 else f'{sec:02d}.{frac:03d}000"}},')
    return pa.array(out, pa.string())


_SECONDS = _seconds_table()


class RowFormatter:
    """Builds the JSON row strings of one site's samples."""

    def __init__(self, names: pa.Array, labels: pa.Array) -> None:
        self.prefix = pc.binary_join_element_wise('{"name":"', names, '","value":"', "")
        self.labels = labels

    def rows(self, s: Samples) -> pa.Array:
        """One JSON object string (with trailing comma) per sample, in the order of ``s``."""
        if len(s) == 0:
            return pa.array([], pa.string())
        numeric = s.code < 0
        values = pc.cast(pa.array(s.value, pa.float64(), mask=~numeric), pa.string())
        if not numeric.all():
            labels = self.labels.take(pa.array(s.code, pa.int32(), mask=numeric))
            values = pc.coalesce(values, labels)
        minutes = s.ts // 60_000
        first = int(minutes.min())
        heads = pa.array(
            [
                f'","time":"{format_wire_time((first + i) * 60_000)[:17]}'
                for i in range(int(minutes.max()) - first + 1)
            ],
            pa.string(),
        )
        return pc.binary_join_element_wise(
            self.prefix.take(pa.array(s.pos)),
            values,
            heads.take(pa.array(minutes - first)),
            _SECONDS.take(pa.array(s.ts - minutes * 60_000)),
            "",
        )


def row_bytes(rows: pa.Array, start: int, stop: int) -> memoryview:
    """The bytes of ``rows[start:stop]`` as one zero-copy slice of the value buffer."""
    offsets = rows.buffers()[1]
    data = rows.buffers()[2]
    if start >= stop or data is None or offsets is None:
        return memoryview(b"")
    off = np.frombuffer(offsets, dtype=np.int32, count=len(rows) + 1 + rows.offset)[rows.offset :]
    return memoryview(data)[int(off[start]) : int(off[stop])]


def page_body(chunks: list[memoryview], next_cursor: str | None, has_more: bool) -> bytes:
    """The page JSON. One join is the only copy of the rows: fresh multi-MB buffers are costly to fault in."""
    tail = json.dumps({"next_cursor": next_cursor, "has_more": has_more}, separators=(",", ":"))
    parts: list[bytes | memoryview] = [b'{"point_samples":[', *chunks, b"]," + tail[1:].encode()]
    for i in range(len(chunks), 0, -1):
        if len(parts[i]):
            parts[i] = parts[i][:-1]  # the trailing comma of the last row
            break
    return b"".join(parts)
