pytest_plugins = ["tests.servers"]

import pytest

import exporter


@pytest.fixture(autouse=True)
def _reset_exporter():
    """Every test starts and ends with the library unconfigured."""
    exporter.reset()
    yield
    exporter.reset()
