"""Response encodings of a ``QueryResult``: the old list-of-objects JSON, columnar JSON, MessagePack, Arrow IPC.

The old contract (``samples: [{point_name, timestamp, value}]``) is kept byte-for-byte in shape; columnar is the
compact extension (about 5x smaller, see performance-anchors §6). Numeric columns go to orjson as numpy arrays,
which it serialises natively without building Python floats.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any, Literal

import msgpack
import numpy as np
import orjson
import polars as pl
import pyarrow as pa

from bv_pipeline.api.reader import QueryResult

MEDIA_JSON = "application/json"
MEDIA_MSGPACK = "application/x-msgpack"
MEDIA_ARROW = "application/vnd.apache.arrow.stream"
SUPPORTED_MEDIA = (MEDIA_JSON, MEDIA_MSGPACK, MEDIA_ARROW)
_MEDIA_ALIASES = {
    "application/json": MEDIA_JSON,
    "application/x-msgpack": MEDIA_MSGPACK,
    "application/msgpack": MEDIA_MSGPACK,
    "application/vnd.msgpack": MEDIA_MSGPACK,
    "application/vnd.apache.arrow.stream": MEDIA_ARROW,
}

Format = Literal["rows", "columnar"]
_ORJSON_OPTS = orjson.OPT_SERIALIZE_NUMPY


def negotiate(accept: str | None) -> str:
    """Pick the response media type from an Accept header by q-value; JSON when nothing supported is named."""
    if not accept:
        return MEDIA_JSON
    best, best_q = MEDIA_JSON, -1.0
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        q = 1.0
        for f in fields[1:]:
            if f.startswith("q="):
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        target = _MEDIA_ALIASES.get(media)
        if target is None and media in ("*/*", "application/*"):
            target = MEDIA_JSON
        # Strictly greater keeps the earliest of equal-q types, as the client listed them.
        if target is not None and q > 0 and q > best_q:
            best, best_q = target, q
    return best


def build_meta(
    result: QueryResult,
    unknown: list[str],
    renamed: dict[str, str],
    coverage: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Query metadata; ``coverage`` is ISO day -> state (see ``bv_pipeline.api.coverage``), by default the
    reader's own (without the HTTP layer's ``before_start``/``future`` refinement)."""
    if coverage is None:
        coverage = {d.isoformat(): state for d, state in result.coverage.items()}
    meta: dict[str, Any] = {
        "source": result.source,
        "hot_samples": result.hot_samples,
        "cold_samples": result.cold_samples,
        # Names of the old query worker's metadata (D1 = hot, R2 = cold), kept for existing clients.
        "d1_samples": result.hot_samples,
        "r2_samples": result.cold_samples,
        "unknown_points": unknown,
        "interval": result.interval,
        "downsampled": result.downsampled,
        "coverage": coverage,
    }
    if renamed:
        meta["resolved_points"] = renamed
    return meta


def data_etag(result: QueryResult, request_key: str, meta: dict[str, Any]) -> str:
    """Strong ETag over the data and every response field except timing, computed before any encoding.

    ``hash_rows`` gives a 64-bit hash per row; hashing that sequence with blake2b identifies the frame without
    serialising it, so a 304 costs no encoding. (hash_rows may change across Polars versions; that only
    invalidates client caches.)
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(request_key.encode())
    h.update(orjson.dumps(meta, option=orjson.OPT_SORT_KEYS))
    h.update(str(result.frame.height).encode())
    if result.frame.height:
        h.update(result.frame.hash_rows(seed=7).to_numpy().tobytes())
    return f'"{h.hexdigest()}"'


def _series(result: QueryResult) -> dict[str, pl.DataFrame]:
    frame = result.frame
    if not frame.height:
        return {}
    points = frame["point"]
    if points[0] == points[-1]:  # sorted by point: one series (most chart requests), no partitioning needed
        return {str(points[0]): frame}
    parts = frame.partition_by("point", as_dict=True, maintain_order=True)
    return {str(k[0]): v for k, v in parts.items()}


def _raw_values(df: pl.DataFrame) -> np.ndarray | list[Any]:
    """Numeric values as a float array (null -> NaN -> JSON null), or a list when text samples are present."""
    if df["value_text"].null_count() == df.height:
        return df["value"].fill_null(float("nan")).to_numpy()
    return [
        t if t is not None else v
        for v, t in zip(df["value"].to_list(), df["value_text"].to_list(), strict=True)
    ]


def columnar_doc(result: QueryResult, meta: dict[str, Any], *, as_lists: bool = False) -> dict[str, Any]:
    parts = _series(result)
    series: list[dict[str, Any]] = []
    for name in result.points:
        df = parts.get(name)
        if df is None:
            df = result.frame.clear()
        entry: dict[str, Any] = {"name": name, "timestamps": df["ts_ms"].to_numpy()}
        if result.interval is None:
            entry["values"] = _raw_values(df)
        else:
            entry["values"] = df["avg"].to_numpy()
            entry["min"] = df["min"].to_numpy()
            entry["max"] = df["max"].to_numpy()
            entry["count"] = df["count"].to_numpy()
        if as_lists:  # MessagePack has no numpy support; NaN stays NaN there (a float), JSON maps it to null
            entry = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in entry.items()}
        series.append(entry)
    return {"site_name": result.site, "point_names": result.points, "series": series, "metadata": meta}


def _rows_frame(result: QueryResult) -> pl.DataFrame:
    f = result.frame
    if result.interval is None:
        return f.select(
            pl.col("point").alias("point_name"), pl.col("ts_ms").alias("timestamp"), "value", "value_text"
        )
    return f.select(
        pl.col("point").alias("point_name"),
        pl.col("ts_ms").alias("timestamp"),
        pl.col("avg").alias("value"),
        "min",
        "max",
        "count",
    )


def _rows_list(result: QueryResult) -> list[dict[str, Any]]:
    rows = _rows_frame(result).to_dicts()
    if result.interval is None:
        for r in rows:
            text = r.pop("value_text")
            if text is not None:
                r["value"] = text
    return rows


def _rows_json(result: QueryResult) -> bytes:
    """The samples array as JSON. Polars' writer is ~1.5x faster than dicts + orjson on large numeric results."""
    rf = _rows_frame(result)
    if result.interval is None and rf["value_text"].null_count() != rf.height:
        return orjson.dumps(_rows_list(result))
    if result.interval is None:
        rf = rf.drop("value_text")
    buf = io.BytesIO()
    rf.write_json(buf)
    return buf.getvalue()


def encode_json(result: QueryResult, meta: dict[str, Any], fmt: Format, query_time_ms: float) -> bytes:
    meta = {**meta, "query_time_ms": round(query_time_ms, 2)}
    if fmt == "columnar":
        return orjson.dumps(columnar_doc(result, meta), option=_ORJSON_OPTS)
    head = orjson.dumps({"site_name": result.site, "point_names": result.points})
    # Splice the samples array in: it is the one large part, serialised once by the fastest writer.
    return b"".join(
        [head[:-1], b',"samples":', _rows_json(result), b',"metadata":', orjson.dumps(meta), b"}"]
    )


def encode_msgpack(result: QueryResult, meta: dict[str, Any], fmt: Format, query_time_ms: float) -> bytes:
    meta = {**meta, "query_time_ms": round(query_time_ms, 2)}
    if fmt == "columnar":
        doc = columnar_doc(result, meta, as_lists=True)
    else:
        doc = {
            "site_name": result.site,
            "point_names": result.points,
            "samples": _rows_list(result),
            "metadata": meta,
        }
    out = msgpack.packb(doc, use_bin_type=True)
    assert isinstance(out, bytes)
    return out


def encode_arrow(result: QueryResult, meta: dict[str, Any]) -> bytes:
    """Arrow IPC stream, zstd-compressed buffers; point_name dictionary-encoded; metadata in the schema."""
    table = _rows_frame(result).to_arrow()
    table = table.set_column(0, "point_name", table["point_name"].cast(pa.string()).dictionary_encode())
    schema_meta = {
        b"site_name": result.site.encode(),
        b"point_names": orjson.dumps(result.points),
        b"metadata": orjson.dumps(meta),
    }
    table = table.replace_schema_metadata(schema_meta)
    sink = io.BytesIO()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue()
