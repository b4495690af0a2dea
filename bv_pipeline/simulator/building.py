"""A synthetic building: the configured points of one simulated ACE site.

The point list is a pure function of ``(site, n_points, seed)``. Equipment is laid out floor by floor (air
handlers, VAV boxes, a central plant and electricity meters) and every equipment instance uses one of the two
naming styles seen on real FlightDeck sites:

- dotted:  ``Building1.HVAC.AHU-3.SupplyAirTemp``
- BACnet:  ``<client>/<site>/10.0.0.10-100/analogInput/1`` (device address, device id, object type, instance)

Metadata uses a stateful ``random.Random`` seeded from ``(seed, site)``; that is fine because it is built once.
Sample values never use it: they come from the counter-based hashes in ``generator.py``.
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from dataclasses import dataclass, field

KINDS = ("temperature", "position", "binary", "setpoint", "meter", "analog", "enum")

# Characters allowed in point names: nothing that JSON needs to escape, so wire rows can be assembled by
# concatenation without an escaping pass.
_SAFE_NAME = re.compile(r"[A-Za-z0-9._/\-]+")

CLIENT = "bvsim"


@dataclass(frozen=True)
class SimPoint:
    """One configured point plus the parameters its samples are generated from."""

    index: int  # stable position in generation order; feeds the sample hashes
    name: str
    kind: str  # one of KINDS
    unit: str | None
    marker_tags: tuple[str, ...]
    kv_tags: dict[str, str] = field(hash=False)
    collect_interval_s: int = 60
    phase_ms: int = 0  # fixed poll phase within each cadence slot
    base: float = 0.0  # mean level (meter: starting reading in kWh)
    amplitude: float = 0.0  # diurnal swing (meter: extra kW at the daily peak)
    noise: float = 0.0  # uniform noise half-width (meter: base load in kW)
    decimals: int = 1  # values are rounded to 10**-decimals before formatting
    float32: bool = False  # upstream stores float32: wire strings look like "1.6100000143051147"
    shift: float = 0.0  # diurnal phase shift as a fraction of a day
    labels: tuple[str, ...] = ()  # enum labels; empty for numeric kinds
    equip: str = ""
    description: str = ""
    bacnet_device: str = ""  # "10.0.0.10-100"
    object_type: str = ""
    object_instance: int = 0


@dataclass(frozen=True)
class _Template:
    suffix: str
    kind: str
    unit: str | None
    markers: tuple[str, ...]
    base: float = 0.0
    amplitude: float = 0.0
    noise: float = 0.0
    decimals: int = 1
    labels: tuple[str, ...] = ()


def _t(suffix: str, kind: str, unit: str | None, markers: str, **kw: object) -> _Template:
    return _Template(suffix, kind, unit, tuple(markers.split()), **kw)  # type: ignore[arg-type]


_OCC = ("occupied", "unoccupied")
_MODE = ("heating", "cooling", "deadband")
_HOA = ("auto", "hand", "off")
_ALARM = ("normal", "alarm")

_AHU = (
    _t("SupplyAirTemp", "temperature", "°F", "point sensor temp air supply", base=55, amplitude=3, noise=0.4),
    _t("ReturnAirTemp", "temperature", "°F", "point sensor temp air return", base=73, amplitude=2, noise=0.3),
    _t("MixedAirTemp", "temperature", "°F", "point sensor temp air mixed", base=62, amplitude=6, noise=0.5),
    _t(
        "OutsideAirTemp",
        "temperature",
        "°F",
        "point sensor temp air outside",
        base=58,
        amplitude=12,
        noise=0.6,
    ),
    _t("SupplyAirTempSetpoint", "setpoint", "°F", "point sp temp air supply", base=55, amplitude=1),
    _t(
        "OutsideAirDamper",
        "position",
        "%",
        "point cmd damper outside",
        base=40,
        amplitude=30,
        noise=2,
        decimals=0,
    ),
    _t("CoolingValve", "position", "%", "point cmd valve cool", base=45, amplitude=40, noise=3),
    _t("HeatingValve", "position", "%", "point cmd valve heat", base=15, amplitude=20, noise=2),
    _t("SupplyFanStatus", "binary", None, "point sensor fan supply run"),
    _t("SupplyFanSpeed", "position", "%", "point cmd fan supply speed", base=65, amplitude=20, noise=1.5),
    _t(
        "DuctStaticPressure",
        "analog",
        "inH2O",
        "point sensor pressure duct",
        base=1.2,
        amplitude=0.3,
        noise=0.05,
        decimals=2,
    ),
    _t(
        "SupplyAirflow",
        "analog",
        "cfm",
        "point sensor air flow supply",
        base=12000,
        amplitude=3000,
        noise=150,
        decimals=0,
    ),
    _t(
        "ReturnAirCO2",
        "analog",
        "ppm",
        "point sensor co2 air return",
        base=620,
        amplitude=250,
        noise=15,
        decimals=0,
    ),
    _t("OccupancyMode", "enum", None, "point sensor occupied", labels=_OCC),
    _t("HandOffAuto", "enum", None, "point cmd fan supply hoa", labels=_HOA),
)
_VAV = (
    _t("ZoneTemp", "temperature", "°F", "point sensor temp air zone", base=72, amplitude=1.5, noise=0.3),
    _t("ZoneTempSetpoint", "setpoint", "°F", "point sp temp air zone", base=72, amplitude=2),
    _t("DamperPosition", "position", "%", "point cmd damper", base=50, amplitude=35, noise=4),
    _t("Airflow", "analog", "cfm", "point sensor air flow", base=450, amplitude=200, noise=20, decimals=0),
    _t("ReheatValve", "position", "%", "point cmd valve heat reheat", base=10, amplitude=15, noise=2),
    _t("ZoneRH", "analog", "%RH", "point sensor humidity air zone", base=45, amplitude=8, noise=1.2),
    _t(
        "ZoneCO2", "analog", "ppm", "point sensor co2 air zone", base=550, amplitude=300, noise=20, decimals=0
    ),
    _t("OccupancySensor", "binary", None, "point sensor occupied"),
    _t("ReheatEnable", "binary", None, "point cmd heat reheat enable"),
)
_PLANT = (
    _t(
        "ChwSupplyTemp",
        "temperature",
        "°F",
        "point sensor temp water chilled supply",
        base=44,
        amplitude=1.5,
        noise=0.2,
    ),
    _t(
        "ChwReturnTemp",
        "temperature",
        "°F",
        "point sensor temp water chilled return",
        base=54,
        amplitude=3,
        noise=0.3,
    ),
    _t("ChwSupplyTempSetpoint", "setpoint", "°F", "point sp temp water chilled supply", base=44, amplitude=1),
    _t(
        "HwSupplyTemp",
        "temperature",
        "°F",
        "point sensor temp water hot supply",
        base=160,
        amplitude=10,
        noise=1,
    ),
    _t("ChillerStatus", "binary", None, "point sensor chiller run"),
    _t("BoilerStatus", "binary", None, "point sensor boiler run"),
    _t("ChwPumpSpeed", "position", "%", "point cmd pump water chilled speed", base=60, amplitude=25, noise=2),
    _t(
        "ChwFlow",
        "analog",
        "gpm",
        "point sensor water chilled flow",
        base=800,
        amplitude=300,
        noise=25,
        decimals=0,
    ),
    _t("ChillerAlarm", "enum", None, "point sensor chiller alarm", labels=_ALARM),
    _t("PlantMode", "enum", None, "point sensor plant mode", labels=_MODE),
)
_METER = (
    _t(
        "ElecEnergy",
        "meter",
        "kWh",
        "point sensor elec energy meter",
        base=150000,
        amplitude=60,
        noise=40,
        decimals=2,
    ),
    _t("ElecDemand", "analog", "kW", "point sensor elec power meter", base=180, amplitude=60, noise=5),
)

_BACNET_TYPES = {
    "temperature": "analogInput",
    "analog": "analogInput",
    "meter": "analogInput",
    "position": "analogOutput",
    "setpoint": "analogValue",
    "binary": "binaryInput",
    "enum": "multiStateValue",
}


def _site_rng(site: str, seed: int) -> random.Random:
    digest = hashlib.blake2b(f"{seed}:{site}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "little"))


@functools.cache  # the same ~12,000 entries for every site: built once per process, not once per site
def _equipment_plan() -> tuple[tuple[str, str, tuple[_Template, ...]], ...]:
    """An endless-enough sequence of (system, equip, templates): per floor one AHU and eight VAVs, plus a plant
    and a meter every few floors. 1200 floors give about 108,000 points, above the 100,000 the settings allow."""
    plan: list[tuple[str, str, tuple[_Template, ...]]] = []
    for floor in range(1, 1201):
        if floor % 4 == 1:
            plan.append(("Electrical", f"Meter-{floor // 4 + 1}", _METER))
        plan.append(("HVAC", f"AHU-{floor}", _AHU))
        if floor % 4 == 1:
            plan.append(("Plant", f"CHP-{floor // 4 + 1}", _PLANT))
        plan.extend(("HVAC", f"VAV-{floor}-{v:02d}", _VAV) for v in range(1, 9))
    return tuple(plan)


def building_points(site: str, n_points: int, seed: int, *, cadence_s: int = 60) -> list[SimPoint]:
    """The configured points of simulated ``site``, in generation order (``index`` 0..n-1). Deterministic."""
    if n_points < 1:
        raise ValueError("n_points must be >= 1")
    rng = _site_rng(site, seed)
    building = f"Building{1 + rng.randrange(9)}"
    max_phase = min(5000, cadence_s * 1000 // 4)
    points: list[SimPoint] = []
    for equip_no, (system, equip, templates) in enumerate(_equipment_plan()):
        if len(points) == n_points:
            break
        # Roughly 40% of equipment comes from BACnet discovery and keeps the raw object path as its name.
        bacnet_style = equip_no % 5 in (1, 3)
        device_id = 100 + equip_no
        device = f"10.0.{equip_no // 200}.{10 + equip_no % 200}-{device_id}"
        instances: dict[str, int] = {}
        for tpl in templates:
            if len(points) == n_points:
                break
            object_type = _BACNET_TYPES[tpl.kind]
            instances[object_type] = instances.get(object_type, 0) + 1
            instance = instances[object_type]
            if bacnet_style:
                name = f"{CLIENT}/{site}/{device}/{object_type}/{instance}"
            else:
                name = f"{building}.{system}.{equip}.{tpl.suffix}"
            index = len(points)
            scale = 0.8 + 0.4 * rng.random()
            kv_tags = {"kind": tpl.kind, "equip": equip, "system": system, "description": tpl.suffix}
            if tpl.unit is not None:
                kv_tags["unit"] = tpl.unit
            points.append(
                SimPoint(
                    index=index,
                    name=name,
                    kind=tpl.kind,
                    unit=tpl.unit,
                    marker_tags=tpl.markers,
                    kv_tags=kv_tags,
                    collect_interval_s=cadence_s,
                    phase_ms=rng.randrange(max_phase + 1),
                    base=round(tpl.base * (0.95 + 0.1 * rng.random()), 3),
                    amplitude=round(tpl.amplitude * scale, 3),
                    noise=tpl.noise,
                    decimals=tpl.decimals,
                    # Only some analog-ish points come from float32 registers; meters need full precision.
                    float32=tpl.kind in ("temperature", "analog", "position") and rng.random() < 0.25,
                    shift=round(rng.random() * 0.1 + 0.55, 4),
                    labels=tpl.labels,
                    equip=equip,
                    description=tpl.suffix,
                    bacnet_device=device,
                    object_type=object_type,
                    object_instance=instance,
                )
            )
        if len(points) == n_points:
            break
    names = [p.name for p in points]
    assert len(set(names)) == len(names), "simulated point names must be unique"
    assert all(_SAFE_NAME.fullmatch(n) for n in names), "simulated point names must need no JSON escaping"
    return points
