"""One small database handle for Strongroom's own tables (keys, read models).

The event tables belong to the `eventsourcing` recorders; everything else we store
goes through `Database`, which hides the two differences that matter between the
embedded store and the production one: the placeholder style and how connections
are pooled. Statements are always parameterised (`?` placeholders, translated for
psycopg): values never become SQL text, which is what stops SQL injection.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol
from urllib.parse import urlsplit


class Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class DatabaseUnavailable(Exception):
    """The database could not be reached; callers answer 503, never a trace."""


def sqlite_path(database_url: str) -> str:
    """The file path in a `sqlite:///path` URL."""
    parts = urlsplit(database_url)
    if parts.scheme != "sqlite" or not parts.path:
        raise ValueError("expected a URL of the form sqlite:///path/to/file.sqlite")
    return parts.path


def is_postgres(database_url: str) -> bool:
    return urlsplit(database_url).scheme in ("postgres", "postgresql")


class Database(ABC):
    """Transactions over SQLite or PostgreSQL with `?` placeholders."""

    dialect: str

    @staticmethod
    def connect(database_url: str, *, schema: str | None = None) -> Database:
        if is_postgres(database_url):
            return PostgresDatabase(database_url, schema=schema)
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
                conn = sqlite3.connect(
                    self.path, timeout=30, isolation_level=None, check_same_thread=False
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
        conn = self._connection()
        cursor = conn.cursor()
        # Writers take the lock up front so two writers never deadlock upgrading it;
        # readers take none and see a consistent WAL snapshot.
        cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield _SQLiteCursor(cursor)
        except BaseException:
            conn.rollback()
            raise
        else:
            conn.commit()
        finally:
            cursor.close()

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


class PostgresDatabase(Database):
    """A psycopg 3 connection pool; `schema` is put first on the search path."""

    dialect = "postgres"

    def __init__(self, database_url: str, *, schema: str | None = None) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        self._psycopg = psycopg
        self.schema = schema

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
            conn.commit()

        try:
            self.pool = ConnectionPool(
                database_url,
                min_size=1,
                max_size=8,
                configure=configure,
                open=True,
                timeout=10,
            )
            self.pool.wait(timeout=10)
        except Exception as exc:  # psycopg_pool raises PoolTimeout, psycopg OperationalError
            raise DatabaseUnavailable("cannot connect to PostgreSQL") from exc

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Cursor]:
        try:
            conn_cm = self.pool.connection()
            conn = conn_cm.__enter__()
        except Exception as exc:
            raise DatabaseUnavailable("cannot connect to PostgreSQL") from exc
        try:
            with conn.transaction(), conn.cursor() as cursor:
                yield _PostgresCursor(cursor)
        finally:
            conn_cm.__exit__(None, None, None)

    def reclaim(self, table: str) -> None:
        # VACUUM cannot run inside a transaction block, hence autocommit.
        with self.pool.connection() as conn:
            conn.autocommit = True
            try:
                conn.execute(
                    self._psycopg.sql.SQL("VACUUM {}").format(self._psycopg.sql.Identifier(table))
                )
            finally:
                conn.autocommit = False

    def close(self) -> None:
        self.pool.close()


def adapt_cursor(dialect: str, raw: Any) -> Cursor:
    """Wrap a recorder's own cursor so read-model code can write in its transaction."""
    return _PostgresCursor(raw) if dialect == "postgres" else _SQLiteCursor(raw)
