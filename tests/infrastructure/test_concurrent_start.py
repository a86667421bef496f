"""Processes that start together on one PostgreSQL database all start (R7.6).

gunicorn starts its workers at once, and a `strongroom worker` often starts beside a
command. Each start prepares the schema: it replaces the event table's insert
function and triggers, the checkpoint table's triggers, and creates the read-model
tables if they are missing. Two of these at once deadlocked in PostgreSQL or failed
with "tuple concurrently updated" (measured before the fix: 24 of 40 concurrent
recorder starts, 3 of 24 whole-service starts). A start that failed also left its
key-ledger listener thread behind, which then logged a warning every second for
the life of the process. Every schema change now waits for one advisory lock
(`infrastructure.sql.lock_schema_changes`), and a failed start closes what it opened.
"""

from __future__ import annotations

import threading

import pytest

from infrastructure import composition
from infrastructure.eventstore.environment import recorder_environment
from infrastructure.eventstore.postgres import TLSPostgresFactory
from infrastructure.sql import PostgresDatabase
from eventsourcing.utils import Environment
from tests.application.conftest import make_components

STARTS_AT_ONCE = 4


def listener_threads() -> int:
    return sum(t.name == "key-ledger-listener" and t.is_alive() for t in threading.enumerate())


def all_at_once(start, rounds: int) -> list[BaseException]:
    """Run `start` in STARTS_AT_ONCE threads together, `rounds` times; the errors."""
    errors: list[BaseException] = []

    def one() -> None:
        try:
            start()
        except Exception as exc:  # noqa: BLE001 - collected and asserted on
            errors.append(exc)

    for _ in range(rounds):
        threads = [threading.Thread(target=one) for _ in range(STARTS_AT_ONCE)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return errors


def test_event_recorders_started_together_do_not_deadlock(pg_url):
    env = recorder_environment(pg_url)

    def start() -> None:
        factory = TLSPostgresFactory(Environment("strongroom", env))
        try:
            factory.application_recorder()
        finally:
            factory.close()

    start()  # the tables exist: what follows replaces functions and triggers, as every start does
    assert all_at_once(start, rounds=10) == []


def test_whole_services_started_together_all_start_and_leave_nothing_behind(tmp_path, pg_url):
    make_components(tmp_path, pg_url).close()  # the instance and the schema, as `init` leaves them
    before = listener_threads()

    def start() -> None:
        make_components(tmp_path, pg_url).close()

    assert all_at_once(start, rounds=5) == []
    assert listener_threads() == before


def test_a_start_that_fails_part_way_closes_what_it_opened(tmp_path, pg_url, monkeypatch):
    """The key store, its listener and both databases are open when a later step fails
    (here: the server refuses the read-model tables); none of them outlives the failure."""
    make_components(tmp_path, pg_url).close()
    before = listener_threads()
    closed: list[PostgresDatabase] = []
    real_close = PostgresDatabase.close

    def recording_close(self: PostgresDatabase) -> None:
        closed.append(self)
        real_close(self)

    def refuse(cur, dialect):
        raise RuntimeError("the server refused the read-model tables")

    monkeypatch.setattr(PostgresDatabase, "close", recording_close)
    monkeypatch.setattr(composition, "create_tables", refuse)
    with pytest.raises(RuntimeError, match="refused the read-model tables"):
        make_components(tmp_path, pg_url)
    assert listener_threads() == before
    assert len(set(map(id, closed))) == 2  # the events' database and the keys' database
