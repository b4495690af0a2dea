"""Reads of the block layout: samples, hourly summaries, counts and extremes (mixed into ``BlockHotStore``)."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from bv_pipeline.resources.hot_store_core import StoreCore
from bv_pipeline.storage import hot_frames as hf
from bv_pipeline.storage import hot_layout as hl
from bv_pipeline.storage.interfaces import WindowStats


class BlockReads(StoreCore):
    def read_hourly(self, site: str, points: Sequence[str], start_ms: int, end_ms: int) -> pl.DataFrame:
        """Per (point, UTC hour) in [start, end) (whole hours): ``samples``, ``count``/``sum``/``min``/``max`` of
        the finite numeric values, shaped like the cold tier's hourly rollups. Sealed hours come from the block
        summary columns (no payload is read); hours with staging rows are decoded."""
        ids = self.point_ids(site)
        by_id = {ids[n]: n for n in dict.fromkeys(points) if n in ids}
        start_ms -= start_ms % hl.HOUR_MS
        end_ms += (-end_ms) % hl.HOUR_MS
        if not by_id or start_ms >= end_ms:
            return _empty_hourly()
        pids = sorted(by_id)
        staged = set(self._staged_hours(site, start_ms, end_ms))
        results = self._fetch(self._block_statements(site, pids, start_ms, end_ms, summaries=True))
        frames: list[
            pl.LazyFrame
        ] = []  # one query plan for the whole answer: each eager step costs a dispatch
        flat = [r for rs in results for r in rs]
        if flat:
            summ = (
                pl.DataFrame(flat, orient="row")
                .lazy()
                .select(
                    (pl.col("key") // hl.KEY_HOURS).cast(pl.Int64).alias("pid"),
                    (pl.col("day_ms") + (pl.col("key") % hl.KEY_HOURS) * hl.HOUR_MS)
                    .cast(pl.Int64)
                    .alias("hour_ms"),
                    pl.col("n").cast(pl.Int64).alias("samples"),
                    pl.col("n_numeric").cast(pl.Int64).alias("count"),
                    pl.col("vsum").cast(pl.Float64).alias("sum"),
                    pl.col("vmin").cast(pl.Float64).alias("min"),
                    pl.col("vmax").cast(pl.Float64).alias("max"),
                )
            )
            frames.append(summ.filter(~pl.col("hour_ms").is_in(sorted(staged))))
        for h in sorted(staged):
            rows = self.read_rows(site, pids, h, h + hl.HOUR_MS)
            if rows.height:
                frames.append(
                    hf.summaries(rows)
                    .lazy()
                    .select(
                        "pid",
                        "hour_ms",
                        pl.col("n").alias("samples"),
                        pl.col("n_numeric").alias("count"),
                        pl.when(pl.col("n_numeric") > 0).then(pl.col("vsum")).alias("sum"),
                        pl.col("vmin").alias("min"),
                        pl.col("vmax").alias("max"),
                    )
                )
        if not frames:
            return _empty_hourly()
        out = pl.concat(frames)
        names = pl.LazyFrame(
            {"pid": list(by_id), "point": list(by_id.values())},
            schema={"pid": pl.Int64(), "point": pl.String()},
        )
        return (
            out.join(names, on="pid")
            .select(list(HOURLY_SCHEMA))
            .cast(HOURLY_SCHEMA)  # type: ignore[arg-type]
            .sort("point", "hour_ms")
            .collect()
        )

    # -- stats, extremes, deletion -------------------------------------------------------------------------------

    def _stats(
        self, site: str, start_ms: int, end_ms: int, cut_ms: int
    ) -> tuple[int, int, int | None, int | None]:
        """(samples in [start, end), those at or after cut, min ts, max ts): whole hours without staging rows
        from the block summaries; staged hours and hours cut by start, end or cut by decoding."""
        if start_ms >= end_ms:
            return 0, 0, None, None
        days = self._days_in(site, start_ms, end_ms)
        staged = set(self._staged_hours(site, start_ms - start_ms % hl.HOUR_MS, end_ms))
        # Blocks exist only below the sealed instant: later whole hours need no summary query (a sync's check
        # covers the rest of today, which would otherwise scan the day table every 5 minutes).
        sealed = self.sealed_ms(site)
        cut_hours = {
            t - t % hl.HOUR_MS
            for t in (start_ms, end_ms, cut_ms)
            if t % hl.HOUR_MS and start_ms <= t <= end_ms
        }
        day_starts = {hl.day_start_ms(d) for d in days}
        special = {
            h for h in cut_hours if h in staged or (h < sealed and h - h % hl.DAY_MS in day_starts)
        } | staged
        n = after = 0
        lo: int | None = None
        hi: int | None = None
        for day in days:
            d0 = hl.day_start_ms(day)
            whole = [
                x
                for x in range(24)
                if start_ms <= d0 + x * hl.HOUR_MS
                and d0 + (x + 1) * hl.HOUR_MS <= min(end_ms, sealed)
                and d0 + x * hl.HOUR_MS not in special
            ]
            # Runs split at the cut, so each run is entirely before or entirely at/after it.
            for a, b in _runs(whole, split_at=(cut_ms - d0) // hl.HOUR_MS):
                r = self._one(hl.day_totals_sql(site, day), [a, b])[0]
                cnt = int(r["n"] or 0)
                n += cnt
                if d0 + a * hl.HOUR_MS >= cut_ms:
                    after += cnt
                if cnt:
                    lo = _min(lo, int(r["first_ts"]))
                    hi = _max(hi, int(r["last_ts"]))
        if special:
            pids = sorted(self.point_ids(site).values())
            for h in sorted(special):
                rows = self.read_rows(site, pids, max(h, start_ms), min(h + hl.HOUR_MS, end_ms))
                if rows.height:
                    n += rows.height
                    after += int((rows["ts"] >= cut_ms).sum())
                    lo = _min(lo, int(rows["ts"].min()))  # type: ignore[arg-type]
                    hi = _max(hi, int(rows["ts"].max()))  # type: ignore[arg-type]
        return n, after, lo, hi

    def count_samples(self, site: str, start_ms: int, end_ms: int) -> int:
        return self._stats(site, start_ms, end_ms, end_ms)[0]

    def window_stats(self, site: str, start_ms: int, end_ms: int, future_from_ms: int) -> WindowStats:
        n, after, _, hi = self._stats(site, start_ms, end_ms, future_from_ms)
        return WindowStats(rows=n, future_rows=after, max_ts=hi)

    def max_ts_between(self, site: str, start_ms: int, end_ms: int) -> int | None:
        return self._stats(site, start_ms, end_ms, end_ms)[3]

    def _extreme(self, site: str, *, newest: bool) -> int | None:
        days = self.site_days(site)
        staged = self._one(hl.STAGING_SUMMARY, [site])
        cands: list[int] = []
        for day in reversed(days) if newest else days:
            r = self._one(hl.day_totals_sql(site, day), [0, 23])[0]
            if r["n"]:
                cands.append(int(r["last_ts"] if newest else r["first_ts"]))
                break
        cands.extend(int(r["last_ts"] if newest else r["first_ts"]) for r in staged)
        if not cands:
            return None
        return max(cands) if newest else min(cands)

    def max_ts(self, site: str) -> int | None:
        return self._extreme(site, newest=True)

    def min_ts(self, site: str) -> int | None:
        return self._extreme(site, newest=False)


HOURLY_SCHEMA: dict[str, pl.DataType] = {
    "point": pl.String(),
    "hour_ms": pl.Int64(),
    "samples": pl.Int64(),
    "count": pl.Int64(),
    "sum": pl.Float64(),
    "min": pl.Float64(),
    "max": pl.Float64(),
}


def _empty_hourly() -> pl.DataFrame:
    return pl.DataFrame(schema=HOURLY_SCHEMA)


def _runs(hours: list[int], *, split_at: int | None = None) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for h in hours:
        if out and out[-1][1] == h - 1 and h != split_at:
            out[-1] = (out[-1][0], h)
        else:
            out.append((h, h))
    return out


def _min(a: int | None, b: int) -> int:
    return b if a is None else min(a, b)


def _max(a: int | None, b: int) -> int:
    return b if a is None else max(a, b)
