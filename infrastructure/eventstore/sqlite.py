"""The SQLite store: one recorder per role, rows stamped, chained and append-only.

Stored layout (the library's SQLite factory names the table `stored_events`; the
library's columns first, unchanged, then ours):

    rowid               INTEGER   the notification id (SQLite's implicit rowid)
    originator_id       TEXT      32 hex digits for a UUID stream
    originator_version  INTEGER   PRIMARY KEY (originator_id, originator_version)
    topic               TEXT
    state               BLOB      the ciphertext (infrastructure/crypto/envelope.py)
    recorded_at         TEXT      ISO-8601 UTC, microseconds, fixed width (so text
                                  order is time order); indexed
    prev_hash, row_hash BLOB      32 bytes each: the chain (infrastructure/audit/chain.py)

and `audit_chain_format` (events_table, version, from_position): the first position
chained the v2 way, recorded when the table is first created or the store is first
opened by a version that chains v2 (rows before it keep their v1 hashes).

Why it is built this way:

- Every insert begins IMMEDIATE, taking SQLite's write lock before it reads
  anything; then the stamp is `max(now, last row's stamp)` and the hash chains onto
  the last row, both read under that lock; so the stamp never decreases as the id
  grows, even if the clock steps back, and no two writers (even in two processes)
  chain onto the same predecessor. Every row of one `save()` shares the first row's
  stamp, so "as of T" never splits a unit of work.
- The rows of one save are chained in Python and written by one multi-row INSERT
  with their positions given, so each hash commits to the rowid its row really
  gets. It hashes v2, reading the metadata digest from the state's clear header
  (zeros for a bare state, which `audit verify` names). (Until issue 15 each row
  was its own INSERT, reading the head and hashing through a function registered
  on the connection: a statement and two calls back into Python per row, each
  waiting for the interpreter lock while the write lock was held.)
- Triggers refuse UPDATE and DELETE (R3.4): the application never changes an event
  (crypto-shredding destroys keys, not rows), so any attempt is a bug or an attack.

Extension points used (checked against eventsourcing 9.5.6): the public
`insert_events(**kwargs)` (to run the in-transaction hook and the commit listeners,
see shared.py) and the protected `_insert_events(cursor, ...)`, the step the library
itself extends in `SQLiteProcessRecorder` to add the tracking row.
"""

from __future__ import annotations

import sqlite3
import weakref
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification, StoredEvent
from eventsourcing.sqlite import (
    SQLITE3_DEFAULT_LOCK_TIMEOUT,
    SQLiteApplicationRecorder,
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteProcessRecorder,
    SQLiteTransaction,
)
from infrastructure.audit.chain import (
    CHAIN_FORMAT_TABLE,
    GENESIS,
    HASH_BYTES,
    NO_METADATA,
    ChainRow,
    canonical_uuid_hex,
    epoch_micros,
    meta_digest_of_state,
    row_hash,
    state_digest,
    unreadable_row,
)
from infrastructure.eventstore.shared import (
    APPEND_ONLY_MESSAGE,
    MAX_POSITION,
    PARTITION_BITS,
    InsertHooks,
    PartitionPage,
    StampedNotification,
    as_utc,
)
from infrastructure.faults import remaining

__all__ = ["TimedSQLiteApplicationRecorder", "TimedSQLiteProcessRecorder"]

# SQLite keeps recorded_at as fixed-width ISO-8601 text so that text order is time
# order; this is the width of datetime.isoformat(timespec="microseconds") in UTC.
_STAMP_WIDTH = len("2000-01-01T00:00:00.000000+00:00")
# Rows per multi-row INSERT (8 values each): within SQLite's oldest default limit of
# 999 bound values.
_CHUNK_ROWS = 120


def _stamp(when: datetime) -> str:
    return as_utc(when).isoformat(timespec="microseconds")


def _utc_now_stamp() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _chain_hash(
    prev: bytes, position: int, stream_id: str, version: int, topic: str, stamp: str, state: bytes
) -> bytes:
    """The row hash (v2) of a row about to be inserted (after the write lock)."""
    return row_hash(
        prev, position, stream_id, version, topic,
        epoch_micros(datetime.fromisoformat(stamp)), state_digest(state),
        meta_digest_of_state(state) or NO_METADATA,
    )


class _ImmediateTransaction(SQLiteTransaction):
    """The library's write transaction, begun IMMEDIATE: the write lock is taken
    before anything is read, so the chain's head read first is the head. A failure
    to begin (the lock not got in time) is translated as the library translates any
    other error in the transaction."""

    def __enter__(self) -> SQLiteCursor:
        cursor = self.connection.cursor()
        try:
            cursor.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)  # rolls back (nothing) and raises, translated
        return cursor


class TimedSQLiteApplicationRecorder(InsertHooks, SQLiteApplicationRecorder):
    """SQLite application recorder whose rows carry `recorded_at` and the chain
    hashes, and which runs the caller's in-transaction hook (shared.py)."""

    def __init__(
        self,
        datastore: SQLiteDatastore,
        events_table_name: str = "stored_events",
    ) -> None:
        super().__init__(datastore, events_table_name)
        # The B608 suppressions: table names come from the application's own
        # configuration, never from input; every value is a bound parameter.
        table = self.events_table_name
        # `insert_events` begins IMMEDIATE (the write lock first, even across
        # processes), then `_insert_events` reads the last row (position, stamp,
        # hash) and writes the next ones with their positions given, so each hash
        # commits to the rowid its row really gets.
        self.chain_head_stamp_statement = (
            f"SELECT rowid, recorded_at, row_hash FROM {table} "  # nosec B608
            "ORDER BY rowid DESC LIMIT 1"
        )
        self.insert_rows_statement = (
            f"INSERT INTO {table} "  # nosec B608
            "(rowid, originator_id, originator_version, topic, state, recorded_at, "
            "prev_hash, row_hash) VALUES "
        )
        self._busy_ms: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self.position_at_statement = (
            f"SELECT rowid FROM {table} WHERE recorded_at <= ? "  # nosec B608
            "ORDER BY recorded_at DESC, rowid DESC LIMIT 1"
        )
        self.version_at_statement = (
            f"SELECT max(originator_version) FROM {table} "  # nosec B608
            "WHERE originator_id = ? AND recorded_at <= ?"
        )
        self.recorded_at_of_statement = (
            f"SELECT recorded_at FROM {table} WHERE rowid = ?"  # nosec B608
        )
        self.chain_rows_statement = (
            "SELECT rowid, originator_id, originator_version, topic, state, "  # nosec B608
            f"recorded_at, prev_hash, row_hash FROM {table} "
            "WHERE rowid >= ? AND rowid <= ? ORDER BY rowid LIMIT ?"
        )
        self.chain_head_statement = (
            f"SELECT rowid, row_hash FROM {table} ORDER BY rowid DESC LIMIT 1"  # nosec B608
        )
        self.chain_v2_from_statement = (
            f"SELECT from_position FROM {CHAIN_FORMAT_TABLE} "  # nosec B608
            "WHERE events_table = ? AND version = 2"
        )

    def construct_create_table_statements(self) -> list[str]:
        table = self.events_table_name
        refuse = f"SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}')"
        return [
            f"CREATE TABLE IF NOT EXISTS {table} ("
            "originator_id TEXT, "
            "originator_version INTEGER, "
            "topic TEXT, "
            "state BLOB, "
            "recorded_at TEXT NOT NULL "
            f"CHECK (length(recorded_at) = {_STAMP_WIDTH}), "
            f"prev_hash BLOB NOT NULL CHECK (length(prev_hash) = {HASH_BYTES}), "
            f"row_hash BLOB NOT NULL CHECK (length(row_hash) = {HASH_BYTES}), "
            "PRIMARY KEY (originator_id, originator_version))",
            # The index's implicit trailing rowid serves ORDER BY recorded_at, rowid.
            f"CREATE INDEX IF NOT EXISTS {table}_recorded_at_idx "
            f"ON {table} (recorded_at)",
            # Append-only (R3.4): the application never updates or deletes an event
            # (crypto-shredding destroys keys, not rows), so any attempt is either a
            # bug or an attack. An attacker with the file can drop these; the chain
            # and the signed checkpoints are what catch that.
            f"CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table} "
            f"BEGIN {refuse}; END",
            f"CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table} "
            f"BEGIN {refuse}; END",
            # Chain v2 from the next position, once: a new table from 1, a store
            # upgraded with rows in it after them. The INSERT takes the write lock,
            # so no row can slip in between the max() and the record.
            f"CREATE TABLE IF NOT EXISTS {CHAIN_FORMAT_TABLE} ("
            "events_table TEXT NOT NULL, version INTEGER NOT NULL, "
            "from_position INTEGER NOT NULL, PRIMARY KEY (events_table, version))",
            f"INSERT OR IGNORE INTO {CHAIN_FORMAT_TABLE} (events_table, version, from_position) "  # nosec B608
            f"SELECT '{table}', 2, coalesce(max(rowid), 0) + 1 FROM {table}",
        ]

    def _insert_events(
        self,
        c: SQLiteCursor,
        stored_events: Sequence[StoredEvent],
        **_: Any,
    ) -> Sequence[int] | None:
        """Stamp, chain and insert the rows, in a transaction that holds the write
        lock (`insert_events` begins it IMMEDIATE).

        The head (last position, stamp and hash) is read once and every row is
        chained from it here, in Python, then written by one statement per chunk of
        rows. The write lock is what makes the head the head: no other connection,
        in this process or another, can commit a row until this transaction ends.
        (Were this called in a deferred transaction, another writer's commit
        between the read and the insert would make SQLite refuse the insert
        (SQLITE_BUSY_SNAPSHOT): an error, never two rows on one predecessor.)

        Why not a statement per row reading the head and hashing through a function
        registered on the connection, as before: each statement, and each call from
        SQLite back into Python, gives up the interpreter lock and waits to get it
        back while the chain's write lock is held; with 16 readers recording access
        that waiting, not the work, was most of a group commit (issue 15).
        """
        if not stored_events:
            return []
        c.execute(self.chain_head_stamp_statement)
        head = c.fetchone()
        position, last_stamp, prev = (0, "", GENESIS) if head is None else (int(head[0]), head[1], bytes(head[2]))
        # max(now, last row's stamp): the stamp never decreases as the id grows, even
        # if the clock steps back; every row of one save shares it.
        stamp = max(_utc_now_stamp(), last_stamp)
        ids: list[int] = []
        values: list[Any] = []
        for s in stored_events:
            position += 1
            stored_id = s.originator_id.hex if isinstance(s.originator_id, UUID) else s.originator_id
            # The chain hashes the id as a reader will see it, so PostgreSQL and
            # SQLite hash a row identically (backups restore either way round).
            canonical_id = str(self.convert_originator_id(stored_id))
            digest = _chain_hash(prev, position, canonical_id, s.originator_version, s.topic, stamp, s.state)
            values += (position, stored_id, s.originator_version, s.topic, s.state, stamp, prev, digest)
            ids.append(position)
            prev = digest
        for start in range(0, len(ids), _CHUNK_ROWS):
            count = min(_CHUNK_ROWS, len(ids) - start)
            c.execute(
                self.insert_rows_statement + ",".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * count),
                values[start * 8:(start + count) * 8],
            )
        return ids

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Insert the events (and a process recorder's tracking row), run the
        caller's in-transaction hook, commit, then tell the commit listeners.

        The library's own insert_events is a transaction around `_insert_events`;
        this one begins it IMMEDIATE (the write lock first, so the head read next
        is the head) and adds the hook.
        """
        with self.datastore.get_connection(commit=True) as conn:
            # Taking the write lock waits for another writer's up to
            # SQLITE_LOCK_TIMEOUT, or to the end of the request's deadline when there
            # is one (then 503, not a request held for the whole lock timeout). Set
            # whenever it differs from the connection's last, so a connection never
            # keeps a request's shorter wait.
            wait = remaining(float(self.datastore.pool.lock_timeout or SQLITE3_DEFAULT_LOCK_TIMEOUT))
            busy_ms = max(1, int(wait * 1000))
            if self._busy_ms.get(conn) != busy_ms:
                with conn.cursor() as pragma:
                    pragma.execute(f"PRAGMA busy_timeout = {busy_ms}")
                self._busy_ms[conn] = busy_ms
            with _ImmediateTransaction(conn, commit=True) as c, c:
                ids = self._insert_events(c, stored_events, **kwargs)
                self._run_hook(c, ids, kwargs)
        self._committed(ids)
        return ids

    def position_at(self, when: datetime) -> int:
        """The greatest notification id recorded at or before `when` (0 if none)."""
        stamp = _stamp(when)
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.position_at_statement, (stamp,))
            row = c.fetchone()
        return int(row[0]) if row is not None else 0

    def version_at(self, originator_id: UUID | str, when: datetime) -> int | None:
        """The stream's greatest version recorded at or before `when`, if any."""
        stamp = _stamp(when)
        key = originator_id.hex if isinstance(originator_id, UUID) else originator_id
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.version_at_statement, (key, stamp))
            row = c.fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def select_timed_notifications(
        self, start: int, limit: int, stop: int | None = None
    ) -> list[StampedNotification]:
        """Notifications from `start` (inclusive) to `stop`, with their stamps."""
        statement = (
            "SELECT rowid, originator_id, originator_version, topic, state, "  # nosec B608
            f"recorded_at FROM {self.events_table_name} WHERE rowid >= ? "
        )
        params: list[int] = [start]
        if stop is not None:
            statement += "AND rowid <= ? "
            params.append(stop)
        statement += "ORDER BY rowid LIMIT ?"
        params.append(limit)
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement, params)
            rows = c.fetchall()
        return [
            StampedNotification(
                id=row["rowid"],
                originator_id=self.convert_originator_id(row["originator_id"]),
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=row["state"],
                recorded_at=datetime.fromisoformat(row["recorded_at"]),
            )
            for row in rows
        ]

    def select_partition(self, start: int, limit: int, partition: int, partitions: int,
                         every_partition: Sequence[str] = ()) -> PartitionPage:
        """A parallel rebuild's page: the next `limit` notifications from `start`, as
        `select_notifications` pages them, of which only the rows of streams in
        `partition` (`shared.partition_of`) and any row whose topic is in
        `every_partition`."""
        low_bits = " + ".join(  # the last hex digits of the stored id, as an integer
            f"{16 ** k} * (instr('0123456789abcdef', substr(originator_id, {-1 - k}, 1)) - 1)"
            for k in range(PARTITION_BITS // 4)
        )
        topics = ", ".join("?" * len(every_partition)) or "NULL"
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT MAX(rowid), COUNT(*) FROM (SELECT rowid FROM {self.events_table_name} "  # nosec B608
                "WHERE rowid >= ? ORDER BY rowid LIMIT ?)", (start, limit))
            last, size = c.fetchone()
            if last is None:
                return PartitionPage(None, 0, [])
            c.execute(
                "SELECT rowid, originator_id, originator_version, topic, state "  # nosec B608
                f"FROM {self.events_table_name} WHERE rowid >= ? AND rowid <= ? "
                f"AND (({low_bits}) % ? = ? OR topic IN ({topics})) ORDER BY rowid",
                (start, last, partitions, partition, *every_partition))
            rows = c.fetchall()
        return PartitionPage(int(last), int(size), [
            Notification(id=r[0], originator_id=self.convert_originator_id(r[1]), originator_version=r[2],
                         topic=r[3], state=r[4])
            for r in rows
        ])

    def recorded_at_of(self, position: int) -> datetime | None:
        """When the row at `position` was recorded, or None if there is none."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.recorded_at_of_statement, (position,))
            row = c.fetchone()
        return None if row is None else datetime.fromisoformat(row[0])

    # -- the chain --------------------------------------------------------------------

    def select_chain_rows(
        self, start: int, limit: int, stop: int | None = None
    ) -> list[ChainRow]:
        """Rows from `start` to `stop` as the chain sees them (ciphertext digested here)."""
        with self.datastore.transaction(commit=False) as c:
            c.sqlite_cursor.row_factory = None  # plain tuples: cheaper than sqlite3.Row
            c.execute(self.chain_rows_statement, (start, MAX_POSITION if stop is None else stop, limit))
            rows = c.sqlite_cursor.fetchall()
        # Per-row work is most of a verification's time, so the loop is kept lean:
        # the UUID text is formatted rather than parsed (the same string).
        convert = self.convert_originator_id
        uuids = self.datastore.originator_id_type == "uuid"
        parse, micros, digest = datetime.fromisoformat, epoch_micros, state_digest
        chain_rows: list[ChainRow] = []
        append = chain_rows.append
        last_stamp, last_micros = None, 0  # rows of one save share a stamp
        meta = meta_digest_of_state
        for position, stored_id, version, topic, state, stamp, prev, head in rows:
            try:
                if stamp != last_stamp:
                    last_stamp, last_micros = stamp, micros(parse(stamp))
                append(ChainRow(
                    position,
                    canonical_uuid_hex(stored_id) if uuids and len(stored_id) == 32 else str(convert(stored_id)),
                    int(version),
                    str(topic),
                    last_micros,
                    digest(state),
                    prev,
                    head,
                    None,
                    meta(state),
                ))
            except (ValueError, TypeError) as exc:
                last_stamp = None
                append(unreadable_row(position, prev, head, exc))
        return chain_rows

    def chain_head(self) -> tuple[int, bytes] | None:
        """(position, row hash) of the last row, or None on an empty log."""
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.chain_head_statement)
            row = c.fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def chain_v2_from(self) -> int:
        """The first position chained v2 (audit/chain.py); rows before it are v1.

        No record (a store whose schema has not been upgraded: its rows are all
        chained v1) answers MAX_POSITION, which no row reaches.
        """
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (CHAIN_FORMAT_TABLE,))
            if c.fetchone() is None:
                return MAX_POSITION
            c.execute(self.chain_v2_from_statement, (self.events_table_name,))
            row = c.fetchone()
        return MAX_POSITION if row is None else int(row[0])


class TimedSQLiteProcessRecorder(SQLiteProcessRecorder, TimedSQLiteApplicationRecorder):
    """SQLite process recorder (events + tracking) with `recorded_at` and the chain.

    The method order puts the tracking recorder before the timed application
    recorder, so `_insert_events` inserts stamped, chained events and then the
    tracking row in one transaction, as the library's process recorder does; a
    hook, if given, runs after both, in the same transaction.
    """

