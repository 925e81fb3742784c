"""A real PostgreSQL server for tests: Debian's `postgresql` (15), in a temporary directory.

Why: the task store must be proven against the database it will meet, not a fake. The server
runs as the `postgres` user when the tests run as root (it refuses root), listens on 127.0.0.1 on
a free port with its socket in its own directory, and is stopped (its process group) at the end.
Missing binaries skip locally with the install line and fail under CI.

Fixtures: `postgres_server` (one per session) and `postgres_url` (a fresh database per test).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from exporter.tasks.backend import Backend

from tests.servers import LOCALHOST, _kill_group, free_port, missing, track, wait_until

INSTALL_HINT = "apt-get install -y --no-install-recommends postgresql"
_databases = itertools.count(1)


def postgres_bin(name: str) -> str:
    """Path of a PostgreSQL server program (`postgres`, `initdb`); skip or fail (CI) when absent."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    path = found[0] if found else shutil.which(name)
    if path:
        return path
    missing(f"PostgreSQL's {name} not installed: {INSTALL_HINT}")


def _as_server_user(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as `postgres` then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


class PostgresServer:
    """`postgres` in the foreground, in its own process group, on 127.0.0.1:port."""

    def __init__(self) -> None:
        self.postgres = postgres_bin("postgres")
        self.initdb = postgres_bin("initdb")
        self.dir = Path(tempfile.mkdtemp(prefix="agent-exporter-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.log = self.dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run(
            _as_server_user([self.initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{LOCALHOST}:{self.port}/{database}"

    def start(self) -> PostgresServer:
        argv = [
            self.postgres, "-D", str(self.data), "-p", str(self.port), "-k", str(self.dir),
            "-c", f"listen_addresses={LOCALHOST}", "-c", "fsync=off", "-c", "max_connections=200",
        ]  # fmt: skip
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                _as_server_user(argv), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        track(self.proc)  # an interpreter that exits early (Ctrl-C, crash) still stops it
        wait_until(self._ready, timeout=60, interval=0.1, describe=self.log_tail)
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"postgres exited with {self.proc.returncode}:\n{self.log_tail()}")
        import psycopg

        with psycopg.connect(self.url(), connect_timeout=2):
            return True

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def kill(self) -> None:
        """Stop the server at once (SIGKILL to its group): a database that dies mid-run."""
        self._signal(signal.SIGKILL, grace=5)

    def stop(self) -> None:
        self._signal(signal.SIGINT, grace=10)  # SIGINT: PostgreSQL's fast shutdown

    def _signal(self, sig: int, grace: float) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        _kill_group(proc, grace, sig)
        # the postmaster's children leave with it; give the port a moment to be free again
        time.sleep(0.1)
        # a killed postmaster leaves its pid and socket lock files: the next start would refuse
        for left in (
            self.data / "postmaster.pid",
            self.dir / f".s.PGSQL.{self.port}.lock",
            self.dir / f".s.PGSQL.{self.port}",
        ):
            with contextlib.suppress(OSError):
                left.unlink()

    def create_database(self) -> str:
        import psycopg

        name = f"t{os.getpid()}_{next(_databases)}"
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing("psycopg not installed: pip install 'agent-exporter[tasks-postgresql]'")
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's server."""
    if postgres_server.proc is None:  # a test stopped it: bring it back
        postgres_server.start()
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.servers)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A task store URL: a SQLite file, then (marked `servers`) a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tasks.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[Backend]:
    """A connection to that store, for reading what the library wrote."""
    from exporter.tasks.backend import Backend

    backend = Backend(store_url)
    yield backend
    backend.close()
