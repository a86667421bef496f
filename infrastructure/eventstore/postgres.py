"""The PostgreSQL store: one recorder per role, rows stamped, chained and append-only.

The stored layout (the table, its stored insert function and triggers) is stated
in postgres_schema.py; this module is how rows get in and how they are read.

Why the inserts go the way they do:

- Every insert, on both of the library's insert paths, goes through the one stored
  function, which locks the table, stamps and chains; so no path can write an
  unchained row, and the stamp never decreases as the id grows.
- The DB-function path (POSTGRES_ENABLE_DB_FUNCTIONS, production's default) calls
  it alone, one round trip in autocommit; with an in-transaction hook (the inline
  projection) it calls it and the hook in one explicit transaction, so a failing
  hook leaves no event behind. The statement path calls it inside the library's
  pipelined transaction, after the tracking row, then runs the hook. Anything
  carrying tracking takes the statement path, because the library's function path
  drops the tracking row.

Library methods overridden (checked against eventsourcing 9.5.6): the public
`insert_events(**kwargs)`, which chooses the path and runs the hooks (shared.py);
`_insert_stored_events` and `_fetch_ids_after_insert_events`, the protected steps of
the library's statement path, so that any path through them still goes through the
chained function. The statement path itself is repeated in
`_insert_events_by_statements`, because the library only reaches it when DB
functions are off.

`TLSPostgresFactory` is the library's factory plus `sslmode` and `sslrootcert`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from psycopg import Cursor, Rollback
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Composed, Identifier, Literal

from eventsourcing.persistence import (
    DataError,
    InterfaceError,
    OperationalError,
    Notification,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.postgres import ConnectionPool as LibraryConnectionPool
from eventsourcing.postgres import (
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresFactory,
    PostgresProcessRecorder,
)
from eventsourcing.utils import EnvType, Environment, retry
from infrastructure.audit.chain import (
    CHAIN_FORMAT_TABLE,
    ChainRow,
    meta_digest_of_state,
    state_digest,
    unreadable_row,
)
from infrastructure.eventstore.postgres_schema import (
    append_only_statements,
    chain_format_statements,
    chained_insert_function,
    derived_identifier,
    events_table,
    recorded_at_index,
)
from infrastructure.eventstore.shared import (
    HOOK,
    MAX_POSITION,
    PARTITION_BITS,
    InsertHooks,
    PartitionPage,
    StampedNotification,
    as_utc,
)
from infrastructure.faults import bounded_pool_class
from infrastructure.sql import lock_schema_changes



# The library's pool, with the request's deadline and capped reconnection delays.
_BoundedLibraryPool = bounded_pool_class(LibraryConnectionPool)


__all__ = [
    "TLSPostgresFactory",
    "TimedPostgresApplicationRecorder",
    "TimedPostgresProcessRecorder",
]


class TimedPostgresApplicationRecorder(InsertHooks, PostgresApplicationRecorder):
    """PostgreSQL application recorder whose rows carry `recorded_at timestamptz`
    and the chain hashes, and which runs the caller's in-transaction hook.

    Every insert, on either path, goes through one per-table stored function that
    locks the table, stamps, chains and inserts (postgres_schema.py): the
    DB-function path calls it alone (one round trip, autocommit), or with the hook
    in one explicit transaction; the statement path calls it inside a transaction
    that also writes the tracking row (and runs the hook). The hash is computed in
    the database with `sha256()`, after the lock: measured against computing it in
    Python inside the locked transaction (which needs a round trip to learn the
    predecessor's hash before inserting), the function was faster, see
    docs/audit.md.

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
        self.recorded_at_index_name = derived_identifier(
            self.events_table_name, "_recorded_at_idx"
        )
        self.sql_create_statements[self.create_table_statement_index] = events_table(
            self.datastore.schema, self.events_table_name, self.datastore.originator_id_type
        )
        self.sql_create_statements.append(
            recorded_at_index(
                self.datastore.schema, self.events_table_name, self.recorded_at_index_name
            )
        )
        # DB-function path. The library names its function after the originator id
        # type only (es_insert_events_uuid), so two applications in one schema
        # overwrite each other's function and the last one created receives both
        # applications' events; its function also takes no table lock. Ours is
        # named per table and locks.
        self.pg_function_name_insert_events = derived_identifier(
            self.events_table_name, "_insert_timed"
        )
        # The events go over in binary (`%b`): psycopg writes each state's bytes as they
        # are, where the text form escaped every byte in Python (about 29 µs an event
        # of 1 kB, in the interpreter lock, so an access-record group's leader kept the
        # other threads waiting; issue 15 item 4). Binary needs UUID ids (`_pg_events`);
        # a store with text ids keeps the text form.
        self._binary_events = self.datastore.originator_id_type == "uuid"
        self.sql_invoke_pg_function_insert_events = SQL(
            "SELECT * FROM {schema}.{function}(%b)" if self._binary_events
            else "SELECT * FROM {schema}.{function}((%s))"
        ).format(
            schema=schema,
            function=Identifier(self.pg_function_name_insert_events),
        )
        self.sql_create_pg_function_insert_events = chained_insert_function(
            schema=self.datastore.schema,
            table=self.events_table_name,
            function=self.pg_function_name_insert_events,
            event_type=self.stored_event_type_name,
            channel=self.channel_name,
            lock_timeout=self.datastore.lock_timeout,
        )
        self.sql_create_statements[self.create_insert_function_statement_index] = (
            self.sql_create_pg_function_insert_events
        )
        self.sql_create_statements.extend(
            append_only_statements(
                schema=self.datastore.schema,
                table=self.events_table_name,
                function=self.pg_function_name_insert_events,
                event_type=self.stored_event_type_name,
            )
        )
        # After the function is replaced, in the same transaction (chain v2).
        self.sql_create_statements.extend(
            chain_format_statements(schema=self.datastore.schema, table=self.events_table_name)
        )
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
        self.chain_v2_from_exists_statement = SQL(
            "SELECT 1 AS present FROM information_schema.tables WHERE table_schema = %s AND table_name = %s"
        )
        self.chain_v2_from_statement = SQL(
            "SELECT from_position FROM {schema}.{format} WHERE events_table = %s AND version = 2"
        ).format(schema=schema, format=Identifier(CHAIN_FORMAT_TABLE))

    def _create_table(self, curs: Cursor[DictRow]) -> None:
        # Replacing the insert function and its triggers in two processes at once
        # deadlocks; one process at a time, in the statements' own transaction.
        lock_schema_changes(curs)
        super()._create_table(curs)

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        ids: Sequence[int] | None = self._insert_with_retries(stored_events, **kwargs)
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
                self._uuid(e.originator_id) if self._binary_events else e.originator_id,
                e.originator_version, e.topic, e.state,
            )
            for e in stored_events
        ]

    @staticmethod
    def _uuid(originator_id: UUID | str) -> UUID:
        """The id as the binary form needs it: a UUID (the text form let the server
        parse a string); a string that is no UUID is refused as the server would."""
        if isinstance(originator_id, UUID):
            return originator_id
        try:
            return UUID(str(originator_id))
        except ValueError:
            raise DataError("an originator id is not a UUID") from None

    def _insert_events_by_function(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int]:
        if not stored_events:
            return []  # Nothing to stamp: don't take the table lock for nothing.
        with self.datastore.get_connection() as conn:
            if kwargs.get(HOOK) is None:
                with conn.cursor() as curs:
                    return self._call_insert_function(curs, stored_events)
            # The library's connections are in autocommit mode, so without an
            # explicit transaction the function's insert would commit on its own and
            # a failing hook would leave events without their read-model rows. One
            # transaction makes the events and the hook's writes one unit.
            with conn.transaction(), conn.cursor() as curs:
                ids = self._call_insert_function(curs, stored_events)
                self._run_hook(curs, ids, kwargs)
                return ids

    def _call_insert_function(
        self, curs: Any, stored_events: Sequence[StoredEvent]
    ) -> list[int]:
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
                            self._run_hook(curs, notification_ids, kwargs)
                        except Exception as e:  # noqa: BLE001 - re-raised below
                            exc = e  # Raise after the pipeline has exited cleanly.
                if exc:
                    # Roll back rather than leave the block normally, which commits:
                    # a hook that raised (a read-model bug, not a database error)
                    # leaves a healthy transaction, and committing it would store
                    # events without their read-model rows. Rollback ends the block
                    # quietly, so the pipeline still exits cleanly.
                    raise Rollback
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
        row = self._fetchone(self.position_at_statement, (as_utc(when),))
        return 0 if row is None else int(row["notification_id"])

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def version_at(self, originator_id: UUID | str, when: datetime) -> int | None:
        """The stream's greatest version recorded at or before `when`, if any."""
        row = self._fetchone(self.version_at_statement, (originator_id, as_utc(when)))
        return None if row is None or row["version"] is None else int(row["version"])

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def select_timed_notifications(
        self, start: int, limit: int, stop: int | None = None
    ) -> list[StampedNotification]:
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
            StampedNotification(
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
    def select_partition(self, start: int, limit: int, partition: int, partitions: int,
                         every_partition: Sequence[str] = ()) -> PartitionPage:
        """A parallel rebuild's page: the next `limit` notifications from `start`, as
        `select_notifications` pages them, of which only the rows of streams in
        `partition` (`shared.partition_of`: the id's last hex digits, computed by the
        server) and any row whose topic is in `every_partition`."""
        table = SQL("{schema}.{table}").format(schema=Identifier(self.datastore.schema),
                                              table=Identifier(self.events_table_name))
        last_statement = SQL(
            "SELECT max(notification_id), count(*) FROM (SELECT notification_id FROM {table} "
            "WHERE notification_id >= %s ORDER BY notification_id LIMIT %s) AS page"
        ).format(table=table)
        rows_statement = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {table} "
            "WHERE notification_id >= %s AND notification_id <= %s "
            "AND ((('x' || right(originator_id::text, {digits}))::bit({bits})::int %% %s = %s) "
            "OR topic = ANY(%s)) ORDER BY notification_id"
        ).format(table=table, digits=Literal(PARTITION_BITS // 4), bits=Literal(PARTITION_BITS))
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(last_statement, (start, limit), prepare=True)
            found = curs.fetchone()
            if found is None or found[0] is None:
                return PartitionPage(None, 0, [])
            last, size = int(found[0]), int(found[1])
            curs.execute(rows_statement, (start, last, partitions, partition, list(every_partition)), prepare=True)
            rows = curs.fetchall()
        return PartitionPage(last, size, [
            Notification(id=r[0], originator_id=r[1], originator_version=r[2], topic=r[3], state=bytes(r[4]))
            for r in rows
        ])

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
                (start, MAX_POSITION if stop is None else stop, limit),
                prepare=True,
            )
            rows = curs.fetchall()
        digest, meta = state_digest, meta_digest_of_state
        chain_rows: list[ChainRow] = []
        append = chain_rows.append
        for row in rows:
            try:
                append(ChainRow(row[0], row[1], row[2], row[3], row[5], digest(row[4]), row[6], row[7],
                                None, meta(row[4])))
            except (ValueError, TypeError) as exc:
                append(unreadable_row(row[0], row[6], row[7], exc))
        return chain_rows

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def chain_head(self) -> tuple[int, bytes] | None:
        """(position, row hash) of the last committed row, or None on an empty log."""
        row = self._fetchone(self.chain_head_statement, ())
        return None if row is None else (int(row["notification_id"]), bytes(row["row_hash"]))

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def chain_v2_from(self) -> int:
        """The first position chained v2 (audit/chain.py); rows before it are v1.

        No record (a store whose schema the owner has not upgraded yet: its insert
        function still chains v1) answers MAX_POSITION, which no row reaches.
        """
        row = self._fetchone(self.chain_v2_from_exists_statement, (self.datastore.schema, CHAIN_FORMAT_TABLE))
        if row is None:
            return MAX_POSITION
        row = self._fetchone(self.chain_v2_from_statement, (self.events_table_name,))
        return MAX_POSITION if row is None else int(row["from_position"])


class TimedPostgresProcessRecorder(
    PostgresProcessRecorder, TimedPostgresApplicationRecorder
):
    """PostgreSQL process recorder (events + tracking) with `recorded_at`.

    The method order puts the tracking recorder before the timed application
    recorder: `_insert_events` writes the tracking row, then the timed statements
    insert the events (and a hook, if given, runs), in one transaction.
    """

    def _create_table(self, curs: Cursor[DictRow]) -> None:
        # Before the tracking table's statements too (the lock is re-entrant).
        lock_schema_changes(curs)
        super()._create_table(curs)


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
        pool = self.datastore.pool
        # The library builds its pool itself; made a bounded one before it opens, so
        # each wait for a connection takes what is left of the request's deadline
        # and a deadline that has passed ends the library's retries (faults.py).
        pool.__class__ = _BoundedLibraryPool
        connect_kwargs = pool.kwargs
        assert isinstance(connect_kwargs, dict)  # The library passes a dict.
        # The library's connect timeout bounds only the wait for the pool; libpq's own
        # (none by default) bounds a connection attempt to a host that drops packets.
        connect_kwargs.setdefault("connect_timeout", max(2, math.ceil(pool.timeout)))
        for key, name in (
            (self.POSTGRES_SSLMODE, "sslmode"),
            (self.POSTGRES_SSLROOTCERT, "sslrootcert"),
        ):
            value = self.env.get(key)
            if value:
                connect_kwargs[name] = value
