"""Stories about `recorded_at`: mapping "as of time T" to a log position.

Point-in-time restore asks "which position was the log at, at T?" while every
payload is encrypted. These tests write through the recorders the application
really gets (built from `recorder_environment(url)` by the library's factory), on
the embedded store and on PostgreSQL, and on PostgreSQL through both insert paths.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import InfrastructureFactory, StoredEvent
from eventsourcing.system import ProcessApplication
from eventsourcing.utils import Environment
from infrastructure.eventstore import (
    StampedNotification,
    TimedPostgresApplicationRecorder,
    TimedPostgresProcessRecorder,
    TimedSQLiteApplicationRecorder,
    TimedSQLiteProcessRecorder,
    recorder_environment,
)

TimedRecorder = TimedSQLiteApplicationRecorder | TimedPostgresApplicationRecorder
TIMED_RECORDERS = (TimedSQLiteApplicationRecorder, TimedPostgresApplicationRecorder)
MICROSECOND = timedelta(microseconds=1)


def _factory(env: dict[str, str], name: str = "Ledger") -> InfrastructureFactory[Any]:
    return InfrastructureFactory.construct(Environment(name, env))


@pytest.fixture
def open_recorders() -> Iterator[Callable[[dict[str, str]], TimedRecorder]]:
    """Builds application recorders the way an Application does; closes them after."""
    factories: list[InfrastructureFactory[Any]] = []

    def open_recorder(env: dict[str, str]) -> TimedRecorder:
        factory = _factory(env)
        factories.append(factory)
        recorder = factory.application_recorder()
        assert isinstance(recorder, TIMED_RECORDERS)
        return recorder

    yield open_recorder
    for factory in factories:
        factory.close()


@pytest.fixture
def recorder(
    database_url: str, open_recorders: Callable[[dict[str, str]], TimedRecorder]
) -> TimedRecorder:
    """The production environment: on PostgreSQL that means the stored function."""
    return open_recorders(recorder_environment(database_url))


def _events(originator_id: uuid.UUID, *versions: int) -> list[StoredEvent]:
    return [
        StoredEvent(originator_id, v, "topic", f"ciphertext {v}".encode())
        for v in versions
    ]


def _set_recorded_at(recorder: TimedRecorder, position: int, when: datetime) -> None:
    """Rewrite one row's stamp directly, as a clock that stepped back would see it.

    The event tables are append-only (R3.4), so the triggers are lifted for the
    rewrite and put back; the chain is not this story's concern.
    """
    table = recorder.events_table_name
    if isinstance(recorder, TimedSQLiteApplicationRecorder):
        with recorder.datastore.transaction(commit=True) as c:
            c.execute(f"DROP TRIGGER {table}_no_update")
            c.execute(
                f"UPDATE {table} SET recorded_at = ? WHERE rowid = ?",
                (when.isoformat(timespec="microseconds"), position),
            )
        recorder.create_table()
    else:
        name = psycopg.sql.Identifier(table)
        with recorder.datastore.transaction(commit=True) as c:
            c.execute(psycopg.sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(name))
            c.execute(
                psycopg.sql.SQL(
                    "UPDATE {} SET recorded_at = %s WHERE notification_id = %s"
                ).format(name),
                (when, position),
            )
            c.execute(psycopg.sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(name))


# ------------------------------------------------------------------ the scenarios
# Plain functions, so the PostgreSQL statement path can run exactly the same story.


def story_position_at_lands_on_the_end_of_a_save(recorder: TimedRecorder) -> None:
    now = datetime.now(timezone.utc)
    alice, bob = uuid.uuid4(), uuid.uuid4()
    assert recorder.position_at(now) == 0
    assert recorder.version_at(alice, now) is None
    assert recorder.recorded_at_of(1) is None
    assert recorder.select_timed_notifications(1, 10) == []

    before = datetime.now(timezone.utc)
    assert recorder.insert_events(_events(alice, 1, 2)) == [1, 2]
    time.sleep(0.002)
    assert recorder.insert_events(_events(bob, 1)) == [3]
    time.sleep(0.002)
    assert recorder.insert_events(_events(alice, 3)) == [4]
    after = datetime.now(timezone.utc)

    notes = recorder.select_timed_notifications(1, 10)
    assert [n.id for n in notes] == [1, 2, 3, 4]
    assert all(isinstance(n, StampedNotification) for n in notes)
    assert notes[0].state == b"ciphertext 1" and notes[2].originator_id == bob
    stamps = [n.recorded_at for n in notes]
    assert all(s.utcoffset() == timedelta(0) for s in stamps)
    # One save, one stamp: a time never falls inside an atomic save.
    assert stamps[0] == stamps[1] < stamps[2] < stamps[3]
    # PostgreSQL stamps with the server's clock; same machine here, so a second of
    # slack only forgives scheduling, while a zone mistake (hours) still fails.
    assert before - timedelta(seconds=1) <= stamps[0]
    assert stamps[3] <= after + timedelta(seconds=1)

    assert recorder.position_at(stamps[0] - MICROSECOND) == 0
    assert recorder.position_at(stamps[0]) == 2
    assert recorder.position_at(stamps[2] - MICROSECOND) == 2
    assert recorder.position_at(stamps[2]) == 3
    assert recorder.position_at(stamps[3]) == 4
    assert recorder.position_at(after + timedelta(days=1)) == 4
    # The same instant written in another zone is the same instant.
    plus_five = timezone(timedelta(hours=5))
    assert recorder.position_at(stamps[2].astimezone(plus_five)) == 3

    assert recorder.version_at(alice, stamps[0] - MICROSECOND) is None
    assert recorder.version_at(alice, stamps[0]) == 2
    assert recorder.version_at(alice, stamps[2]) == 2
    assert recorder.version_at(alice, stamps[3]) == 3
    assert recorder.version_at(bob, stamps[0]) is None
    assert recorder.version_at(bob, stamps[3]) == 1

    assert [n.id for n in recorder.select_timed_notifications(2, 10, stop=3)] == [2, 3]
    assert [n.id for n in recorder.select_timed_notifications(2, 1)] == [2]
    assert [n.id for n in recorder.select_timed_notifications(5, 10)] == []
    assert recorder.recorded_at_of(3) == stamps[2]
    assert recorder.recorded_at_of(99) is None


def story_a_clock_that_steps_back_cannot_reorder_the_log(recorder: TimedRecorder) -> None:
    recorder.insert_events(_events(uuid.uuid4(), 1))
    # Pretend the last row was stamped by a clock running a year fast, which then
    # got corrected: "now" is now earlier than the last stamp.
    fast = datetime.now(timezone.utc) + timedelta(days=365)
    _set_recorded_at(recorder, 1, fast)
    recorder.insert_events(_events(uuid.uuid4(), 1, 2))
    stamps = [n.recorded_at for n in recorder.select_timed_notifications(1, 10)]
    assert stamps == [fast, fast, fast]
    assert recorder.position_at(fast - MICROSECOND) == 0
    assert recorder.position_at(fast) == 3


def story_concurrent_writers_keep_time_in_position_order(
    recorder: TimedRecorder, other_writer: TimedRecorder
) -> None:
    """Threads on two separate pools (two processes, as far as locking goes)."""
    writers, saves_each = 6, 12
    first = (recorder.max_notification_id() or 0) + 1
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def write(n: int) -> None:
        target = recorder if n % 2 else other_writer
        try:
            start.wait()
            for _ in range(saves_each):
                target.insert_events(_events(uuid.uuid4(), *range(1, 1 + n % 3 + 1)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    notes = recorder.select_timed_notifications(first, 10_000)
    expected = sum(saves_each * (n % 3 + 1) for n in range(writers))
    assert [n.id for n in notes] == list(range(first, first + expected))
    stamps = [n.recorded_at for n in notes]
    assert stamps == sorted(stamps)
    by_save: dict[uuid.UUID | str, set[datetime]] = {}
    for note in notes:
        by_save.setdefault(note.originator_id, set()).add(note.recorded_at)
    assert all(len(s) == 1 for s in by_save.values())
    for note in notes[:: max(1, len(notes) // 20)]:
        last_at_that_time = max(n.id for n in notes if n.recorded_at <= note.recorded_at)
        assert recorder.position_at(note.recorded_at) == last_at_that_time


# ------------------------------------------------------- both stores, production env


def test_position_at_lands_on_the_end_of_a_save(recorder: TimedRecorder) -> None:
    story_position_at_lands_on_the_end_of_a_save(recorder)


def test_a_clock_that_steps_back_cannot_reorder_the_log(recorder: TimedRecorder) -> None:
    story_a_clock_that_steps_back_cannot_reorder_the_log(recorder)


def test_concurrent_writers_keep_time_in_position_order(
    database_url: str, open_recorders: Callable[[dict[str, str]], TimedRecorder]
) -> None:
    env = recorder_environment(database_url)
    story_concurrent_writers_keep_time_in_position_order(
        open_recorders(env), open_recorders(env)
    )


def test_a_naive_time_is_refused_rather_than_guessed(recorder: TimedRecorder) -> None:
    naive = datetime(2030, 1, 1, 12, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        recorder.position_at(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        recorder.version_at(uuid.uuid4(), naive)


class Ledger(Application[uuid.UUID]):
    pass


class LedgerFollower(ProcessApplication[uuid.UUID]):
    pass


class Entry(Aggregate):
    def __init__(self, amount: int) -> None:
        self.amount = amount


def test_an_application_built_from_the_url_records_times(database_url: str) -> None:
    env = recorder_environment(database_url)
    postgres = database_url.startswith("postgresql")
    with Ledger(env=env) as app, LedgerFollower(env=env) as follower:
        if postgres:
            assert type(app.recorder) is TimedPostgresApplicationRecorder
            assert type(follower.recorder) is TimedPostgresProcessRecorder
        else:
            assert type(app.recorder) is TimedSQLiteApplicationRecorder
            assert type(follower.recorder) is TimedSQLiteProcessRecorder

        entry = Entry(amount=10)
        app.save(entry)
        recorder = app.recorder
        assert isinstance(recorder, TIMED_RECORDERS)
        stamp = recorder.recorded_at_of(1)
        assert stamp is not None
        assert recorder.position_at(stamp) == 1
        assert recorder.version_at(entry.id, stamp) == 1
    if postgres:
        # The library's table name, unchanged: "<app name lowercased>_events".
        with psycopg.connect(database_url) as conn:
            column = conn.execute(
                "SELECT data_type, is_nullable FROM information_schema.columns "
                "WHERE table_name = 'ledger_events' AND column_name = 'recorded_at'"
            ).fetchone()
        assert column == ("timestamp with time zone", "NO")


# ----------------------------------------------------------- PostgreSQL insert paths


@pytest.mark.parametrize("db_functions", ["y", "n"], ids=["db-functions", "statements"])
def test_postgres_both_insert_paths_tell_the_same_story(
    pg_url: str,
    db_functions: str,
    open_recorders: Callable[[dict[str, str]], TimedRecorder],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = recorder_environment(pg_url) | {"POSTGRES_ENABLE_DB_FUNCTIONS": db_functions}
    recorder = open_recorders(env)
    assert isinstance(recorder, TimedPostgresApplicationRecorder)
    # Make sure the path under test is the one that runs.
    unused = {
        "y": "_insert_events_by_statements",
        "n": "_insert_events_by_function",
    }[db_functions]

    def must_not_run(*_: object, **__: object) -> None:
        raise AssertionError(f"{unused} ran")

    monkeypatch.setattr(recorder, unused, must_not_run)
    story_position_at_lands_on_the_end_of_a_save(recorder)
    story_concurrent_writers_keep_time_in_position_order(recorder, open_recorders(env))


@pytest.mark.parametrize("db_functions", ["y", "n"], ids=["db-functions", "statements"])
def test_postgres_clock_step_back_on_both_insert_paths(
    pg_url: str,
    db_functions: str,
    open_recorders: Callable[[dict[str, str]], TimedRecorder],
) -> None:
    env = recorder_environment(pg_url) | {"POSTGRES_ENABLE_DB_FUNCTIONS": db_functions}
    story_a_clock_that_steps_back_cannot_reorder_the_log(open_recorders(env))


def test_two_applications_in_one_database_keep_their_own_events(pg_url: str) -> None:
    # With the library's recorders and DB functions on, both applications share one
    # stored function (es_insert_events_uuid) that inserts into whichever table was
    # created last, so Ledger's events would land in Audit's table.
    class Audit(Application[uuid.UUID]):
        pass

    env = recorder_environment(pg_url)
    with Ledger(env=env) as ledger, Audit(env=env) as audit:
        ledger.save(Entry(amount=1))
        audit.save(Entry(amount=2), Entry(amount=3))
        assert ledger.recorder.max_notification_id() == 1
        assert audit.recorder.max_notification_id() == 2
