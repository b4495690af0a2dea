"""Fixtures for the local D1 endpoint's own tests: a fresh endpoint and an official SDK client without retries."""

from __future__ import annotations

from collections.abc import Iterator

import cloudflare
import pytest

from bv_pipeline_tests.fakes.d1_server import FakeD1, run_fake_d1


@pytest.fixture
def fake() -> Iterator[FakeD1]:
    with run_fake_d1() as f:
        yield f


@pytest.fixture
def client(fake: FakeD1) -> Iterator[cloudflare.Cloudflare]:
    with cloudflare.Cloudflare(api_token=fake.token, base_url=fake.base_url, max_retries=0) as c:
        yield c
