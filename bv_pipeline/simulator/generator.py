"""Deterministic, vectorised sample generation for one simulated site.

Every sample is a pure function of ``(seed, site, point, k)`` where ``k`` is the index of the cadence slot:

- time ``ts = k * cadence + phase(point) + jitter`` with jitter in [-200, +200] ms at ms resolution;
- jitter, the ~1% missing samples, noise and late-arrival delays come from splitmix64 of a per-point key mixed
  with ``k`` (a counter-based hash, not a stateful RNG), so any window of any day regenerates identically no
  matter how it is sliced;
- values come from closed-form functions of the slot's grid time (diurnal sine, occupancy schedule, a
  cumulative energy integral for meters), rounded to 0.1/0.01/1 steps so their shortest repr is short, or
  passed through float32 for points that mimic float32 registers ("1.6100000143051147").

Arrays are laid out point-major (points in name order, then time), which is the order the API sorts rows in
within a 5-minute bucket and the order ``truth()`` returns.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from bv_pipeline.storage.samples import SAMPLE_SCHEMA

from .building import SimPoint

BUCKET_MS = 300_000
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
JITTER_MS = 200
# Meter energy is integrated from 2020-01-01 so readings stay in a realistic range (millions of kWh, not tens).
_METER_EPOCH_MS = 1_577_836_800_000

_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_SLOT_MUL = _U64(0xD6E8FEB86659FD93)
_NOISE_SALT = _U64(0x5851F42D4C957F2D)
_DAY_SALT = _U64(0x2545F4914F6CDD1D)
_LATE_SALT = _U64(0x632BE59BD9B4E019)

KIND_CODES = {"temperature": 0, "position": 1, "binary": 2, "setpoint": 3, "meter": 4, "analog": 5, "enum": 6}
_OCCUPANCY_LABELS = ("occupied", "unoccupied")


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser over a uint64 array (wrapping arithmetic); returns a new array."""
    z = x + _GOLDEN
    z ^= z >> _U64(30)
    z *= _U64(0xBF58476D1CE4E5B9)
    z ^= z >> _U64(27)
    z *= _U64(0x94D049BB133111EB)
    z ^= z >> _U64(31)
    return z


def stable_hash64(text: str) -> int:
    """A process-independent 64-bit hash (Python's ``hash`` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


@dataclass
class Samples:
    """Flat sample arrays, point-major. ``code`` is the enum label index (-1 for numeric samples, whose
    ``value`` is set; enum samples have ``value`` NaN). ``visible_from`` is when the API starts serving it."""

    pos: np.ndarray  # int32 position of the point in name order
    ts: np.ndarray  # int64 epoch ms
    value: np.ndarray  # float64
    code: np.ndarray  # int32
    visible_from: np.ndarray  # int64 epoch ms

    def __len__(self) -> int:
        return int(self.pos.shape[0])

    def select(self, mask: np.ndarray) -> Samples:
        return Samples(
            self.pos[mask], self.ts[mask], self.value[mask], self.code[mask], self.visible_from[mask]
        )

    @staticmethod
    def concat(parts: list[Samples]) -> Samples:
        if not parts:
            return Samples.empty()
        if len(parts) == 1:
            return parts[0]
        return Samples(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("pos", "ts", "value", "code", "visible_from")
            )
        )

    @staticmethod
    def empty() -> Samples:
        return Samples(
            np.empty(0, np.int32),
            np.empty(0, np.int64),
            np.empty(0, np.float64),
            np.empty(0, np.int32),
            np.empty(0, np.int64),
        )


class SiteModel:
    """Per-site parameter arrays (points in name order) and the generation kernels."""

    def __init__(
        self,
        site: str,
        points: list[SimPoint],
        *,
        seed: int,
        cadence_s: int,
        missing_fraction: float,
        late_fraction: float,
        late_max_minutes: int,
        late_seed: int,
    ) -> None:
        self.site = site
        self.points = sorted(points, key=lambda p: p.name)
        self.cadence_ms = cadence_s * 1000
        self.names = pa.array([p.name for p in self.points], pa.string())
        n = len(self.points)
        index = np.array([p.index for p in self.points], dtype=np.uint64)
        site_key = _U64((stable_hash64(site) ^ (seed & 0xFFFFFFFFFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF)
        self.key = splitmix64(splitmix64(np.full(n, site_key, dtype=np.uint64)) + index)
        self.phase = np.array([p.phase_ms for p in self.points], dtype=np.int64)
        self.kind = np.array([KIND_CODES[p.kind] for p in self.points], dtype=np.int8)
        self.base = np.array([p.base for p in self.points])
        self.amp = np.array([p.amplitude for p in self.points])
        self.noise = np.array([p.noise for p in self.points])
        self.scale = np.array([10.0**p.decimals for p in self.points])
        self.f32 = np.array([p.float32 for p in self.points], dtype=bool)
        self.shift = np.array([p.shift for p in self.points])
        # Occupancy schedules are staggered by point so binary and enum points do not all flip together.
        self.occ_start = 5.5 + (index % _U64(4)).astype(np.float64) * 0.5
        label_list: list[str] = []
        self.label_base = np.zeros(n, dtype=np.int32)
        self.label_count = np.ones(n, dtype=np.int32)
        self.occ_enum = np.zeros(n, dtype=bool)
        for i, p in enumerate(self.points):
            if p.labels:
                self.label_base[i] = len(label_list)
                self.label_count[i] = len(p.labels)
                self.occ_enum[i] = p.labels == _OCCUPANCY_LABELS
                label_list.extend(p.labels)
        self.labels = pa.array(label_list, pa.string())
        self.missing_threshold = int(missing_fraction * (1 << 24))
        self.late_threshold = int(late_fraction * (1 << 16))
        self.late_span_ms = max(1, late_max_minutes) * 60_000 - 60_000 + 1
        self.late_key = _U64(stable_hash64(f"late:{late_seed}"))
        # Bounds of phase + jitter, used to pick the cadence slots that can land in a time window.
        self.max_offset_ms = int(self.phase.max(initial=0)) + JITTER_MS
        self.max_late_ms = 0 if self.late_threshold == 0 else max(1, late_max_minutes) * 60_000

    def __len__(self) -> int:
        return len(self.points)

    def generate(self, rows: np.ndarray, t_lo: int, t_hi: int) -> Samples:
        """All samples (visible or not) of the points at positions ``rows`` (ascending) with ts in [t_lo, t_hi)."""
        cad = self.cadence_ms
        k_lo = max(0, (t_lo - self.max_offset_ms) // cad)
        k_hi = max(k_lo, (t_hi + JITTER_MS) // cad + 1)
        if t_hi <= t_lo or len(rows) == 0:
            return Samples.empty()
        ks = np.arange(k_lo, k_hi, dtype=np.int64)
        h1 = splitmix64(self.key[rows][:, None] ^ (ks.astype(np.uint64) * _SLOT_MUL)[None, :])
        jitter = (h1 & _U64(0x1FF)).astype(np.int64) % (2 * JITTER_MS + 1) - JITTER_MS
        ts = (ks * cad)[None, :] + self.phase[rows][:, None] + jitter
        keep = (ts >= t_lo) & (ts < t_hi)
        if self.missing_threshold:
            keep &= ((h1 >> _U64(40)) & _U64(0xFFFFFF)).astype(np.int64) >= self.missing_threshold
        r, c = np.nonzero(keep)  # row-major: point-major, then slot, i.e. (name, time) order
        pos = rows[r].astype(np.int32)
        h = h1[r, c]
        grid = ks[c] * cad
        value, code = self._values(pos, grid, h)
        ts_flat = ts[r, c]
        visible = ts_flat
        if self.late_threshold:
            h3 = splitmix64(h ^ self.late_key ^ _LATE_SALT)
            late = (h3 & _U64(0xFFFF)).astype(np.int64) < self.late_threshold
            delay = 60_000 + ((h3 >> _U64(16)) % _U64(self.late_span_ms)).astype(np.int64)
            visible = ts_flat + np.where(late, delay, 0)
        return Samples(pos, ts_flat, value, code, visible)

    def _values(self, pos: np.ndarray, grid: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values for samples of points ``pos`` at slot grid times ``grid`` with slot hashes ``h``."""
        h2 = splitmix64(h ^ _NOISE_SALT)
        u = (h2 >> _U64(11)).astype(np.float64) * (1.0 / (1 << 53))
        rare = (h2 & _U64(0xFFFF)).astype(np.int64)  # for rare events (binary flickers, enum overrides)
        day = grid // DAY_MS
        d = (grid - day * DAY_MS) / DAY_MS
        hour = d * 24.0
        weekday = (day + 3) % 7 < 5  # 1970-01-01 was a Thursday
        kind = self.kind[pos]
        value = np.full(len(pos), np.nan)
        code = np.full(len(pos), -1, dtype=np.int32)
        occ_start = self.occ_start[pos]
        occupied = weekday & (hour >= occ_start) & (hour < occ_start + 12.5)

        def diurnal(sel: np.ndarray) -> np.ndarray:
            p = pos[sel]
            wave = np.sin(2.0 * math.pi * (d[sel] - self.shift[p]))
            return self.base[p] + self.amp[p] * wave + self.noise[p] * (2.0 * u[sel] - 1.0)

        for kind_code in (KIND_CODES["temperature"], KIND_CODES["analog"]):
            sel = kind == kind_code
            value[sel] = diurnal(sel)
        sel = kind == KIND_CODES["position"]
        value[sel] = np.clip(diurnal(sel), 0.0, 100.0)
        sel = kind == KIND_CODES["binary"]
        value[sel] = (occupied[sel] ^ (rare[sel] < 33)).astype(np.float64)  # ~0.05% flickers
        sel = kind == KIND_CODES["setpoint"]
        if sel.any():
            # Changes only at schedule edges (setback) and once a day (operator nudges of -0.5/0/+0.5).
            p = pos[sel]
            nudge = (splitmix64(self.key[p] ^ _DAY_SALT ^ day[sel].astype(np.uint64)) % _U64(3)).astype(
                np.float64
            )
            value[sel] = self.base[p] + np.where(occupied[sel], 0.0, self.amp[p]) + (nudge - 1.0) * 0.5
        sel = kind == KIND_CODES["meter"]
        if sel.any():
            # Closed-form energy integral of a load of noise + amp * (1 + sin) kW >= noise > 0: strictly
            # increasing in time, so readings are monotonic even across missing samples.
            p = pos[sel]
            hours = (grid[sel] - _METER_EPOCH_MS) / HOUR_MS
            phase = 2.0 * math.pi * (hours / 24.0 - self.shift[p])
            value[sel] = (
                self.base[p]
                + self.noise[p] * hours
                + self.amp[p]
                * (hours - (24.0 / (2.0 * math.pi)) * (np.cos(phase) - np.cos(2.0 * math.pi * self.shift[p])))
            )
        sel = kind == KIND_CODES["enum"]
        if sel.any():
            p = pos[sel]
            cyc = (
                np.floor(d[sel] * 6.0 + self.shift[p] * 10.0).astype(np.int32) + (rare[sel] < 655)
            ) % self.label_count[p]
            local = np.where(self.occ_enum[p], np.where(occupied[sel], 0, 1), cyc)
            code[sel] = self.label_base[p] + local
        numeric = code < 0
        scale = self.scale[pos[numeric]]
        rounded = np.rint(value[numeric] * scale) / scale + 0.0  # + 0.0 turns -0.0 into 0.0
        f32 = self.f32[pos[numeric]]
        rounded[f32] = rounded[f32].astype(np.float32).astype(np.float64)
        value[numeric] = rounded
        return value, code

    def window(self, t_lo: int, t_hi: int, *, max_cells: int = 2_000_000) -> Samples:
        """All samples in [t_lo, t_hi), point-major, generated in point chunks so memory stays bounded."""
        slots = max(1, (t_hi - t_lo) // self.cadence_ms + 2)
        chunk = max(1, max_cells // slots)
        n = len(self.points)
        parts = [self.generate(np.arange(a, min(n, a + chunk)), t_lo, t_hi) for a in range(0, n, chunk)]
        return Samples.concat(parts)

    def bucket(self, bucket_start: int) -> Samples:
        return self.generate(np.arange(len(self.points)), bucket_start, bucket_start + BUCKET_MS)

    def to_table(self, s: Samples) -> pa.Table:
        """SAMPLE_SCHEMA table of ``s`` (its order is kept)."""
        numeric = s.code < 0
        value = pa.array(s.value, pa.float64(), mask=~numeric)
        label_idx = pa.array(s.code, pa.int32(), mask=numeric)
        return pa.Table.from_arrays(
            [
                self.names.take(pa.array(s.pos)),
                pa.array(s.ts, pa.int64()),
                value,
                self.labels.take(label_idx),
            ],
            schema=SAMPLE_SCHEMA,
        )


def aggregate(s: Samples, bucket_start: int) -> Samples:
    """5-minute aggregate of one bucket's (point-major) samples: mean for numeric points, last label for enums.
    Every output sample is stamped with the bucket start and is visible (callers aggregate visible samples)."""
    if len(s) == 0:
        return Samples.empty()
    starts = np.flatnonzero(np.r_[True, s.pos[1:] != s.pos[:-1]])
    ends = np.r_[starts[1:], len(s)]
    counts = ends - starts
    mean = np.add.reduceat(s.value, starts) / counts
    code = s.code[ends - 1]
    n = len(starts)
    ts = np.full(n, bucket_start, dtype=np.int64)
    return Samples(s.pos[starts], ts, np.where(code < 0, mean, np.nan), code, ts.copy())
