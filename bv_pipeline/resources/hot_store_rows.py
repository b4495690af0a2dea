"""Conversions between the hot store's SQL rows and the protocol's dataclasses, shared by both backends."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bv_pipeline.storage import hot_sql as q
from bv_pipeline.storage.interfaces import ManifestEntry, PointMeta
from bv_pipeline.storage.samples import SAMPLE_SCHEMA, dedupe_samples


def now_ms() -> int:
    return int(time.time() * 1000)


def prepare(samples: pa.Table) -> tuple[pa.Table, list[str], np.ndarray]:
    """Cast to SAMPLE_SCHEMA, drop repeated (point, ts_ms) keeping the last, and dictionary-encode point names.

    Returns (table, unique names, per-row index into names). Duplicates are detected on integer codes (cheap);
    the polars de-duplication only runs when there are any."""
    table = samples.select(SAMPLE_SCHEMA.names).cast(SAMPLE_SCHEMA).combine_chunks()
    enc = pc.dictionary_encode(table["point"]).combine_chunks()
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    ts = table["ts_ms"].to_numpy()
    import polars as pl

    if pl.DataFrame({"c": codes, "t": ts}).n_unique() != table.num_rows:
        table, _ = dedupe_samples(table)
        table = table.combine_chunks()
        enc = pc.dictionary_encode(table["point"]).combine_chunks()
        codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return table, enc.dictionary.to_pylist(), codes


def manifest_from_row(row: Sequence[Any]) -> ManifestEntry:
    site, day, key, rows, nbytes, checksum, schema_version, verified_ms, source, hot_deleted_ms = row
    return ManifestEntry(
        site=site,
        day=dt.date.fromisoformat(day),
        key=key,
        rows=int(rows),
        bytes=int(nbytes),
        checksum=checksum,
        schema_version=int(schema_version),
        verified_ms=int(verified_ms),
        source=source,
        hot_deleted_ms=None if hot_deleted_ms is None else int(hot_deleted_ms),
    )


def manifest_params(e: ManifestEntry) -> list[Any]:
    return [
        e.site,
        e.day.isoformat(),
        e.key,
        e.rows,
        e.bytes,
        e.checksum,
        e.schema_version,
        e.verified_ms,
        e.source,
        e.hot_deleted_ms,
    ]


def point_from_row(row: Sequence[Any]) -> PointMeta:
    name, kind, unit, marker_tags, kv_tags, interval = row
    return PointMeta(
        name=name,
        kind=kind,
        unit=unit,
        marker_tags=tuple(json.loads(marker_tags or "[]")),
        kv_tags=dict(json.loads(kv_tags or "{}")),
        collect_interval_s=None if interval is None else int(interval),
    )


def point_param_rows(points: Sequence[PointMeta]) -> list[list[Any]]:
    # Last description of a name wins, like samples.
    by_name = {p.name: p for p in points}
    return [
        q.point_meta_params(p.name, p.kind, p.unit, p.marker_tags, p.kv_tags, p.collect_interval_s)
        for p in by_name.values()
    ]
