"""Incidents: an alert that starts firing opens one, and only its end sends a second (recovery) message.

Pure code. ``AlertState`` is what a condition sensor keeps in its cursor: the open incidents, keyed by
``kind:key``. ``transitions`` compares it with what fires now; a transition is applied to the state only once its
message was delivered, so a failed delivery is retried on the next evaluation instead of being lost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

Status = Literal["firing", "resolved"]
STATE_VERSION = 1


@dataclass(frozen=True)
class Alert:
    """One thing that is wrong now. ``kind`` names the alert, ``key`` the incident within it (site, day...)."""

    kind: str
    key: str
    summary: str
    details: dict[str, str | int | float] = field(default_factory=dict)

    @property
    def incident_id(self) -> str:
        return f"{self.kind}:{self.key}"


@dataclass(frozen=True)
class Notice:
    """A message to send: an incident opened (``firing``) or closed (``resolved``)."""

    status: Status
    alert: Alert
    since_ms: int  # when the incident opened
    at_ms: int  # when this transition was observed


@dataclass
class AlertState:
    """Open incidents: id -> (opened at, the alert as first reported). JSON round-trip for a sensor cursor."""

    open: dict[str, tuple[int, Alert]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": STATE_VERSION,
                "open": {
                    i: {
                        "since_ms": s,
                        "kind": a.kind,
                        "key": a.key,
                        "summary": a.summary,
                        "details": a.details,
                    }
                    for i, (s, a) in sorted(self.open.items())
                },
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, raw: str | None) -> AlertState:
        if not raw:
            return cls()
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("v") != STATE_VERSION:
            return cls()
        return cls(
            {
                i: (int(o["since_ms"]), Alert(o["kind"], o["key"], o["summary"], dict(o.get("details", {}))))
                for i, o in data.get("open", {}).items()
            }
        )

    def open_keys(self, kind: str) -> set[str]:
        return {a.key for _, a in self.open.values() if a.kind == kind}

    def apply(self, notice: Notice) -> None:
        if notice.status == "firing":
            self.open[notice.alert.incident_id] = (notice.since_ms, notice.alert)
        else:
            self.open.pop(notice.alert.incident_id, None)


def transitions(state: AlertState, firing: list[Alert], kinds: set[str], now_ms: int) -> list[Notice]:
    """Firing notices for new incidents, resolved notices for open incidents of ``kinds`` no longer firing.

    Only incidents of ``kinds`` (what the caller evaluated) can be resolved, so one cursor may hold several kinds.
    """
    now_ids = {a.incident_id for a in firing}
    out = [Notice("firing", a, now_ms, now_ms) for a in firing if a.incident_id not in state.open]
    for incident_id, (since, alert) in sorted(state.open.items()):
        if alert.kind in kinds and incident_id not in now_ids:
            out.append(Notice("resolved", alert, since, now_ms))
    return out
