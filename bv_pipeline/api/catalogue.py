"""Site and point discovery for the read API, cached briefly: every query checks its site and points here."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from bv_pipeline.storage.interfaces import HotStore, PointMeta


class SiteCatalogue:
    """Sites and per-site point metadata from the hot tier, each cached for ``ttl_s``. Thread-safe."""

    def __init__(self, hot: HotStore, ttl_s: float = 30.0) -> None:
        self.hot = hot
        self.ttl_s = ttl_s
        self._points: dict[str, tuple[float, dict[str, PointMeta]]] = {}
        self._folded: dict[str, tuple[dict[str, PointMeta], dict[str, list[str]]]] = {}
        self._sites: tuple[float, list[str]] | None = None
        self._lock = threading.Lock()

    def list_sites(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            cached = self._sites
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        sites = sorted(self.hot.list_sites())
        with self._lock:
            self._sites = (now, sites)
        return sites

    def points(self, site: str) -> dict[str, PointMeta]:
        """Point name -> metadata (list_points scans the points table, hence the cache)."""
        now = time.monotonic()
        with self._lock:
            cached = self._points.get(site)
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        points = {p.name: p for p in self.hot.list_points(site)}
        with self._lock:
            self._points[site] = (now, points)
        return points

    def resolve(self, site: str, requested: Iterable[str]) -> tuple[list[str], dict[str, str], list[str]]:
        """Map requested names to catalogue names: exact match first, else a unique case-insensitive match.

        Returns (resolved names in request order, {requested: canonical} for case fixes, unknown names).
        """
        cat = self.points(site)
        folded = self._folded_names(site, cat)
        resolved: list[str] = []
        renamed: dict[str, str] = {}
        unknown: list[str] = []
        for name in requested:
            if name in cat:
                canonical = name
            else:
                matches = folded.get(name.casefold(), [])
                if len(matches) != 1:
                    unknown.append(name)
                    continue
                canonical = matches[0]
                renamed[name] = canonical
            if canonical not in resolved:
                resolved.append(canonical)
        return resolved, renamed, unknown

    def _folded_names(self, site: str, cat: dict[str, PointMeta]) -> dict[str, list[str]]:
        """casefold(name) -> names, built once per catalogue refresh (not per request: 4,583 casefolds)."""
        with self._lock:
            cached = self._folded.get(site)
        if cached is not None and cached[0] is cat:
            return cached[1]
        folded: dict[str, list[str]] = {}
        for name in cat:
            folded.setdefault(name.casefold(), []).append(name)
        with self._lock:
            self._folded[site] = (cat, folded)
        return folded
