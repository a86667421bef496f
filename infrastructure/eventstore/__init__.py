"""The event store: the library's recorders, made to stamp, chain and project.

Every stored row carries a plaintext UTC `recorded_at` (so "as of time T" maps to a
log position without decrypting anything, R4.4) and a link of the tamper-evident
hash chain (R3.3); the event tables are append-only (R3.4); a caller's hook runs
inside the inserting transaction (the inline projection, R1.3) and commit listeners
hear of every committed insert (the checkpointer).

    environment.py      a database URL -> the eventsourcing environment naming our recorders
    sqlite.py           the SQLite application and process recorders
    postgres.py         the PostgreSQL application and process recorders, the TLS factory
    postgres_schema.py  the PostgreSQL table, stored insert function and triggers
    shared.py           the hooks around an insert, `StampedNotification`, time rules

Exported here: `recorder_environment`, the four recorder classes, `TLSPostgresFactory`,
`StampedNotification` and `HOOK` (the keyword that carries the in-transaction hook).
"""

from infrastructure.eventstore.environment import recorder_environment
from infrastructure.eventstore.postgres import (
    TLSPostgresFactory,
    TimedPostgresApplicationRecorder,
    TimedPostgresProcessRecorder,
)
from infrastructure.eventstore.shared import HOOK, StampedNotification
from infrastructure.eventstore.sqlite import (
    TimedSQLiteApplicationRecorder,
    TimedSQLiteProcessRecorder,
)

__all__ = [
    "HOOK",
    "StampedNotification",
    "TLSPostgresFactory",
    "TimedPostgresApplicationRecorder",
    "TimedPostgresProcessRecorder",
    "TimedSQLiteApplicationRecorder",
    "TimedSQLiteProcessRecorder",
    "recorder_environment",
]
