"""Shared fixtures: the ACE simulator and a moto S3 server are available to every test module."""

pytest_plugins = ["bv_pipeline_tests.fixtures.ace", "bv_pipeline_tests.fixtures.s3"]
