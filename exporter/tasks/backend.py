"""The two databases behind one small interface: connect (creating / migrating the schema),
write a batch of row changes in one transaction, read the waiting summary, purge, query.

SQLite (the standard library's driver; WAL mode so several processes on one host share a file)
and PostgreSQL (psycopg 3, the `tasks-postgresql` extra). Every call may raise the driver's
errors: the caller (the writer thread, the CLI) decides what a failure means.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .schema import (
    ADVISORY_LOCK,
    SCHEMA_VERSION,
    STEPS_TABLE,
    TABLE,
    VERSION_TABLE,
    Dialect,
    insert_step,
    migrations,
    upsert,
)

CONNECT_TIMEOUT = 5.0  # seconds: a dead server must not hold the writer for long
STATEMENT_TIMEOUT_MS = 10_000


class StoreError(Exception):
    """The store URL is unusable (scheme, path, missing driver)."""


class StoreMissing(StoreError):
    """A reader (`Backend(url, create=False)`) found no store there: nothing was created."""


def parse_url(url: str) -> tuple[Dialect, str]:
    """`sqlite:///path/tasks.db` (or `sqlite:////abs/path`) or `postgresql://user@host:port/db`."""
    if not isinstance(url, str):
        raise StoreError(f"task_store must be a URL string, got {type(url).__name__}")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "sqlite":
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise StoreError(
                f"task_store {url!r}: a SQLite URL is sqlite:///relative/path.db or sqlite:////abs/path.db"
            )
        return "sqlite", path
    if parts.scheme in ("postgresql", "postgres"):
        if not parts.hostname and "host=" not in parts.query:
            raise StoreError(f"task_store {url!r}: a PostgreSQL URL needs a host (postgresql://user@host:port/db)")
        return "postgresql", url
    raise StoreError(f"task_store {url!r}: the scheme must be sqlite:/// or postgresql://")


def redact_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def sqlite_missing(path: str, url: str) -> str:
    """Why a SQLite store is not there, naming the file (and how the URL spells it)."""
    full = os.path.abspath(path)
    if os.path.isabs(path):
        return f"no task store at {full} (no such file); nothing was created"
    return (
        f"no task store at {full}: {url} is relative to the current directory ({os.getcwd()}); "
        f"the absolute /{path} is sqlite:////{path}. Nothing was created"
    )


class Backend:
    """One connection to the store, opened on first use and reopened after a failure.

    `create=False` (readers: the `tasks` command) never makes a store: a SQLite file that does not
    exist, or a database without the task table, raises `StoreMissing` instead of being created.
    """

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.dialect, self._target = parse_url(url)
        self.url = url
        self._create = create
        self._conn: Any = None
        self._upsert = upsert(self.dialect)
        self._insert_step = insert_step(self.dialect)
        if self.dialect == "postgresql":
            try:
                import psycopg  # noqa: F401
            except ImportError as exc:
                raise StoreError(
                    "task_store postgresql:// needs psycopg 3: pip install 'agent-exporter[tasks-postgresql]'"
                ) from exc

    # ------------------------------------------------------------------ connection

    def connect(self) -> Any:
        if self._conn is not None:
            return self._conn
        conn: Any
        if self.dialect == "sqlite":
            if not self._create and not os.path.isfile(self._target):
                raise StoreMissing(sqlite_missing(self._target, self.url))
            if self._create:
                os.makedirs(os.path.dirname(os.path.abspath(self._target)), exist_ok=True)
            conn = sqlite3.connect(self._target, timeout=CONNECT_TIMEOUT, isolation_level=None, check_same_thread=False)
            if self._create:  # a reader writes nothing: the writer made the file WAL already
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
        else:
            import psycopg

            conn = psycopg.connect(
                self._target,
                connect_timeout=int(CONNECT_TIMEOUT),
                options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
                application_name="agent-exporter",
            )
        try:
            if self._create:
                self._migrate(conn)
            else:
                self._check(conn)
        except Exception:
            conn.close()
            raise
        self._conn = conn
        return conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001, S110 - closing a broken connection may fail too
                pass

    def forget(self) -> None:
        """Drop the connection without closing it: after a fork it belongs to the parent."""
        self._conn = None

    def _migrate(self, conn: Any) -> None:
        """Create or bring the schema to SCHEMA_VERSION, once, whoever gets the lock first."""
        with self._transaction(conn) as cur:
            if self.dialect == "postgresql":
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK,))
            cur.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER NOT NULL)")
            cur.execute(f"SELECT max(version) FROM {VERSION_TABLE}")
            row = cur.fetchone()
            have = int(row[0]) if row and row[0] is not None else 0
            self._not_newer(have)
            for version, statements in sorted(migrations(self.dialect).items()):
                if version <= have:
                    continue
                for statement in statements:
                    cur.execute(statement)
                cur.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES ({self._ph()})", (version,))

    def _check(self, conn: Any) -> None:
        """For a reader: the store's tables are there, in a schema not newer than this library's.
        Nothing is written (an older schema is read as it is: the columns it lacks read as empty)."""
        cur = conn.cursor()
        try:
            if not (self._has_table(cur, VERSION_TABLE) and self._has_table(cur, TABLE)):
                where = os.path.abspath(self._target) if self.dialect == "sqlite" else redact_url(self.url)
                raise StoreMissing(f"no task store in {where}: it has no {TABLE} table; nothing was created")
            cur.execute(f"SELECT max(version) FROM {VERSION_TABLE}")
            row = cur.fetchone()
            self._not_newer(int(row[0]) if row and row[0] is not None else 0)
        finally:
            cur.close()
            if self.dialect == "postgresql":
                conn.rollback()  # no read transaction left open

    @staticmethod
    def _not_newer(have: int) -> None:
        if have > SCHEMA_VERSION:
            raise StoreError(
                f"the task store's schema is version {have}, newer than this library's {SCHEMA_VERSION}: upgrade"
            )

    def _has_table(self, cur: Any, name: str) -> bool:
        if self.dialect == "sqlite":
            cur.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
        else:
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
        row = cur.fetchone()
        return bool(row and row[0])

    def _ph(self) -> str:
        return "?" if self.dialect == "sqlite" else "%s"

    @contextlib.contextmanager
    def _transaction(self, conn: Any) -> Iterator[Any]:
        """A cursor inside one transaction: committed if the block ends normally, else rolled back."""
        sqlite = self.dialect == "sqlite"
        cur = conn.cursor()
        try:
            if sqlite:
                cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                if sqlite:
                    cur.execute("ROLLBACK")
                else:
                    conn.rollback()
                raise
            if sqlite:
                cur.execute("COMMIT")
            else:
                conn.commit()
        finally:
            cur.close()

    # ------------------------------------------------------------------ writes

    def write(self, rows: Sequence[Mapping[str, Any]], steps: Sequence[Mapping[str, Any]] = ()) -> None:
        """Apply the row changes, and add the steps that ended, in one transaction (all or none)."""
        conn = self.connect()
        try:
            with self._transaction(conn) as cur:
                cur.executemany(self._upsert, rows)
                if steps:
                    cur.executemany(self._insert_step, steps)
        except Exception:
            self.close()  # reconnect next time: the server may have gone away
            raise

    def purge(self, before: float) -> int:
        """Delete executions that ended, or were last heard of running, before `before`.

        Waiting ones stay (parked approvals are work still to do: cancel them to close them).
        """
        conn = self.connect()
        p = self._ph()
        try:
            with self._transaction(conn) as cur:
                cur.execute(
                    f"DELETE FROM {TABLE} WHERE (ended_at IS NOT NULL AND ended_at < {p})"
                    f" OR (status = 'in_progress' AND state_at < {p})",
                    (before, before),
                )
                n = int(cur.rowcount or 0)
                cur.execute(f"DELETE FROM {STEPS_TABLE} WHERE task_id NOT IN (SELECT task_id FROM {TABLE})")
                return n
        except Exception:
            self.close()
            raise

    # ------------------------------------------------------------------ reads

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a query (`?` placeholders, turned into the dialect's), as dicts."""
        conn = self.connect()
        if self.dialect == "postgresql":
            sql = sql.replace("%", "%%").replace("?", "%s")
        try:
            cur = conn.cursor()
            try:
                cur.execute(sql, tuple(params))
                names = [d[0] for d in cur.description or ()]
                rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
            finally:
                cur.close()
            if self.dialect == "postgresql":
                conn.rollback()  # end the read transaction: no snapshot held open
            return rows
        except Exception:
            self.close()
            raise

    def waiting(self) -> list[tuple[str, str, int, float]]:
        """(agent, reason, how many, oldest waiting_since) for every agent and reason waiting now."""
        rows = self.fetch(
            f"SELECT agent, waiting_reason AS reason, count(*) AS n, min(waiting_since) AS oldest"
            f" FROM {TABLE} WHERE status = 'pending' GROUP BY agent, waiting_reason"
        )
        return [(r["agent"], r["reason"] or "", int(r["n"]), float(r["oldest"] or 0.0)) for r in rows]
