from collections.abc import Iterator

import pytest

from bv_pipeline_tests.fakes.webhook_receiver import WebhookReceiver, run_webhook_receiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with run_webhook_receiver() as r:
        yield r
