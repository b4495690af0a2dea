"""Shares the reusable ACE fixtures with this package (pytest_plugins only works in the rootdir conftest)."""

from bv_pipeline_tests.fixtures.ace import ace_client, ace_server_url, ace_simulator

__all__ = ["ace_client", "ace_server_url", "ace_simulator"]
