"""Shared fixtures: the real-server harness, and a library reset around every test."""

import pytest

import exporter

pytest_plugins = ["tests.servers"]


@pytest.fixture(autouse=True)
def _reset_exporter():
    """Every test starts and ends with the library unconfigured."""
    exporter.reset()
    yield
    exporter.reset()
