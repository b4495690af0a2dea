"""Pure row logic of the hot tier: last-write-wins merges, "what is not stored yet", blocks with summaries and
staging payloads. Rows are polars frames with ``hot_codec.ROW_SCHEMA`` (pid, ts, value, text). No I/O."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import polars as pl

from bv_pipeline.storage import hot_codec
from bv_pipeline.storage.hot_codec import ROW_SCHEMA, empty_rows
from bv_pipeline.storage.hot_layout import DAY_MS, HOUR_MS, KEY_HOURS, STAGING_GROUP_POINTS, BlockRow


def _with_bits(rows: pl.DataFrame) -> pl.DataFrame:
    bits = pl.Series("vb", hot_codec.value_bits(rows["value"]), pl.Int64)
    return rows.with_columns(pl.when(pl.col("value").is_null()).then(None).otherwise(bits).alias("vb"))


def merge_last(layers: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """Union of row sets, later layers winning on (pid, ts); sorted by (pid, ts)."""
    frames = [
        f.select(ROW_SCHEMA.keys()).with_columns(pl.lit(i, pl.Int64).alias("_seq"))
        for i, f in enumerate(layers)
    ]
    frames = [f for f in frames if f.height]
    if not frames:
        return empty_rows()
    if len(frames) == 1:
        return frames[0].drop("_seq").sort("pid", "ts")
    both = pl.concat(frames).sort("pid", "ts", "_seq")
    return both.unique(subset=["pid", "ts"], keep="last", maintain_order=True).drop("_seq")


def not_stored(incoming: pl.DataFrame, stored: pl.DataFrame) -> pl.DataFrame:
    """Rows of ``incoming`` that ``stored`` does not hold with the exact same value (float64 bits and text)."""
    if stored.height == 0 or incoming.height == 0:
        return incoming
    a = _with_bits(incoming)
    b = _with_bits(stored).select(
        "pid", "ts", pl.col("vb").alias("vb_s"), pl.col("text").alias("text_s"), pl.lit(True).alias("_hit")
    )
    j = a.join(b, on=["pid", "ts"], how="left")
    same = (
        pl.col("_hit").fill_null(False)
        & pl.col("vb").eq_missing(pl.col("vb_s"))
        & pl.col("text").eq_missing(pl.col("text_s"))
    )
    return j.filter(~same).select(ROW_SCHEMA.keys())


def summaries(rows: pl.DataFrame) -> pl.DataFrame:
    """Per (pid, hour) of sorted rows: n, finite-numeric count/min/max/sum (like cold rollups), first/last ts."""
    # The same expressions as the cold tier's hourly rollups (storage.rollups), so hot and cold hours agree.
    finite = pl.col("value").is_finite().fill_null(False)
    v = pl.col("value").filter(finite)
    return (
        rows.with_columns((pl.col("ts") - pl.col("ts") % HOUR_MS).alias("hour_ms"))
        .group_by("pid", "hour_ms", maintain_order=True)
        .agg(
            pl.len().cast(pl.Int64).alias("n"),
            finite.sum().cast(pl.Int64).alias("n_numeric"),
            v.min().alias("vmin"),
            v.max().alias("vmax"),
            v.sum().alias("vsum"),
            pl.col("ts").min().alias("first_ts"),
            pl.col("ts").max().alias("last_ts"),
        )
    )


def build_blocks(rows: pl.DataFrame) -> dict[dt.date, list[BlockRow]]:
    """Sealed blocks of rows sorted by (pid, ts), grouped by UTC day."""
    if rows.height == 0:
        return {}
    hour = (rows["ts"] - rows["ts"] % HOUR_MS).to_numpy()
    pid = rows["pid"].to_numpy()
    # Group boundaries of (pid, hour) in sorted rows.
    cut = np.flatnonzero((np.diff(pid) != 0) | (np.diff(hour) != 0)) + 1
    bounds = np.concatenate([[0], cut, [rows.height]])
    summ = summaries(rows)
    out: dict[dt.date, list[BlockRow]] = {}
    epoch = dt.date(1970, 1, 1)
    for i, (p, h, n, nn, lo, hi, s, first, last) in enumerate(
        summ.select(
            "pid", "hour_ms", "n", "n_numeric", "vmin", "vmax", "vsum", "first_ts", "last_ts"
        ).iter_rows()
    ):
        payload = hot_codec.encode_rows(rows.slice(int(bounds[i]), int(bounds[i + 1] - bounds[i])))
        day = epoch + dt.timedelta(days=h // DAY_MS)
        key = p * KEY_HOURS + (h % DAY_MS) // HOUR_MS
        out.setdefault(day, []).append(
            (key, n, nn, lo if nn else None, hi if nn else None, s if nn else None, first, last, payload)
        )
    return out


# A staging payload travels as an X'..' literal inside one statement (D1: <= 100 KB of SQL), so 2 hex digits
# per byte: payloads stay under this many bytes, split by points when larger.
MAX_STAGING_PAYLOAD_BYTES = 45_000


def staging_payloads(
    rows: pl.DataFrame, *, max_bytes: int = MAX_STAGING_PAYLOAD_BYTES
) -> list[tuple[int, int, int, int, bytes]]:
    """Staging rows (hour_ms, n, first_ts, last_ts, payload): per hour, groups of up to 1,000 points, halved
    until each payload fits ``max_bytes``."""
    if rows.height == 0:
        return []
    out: list[tuple[int, int, int, int, bytes]] = []
    rows = rows.with_columns((pl.col("ts") - pl.col("ts") % HOUR_MS).alias("_hour")).sort(
        "_hour", "pid", "ts"
    )

    def emit(hour_ms: int, chunk: pl.DataFrame) -> None:
        payload = hot_codec.encode_rows(chunk)
        pids = chunk["pid"].unique(maintain_order=True)
        if len(payload) > max_bytes and pids.len() > 1:
            half = pids.slice(0, pids.len() // 2).implode()
            emit(hour_ms, chunk.filter(pl.col("pid").is_in(half)))
            emit(hour_ms, chunk.filter(~pl.col("pid").is_in(half)))
            return
        if len(payload) > max_bytes:
            raise ValueError(
                f"one point's samples of one hour encode to {len(payload)} bytes (> {max_bytes})"
            )
        first, last = int(chunk["ts"].min()), int(chunk["ts"].max())  # type: ignore[arg-type]
        out.append((hour_ms, chunk.height, first, last, payload))

    for (hour_ms,), part in rows.group_by("_hour", maintain_order=True):
        part = part.drop("_hour")
        pids = part["pid"].unique(maintain_order=True)
        for g in range(0, pids.len(), STAGING_GROUP_POINTS):
            emit(
                int(hour_ms), part.filter(pl.col("pid").is_in(pids.slice(g, STAGING_GROUP_POINTS).implode()))
            )  # type: ignore[arg-type]
    return out


def decode_many(payloads: Sequence[str]) -> pl.DataFrame:
    """Rows of hex-encoded payloads (as SQL ``hex(block)`` returns them), in payload order."""
    frames = [hot_codec.decode_rows(bytes.fromhex(p)) for p in payloads]
    return pl.concat(frames) if frames else empty_rows()


def clip(rows: pl.DataFrame, start_ms: int, end_ms: int, pids: set[int] | None = None) -> pl.DataFrame:
    f = (pl.col("ts") >= start_ms) & (pl.col("ts") < end_ms)
    if pids is not None:
        f = f & pl.col("pid").is_in(list(pids))
    return rows.filter(f)
