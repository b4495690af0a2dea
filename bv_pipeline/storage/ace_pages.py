"""Pure pieces of reading ACE's answers: `Retry-After`, error messages, the list pages' JSON envelope, Point objects as ``PointMeta``, and the assembly of
compact per-page frames into one ``SAMPLE_SCHEMA`` table (sorted by point and time, repeats dropped).

``resources.ace.AceClient`` does the HTTP, paging and retries and calls these.
"""

from __future__ import annotations

import email.utils
from typing import Any

import numpy as np
import orjson
import polars as pl
import pyarrow as pa

from bv_pipeline.storage.ace_parse import PageParseError
from bv_pipeline.storage.interfaces import PointMeta
from bv_pipeline.storage.samples import SAMPLE_SCHEMA

RETRY_AFTER_MAX_S = 300.0  # a server asking for more than 5 minutes is treated as asking for 5


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


def server_message(body: bytes) -> str:
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


def point_meta(item: dict[str, Any]) -> PointMeta:
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


class Interner:
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


def parse_envelope(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PageParseError(f"invalid JSON ({len(body)} bytes): {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        raise PageParseError("list response without an items array")
    return data


def assemble_samples(chunks: list[pl.DataFrame], names: list[str], texts: list[str]) -> tuple[pa.Table, int]:
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
    point = string_column(pl.Series([names[i] for i in order], dtype=pl.String).gather(ranks))
    del ranks
    value = df["value"].gather(perm).to_arrow()
    # Mostly null: an Arrow take makes only offsets and validity, where a polars gather would make 16 B views.
    value_text = pa.array(texts, type=pa.string()).take(df["tid"].gather(perm).to_arrow())
    del df, perm
    table = pa.Table.from_arrays([point, ts.to_arrow(), value, value_text], schema=SAMPLE_SCHEMA)
    return table, duplicates


STRING_SLICE_ROWS = 1 << 21  # x 512-byte maximum name length stays far below pa.string()'s 2 GiB per array


def string_column(series: pl.Series) -> pa.ChunkedArray:
    """A polars String column as a ``pa.string()`` chunked array.

    polars exports ``large_string``; casting it in slices only rewrites the offsets and keeps every slice below
    the 2 GiB limit of 32-bit offsets.
    """
    large = series.to_arrow()
    del series
    slices = [
        large.slice(i, STRING_SLICE_ROWS).cast(pa.string()) for i in range(0, len(large), STRING_SLICE_ROWS)
    ]
    return pa.chunked_array(slices, type=pa.string())
