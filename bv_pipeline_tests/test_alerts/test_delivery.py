"""Webhook delivery against a real local HTTP receiver: formats, retries, and what is not retried."""

from __future__ import annotations

import pytest

from bv_pipeline.alerts.delivery import AlertDeliveryError, WebhookSender, resolve_format
from bv_pipeline.alerts.model import Alert, AlertState, Notice, transitions
from bv_pipeline_tests.fakes.webhook_receiver import WebhookReceiver, run_webhook_receiver

T0 = 1_780_000_000_000
ALERT = Alert("hot_stale", "site-a", "newest hot sample of site-a is 90 min old", {"age_minutes": 90})


def sender(url: str, fmt: str = "json", sleeps: list[float] | None = None) -> WebhookSender:
    log = sleeps if sleeps is not None else []
    return WebhookSender(url, fmt, attempts=4, backoff_s=0.5, sleep=log.append)  # type: ignore[arg-type]


def test_format_is_slack_for_slack_urls_or_when_configured() -> None:
    assert resolve_format("https://hooks.slack.com/services/T/B/x", "auto") == "slack"
    assert resolve_format("https://alerts.example.com/hook", "auto") == "json"
    assert resolve_format("https://alerts.example.com/hook", "slack") == "slack"
    assert resolve_format("https://hooks.slack.com/services/T/B/x", "json") == "json"


def test_slack_body_is_text_only(receiver: WebhookReceiver) -> None:
    sender(receiver.url, "slack").send(Notice("firing", ALERT, T0, T0))
    sender(receiver.url, "slack").send(Notice("resolved", ALERT, T0, T0 + 75 * 60_000))
    firing, resolved = receiver.take()
    assert set(firing) == {"text"} and set(resolved) == {"text"}
    assert "FIRING hot_stale (site-a)" in firing["text"] and "age_minutes: 90" in firing["text"]
    assert "RESOLVED hot_stale (site-a) after 1 h 15 min" in resolved["text"]


def test_generic_json_body(receiver: WebhookReceiver) -> None:
    sender(receiver.url).send(Notice("firing", ALERT, T0, T0 + 1000))
    [body] = receiver.take()
    assert body["status"] == "firing" and body["kind"] == "hot_stale" and body["key"] == "site-a"
    assert body["incident_id"] == "hot_stale:site-a" and body["details"] == {"age_minutes": 90}
    assert body["since"] == "2026-05-28T20:26:40Z" and body["at"] == "2026-05-28T20:26:41Z"


def test_5xx_and_429_are_retried_with_backoff(receiver: WebhookReceiver) -> None:
    receiver.fail_next = [503, 429, 500]
    sleeps: list[float] = []
    sender(receiver.url, sleeps=sleeps).send(Notice("firing", ALERT, T0, T0))
    assert receiver.requests == 4 and len(receiver.accepted) == 1
    assert sleeps == [0.5, 1.0, 2.0]


def test_4xx_is_not_retried_and_exhaustion_raises(receiver: WebhookReceiver) -> None:
    receiver.fail_next = [404]
    with pytest.raises(AlertDeliveryError, match="HTTP 404"):
        sender(receiver.url).send(Notice("firing", ALERT, T0, T0))
    assert receiver.requests == 1
    receiver.fail_next = [500] * 4
    with pytest.raises(AlertDeliveryError, match="HTTP 500") as exc:
        sender(receiver.url).send(Notice("firing", ALERT, T0, T0))
    assert receiver.url not in str(exc.value)  # webhook URLs are secrets
    assert receiver.requests == 5 and receiver.accepted == []


def test_unreachable_webhook_raises_after_all_attempts() -> None:
    with run_webhook_receiver() as gone:
        url = gone.url
    sleeps: list[float] = []
    with pytest.raises(AlertDeliveryError, match="ConnectError"):
        sender(url, sleeps=sleeps).send(Notice("firing", ALERT, T0, T0))
    assert len(sleeps) == 3


def test_transitions_open_once_and_resolve_once() -> None:
    state = AlertState()
    other = Alert("hot_db_size", "hot", "big")
    first = transitions(state, [ALERT], {"hot_stale"}, T0)
    assert [(n.status, n.alert.incident_id) for n in first] == [("firing", "hot_stale:site-a")]
    state.apply(first[0])
    state.apply(Notice("firing", other, T0, T0))
    assert transitions(state, [ALERT], {"hot_stale"}, T0 + 1) == []
    # Another kind's open incident is not resolved by an evaluation that did not cover it.
    [resolved] = transitions(AlertState.from_json(state.to_json()), [], {"hot_stale"}, T0 + 2)
    assert resolved.status == "resolved" and resolved.since_ms == T0 and resolved.at_ms == T0 + 2
    state.apply(resolved)
    assert list(state.open) == ["hot_db_size:hot"]


def test_send_test_alert_command(
    receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bv_pipeline.cli import main

    monkeypatch.delenv("BV_ALERT_WEBHOOK_URL", raising=False)
    assert main(["send-test-alert"]) == 2
    assert "BV_ALERT_WEBHOOK_URL is not set" in capsys.readouterr().err
    monkeypatch.setenv("BV_ALERT_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("BV_ALERT_FORMAT", "slack")
    assert main(["send-test-alert"]) == 0
    [body] = receiver.take()
    assert set(body) == {"text"} and "delivery works" in body["text"]
    receiver.fail_next = [400]
    assert main(["send-test-alert"]) == 1
    assert "delivery failed" in capsys.readouterr().err
