"""The alert webhook and the alert thresholds as one resource (``alerting``), configured from Settings."""

from __future__ import annotations

import dagster as dg

from bv_pipeline.alerts.delivery import WebhookSender, resolve_format
from bv_pipeline.alerts.model import Notice


class AlertingResource(dg.ConfigurableResource):
    """``webhook_url`` unset: alerts are evaluated and logged but not sent (the embedded default)."""

    webhook_url: str | None = None  # BV_ALERT_WEBHOOK_URL (a secret for Slack: passed as EnvVar)
    message_format: str = "auto"  # BV_ALERT_FORMAT: auto | slack | json
    stale_minutes: int = 60  # BV_ALERT_STALE_MINUTES: newest hot sample older than this fires
    hot_db_max_mb: int = 8000  # BV_ALERT_HOT_DB_MB: hot database larger than this fires
    # BV_ARCHIVE_TIME + BV_ALERT_ARCHIVE_GRACE_HOURS: hours after a day's end by which it must be verified
    archive_due_hours: float = 6.0
    ace_auth_failures: int = 3  # BV_ALERT_ACE_AUTH_FAILURES: consecutive runs failing on ACE 401/403
    delivery_attempts: int = 4
    delivery_backoff_s: float = 1.0

    def sender(self) -> WebhookSender | None:
        if not self.webhook_url:
            return None
        return WebhookSender(
            self.webhook_url,
            resolve_format(self.webhook_url, self.message_format),
            attempts=self.delivery_attempts,
            backoff_s=self.delivery_backoff_s,
        )

    def deliver(self, notice: Notice, log: dg.DagsterLogManager | None = None) -> None:
        """Send (raises ``AlertDeliveryError`` when the webhook refuses); without a URL only log it."""
        sender = self.sender()
        text = f"alert {notice.status}: {notice.alert.incident_id}: {notice.alert.summary}"
        if sender is None:
            if log is not None:
                log.warning(f"{text} (BV_ALERT_WEBHOOK_URL is not set: not sent)")
            return
        sender.send(notice)
        if log is not None:
            log.info(f"{text} (sent)")
