"""Event recorders that stamp every row with a plaintext UTC `recorded_at`.

Event payloads are encrypted per subject, so the database cannot read an event's own
timestamp. Point-in-time restore ("as of time T") needs T mapped to a log position
without decrypting anything, so the recorders below add one column, `recorded_at`,
stamped inside the inserting transaction, and answer `position_at(T)`.

The stamp is `max(now, recorded_at of the current last row)`, taken after the store
has serialised writers (SQLite's write lock; PostgreSQL's `LOCK TABLE ... IN
EXCLUSIVE MODE`), so it never decreases as the notification id grows even if the
clock steps back. Every row of one transaction gets the same stamp, so a time never
falls inside an atomic `save()`: restoring "as of T" never restores half a unit of
work.

Every row also carries `prev_hash` and `row_hash`, the tamper-evident chain of
R3.3 (`infrastructure/audit/chain.py` says what is hashed). The hash is computed in
the same place as the stamp, after writers are serialised, so each row chains onto
the row committed before it. Triggers refuse UPDATE and DELETE (and TRUNCATE on
PostgreSQL) on the event tables, even to their owner (R3.4); `commit_listeners` are
told the positions of each committed insert (the checkpointer uses them).

These classes subclass the library's recorders and are chosen through its own
environment keys (`APPLICATION_RECORDER_TOPIC`, `PROCESS_RECORDER_TOPIC`);
`recorder_environment()` builds those keys from a database URL.

Indexing: `position_at` is served by an index on `recorded_at` (PostgreSQL: on
`(recorded_at, notification_id)`), not by a binary search over the id index.
Monotonicity would make the search correct, but it costs ~log2(n) queries (about 30
for a billion rows, each a network round trip on PostgreSQL) where the index costs
one probe, and the index is small (16 bytes a row) next to encrypted payloads.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from uuid import UUID

from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Composed, Identifier, Literal

from eventsourcing.persistence import (
    InterfaceError,
    Notification,
    OperationalError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.postgres import (
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresFactory,
    PostgresProcessRecorder,
    PostgresRecorder,
)
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteProcessRecorder,
)
from eventsourcing.utils import EnvType, Environment, get_topic, retry
from infrastructure.audit.chain import (
    CHAIN_TAG,
    GENESIS,
    HASH_BYTES,
    ChainRow,
    canonical_uuid_hex,
    epoch_micros,
    row_hash,
    state_digest,
    unreadable_row,
)

__all__ = [
    "TLSPostgresFactory",
    "TimedNotification",
    "TimedPostgresApplicationRecorder",
    "TimedPostgresProcessRecorder",
    "TimedSQLiteApplicationRecorder",
    "TimedSQLiteProcessRecorder",
    "recorder_environment",
]

# SQLite keeps recorded_at as fixed-width ISO-8601 text so that text order is time
# order; this is the width of datetime.isoformat(timespec="microseconds") in UTC.
_SQLITE_STAMP_WIDTH = len("2000-01-01T00:00:00.000000+00:00")
_SQLITE_NOW_FUNCTION = "strongroom_utc_now"
_SQLITE_CHAIN_FUNCTION = "strongroom_chain_hash"
_MAX_POSITION = 2**63 - 1
APPEND_ONLY_MESSAGE = "strongroom: event rows are append-only"
APPEND_ONLY_FUNCTION = "strongroom_refuse_change"

log = logging.getLogger(__name__)

CommitListener = Callable[[Sequence[int]], None]


class _CommitListeners:
    """Callbacks told the positions of every committed insert (the checkpointer).

    A listener runs after the commit, so its failure cannot undo the write; it is
    logged (by type only: messages could carry values) and the save succeeds, since
    reporting failure for a committed write would invite a duplicate retry.
    """

    @property
    def commit_listeners(self) -> list[CommitListener]:
        listeners: list[CommitListener] | None = self.__dict__.get("_commit_listeners")
        if listeners is None:
            listeners = self.__dict__["_commit_listeners"] = []
        return listeners

    def _committed(self, ids: Sequence[int] | None) -> None:
        if not ids:
            return
        for listener in list(self.commit_listeners):
            try:
                listener(ids)
            except Exception as exc:  # noqa: BLE001 - the write has committed
                log.error("commit listener failed: %s", type(exc).__name__)


@dataclass(frozen=True)
class TimedNotification(Notification):
    """A notification with the (timezone-aware, UTC) time its row was recorded."""

    recorded_at: datetime


def _as_utc(when: datetime) -> datetime:
    """`when` in UTC; a naive time is refused because its zone would be a guess."""
    if when.tzinfo is None or when.utcoffset() is None:
        msg = f"expected a timezone-aware datetime, got naive {when.isoformat()}"
        raise ValueError(msg)
    return when.astimezone(timezone.utc)


def _sqlite_stamp(when: datetime) -> str:
    return _as_utc(when).isoformat(timespec="microseconds")


def _utc_now_stamp() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _derived_identifier(table: str, suffix: str) -> str:
    """`table + suffix`, shortened with a hash when PostgreSQL would truncate it.

    PostgreSQL silently truncates identifiers past 63 bytes, which could make two
    long table names share one index or function; the hash keeps them apart.
    """
    name = table + suffix
    if len(name.encode()) <= PostgresRecorder.MAX_IDENTIFIER_LEN:
        return name
    digest = hashlib.sha256(table.encode()).hexdigest()[:8]
    keep = PostgresRecorder.MAX_IDENTIFIER_LEN - len(suffix) - len(digest) - 1
    return f"{table[:keep]}_{digest}{suffix}"


# --------------------------------------------------------------------------- SQLite


def _sqlite_chain_hash(
    prev: bytes, position: int, stream_id: str, version: int, topic: str, stamp: str, state: bytes
) -> bytes:
    """The row hash, called by SQLite inside the INSERT (after the write lock)."""
    return row_hash(
        prev, position, stream_id, version, topic,
        epoch_micros(datetime.fromisoformat(stamp)), state_digest(state),
    )


class TimedSQLiteApplicationRecorder(_CommitListeners, SQLiteApplicationRecorder):
    """SQLite application recorder whose rows carry `recorded_at` and the chain hashes."""

    def __init__(
        self,
        datastore: SQLiteDatastore,
        events_table_name: str = "stored_events",
    ) -> None:
        super().__init__(datastore, events_table_name)
        # The B608 suppressions: table names come from the application's own
        # configuration, never from input; every value is a bound parameter.
        table = self.events_table_name
        # Each INSERT reads the last row (its position, stamp and hash) and writes
        # the next one in the same statement. SQLite takes the write lock when the
        # statement starts, so the last row read is the last row committed, even
        # across processes; no second writer can chain onto the same predecessor.
        # (Multi-arg max() is NULL if any argument is, hence the coalesce on an
        # empty table.) The position is given explicitly, so the hash commits to
        # the rowid the row really gets.
        # MATERIALIZED (SQLite 3.35+) evaluates "now" once: a flattened subquery
        # would call it once for the column and again for the hash.
        insert = (
            "WITH n AS MATERIALIZED ("  # nosec B608
            "SELECT coalesce(l.pos0, 0) + 1 AS pos, {stamp} AS stamp, "
            f"coalesce(l.row_hash, zeroblob({HASH_BYTES})) AS prev "
            "FROM (SELECT 1) LEFT JOIN ("
            f"SELECT rowid AS pos0, recorded_at, row_hash FROM {table} "
            "ORDER BY rowid DESC LIMIT 1) AS l ON 1) "
            f"INSERT INTO {table} "
            "(rowid, originator_id, originator_version, topic, state, recorded_at, "
            "prev_hash, row_hash) "
            "SELECT n.pos, ?1, ?2, ?3, ?4, n.stamp, n.prev, "
            f"{_SQLITE_CHAIN_FUNCTION}(n.prev, n.pos, ?5, ?2, ?3, n.stamp, ?4) FROM n"
        )
        # The first row's stamp is max(now, last stamp); later rows of the same
        # transaction copy the stamp of the row before, so one save has one stamp.
        self.insert_first_event_statement = insert.format(
            stamp=f"max({_SQLITE_NOW_FUNCTION}(), coalesce(l.recorded_at, ''))"
        )
        self.insert_next_event_statement = insert.format(stamp="l.recorded_at")
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
            f"CHECK (length(recorded_at) = {_SQLITE_STAMP_WIDTH}), "
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
        ]

    def _insert_events(
        self,
        c: SQLiteCursor,
        stored_events: Sequence[StoredEvent],
        **_: Any,
    ) -> Sequence[int] | None:
        # Microseconds from Python, evaluated inside the statement (after the lock);
        # SQLite's own strftime('%f') only has milliseconds. Registering is cheap and
        # idempotent, and the library's pool gives us no hook at connect time.
        connection = c.sqlite_cursor.connection
        connection.create_function(
            _SQLITE_NOW_FUNCTION, 0, _utc_now_stamp, deterministic=False
        )
        connection.create_function(
            _SQLITE_CHAIN_FUNCTION, 7, _sqlite_chain_hash, deterministic=True
        )
        notification_ids: list[int] = []
        statement = self.insert_first_event_statement
        for s in stored_events:
            stored_id = (
                s.originator_id.hex
                if isinstance(s.originator_id, UUID)
                else s.originator_id
            )
            # The chain hashes the id as a reader will see it, so PostgreSQL and
            # SQLite hash a row identically (backups restore either way round).
            canonical_id = str(self.convert_originator_id(stored_id))
            c.execute(
                statement,
                (stored_id, s.originator_version, s.topic, s.state, canonical_id),
            )
            notification_ids.append(c.lastrowid)
            statement = self.insert_next_event_statement
        return notification_ids

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = super().insert_events(stored_events, **kwargs)
        self._committed(ids)
        return ids

    def position_at(self, when: datetime) -> int:
        """The greatest notification id recorded at or before `when` (0 if none)."""
        stamp = _sqlite_stamp(when)
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.position_at_statement, (stamp,))
            row = c.fetchone()
        return int(row[0]) if row is not None else 0

    def version_at(self, originator_id: UUID | str, when: datetime) -> int | None:
        """The stream's greatest version recorded at or before `when`, if any."""
        stamp = _sqlite_stamp(when)
        key = originator_id.hex if isinstance(originator_id, UUID) else originator_id
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.version_at_statement, (key, stamp))
            row = c.fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def select_timed_notifications(
        self, start: int, limit: int, stop: int | None = None
    ) -> list[TimedNotification]:
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
            TimedNotification(
                id=row["rowid"],
                originator_id=self.convert_originator_id(row["originator_id"]),
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=row["state"],
                recorded_at=datetime.fromisoformat(row["recorded_at"]),
            )
            for row in rows
        ]

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
            c.execute(self.chain_rows_statement, (start, _MAX_POSITION if stop is None else stop, limit))
            rows = c.sqlite_cursor.fetchall()
        # Per-row work is most of a verification's time, so the loop is kept lean:
        # the UUID text is formatted rather than parsed (the same string).
        convert = self.convert_originator_id
        uuids = self.datastore.originator_id_type == "uuid"
        parse, micros, digest = datetime.fromisoformat, epoch_micros, state_digest
        chain_rows = []
        append = chain_rows.append
        last_stamp, last_micros = None, 0  # rows of one save share a stamp
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


class TimedSQLiteProcessRecorder(SQLiteProcessRecorder, TimedSQLiteApplicationRecorder):
    """SQLite process recorder (events + tracking) with `recorded_at` and the chain.

    The method order puts the tracking recorder before the timed application
    recorder, so `_insert_events` inserts stamped, chained events and then the
    tracking row in one transaction, as the library's process recorder does.
    """


# ----------------------------------------------------------------------- PostgreSQL


class TimedPostgresApplicationRecorder(_CommitListeners, PostgresApplicationRecorder):
    """PostgreSQL application recorder whose rows carry `recorded_at timestamptz`
    and the chain hashes.

    Every insert, on either path, goes through one per-table stored function that
    locks the table, stamps, chains and inserts (see `_chained_insert_function`):
    the DB-function path calls it alone (one round trip, autocommit); the statement
    path calls it inside a transaction that also writes the tracking row or the
    read model. The hash is computed in the database with `sha256()`, after the
    lock: measured against computing it in Python inside the locked transaction
    (which needs a round trip to learn the predecessor's hash before inserting),
    the function was faster, see docs/audit.md.

    The function is SECURITY DEFINER: it runs with its owner's rights, so the
    application's role needs only SELECT on the table and EXECUTE on the function
    (no INSERT, no UPDATE): it can append rows only through the function, which
    always chains them correctly, and cannot write a row with a hash of its own
    choosing (`strongroom db roles`, R3.4).
    """

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        events_table_name: str = "stored_events",
    ) -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        schema = Identifier(self.datastore.schema)
        table = Identifier(self.events_table_name)
        self.recorded_at_index_name = _derived_identifier(
            self.events_table_name, "_recorded_at_idx"
        )
        self.sql_create_statements[self.create_table_statement_index] = SQL(
            "CREATE TABLE IF NOT EXISTS {schema}.{table} ("
            "originator_id {originator_id_type} NOT NULL, "
            "originator_version bigint NOT NULL, "
            "topic text, "
            "state bytea, "
            "notification_id bigserial, "
            "recorded_at timestamptz NOT NULL, "
            "prev_hash bytea NOT NULL CHECK (octet_length(prev_hash) = {bytes}), "
            "row_hash bytea NOT NULL CHECK (octet_length(row_hash) = {bytes}), "
            "PRIMARY KEY "
            "(originator_id, originator_version)) "
            "WITH ("
            "    autovacuum_enabled = true,"
            "    autovacuum_vacuum_threshold = 100000000,"
            "    autovacuum_vacuum_scale_factor = 0.5,"
            "    autovacuum_analyze_threshold = 1000,"
            "    autovacuum_analyze_scale_factor = 0.01"
            ")"
        ).format(
            schema=schema,
            table=table,
            originator_id_type=Identifier(self.datastore.originator_id_type),
            bytes=Literal(HASH_BYTES),
        )
        self.sql_create_statements.append(
            SQL(
                "CREATE INDEX IF NOT EXISTS {index} "
                "ON {schema}.{table} (recorded_at, notification_id)"
            ).format(
                index=Identifier(self.recorded_at_index_name),
                schema=schema,
                table=table,
            )
        )
        # DB-function path. The library names its function after the originator id
        # type only (es_insert_events_uuid), so two applications in one schema
        # overwrite each other's function and the last one created receives both
        # applications' events; its function also takes no table lock. Ours is
        # named per table and locks.
        self.pg_function_name_insert_events = _derived_identifier(
            self.events_table_name, "_insert_timed"
        )
        self.sql_invoke_pg_function_insert_events = SQL(
            "SELECT * FROM {schema}.{function}((%s))"
        ).format(
            schema=schema,
            function=Identifier(self.pg_function_name_insert_events),
        )
        self.sql_create_pg_function_insert_events = self._chained_insert_function()
        self.sql_create_statements[self.create_insert_function_statement_index] = (
            self.sql_create_pg_function_insert_events
        )
        self.sql_create_statements.extend(self._append_only_statements())
        self.position_at_statement = SQL(
            "SELECT notification_id FROM {schema}.{table} WHERE recorded_at <= %s "
            "ORDER BY recorded_at DESC, notification_id DESC LIMIT 1"
        ).format(schema=schema, table=table)
        self.version_at_statement = SQL(
            "SELECT max(originator_version) AS version FROM {schema}.{table} "
            "WHERE originator_id = %s AND recorded_at <= %s"
        ).format(schema=schema, table=table)
        self.recorded_at_of_statement = SQL(
            "SELECT recorded_at FROM {schema}.{table} WHERE notification_id = %s"
        ).format(schema=schema, table=table)
        # The id as text and the stamp as microseconds, converted by the server with
        # the very expressions the insert function hashed (and cheaper than making
        # UUID and datetime objects per row); the ciphertext is digested here.
        self.chain_rows_statement = SQL(
            "SELECT notification_id, originator_id::text, originator_version, topic, state, "
            "(extract(epoch FROM recorded_at) * 1000000)::bigint, prev_hash, row_hash "
            "FROM {schema}.{table} "
            "WHERE notification_id >= %s AND notification_id <= %s "
            "ORDER BY notification_id LIMIT %s"
        ).format(schema=schema, table=table)
        self.chain_head_statement = SQL(
            "SELECT notification_id, row_hash FROM {schema}.{table} "
            "ORDER BY notification_id DESC LIMIT 1"
        ).format(schema=schema, table=table)

    def _chained_insert_function(self) -> Composed:
        """The stored function: lock, read the last row, stamp, chain, insert.

        Inside a VOLATILE plpgsql function each statement takes a fresh READ
        COMMITTED snapshot, so the SELECT after the LOCK sees the last committed
        row, and no other writer can chain onto it until this transaction ends.
        Positions are taken from the sequence one by one, so each row's hash
        commits to the notification id it really gets. The bytes hashed are those
        of `infrastructure.audit.chain.row_hash`.
        """
        qualified = ".".join(
            '"' + name.replace('"', '""') + '"'
            for name in (self.datastore.schema, self.events_table_name)
        )
        return SQL(
            "CREATE OR REPLACE FUNCTION "
            "{schema}.{function}(events {schema}.{event}[]) "
            "RETURNS SETOF bigint "
            "LANGUAGE plpgsql "
            "SECURITY DEFINER "
            "SET search_path = pg_catalog, pg_temp "
            "AS "
            "$BODY$ "
            "DECLARE "
            "    stamp timestamptz; "
            "    stamp_us bigint; "
            "    prev bytea; "
            "    pos bigint; "
            "    h bytea; "
            "    sid bytea; "
            "    top bytea; "
            "    seq regclass; "
            "    e record; "
            "BEGIN "
            "    SET LOCAL lock_timeout = '{lock_timeout}s'; "
            "    LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE; "
            "    NOTIFY {channel}; "
            "    SELECT t.recorded_at, t.row_hash INTO stamp, prev "
            "        FROM {schema}.{table} AS t "
            "        ORDER BY t.notification_id DESC LIMIT 1; "
            "    stamp := GREATEST(clock_timestamp(), stamp); "
            "    stamp_us := (extract(epoch FROM stamp) * 1000000)::bigint; "
            "    prev := coalesce(prev, {genesis}); "
            "    seq := pg_get_serial_sequence({qualified}, 'notification_id')::regclass; "
            "    FOR e IN SELECT u.originator_id, u.originator_version, u.topic, u.state "
            "             FROM unnest(events) AS u LOOP "
            "        pos := nextval(seq); "
            "        sid := convert_to(e.originator_id::text, 'UTF8'); "
            "        top := convert_to(e.topic, 'UTF8'); "
            "        h := sha256({tag} || prev || int8send(pos) "
            "            || int4send(octet_length(sid)) || sid "
            "            || int8send(e.originator_version) "
            "            || int4send(octet_length(top)) || top "
            "            || int8send(stamp_us) || sha256(e.state)); "
            "        INSERT INTO {schema}.{table} (notification_id, originator_id, "
            "            originator_version, topic, state, recorded_at, prev_hash, row_hash) "
            "        VALUES (pos, e.originator_id, e.originator_version, e.topic, e.state, "
            "            stamp, prev, h); "
            "        prev := h; "
            "        RETURN NEXT pos; "
            "    END LOOP; "
            "END; "
            "$BODY$"
        ).format(
            schema=Identifier(self.datastore.schema),
            function=Identifier(self.pg_function_name_insert_events),
            event=Identifier(self.stored_event_type_name),
            table=Identifier(self.events_table_name),
            lock_timeout=self.datastore.lock_timeout,
            channel=Identifier(self.channel_name),
            genesis=Literal(GENESIS),
            tag=Literal(CHAIN_TAG),
            qualified=Literal(qualified),
        )

    def _append_only_statements(self) -> list[Composed]:
        """Triggers refusing UPDATE, DELETE and TRUNCATE, even to the owner (R3.4).

        Crypto-shredding destroys keys, never rows, so nothing legitimate is
        refused. A superuser can still disable triggers; the chain and the signed
        checkpoints are what catch what such a person changes.
        """
        schema = Identifier(self.datastore.schema)
        table = Identifier(self.events_table_name)
        refuse = Identifier(APPEND_ONLY_FUNCTION)
        function_name = Identifier(self.pg_function_name_insert_events)
        return [
            SQL(
                "CREATE OR REPLACE FUNCTION {schema}.{refuse}() RETURNS trigger "
                "LANGUAGE plpgsql AS $BODY$ BEGIN "
                "RAISE EXCEPTION '%: % on %.% refused', {message}, TG_OP, "
                "TG_TABLE_SCHEMA, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege'; "
                "END; $BODY$"
            ).format(schema=schema, refuse=refuse, message=Literal(APPEND_ONLY_MESSAGE)),
            SQL(
                "CREATE OR REPLACE TRIGGER {trigger} BEFORE UPDATE OR DELETE "
                "ON {schema}.{table} FOR EACH ROW EXECUTE FUNCTION {schema}.{refuse}()"
            ).format(
                trigger=Identifier(_derived_identifier(self.events_table_name, "_append_only")),
                schema=schema, table=table, refuse=refuse,
            ),
            SQL(
                "CREATE OR REPLACE TRIGGER {trigger} BEFORE TRUNCATE "
                "ON {schema}.{table} FOR EACH STATEMENT EXECUTE FUNCTION {schema}.{refuse}()"
            ).format(
                trigger=Identifier(_derived_identifier(self.events_table_name, "_no_truncate")),
                schema=schema, table=table, refuse=refuse,
            ),
            # PostgreSQL lets PUBLIC execute new functions; only roles granted it by
            # `strongroom db roles` (and the owner) may append events.
            SQL("REVOKE ALL ON FUNCTION {schema}.{function}({schema}.{event}[]) FROM PUBLIC").format(
                schema=schema, function=function_name,
                event=Identifier(self.stored_event_type_name),
            ),
        ]

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids = self._insert_with_retries(stored_events, **kwargs)
        self._committed(ids)
        return ids

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def _insert_with_retries(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        # The library's DB-function branch ignores **kwargs, so a process recorder
        # loses its tracking row (and with it exactly-once processing). Anything
        # carrying tracking therefore takes the statement path, where events and
        # tracking share one transaction.
        if self.datastore.enable_db_functions and kwargs.get("tracking") is None:
            return self._insert_events_by_function(stored_events, **kwargs)
        return self._insert_events_by_statements(stored_events, **kwargs)

    def _pg_events(self, stored_events: Sequence[StoredEvent]) -> list[Any]:
        return [
            self.construct_pg_stored_event(
                e.originator_id, e.originator_version, e.topic, e.state
            )
            for e in stored_events
        ]

    def _insert_events_by_function(
        self, stored_events: Sequence[StoredEvent], **_: Any
    ) -> Sequence[int]:
        if not stored_events:
            return []  # Nothing to stamp: don't take the table lock for nothing.
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                self.sql_invoke_pg_function_insert_events,
                (self._pg_events(stored_events),),
                prepare=True,
            )
            return [r[self.pg_function_name_insert_events] for r in curs.fetchall()]

    def _insert_events_by_statements(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """The library's statement path (PostgresApplicationRecorder.insert_events).

        Repeated here because the library only reaches it when DB functions are
        off; the events go in through our function (`_insert_stored_events`).
        """
        exc: Exception | None = None
        notification_ids: Sequence[int] | None = None
        with self.datastore.get_connection() as conn:
            with conn.pipeline() as pipeline, conn.transaction():
                with conn.cursor() as curs:
                    self._insert_events(curs, stored_events, **kwargs)
                if len(stored_events) > 0:
                    with conn.cursor() as curs:
                        try:
                            self._insert_stored_events(curs, stored_events, **kwargs)
                            # Sync now so a uniqueness violation raises here.
                            pipeline.sync()
                            notification_ids = self._fetch_ids_after_insert_events(
                                curs, stored_events, **kwargs
                            )
                        except Exception as e:  # noqa: BLE001 - re-raised below
                            exc = e  # Raise after the pipeline has exited cleanly.
            if exc:
                raise exc
        return notification_ids

    def _insert_stored_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **_: Any
    ) -> None:
        # The function locks, notifies, stamps and chains, as on the other path.
        curs.execute(
            self.sql_invoke_pg_function_insert_events,
            (self._pg_events(stored_events),),
            prepare=True,
        )

    def _fetch_ids_after_insert_events(
        self, curs: Any, stored_events: Sequence[StoredEvent], **_: Any
    ) -> Sequence[int] | None:
        ids = [row[self.pg_function_name_insert_events] for row in curs.fetchall()]
        if len(ids) != len(stored_events):
            msg = f"expected {len(stored_events)} notification ids, got {len(ids)}"
            raise ProgrammingError(msg)
        return ids

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def position_at(self, when: datetime) -> int:
        """The greatest notification id recorded at or before `when` (0 if none)."""
        row = self._fetchone(self.position_at_statement, (_as_utc(when),))
        return 0 if row is None else int(row["notification_id"])

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def version_at(self, originator_id: UUID | str, when: datetime) -> int | None:
        """The stream's greatest version recorded at or before `when`, if any."""
        row = self._fetchone(self.version_at_statement, (originator_id, _as_utc(when)))
        return None if row is None or row["version"] is None else int(row["version"])

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_timed_notifications(
        self, start: int, limit: int, stop: int | None = None
    ) -> list[TimedNotification]:
        """Notifications from `start` (inclusive) to `stop`, with their stamps."""
        statement = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, "
            "state, recorded_at FROM {schema}.{table} WHERE notification_id >= %s"
        ).format(
            schema=Identifier(self.datastore.schema),
            table=Identifier(self.events_table_name),
        )
        params: list[int] = [start]
        if stop is not None:
            statement += SQL(" AND notification_id <= %s")
            params.append(stop)
        statement += SQL(" ORDER BY notification_id LIMIT %s")
        params.append(limit)
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, params, prepare=True)
            rows = curs.fetchall()
        return [
            TimedNotification(
                id=row["notification_id"],
                originator_id=row["originator_id"],
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
                # psycopg answers in the session's TimeZone; the API promises UTC.
                recorded_at=row["recorded_at"].astimezone(timezone.utc),
            )
            for row in rows
        ]

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def recorded_at_of(self, position: int) -> datetime | None:
        """When the row at `position` was recorded, or None if there is none."""
        row = self._fetchone(self.recorded_at_of_statement, (position,))
        return None if row is None else row["recorded_at"].astimezone(timezone.utc)

    def _fetchone(self, statement: Composed, params: Sequence[Any]) -> DictRow | None:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, params, prepare=True)
            return curs.fetchone()

    # -- the chain --------------------------------------------------------------------

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_chain_rows(
        self, start: int, limit: int, stop: int | None = None
    ) -> list[ChainRow]:
        """Rows from `start` to `stop` as the chain sees them.

        The ciphertext is fetched and digested here, not by the server, so the
        verifier checks the very bytes a reader would decrypt.
        """
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(
                self.chain_rows_statement,
                (start, _MAX_POSITION if stop is None else stop, limit),
                prepare=True,
            )
            rows = curs.fetchall()
        digest = state_digest
        chain_rows = []
        append = chain_rows.append
        for row in rows:
            try:
                append(ChainRow(row[0], row[1], row[2], row[3], row[5], digest(row[4]), row[6], row[7]))
            except (ValueError, TypeError) as exc:
                append(unreadable_row(row[0], row[6], row[7], exc))
        return chain_rows

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def chain_head(self) -> tuple[int, bytes] | None:
        """(position, row hash) of the last committed row, or None on an empty log."""
        row = self._fetchone(self.chain_head_statement, ())
        return None if row is None else (int(row["notification_id"]), bytes(row["row_hash"]))


class TimedPostgresProcessRecorder(
    PostgresProcessRecorder, TimedPostgresApplicationRecorder
):
    """PostgreSQL process recorder (events + tracking) with `recorded_at`.

    The method order puts the tracking recorder before the timed application
    recorder: `_insert_events` writes the tracking row, then the timed statements
    insert the events, in one transaction.
    """


# ---------------------------------------------------------------- configuration


class TLSPostgresFactory(PostgresFactory):
    """The library's PostgreSQL factory, plus `sslmode` and `sslrootcert`.

    eventsourcing 9.5's PostgresDatastore passes only dbname, host, port, user and
    password to psycopg, so `sslmode=verify-full` (SPEC R1.6) cannot travel through
    its settings. Dropping it silently would fall back to libpq's default `prefer`,
    which accepts an unauthenticated server (a man in the middle reads every row),
    so this factory adds the two keys to the pool's connection arguments before
    the pool opens.
    """

    POSTGRES_SSLMODE = "POSTGRES_SSLMODE"
    POSTGRES_SSLROOTCERT = "POSTGRES_SSLROOTCERT"

    def __init__(self, env: Environment | EnvType | None) -> None:
        super().__init__(env)
        connect_kwargs = self.datastore.pool.kwargs
        assert isinstance(connect_kwargs, dict)  # The library passes a dict.
        for key, name in (
            (self.POSTGRES_SSLMODE, "sslmode"),
            (self.POSTGRES_SSLROOTCERT, "sslrootcert"),
        ):
            value = self.env.get(key)
            if value:
                connect_kwargs[name] = value


_POSTGRES_QUERY_KEYS = {
    "sslmode": TLSPostgresFactory.POSTGRES_SSLMODE,
    "sslrootcert": TLSPostgresFactory.POSTGRES_SSLROOTCERT,
    "schema": "POSTGRES_SCHEMA",
}


def recorder_environment(database_url: str) -> dict[str, str]:
    """The eventsourcing environment that stores events at `database_url`.

    `sqlite:///path/file.sqlite` or
    `postgresql://user[:password]@host[:port]/db[?sslmode=..&sslrootcert=..&schema=..]`.
    Unknown query parameters are refused rather than ignored: a silently dropped
    TLS setting would downgrade the connection without anyone noticing.
    """
    parts = urlsplit(database_url)
    if parts.scheme == "sqlite":
        return _sqlite_environment(parts.netloc, parts.path, parts.query)
    if parts.scheme in ("postgresql", "postgres"):
        return _postgres_environment(database_url)
    msg = (
        f"unsupported database URL scheme {parts.scheme!r}: expected "
        "sqlite:///path/file.sqlite or postgresql://user@host:port/db"
    )
    raise ValueError(msg)


def _sqlite_environment(netloc: str, path: str, query: str) -> dict[str, str]:
    if netloc or not path.strip("/") or query:
        msg = "expected a SQLite URL of the form sqlite:///path/file.sqlite"
        raise ValueError(msg)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        # sqlite:///tmp/x and sqlite:////tmp/x (SQLAlchemy's spelling) both name
        # the absolute path /tmp/x, as infrastructure/sql.py reads them.
        "SQLITE_DBNAME": "/" + unquote(path).lstrip("/"),
        # Seconds a writer waits for another's write lock; the library's default
        # is 5, short when web workers and projections share one file.
        "SQLITE_LOCK_TIMEOUT": "10",
        "APPLICATION_RECORDER_TOPIC": get_topic(TimedSQLiteApplicationRecorder),
        "PROCESS_RECORDER_TOPIC": get_topic(TimedSQLiteProcessRecorder),
    }


def _postgres_environment(database_url: str) -> dict[str, str]:
    parts = urlsplit(database_url)
    try:
        port = parts.port or 5432
    except ValueError as exc:
        msg = f"invalid port in PostgreSQL URL: {exc}"
        raise ValueError(msg) from None
    dbname = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not parts.username or not dbname or "/" in dbname:
        msg = "expected a PostgreSQL URL of the form postgresql://user@host:port/db"
        raise ValueError(msg)
    env = {
        "PERSISTENCE_MODULE": get_topic(TLSPostgresFactory),
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": parts.hostname,
        "POSTGRES_PORT": str(port),
        "POSTGRES_USER": unquote(parts.username),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        # The stored function saves a round trip per save(); ours stamps and locks.
        "POSTGRES_ENABLE_DB_FUNCTIONS": "y",
        "APPLICATION_RECORDER_TOPIC": get_topic(TimedPostgresApplicationRecorder),
        "PROCESS_RECORDER_TOPIC": get_topic(TimedPostgresProcessRecorder),
    }
    for name, values in parse_qs(parts.query, keep_blank_values=True).items():
        if name not in _POSTGRES_QUERY_KEYS:
            msg = (
                f"unsupported PostgreSQL URL parameter {name!r}: "
                f"expected one of {', '.join(sorted(_POSTGRES_QUERY_KEYS))}"
            )
            raise ValueError(msg)
        if len(values) != 1 or not values[0]:
            msg = f"PostgreSQL URL parameter {name!r} needs exactly one value"
            raise ValueError(msg)
        env[_POSTGRES_QUERY_KEYS[name]] = values[0]
    return env

