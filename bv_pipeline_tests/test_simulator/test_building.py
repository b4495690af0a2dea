"""The synthetic building: names, kinds, determinism."""

from __future__ import annotations

import json
import re
from collections import Counter

from bv_pipeline.simulator import KINDS, building_points


def test_names_are_unique_plain_and_in_both_styles() -> None:
    points = building_points("demo", 4583, 42)
    names = [p.name for p in points]
    assert len(names) == 4583 == len(set(names))
    assert [p.index for p in points] == list(range(4583))
    for name in names:
        assert json.dumps(name)[1:-1] == name  # nothing to escape
    dotted = re.compile(r"Building\d\.[A-Za-z]+\.[A-Za-z]+-[\d-]+\.[A-Za-z0-9]+")
    bacnet = re.compile(
        r"bvsim/demo/10\.0\.\d+\.\d+-\d+/(analogInput|analogOutput|analogValue|binaryInput|multiStateValue)/\d+"
    )
    styles = Counter(
        "dotted" if dotted.fullmatch(n) else "bacnet" if bacnet.fullmatch(n) else "other" for n in names
    )
    assert styles["other"] == 0
    assert styles["dotted"] > 1000 and styles["bacnet"] > 1000


def test_every_kind_is_present_with_sensible_metadata() -> None:
    points = building_points("demo", 300, 42)
    kinds = Counter(p.kind for p in points)
    assert set(kinds) == set(KINDS)
    for p in points:
        assert p.kv_tags["kind"] == p.kind
        assert p.kv_tags.get("unit") == p.unit
        assert "point" in p.marker_tags
        assert 0 <= p.phase_ms <= 5000
        assert p.collect_interval_s == 60
        if p.kind == "enum":
            assert len(p.labels) >= 2 and p.unit is None
        else:
            assert p.labels == ()
        if p.kind == "binary":
            assert p.unit is None
        if p.kind in ("temperature", "setpoint"):
            assert p.unit == "°F"
        if p.kind == "meter":
            assert p.unit == "kWh"


def test_building_is_deterministic_per_seed_and_site() -> None:
    a = building_points("demo", 200, 42)
    assert a == building_points("demo", 200, 42)
    assert a != building_points("demo", 200, 43)
    other_site = building_points("annex", 200, 42)
    assert {p.name for p in a}.isdisjoint({p.name for p in other_site if "/" in p.name})
    # A smaller building is a prefix of a larger one: adding points never renames existing ones.
    assert building_points("demo", 50, 42) == a[:50]


def test_cadence_sets_collect_interval_and_bounds_phase() -> None:
    points = building_points("demo", 100, 1, cadence_s=12)
    assert {p.collect_interval_s for p in points} == {12}
    assert max(p.phase_ms for p in points) <= 3000
