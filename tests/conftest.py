"""Shared fixtures: the real-server harness, and a library reset around every test."""

import os

import pytest
import structlog
from hypothesis import settings

import exporter

# In CI the property tests replay the same examples every run (a failure there is reproducible);
# on a developer's machine they explore new ones each time.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

pytest_plugins = ["tests.servers", "tests.postgres", "tests.marks"]


@pytest.fixture(autouse=True)
def _reset_exporter():
    """Every test starts and ends with the library unconfigured, and structlog unconfigured too.

    (`structlog.testing.capture_logs()` leaves structlog "configured"; the library's events go
    through structlog only then, so one test's capture must not decide the next test's path.)
    """
    exporter.reset()
    structlog.reset_defaults()
    yield
    exporter.reset()
    structlog.reset_defaults()
