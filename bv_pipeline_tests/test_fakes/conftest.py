"""Short names for the shared D1 fixtures (``bv_pipeline_tests/fixtures/d1.py``) in the endpoint's own tests."""

from __future__ import annotations

import cloudflare
import pytest

from bv_pipeline_tests.fakes.d1_server import FakeD1


@pytest.fixture
def fake(fake_d1: FakeD1) -> FakeD1:
    return fake_d1


@pytest.fixture
def client(d1_client: cloudflare.Cloudflare) -> cloudflare.Cloudflare:
    return d1_client
