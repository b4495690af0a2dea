"""Fault injection for the ACE simulator. Everything is off by default.

Decisions are deterministic: request number ``n`` (counted from 1 per simulator) and ``FaultConfig.seed``
feed splitmix64, one independent uniform per fault kind, so a run with the same configuration and request
sequence sees the same faults. Precedence per request: 429, else 5xx, else the real response (after an
optional slow-down), which may then be truncated or, failing that, malformed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .generator import splitmix64, stable_hash64

FAULT_KINDS = ("429", "5xx", "slow", "truncated", "malformed", "cursor_stall")
_SALTS = {kind: stable_hash64(f"fault:{kind}") for kind in FAULT_KINDS}


@dataclass(frozen=True)
class FaultConfig:
    rate_429: float = 0.0
    retry_after_s: float = 1.0
    rate_5xx: float = 0.0
    rate_slow: float = 0.0
    slow_s: float = 2.0
    rate_truncated: float = 0.0  # response body cut off mid-JSON
    rate_malformed: float = 0.0  # invalid JSON / wrong shape
    cursor_stall: bool = False  # the real next_cursor bug (reference 4.4)
    late_fraction: float = 0.0  # share of samples that become visible only some minutes after their timestamp
    late_max_minutes: int = 15
    seed: int = 0

    def __post_init__(self) -> None:
        for name in (
            "rate_429",
            "rate_5xx",
            "rate_slow",
            "rate_truncated",
            "rate_malformed",
            "late_fraction",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"FaultConfig.{name}={value!r} must be within [0, 1]")
        if self.retry_after_s < 0 or self.slow_s < 0:
            raise ValueError("FaultConfig.retry_after_s and slow_s must be >= 0")
        if not 1 <= self.late_max_minutes <= 24 * 60:
            raise ValueError("FaultConfig.late_max_minutes must be within [1, 1440]")

    @property
    def any_request_fault(self) -> bool:
        return any((self.rate_429, self.rate_5xx, self.rate_slow, self.rate_truncated, self.rate_malformed))


def fault_draw(seed: int, request_no: int, kind: str) -> tuple[float, int]:
    """A uniform in [0, 1) and 32 spare random bits for fault ``kind`` on request ``request_no``."""
    x = np.array([(seed * 0x9E3779B1 + request_no) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)
    h = int(splitmix64(splitmix64(x) ^ np.uint64(_SALTS[kind]))[0])
    return (h >> 11) / float(1 << 53), h & 0xFFFFFFFF


def truncate(body: bytes, bits: int) -> bytes:
    """Cut ``body`` somewhere strictly inside, never at a point where the prefix is still valid JSON."""
    if len(body) < 2:
        return b""
    return body[: 1 + bits % (len(body) - 1)]


def malform(body: bytes, bits: int) -> bytes:
    """One of several broken bodies seen from proxies and half-deployed servers."""
    variants = (
        b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
        body.replace(b'"', b"'", 8),  # not JSON any more
        b'{"point_samples": {"name": "x"}, "next_cursor": null, "has_more": false}',  # wrong shape
        b'{"message": null}',  # valid JSON, missing every expected field
        b"",
    )
    return variants[bits % len(variants)]
