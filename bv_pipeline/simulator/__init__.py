"""A deterministic simulator of the ACE FlightDeck API (see ``app.py`` for routes and semantics).

Use it in-process (``AceSimulator(...).transport()`` with any base URL ending in ``/api``) or over HTTP
(``run_server`` or ``bv-pipeline simulate-ace``). ``AceSimulator.truth`` returns the exact samples the API
serves, for tests and benchmarks.
"""

from __future__ import annotations

from .app import IN_PROCESS_BASE_URL, PAGE_SIZE_CHOICES, PER_PAGE_CHOICES, AceSimulator, SimulatorConfig
from .building import KINDS, SimPoint, building_points
from .faults import FaultConfig
from .server import main, run_server

__all__ = [
    "IN_PROCESS_BASE_URL",
    "KINDS",
    "PAGE_SIZE_CHOICES",
    "PER_PAGE_CHOICES",
    "AceSimulator",
    "FaultConfig",
    "SimPoint",
    "SimulatorConfig",
    "building_points",
    "main",
    "run_server",
]
