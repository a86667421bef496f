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

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

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
    def _insert_events_by_function(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int]:
        hook = kwargs.get(HOOK)
        if hook is None or not stored_events:
            return super()._insert_events_by_function(stored_events)
        # The library's connections are in autocommit mode, so without an explicit
        # transaction the function's insert would commit on its own and a failing
        # hook would leave events without their read-model rows. One transaction
        # makes the events and the hook's writes one unit.
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute(self.sql_invoke_pg_function_insert_events, (self._pg_events(stored_events),), prepare=True)
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
