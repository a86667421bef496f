"""The events table as rows, read and written below the recorders.

A backup must hold rows exactly as stored, and a restore must put them back with
their original positions, stamps and chain hashes: going through the recorders
would re-encrypt nothing but re-stamp `recorded_at` and re-number positions, which
would break point-in-time restore and the hash chain. So this module reads and
writes the table directly, generically: every column the table has, whatever
another migration has added, travels unchanged.

Rows are carried in a portable form (JSON values) so a SQLite backup restores into
PostgreSQL and back: `position` is the notification id (SQLite's rowid),
`originator_id` a canonical UUID string, `recorded_at` ISO-8601 UTC with
microseconds, and any bytes value `{"b64": ...}`.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit
from uuid import UUID

from infrastructure.audit.chain import CHAIN_FORMAT_TABLE
from infrastructure.sql import is_postgres, sqlite_path

POSITION = "position"
CHAIN_PREV = "prev_hash"
CHAIN_HEAD = "row_hash"
PAGE_ROWS = 2000

Row = list[Any]  # portable values in `EventTable.columns` order


def encode_value(value: Any) -> Any:
    """A stored value as JSON: bytes tagged, times as UTC ISO text, UUIDs as text."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"b64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, datetime):
        return {"ts": value.astimezone(timezone.utc).isoformat(timespec="microseconds")}
    if isinstance(value, UUID):
        return str(value)
    return value


def decode_value(value: Any, *, dialect: str) -> Any:
    if isinstance(value, dict):
        if "b64" in value:
            return base64.b64decode(value["b64"])
        if "ts" in value:
            return value["ts"] if dialect == "sqlite" else datetime.fromisoformat(value["ts"])
    return value


def decode_row(row: Row, *, dialect: str) -> Row:
    """A backed-up row's values as `dialect` stores them (`decode_value` of each)."""
    return [decode_value(v, dialect=dialect) if type(v) is dict else v for v in row]


def pg_conninfo(database_url: str) -> tuple[str, str]:
    """(libpq URL, schema): our URLs may carry `schema=`, which libpq does not know."""
    parts = urlsplit(database_url)
    query = parse_qs(parts.query)
    schema = query.pop("schema", ["public"])[0]
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query, doseq=True), ""))
    return url, schema


@dataclass(frozen=True)
class TableRef:
    database_url: str
    table: str

    @property
    def dialect(self) -> str:
        return "postgres" if is_postgres(self.database_url) else "sqlite"


class EventTable:
    """Direct access to one events table (SQLite or PostgreSQL)."""

    def __init__(self, ref: TableRef) -> None:
        self.ref = ref
        self.dialect = ref.dialect
        if self.dialect == "sqlite":
            self._sqlite = sqlite3.connect(sqlite_path(ref.database_url), timeout=30, isolation_level=None)
            self._sqlite.execute("PRAGMA journal_mode=WAL")
            self._table_columns = [r[1] for r in self._sqlite.execute(f"PRAGMA table_info({self._quoted})")]
        else:
            import psycopg

            url, self.schema = pg_conninfo(ref.database_url)
            self._pg = psycopg.connect(url, autocommit=True, connect_timeout=10)
            rows = self._pg.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s"
                " AND table_name = %s ORDER BY ordinal_position",
                (self.schema, ref.table),
            ).fetchall()
            self._table_columns = [r[0] for r in rows]
        if not self._table_columns:
            raise LookupError(f"no events table {ref.table!r} in the database")
        stored = [c for c in self._table_columns if c != "notification_id"]
        self.columns: list[str] = [POSITION, *stored]

    @property
    def _quoted(self) -> str:
        return '"' + self.ref.table.replace('"', '""') + '"'

    def _pg_table(self) -> Any:
        from psycopg.sql import Identifier

        return Identifier(self.schema, self.ref.table)

    @property
    def has_chain(self) -> bool:
        return CHAIN_PREV in self.columns and CHAIN_HEAD in self.columns

    def close(self) -> None:
        if self.dialect == "sqlite":
            self._sqlite.close()
        else:
            self._pg.close()

    # -- reading -------------------------------------------------------------------------

    def _select_sql(self) -> Any:
        stored = self.columns[1:]
        if self.dialect == "sqlite":
            # B608: the table and column names come from the database's own catalogue.
            return (
                f"SELECT rowid, {', '.join(stored)} FROM {self._quoted} "  # nosec B608
                "WHERE rowid > ? AND rowid <= ? ORDER BY rowid"
            )
        from psycopg.sql import SQL, Identifier

        return SQL("SELECT notification_id, {cols} FROM {table} WHERE notification_id > %s"
                   " AND notification_id <= %s ORDER BY notification_id").format(
            cols=SQL(", ").join(Identifier(c) for c in stored), table=self._pg_table()
        )

    def _portable(self, raw: Sequence[Any]) -> Row:
        row = [encode_value(v) for v in raw]
        for i, name in enumerate(self.columns):
            if name == "originator_id" and isinstance(row[i], str) and len(row[i]) == 32:
                row[i] = str(UUID(row[i]))  # SQLite keeps UUIDs as 32 hex digits
        return row

    def snapshot(self, after: int) -> Iterator[tuple[int, Iterator[Row]]]:
        """Yield once: (last position, rows after `after`) from one consistent snapshot.

        SQLite: one read transaction (WAL keeps the snapshot while writers go on).
        PostgreSQL: REPEATABLE READ, read only, with a server-side cursor. Positions
        commit in order (the recorders insert under a table lock), so "after the
        last backed-up position" never skips a row that commits later.
        """
        if self.dialect == "sqlite":
            conn = self._sqlite
            conn.execute("BEGIN")
            try:
                last = conn.execute(f"SELECT coalesce(max(rowid), 0) FROM {self._quoted}").fetchone()[0]  # nosec B608
                cursor = conn.execute(self._select_sql(), (after, last))

                def rows() -> Iterator[Row]:
                    while batch := cursor.fetchmany(PAGE_ROWS):
                        for raw in batch:
                            yield self._portable(raw)

                yield int(last), rows()
            finally:
                conn.execute("COMMIT")
            return
        from psycopg.sql import SQL

        conn = self._pg
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            last = conn.execute(
                SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(self._pg_table())
            ).fetchone()[0]
            with conn.cursor(name="strongroom_backup") as cursor:
                cursor.itersize = PAGE_ROWS
                cursor.execute(self._select_sql(), (after, last))

                def pg_rows() -> Iterator[Row]:
                    for raw in cursor:
                        yield self._portable(raw)

                yield int(last), pg_rows()

    def max_position(self) -> int:
        if self.dialect == "sqlite":
            return int(self._sqlite.execute(f"SELECT coalesce(max(rowid), 0) FROM {self._quoted}").fetchone()[0])  # nosec B608
        from psycopg.sql import SQL

        return int(self._pg.execute(
            SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(self._pg_table())
        ).fetchone()[0])

    def topics_after(self, position: int) -> set[str]:
        """The (plaintext) topics of rows after `position`: which kinds of event came since."""
        if self.dialect == "sqlite":
            rows = self._sqlite.execute(f"SELECT DISTINCT topic FROM {self._quoted} WHERE rowid > ?", (position,))  # nosec B608
            return {r[0] for r in rows}
        from psycopg.sql import SQL

        rows = self._pg.execute(
            SQL("SELECT DISTINCT topic FROM {} WHERE notification_id > %s").format(self._pg_table()), (position,)
        ).fetchall()
        return {r[0] for r in rows}

    def rows(self, after: int = 0) -> Iterator[Row]:
        """All rows after `after`, in position order (one snapshot)."""
        for _, rows in self.snapshot(after):
            yield from rows

    # -- writing (restore) ----------------------------------------------------------------

    def insert(self, columns: Sequence[str], rows: Sequence[Row]) -> None:
        """Insert portable rows exactly as they were stored, positions included.

        Only into a store being restored: the recorders' stamping and numbering are
        bypassed on purpose, so the restored rows keep their original positions,
        times and chain hashes.
        """
        self.insert_decoded(columns, [decode_row(row, dialect=self.dialect) for row in rows])

    def insert_decoded(self, columns: Sequence[str], rows: Sequence[Row]) -> None:
        """`insert`, for rows already through `decode_row` with this table's dialect
        (the restore decodes each row once, for this and for the chain's check)."""
        missing = [c for c in columns if c != POSITION and c not in self._table_columns]
        if missing:
            raise LookupError(f"the target events table has no column(s) {', '.join(missing)}")
        index = {name: i for i, name in enumerate(columns)}
        if self.dialect == "sqlite":
            names = ["rowid" if c == POSITION else c for c in columns]
            oid = index.get("originator_id")
            values = []
            for row in rows:
                if oid is not None and isinstance(row[oid], str) and len(row[oid]) == 36:
                    row = [*row[:oid], UUID(row[oid]).hex, *row[oid + 1:]]
                values.append(row)
            marks = ", ".join("?" for _ in names)
            self._sqlite.execute("BEGIN IMMEDIATE")
            try:
                self._sqlite.executemany(
                    f"INSERT INTO {self._quoted} ({', '.join(names)}) VALUES ({marks})", values  # nosec B608
                )
            except BaseException:
                self._sqlite.execute("ROLLBACK")
                raise
            self._sqlite.execute("COMMIT")
            return
        from psycopg.sql import SQL, Identifier

        names = ["notification_id" if c == POSITION else c for c in columns]
        copy = SQL("COPY {table} ({cols}) FROM STDIN").format(
            table=self._pg_table(), cols=SQL(", ").join(Identifier(c) for c in names)
        )
        with self._pg.transaction(), self._pg.cursor() as cur, cur.copy(copy) as writer:
            for row in rows:
                writer.write_row(row)

    def record_chain_v2_from(self, position: int) -> None:
        """Record where the restored rows' chain turns v2 (audit/chain.py), replacing
        what the empty table was given when it was built (position 1)."""
        if self.dialect == "sqlite":
            self._sqlite.execute(  # autocommit: one statement
                f"INSERT OR REPLACE INTO {CHAIN_FORMAT_TABLE} (events_table, version, from_position) "  # nosec B608
                "VALUES (?, 2, ?)", (self.ref.table, position))
            return
        from psycopg.sql import SQL, Identifier

        self._pg.execute(
            SQL("INSERT INTO {} (events_table, version, from_position) VALUES (%s, 2, %s) "
                "ON CONFLICT (events_table, version) DO UPDATE SET from_position = excluded.from_position")
            .format(Identifier(self.schema, CHAIN_FORMAT_TABLE)),
            (self.ref.table, position),
        )

    def finish_restore(self) -> None:
        """After inserting with explicit positions, move the id sequence past them."""
        if self.dialect == "sqlite":
            return  # rowid continues from max(rowid) by itself
        from psycopg.sql import SQL

        self._pg.execute(
            SQL("SELECT setval(pg_get_serial_sequence(%s, 'notification_id'),"
                " greatest(coalesce(max(notification_id), 0), 1), max(notification_id) IS NOT NULL) FROM {}")
            .format(self._pg_table()),
            (f'"{self.schema}"."{self.ref.table}"',),
        )
