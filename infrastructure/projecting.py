"""Recorders that run a hook inside the transaction that stores the events.

`Application.save(..., in_transaction=hook)` passes the hook down to the recorder,
which calls `hook(cursor, notification_ids)` after inserting the events and before
committing. The inline projection uses it to write read-model rows and their
tracking position in the same transaction as the events: both commit or neither
does, and a caller reads its own write at once (R1.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.utils import get_topic, retry

from infrastructure.recorders import (
    TimedPostgresApplicationRecorder,
    TimedSQLiteApplicationRecorder,
    recorder_environment,
)

HOOK = "in_transaction"


class ProjectingSQLiteRecorder(TimedSQLiteApplicationRecorder):
    def _insert_events(self, c: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        ids = super()._insert_events(c, stored_events, **kwargs)
        hook = kwargs.get(HOOK)
        if hook is not None and ids:
            hook(c, ids)
        return ids


class ProjectingPostgresRecorder(TimedPostgresApplicationRecorder):
    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        hook = kwargs.get(HOOK)
        uses_function = self.datastore.enable_db_functions and kwargs.get("tracking") is None
        if hook is None or not uses_function or not stored_events:
            # The statement path reaches the hook through _fetch_ids_after_insert_events.
            return super().insert_events(stored_events, **kwargs)
        pg_events = [
            self.construct_pg_stored_event(e.originator_id, e.originator_version, e.topic, e.state)
            for e in stored_events
        ]
        # The pool's connection context commits on a clean exit and rolls back on an
        # exception, so the function's insert and the hook's writes are one unit.
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.sql_invoke_pg_function_insert_events, (pg_events,), prepare=True)
            ids = [row[self.pg_function_name_insert_events] for row in curs.fetchall()]
            hook(curs, ids)
            return ids

    def _fetch_ids_after_insert_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        hook = kwargs.get(HOOK)
        if hook is not None and ids:
            hook(curs, ids)
        return ids


def projecting_environment(database_url: str) -> dict[str, str]:
    """`recorder_environment`, with the application recorder that runs the hook."""
    env = recorder_environment(database_url)
    if env["PERSISTENCE_MODULE"] != "eventsourcing.sqlite":
        # Fail fast when PostgreSQL is down (the library waits 30 s per attempt and
        # retries), so callers get a 503 in seconds rather than hanging for minutes.
        env.setdefault("POSTGRES_CONNECT_TIMEOUT", "5")
        env.setdefault("POSTGRES_PRE_PING", "y")
    recorder = ProjectingPostgresRecorder if env["PERSISTENCE_MODULE"] != "eventsourcing.sqlite" else ProjectingSQLiteRecorder
    env["APPLICATION_RECORDER_TOPIC"] = get_topic(recorder)
    return env
