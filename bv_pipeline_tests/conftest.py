"""Shared fixtures: the ACE simulator, the local D1 endpoint and a moto S3 server are available to every test module."""

from collections.abc import Iterator

import pytest
from dagster._core.storage.defs_state.base import set_defs_state_storage

pytest_plugins = [
    "bv_pipeline_tests.fixtures.ace",
    "bv_pipeline_tests.fixtures.d1",
    "bv_pipeline_tests.fixtures.s3",
    "bv_pipeline_tests.fixtures.postgres",
]


@pytest.fixture(autouse=True)
def _no_defs_state_storage_from_earlier_tests() -> Iterator[None]:
    """Start every test without a current Dagster defs-state storage.

    A closed test instance can stay registered as the process's current defs-state storage (a ContextVar that
    Dagster does not always reset), and the next test to resolve a repository then fails with "Attempted to
    resolve undefined DagsterInstance weakref". Which test hits it depends on how xdist orders the tests.
    """
    with set_defs_state_storage(None):
        yield
