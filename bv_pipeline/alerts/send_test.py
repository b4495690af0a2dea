"""``bv-pipeline send-test-alert``: send one test message to the configured webhook, to check the setup."""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Sequence

from bv_pipeline.alerts.delivery import AlertDeliveryError, WebhookSender, resolve_format
from bv_pipeline.alerts.model import Alert, Notice
from bv_pipeline.config import ConfigError, Settings


def main(argv: Sequence[str]) -> int:
    argparse.ArgumentParser(
        prog="bv-pipeline send-test-alert", description="Send a test message to BV_ALERT_WEBHOOK_URL"
    ).parse_args(list(argv))
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if not settings.alert_webhook_url:
        print("BV_ALERT_WEBHOOK_URL is not set: there is no webhook to test", file=sys.stderr)
        return 2
    # The raw value, as the alert sensors read it (EnvVar); Settings validated it above.
    url = os.environ["BV_ALERT_WEBHOOK_URL"].strip()
    fmt = resolve_format(url, settings.alert_format)
    now_ms = int(time.time() * 1000)
    alert = Alert(
        "test", socket.gethostname(), "test message from bv-pipeline send-test-alert: delivery works"
    )
    try:
        WebhookSender(url, fmt).send(Notice("firing", alert, now_ms, now_ms))
    except AlertDeliveryError as exc:
        print(f"delivery failed: {exc}", file=sys.stderr)
        return 1
    print(f"sent a test message ({fmt} format)")
    return 0
