"""Webhook delivery: Slack-compatible ``{"text": ...}`` or a generic JSON body, POSTed with retries.

Retried: connection errors, timeouts, 429 (honouring ``Retry-After``, capped) and 5xx, with exponential backoff.
Not retried: other 4xx (a wrong URL or payload does not fix itself). Exhausted retries raise
``AlertDeliveryError``; callers leave the incident's transition unapplied so it is sent again later.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlparse

import httpx

from bv_pipeline.alerts.model import Notice

MessageFormat = Literal["slack", "json"]
SOURCE = "bv-pipeline"
RETRY_AFTER_CAP_S = 30.0


class AlertDeliveryError(RuntimeError):
    """The webhook did not accept a message after every attempt."""


def resolve_format(url: str, configured: str) -> MessageFormat:
    """``auto``: Slack's format for Slack incoming-webhook URLs, generic JSON otherwise."""
    if configured in ("slack", "json"):
        return configured  # type: ignore[return-value]
    host = (urlparse(url).hostname or "").lower()
    return "slack" if host == "hooks.slack.com" or host.endswith(".slack.com") else "json"


def _iso(ms: int) -> str:
    return (
        dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


def _duration(ms: int) -> str:
    minutes = max(0, ms) // 60_000
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours < 48 else f"{hours // 24} d {hours % 24} h"


def render_text(notice: Notice) -> str:
    a = notice.alert
    if notice.status == "firing":
        head = f":red_circle: [{SOURCE}] FIRING {a.kind} ({a.key}): {a.summary}"
    else:
        lasted = _duration(notice.at_ms - notice.since_ms)
        head = f":large_green_circle: [{SOURCE}] RESOLVED {a.kind} ({a.key}) after {lasted}: {a.summary}"
    lines = [head] + [f"• {k}: {v}" for k, v in sorted(a.details.items())]
    lines.append(f"since {_iso(notice.since_ms)}")
    return "\n".join(lines)


def render_body(notice: Notice, fmt: MessageFormat) -> dict[str, Any]:
    if fmt == "slack":
        return {"text": render_text(notice)}
    a = notice.alert
    return {
        "source": SOURCE,
        "status": notice.status,
        "kind": a.kind,
        "key": a.key,
        "incident_id": a.incident_id,
        "summary": a.summary,
        "details": a.details,
        "since": _iso(notice.since_ms),
        "at": _iso(notice.at_ms),
        "text": render_text(notice),
    }


class WebhookSender:
    """POSTs notices to one webhook URL. ``transport``/``sleep`` are injectable for tests."""

    def __init__(
        self,
        url: str,
        fmt: MessageFormat,
        *,
        attempts: int = 4,
        backoff_s: float = 1.0,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.fmt = fmt
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.transport = transport
        self.sleep = sleep

    def send(self, notice: Notice) -> None:
        body = render_body(notice, self.fmt)
        last = "no attempt"
        with httpx.Client(timeout=self.timeout_s, transport=self.transport) as client:
            for attempt in range(1, self.attempts + 1):
                wait = self.backoff_s * 2 ** (attempt - 1)
                try:
                    response = client.post(self.url, json=body)
                except httpx.TransportError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                else:
                    if response.status_code < 300:
                        return
                    last = f"HTTP {response.status_code}: {response.text[:200]}"
                    if response.status_code != 429 and response.status_code < 500:
                        break
                    wait = max(wait, _retry_after(response.headers.get("Retry-After")))
                if attempt < self.attempts:
                    self.sleep(wait)
        # Never echo the URL: Slack webhook URLs are secrets.
        raise AlertDeliveryError(
            f"alert webhook rejected {notice.alert.incident_id} ({notice.status}): {last}"
        )


def _retry_after(raw: str | None) -> float:
    try:
        return min(RETRY_AFTER_CAP_S, max(0.0, float(raw))) if raw else 0.0
    except ValueError:
        return 0.0
