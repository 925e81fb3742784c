"""The `servers` marker is on every test that starts a real server binary, enforced.

Why: `pytest -m "not servers"` is the fast offline run; a test that starts Prometheus without the
marker would quietly make it slow (or skip it where the binaries are missing). Two checks:

- at collection, a test that asks for a server fixture (`prometheus_factory`, ...) must be marked;
- while tests run, an audit hook sees every `subprocess.Popen`; an unmarked test that starts one
  of the binaries (directly, through `tests.servers`, a helper, or a script given its path in the
  environment) fails at teardown.

Load with ``pytest_plugins = [..., "tests.marks"]`` in ``tests/conftest.py``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

MARK = "servers"
SERVER_BINARIES = frozenset(
    {
        "prometheus", "promtool", "prometheus-alertmanager", "alertmanager", "amtool", "docker-compose",
        "postgres", "initdb", "pg_ctl", "runuser",
    }
)
SERVER_FIXTURES = frozenset({"prometheus_factory", "alertmanager_factory", "postgres_server", "postgres_url"})

_running: pytest.Item | None = None  # the test being run, seen by the audit hook
_violations: dict[str, str] = {}  # nodeid -> what it started (or asked for) without the marker
_hooked = False


def server_binary(program: Any) -> str | None:
    """The server binary a `Popen(program)` starts, or None (program: a path, a command line, argv)."""
    if isinstance(program, str | bytes | os.PathLike):
        words = os.fsdecode(program).split()
        first = words[0] if words else ""
    elif isinstance(program, list | tuple) and program:
        first = os.fsdecode(program[0])
    else:
        return None
    name = os.path.basename(first)
    return name if name in SERVER_BINARIES else None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    item = _running
    if event != "subprocess.Popen" or item is None or item.get_closest_marker(MARK) is not None:
        return
    executable, program, _cwd, env = args
    name = server_binary(program) or (server_binary(executable) if executable is not None else None)
    if not name and env:  # a script handed the binary's path, e.g. ALERTMANAGER_BIN=/usr/bin/...
        name = next((n for v in env.values() if os.path.isabs(os.fsdecode(v)) and (n := server_binary([v]))), None)
    if name:
        _violations.setdefault(item.nodeid, f"starts `{name}`")


def pytest_configure(config: pytest.Config) -> None:
    global _hooked
    if not _hooked:  # audit hooks cannot be removed: add one per process, inert between tests
        sys.addaudithook(_audit)
        _hooked = True


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if used and item.get_closest_marker(MARK) is None:
            _violations[item.nodeid] = f"uses the fixture `{sorted(used)[0]}`"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    global _running
    _running = item
    try:
        return (yield)
    finally:
        _running = None


def _complaint(nodeid: str, what: str) -> str:
    return f"{nodeid} {what} but is not marked `{MARK}`: add @pytest.mark.{MARK} (or pytestmark)"


@pytest.fixture(autouse=True)
def _servers_marker(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail an unmarked test that uses a server fixture (at set-up) or started a server (at teardown)."""
    nodeid = request.node.nodeid
    if nodeid in _violations:
        pytest.fail(_complaint(nodeid, _violations.pop(nodeid)), pytrace=False)
    yield
    if nodeid in _violations:
        pytest.fail(_complaint(nodeid, _violations.pop(nodeid)), pytrace=False)
