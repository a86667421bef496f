"""One small database handle for Strongroom's own tables (keys, read models).

The event tables belong to the `eventsourcing` recorders; everything else we store
goes through `Database`, which hides the two differences that matter between the
embedded store and the production one: the placeholder style and how connections
are pooled. Statements are always parameterised (`?` placeholders, translated for
psycopg): values never become SQL text, which is what stops SQL injection.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Protocol
from urllib.parse import urlsplit

from infrastructure.private_files import make_private_sqlite


class Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class DatabaseUnavailable(Exception):
    """The database could not be reached; callers answer 503, never a trace."""


class DatabaseFull(DatabaseUnavailable):
    """The database's file system has (almost) no space left for a write."""


# Below this many free bytes a SQLite database counts as full: a customer write with
# its events, read-model rows and WAL frames needs far less, a burst of them not.
MIN_FREE_BYTES = 1024 * 1024


# PostgreSQL's error code for "could not extend file: No space left on device".
DISK_FULL_SQLSTATE = "53100"


class ServerSpace:
    """What this process last heard of the PostgreSQL server's disk (R7.6).

    The server's disk is out of a client's sight, and a read (all a readiness probe
    asks) still works on a full one. So a write the server refused for space
    (SQLSTATE 53100, `disk_full`) is remembered: the store reports full to readiness
    until a write succeeds again or `REMEMBERED_SECONDS` pass, when the load
    balancer may try the process again. It is per process: each API process learns
    it from the first write it is refused.
    """

    REMEMBERED_SECONDS = 30.0
    _refused_at: float | None = None

    @classmethod
    def refused(cls) -> None:
        cls._refused_at = time.monotonic()

    @classmethod
    def written(cls) -> None:
        cls._refused_at = None

    @classmethod
    def full(cls) -> bool:
        refused_at = cls._refused_at
        return refused_at is not None and time.monotonic() - refused_at < cls.REMEMBERED_SECONDS


def is_disk_full(exc: BaseException) -> bool:
    """True when `exc`, or an error it was raised from, is the server's `disk_full`."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if getattr(current, "sqlstate", None) == DISK_FULL_SQLSTATE:
            return True
        current = current.__cause__ or current.__context__
    return False


def sqlite_path(database_url: str) -> str:
    """The file path in a `sqlite:///path` URL."""
    parts = urlsplit(database_url)
    if parts.scheme != "sqlite" or not parts.path:
        raise ValueError("expected a URL of the form sqlite:///path/to/file.sqlite")
    return parts.path


def is_postgres(database_url: str) -> bool:
    return urlsplit(database_url).scheme in ("postgres", "postgresql")


# One PostgreSQL advisory lock serialises every process's schema changes: two
# processes starting together on one database (gunicorn's workers, a worker beside a
# command) each replace the same functions and triggers, and without it they
# deadlock (measured: 24 of 40 concurrent starts of the events recorder). The number
# is arbitrary; it only has to be the same everywhere.
SCHEMA_LOCK_KEY = 0x5374726F6E67  # "Strong"


# A constant of this module, no value from outside: the same text for a `Database`
# cursor and for the library's psycopg cursor (which differ in placeholders).
LOCK_SCHEMA_CHANGES = f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})"


def lock_schema_changes(cur: Any, dialect: str = "postgres") -> None:
    """Wait, inside the caller's transaction, until no other process is changing the
    schema; released when that transaction ends. On SQLite a writing transaction
    already holds the database's one write lock, so there is nothing to do."""
    if dialect == "postgres":
        cur.execute(LOCK_SCHEMA_CHANGES)


class Database(ABC):
    """Transactions over SQLite or PostgreSQL with `?` placeholders."""

    dialect: str

    @staticmethod
    def connect(database_url: str, *, schema: str | None = None, timeout: float = 10.0) -> Database:
        """`timeout`: the longest a PostgreSQL transaction waits for a connection (a
        request's own deadline, infrastructure/faults.py, may cut it shorter)."""
        if is_postgres(database_url):
            return PostgresDatabase(database_url, schema=schema, timeout=timeout)
        return SQLiteDatabase(sqlite_path(database_url))

    @abstractmethod
    def transaction(self, *, write: bool = True) -> AbstractContextManager[Cursor]:
        """A transaction; `write=False` promises only reads (SQLite takes no write lock)."""

    @abstractmethod
    def reclaim(self, table: str) -> None:
        """Physically remove deleted rows of `table` (used after destroying keys)."""

    @abstractmethod
    def close(self) -> None:
        """Close every connection."""

    def check_space(self) -> None:
        """Raise `DatabaseFull` when a write would find no space (readiness, R7.6).

        PostgreSQL's disk is the server's, out of a client's sight: a write there
        that fails for space raises `DiskFull`, answered 503 like any outage, and
        is remembered for readiness (`ServerSpace`).
        """


class _SQLiteCursor:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cursor.execute(sql, tuple(params))

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any:
        return self._cursor.executemany(sql, [tuple(p) for p in params])

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()


class SQLiteDatabase(Database):
    """A SQLite file, one connection per thread, writes serialised by BEGIN IMMEDIATE."""

    dialect = "sqlite"
    LOCK_WAIT_SECONDS = 30.0

    def __init__(self, path: str, *, secure_delete: bool = True) -> None:
        self.path = path
        self.secure_delete = secure_delete
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                make_private_sqlite(self.path)
            except OSError as exc:
                raise DatabaseUnavailable(f"cannot create the SQLite database ({type(exc).__name__})") from exc
            try:
                conn = sqlite3.connect(
                    self.path, timeout=self.LOCK_WAIT_SECONDS, isolation_level=None, check_same_thread=False
                )
            except sqlite3.Error as exc:
                raise DatabaseUnavailable(f"cannot open SQLite database: {exc}") from exc
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            if self.secure_delete:
                # Deleted key material is overwritten with zeros in the file, so a
                # destroyed key cannot be carved out of free pages later.
                conn.execute("PRAGMA secure_delete=ON")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Cursor]:
        from infrastructure.faults import is_store_unavailable, remaining

        conn = self._connection()
        cursor = conn.cursor()
        try:
            # A writer waits for another's lock up to 30 s, or to the end of the
            # request's deadline when there is one (then 503, not a hung request).
            # Set only when it changes (a request's deadline moves it; otherwise it is
            # the same each time): a statement fewer per transaction is one hand-over
            # of the interpreter lock fewer for concurrent readers (issue 15 item 4).
            wait_ms = max(1, int(remaining(self.LOCK_WAIT_SECONDS) * 1000))
            if getattr(self._local, "busy", None) != (conn, wait_ms):
                cursor.execute(f"PRAGMA busy_timeout = {wait_ms}")
                self._local.busy = (conn, wait_ms)
            # Writers take the lock up front so two writers never deadlock upgrading it;
            # readers take none and see a consistent WAL snapshot.
            cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield _SQLiteCursor(cursor)
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise
            else:
                conn.commit()
        except sqlite3.Error as exc:
            # Locked past the busy timeout, a disk I/O error, a full disk: "not now",
            # not a bug; the library's message names the file, so it stays behind.
            if is_store_unavailable(exc):
                raise DatabaseUnavailable(f"SQLite: {exc.sqlite_errorname}") from exc
            raise
        finally:
            cursor.close()

    def check_space(self) -> None:
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            stats = os.statvfs(folder)
        except OSError as exc:
            raise DatabaseUnavailable(f"cannot inspect the SQLite database's file system: {exc.strerror}") from exc
        if stats.f_bavail * stats.f_frsize < MIN_FREE_BYTES:
            raise DatabaseFull("the SQLite database's file system is full")

    def reclaim(self, table: str) -> None:
        # secure_delete has zeroed the freed pages; folding the WAL into the main
        # file and truncating it removes the copy of the deleted rows in the log.
        self._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


class _PostgresCursor:
    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    @staticmethod
    def _translate(sql: str) -> str:
        return sql.replace("%", "%%").replace("?", "%s")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._cursor.execute(self._translate(sql), tuple(params))

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any:
        return self._cursor.executemany(self._translate(sql), [tuple(p) for p in params])

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()


# `_bound_statements`: the session's statement_timeout is the server's default.
_SERVER_DEFAULT = -1


class PostgresDatabase(Database):
    """A psycopg 3 connection pool; `schema` is put first on the search path.

    Round trips are most of what a short request costs (issue 15 item 6), so:

    * connections are in autocommit mode: a write transaction is `BEGIN` ... `COMMIT`
      as before, but a read (`write=False`) sends its statements alone, one round
      trip each. PostgreSQL's default isolation, READ COMMITTED, gives every
      statement its own snapshot inside a transaction too, so a read sees what it
      saw before;
    * the request's deadline bounds every statement as the session's
      `statement_timeout`, set only when it no longer fits (see `_bound_statements`),
      not once per transaction.
    """

    dialect = "postgres"
    # A statement may outlive its request's deadline by at most this (the watchdog
    # cuts a connection half a second after the deadline in any case).
    TIMEOUT_STEP_MS = 250

    def __init__(self, database_url: str, *, schema: str | None = None, timeout: float = 10.0) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        from infrastructure.faults import bounded_pool_class, remaining

        # Waits bounded by the request's deadline; reconnects at most half a second apart.
        BoundedPool = bounded_pool_class(ConnectionPool)

        self._psycopg = psycopg
        self._remaining = remaining
        self.schema = schema
        # The statement_timeout (ms) each connection's session has, as we last set it.
        self._timeouts: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()

        def configure(conn: Any) -> None:
            if schema:
                # Only when absent: CREATE SCHEMA checks its privilege even with IF NOT
                # EXISTS, and the application role (R3.4) may not create schemas.
                if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None:
                    conn.execute(
                        psycopg.sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                            psycopg.sql.Identifier(schema)
                        )
                    )
                conn.execute(
                    psycopg.sql.SQL("SET search_path TO {}, public").format(
                        psycopg.sql.Identifier(schema)
                    )
                )

        try:
            self.pool = BoundedPool(
                database_url,
                # libpq waits forever on a host that drops packets; never longer than this.
                kwargs={"connect_timeout": max(2, math.ceil(timeout)), "autocommit": True},
                min_size=1,
                max_size=8,
                configure=configure,
                open=True,
                timeout=timeout,
            )
            self.pool.wait(timeout=max(10.0, timeout))
        except Exception as exc:  # psycopg_pool raises PoolTimeout, psycopg OperationalError
            raise DatabaseUnavailable("cannot connect to PostgreSQL") from exc

    def _bound_statements(self, conn: Any) -> None:
        """Within a request, no statement outlives its deadline: one stuck behind a
        lock or a slow server is cancelled by the server itself. Outside one, the
        server's own default applies (none, unless a DBA set one for the role or the
        database). The session's `statement_timeout` is changed (one round trip)
        only when it is not already between the time left and one step more: a
        request mostly finds it as the last request left it."""
        left = self._remaining(math.inf)
        current = self._timeouts.get(conn)
        if left == math.inf:
            if current is None or current == _SERVER_DEFAULT:
                return
            conn.execute("RESET statement_timeout")
            self._timeouts[conn] = _SERVER_DEFAULT
            return
        left_ms = left * 1000
        if current is not None and current > 0 and left_ms <= current <= left_ms + self.TIMEOUT_STEP_MS:
            return
        # At least one step: a deadline that passed a moment ago must not leave 1 ms
        # on the connection for the next user's own `set_config` to be cancelled by.
        wanted = max(self.TIMEOUT_STEP_MS, math.ceil(left_ms / self.TIMEOUT_STEP_MS) * self.TIMEOUT_STEP_MS)
        conn.execute("SELECT set_config('statement_timeout', %s, false)", (f"{wanted}ms",))
        self._timeouts[conn] = wanted

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Cursor]:
        psycopg = self._psycopg
        try:
            conn_cm = self.pool.connection()
            conn = conn_cm.__enter__()
        except DatabaseUnavailable:
            raise
        except Exception as exc:
            raise DatabaseUnavailable("cannot connect to PostgreSQL") from exc
        try:
            self._bound_statements(conn)
            block = conn.transaction() if write else nullcontext()
            with block, conn.cursor() as cursor:
                yield _PostgresCursor(cursor)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            # Lost connection, server shutting down, disk full, lock timeout. The pool
            # is told of the failure, and discards the connection if it is broken.
            conn_cm.__exit__(type(exc), exc, exc.__traceback__)
            if is_disk_full(exc):
                ServerSpace.refused()
                raise DatabaseFull("the PostgreSQL server's disk is full") from exc
            raise DatabaseUnavailable(f"PostgreSQL: {type(exc).__name__}") from exc
        except BaseException as exc:
            conn_cm.__exit__(type(exc), exc, exc.__traceback__)
            raise
        else:
            conn_cm.__exit__(None, None, None)
            if write:
                ServerSpace.written()

    def check_space(self) -> None:
        if ServerSpace.full():
            raise DatabaseFull("the PostgreSQL server refused a write for space")

    def reclaim(self, table: str) -> None:
        # VACUUM cannot run inside a transaction block: the pool's connections are in
        # autocommit mode.
        with self.pool.connection() as conn:
            self._bound_statements(conn)
            conn.execute(self._psycopg.sql.SQL("VACUUM {}").format(self._psycopg.sql.Identifier(table)))

    def close(self) -> None:
        self.pool.close()


def adapt_cursor(dialect: str, raw: Any) -> Cursor:
    """Wrap a recorder's own cursor so read-model code can write in its transaction."""
    return _PostgresCursor(raw) if dialect == "postgres" else _SQLiteCursor(raw)
