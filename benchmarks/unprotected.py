"""The same work with the protection switched off: the baseline of "what security costs".

Issue 15, item 1. `unprotected_instance()` builds the very `Strongroom` application,
its inline projection and the same read-model tables the product builds, in the same
transactions, with four parts swapped out:

* the mapper is the library's pass-through `Mapper` (no cipher, no data keys, no
  chain metadata): events are stored as the transcoder's plain JSON;
* the recorder is the library's own (no `recorded_at` stamp, no chain hashes), with
  the same in-transaction hook so the read model still commits with the events;
* the read model keeps its columns in clear (JSON bytes in the same columns) and
  uses plain B-tree indexes on email, phone and national id instead of blind
  indexes (no keyed digests, no `rm_customer_search` rows);
* no checkpointer and no access records (the write path writes none either way).

It lives here, under `benchmarks/`, and nowhere else: no setting, environment
variable or `strongroom.json` key can reach it (the layers contract keeps product
code from importing `benchmarks`, and tests/cli/test_bench_unprotected.py checks
that `Settings` refuses any attempt to switch protection off).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import Mapper, Transcoder
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import get_topic

from application.customers import Strongroom
from infrastructure.eventstore import recorder_environment
from infrastructure.eventstore.shared import InsertHooks
from infrastructure.projection import CustomerProjection
from infrastructure.readmodel import CustomerDirectory, create_tables
from infrastructure.sql import Database

PLAIN_INDEXED = ("email", "phone", "national_id")


class UnchainedSQLiteRecorder(InsertHooks, SQLiteApplicationRecorder):
    """The library's SQLite recorder plus the in-transaction hook: no stamp, no chain."""

    def _insert_events(self, c: Any, stored_events: Sequence[Any], **kwargs: Any) -> Sequence[int] | None:
        super()._insert_events(c, stored_events, **kwargs)
        # The library returns no ids on SQLite; the rows just inserted are the last ones.
        c.execute(f"SELECT max(rowid) FROM {self.events_table_name}")  # nosec B608
        last = int(c.fetchone()[0])
        ids = list(range(last - len(stored_events) + 1, last + 1))
        self._run_hook(c, ids, kwargs)
        return ids


class UnchainedPostgresRecorder(InsertHooks, PostgresApplicationRecorder):
    """The library's PostgreSQL recorder (statement path, its table lock) plus the hook."""

    def _fetch_ids_after_insert_events(self, c: Any, stored_events: Sequence[Any],
                                       **kwargs: Any) -> Sequence[int] | None:
        ids = super()._fetch_ids_after_insert_events(c, stored_events, **kwargs)
        self._run_hook(c, ids or [], kwargs)
        return ids


class ClearColumns:
    """ColumnSealer's interface, storing the same JSON it would encrypt, in clear (the
    sealer switched off; the rebuild suite's unprotected directory uses it too)."""

    def seal(self, table: str, column: str, subject_id: str, row_id: str, value: Any, *,
             field: str | None = None) -> bytes | None:
        return None if value is None else json.dumps(value).encode()

    def seal_row(self, table: str, subject_id: str, row_id: str,
                 columns: Sequence[tuple[str, Any]]) -> list[bytes | None]:
        return [self.seal(table, column, subject_id, row_id, value) for column, value in columns]

    def open(self, table: str, column: str, subject_id: str, row_id: str, sealed: bytes | None, *,
             field: str | None = None) -> Any:
        return None if sealed is None else json.loads(bytes(sealed))


class PlainDirectory(CustomerDirectory):
    """The customer directory with clear columns and plain indexes (no blind index)."""

    def __init__(self, database: Database) -> None:
        self.db = database
        self.sealer = ClearColumns()  # type: ignore[assignment]

    def search_digests(self, record: dict[str, Any], pans: dict[str, str]) -> list[tuple[str, int]]:
        return []  # the plain indexes on rm_customers serve lookups instead

    def _public_value(self, column: str, value: Any, pans: dict[str, str]) -> Any:
        return value  # bin and last four, as the secured one, without the keyed PAN hash


@dataclass
class UnprotectedInstance:
    app: Strongroom
    directory: PlainDirectory
    events_db: Database

    def close(self) -> None:
        self.app.close()
        self.events_db.close()


class _NoKeys:
    """No data keys exist without the cipher; erasure is not what is measured here."""

    def destroy(self, subject_id: str, kinds: list[str]) -> list[str]:
        return []

    def status(self, subject_id: str) -> dict[str, str]:
        return {}

    def reserve_subject(self) -> uuid.UUID:
        return uuid.uuid4()  # nothing to make ahead: there are no keys

    def release_subject(self, subject_id: uuid.UUID) -> None:
        return None

    def steady(self) -> AbstractContextManager[None]:
        return nullcontext()  # no ledger to look at


def unprotected_instance(database_url: str, like_env: dict[str, str]) -> UnprotectedInstance:
    """A `Strongroom` over `database_url` with cipher, blind indexes, chain and access
    records off (benchmark only). `like_env`: the secured app's environment, whose
    PostgreSQL pool settings are copied so both pay the same round trips."""
    events_db = Database.connect(database_url)
    with events_db.transaction() as cur:
        create_tables(cur, events_db.dialect)
        for column in PLAIN_INDEXED:
            cur.execute(f"CREATE INDEX IF NOT EXISTS rm_customers_plain_{column}"
                        f" ON rm_customers ({column})")
    directory = PlainDirectory(events_db)
    projection = CustomerProjection(directory, events_db, inline=True)
    env = recorder_environment(database_url)
    if events_db.dialect == "postgres":
        env["APPLICATION_RECORDER_TOPIC"] = get_topic(UnchainedPostgresRecorder)
        env["POSTGRES_ENABLE_DB_FUNCTIONS"] = "n"  # the statement path runs the hook
        for key, value in like_env.items():
            if key.startswith("POSTGRES_") and key not in env:
                env[key] = value
    else:
        env["APPLICATION_RECORDER_TOPIC"] = get_topic(UnchainedSQLiteRecorder)

    def plain_mapper(transcoder: Transcoder) -> Mapper[Any]:
        return Mapper(transcoder=transcoder)

    app = Strongroom(env, mapper_factory=plain_mapper, keys=_NoKeys(), read_model=directory,
                     projection=projection)
    return UnprotectedInstance(app, directory, events_db)
