"""Pure row logic of the hot tier: last-write-wins merges, "what is not stored yet", blocks with summaries and
staging payloads. Rows are polars frames with ``hot_codec.ROW_SCHEMA`` (pid, ts, value, text). No I/O."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

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
    """Sealed blocks of rows with unique (pid, ts), grouped by UTC day.

    The summary columns are computed here like the cold tier's hourly rollups (finite values only, polars
    sums), not taken from the codec's ``BlockSummary`` (which counts infinities as numeric and sums with
    ``math.fsum``), so an hour reads the same from hot summaries and from cold rollups."""
    out: dict[dt.date, list[BlockRow]] = {}
    if rows.height == 0:
        return out
    summ = {
        (p, h): (n, nn, lo, hi, sm, first, last)
        for p, h, n, nn, lo, hi, sm, first, last in summaries(rows)
        .select("pid", "hour_ms", "n", "n_numeric", "vmin", "vmax", "vsum", "first_ts", "last_ts")
        .iter_rows()
    }
    epoch = dt.date(1970, 1, 1)
    for pid, hour_ms, block in hot_codec.encode_blocks(rows):
        n, nn, lo, hi, sm, first, last = summ[(pid, hour_ms)]
        day = epoch + dt.timedelta(days=hour_ms // DAY_MS)
        key = pid * KEY_HOURS + (hour_ms % DAY_MS) // HOUR_MS
        finite = nn > 0
        out.setdefault(day, []).append(
            (
                key,
                n,
                nn,
                lo if finite else None,
                hi if finite else None,
                sm if finite else None,
                first,
                last,
                block,
            )
        )
    return out


# A staging payload travels as a string literal inside one statement (D1: <= 100 KB of SQL): payloads stay
# under this many bytes, split by points when larger.
MAX_STAGING_PAYLOAD_BYTES = 80_000


def staging_payloads(
    rows: pl.DataFrame, *, max_bytes: int = MAX_STAGING_PAYLOAD_BYTES
) -> list[tuple[int, int, int, int, str]]:
    """Staging rows (hour_ms, n, first_ts, last_ts, payload): per hour, groups of up to 1,000 points, halved
    until each payload fits ``max_bytes``."""
    if rows.height == 0:
        return []
    out: list[tuple[int, int, int, int, str]] = []
    rows = rows.with_columns((pl.col("ts") - pl.col("ts") % HOUR_MS).alias("_hour")).sort(
        "_hour", "pid", "ts"
    )

    def emit(hour_ms: int, chunk: pl.DataFrame) -> None:
        payload = hot_codec.encode_rows(chunk)
        pids = chunk["pid"].unique(maintain_order=True)
        if len(payload.encode()) > max_bytes and pids.len() > 1:
            half = pids.slice(0, pids.len() // 2).implode()
            emit(hour_ms, chunk.filter(pl.col("pid").is_in(half)))
            emit(hour_ms, chunk.filter(~pl.col("pid").is_in(half)))
            return
        if len(payload.encode()) > max_bytes:
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


def decode_staged(payloads: Sequence[str]) -> pl.DataFrame:
    """Rows of staging payloads, in payload order."""
    frames = [hot_codec.decode_rows(p) for p in payloads]
    return pl.concat(frames) if frames else empty_rows()


def decode_block_rows(result_rows: Sequence[dict]) -> pl.DataFrame:
    """Rows of block-table result rows (``key``, ``block``)."""
    if not result_rows:
        return empty_rows()
    return hot_codec.decode_blocks(
        [r["block"] for r in result_rows], [int(r["key"]) // KEY_HOURS for r in result_rows]
    )


def clip(rows: pl.DataFrame, start_ms: int, end_ms: int, pids: set[int] | None = None) -> pl.DataFrame:
    f = (pl.col("ts") >= start_ms) & (pl.col("ts") < end_ms)
    if pids is not None:
        f = f & pl.col("pid").is_in(list(pids))
    return rows.filter(f)
