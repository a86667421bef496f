"""Stories about the hash chain (R3.3) and append-only tables (R3.4), at the recorders.

Written through the recorders the application really gets, on SQLite and on
PostgreSQL (both insert paths, and the process recorder with tracking), and read
back as the verifier reads them: every row links to the one before and its hash
recomputes in Python from its clear columns, so the database's `sha256()` and
`chain.row_hash` agree byte for byte.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import psycopg
import pytest

from eventsourcing.persistence import InfrastructureFactory, StoredEvent, Tracking
from eventsourcing.utils import Environment
from infrastructure.audit.chain import GENESIS, ChainRow, epoch_micros, meta_digest, row_hash, state_digest
from infrastructure.audit.verify import ChainVerifier, iter_rows
from infrastructure.eventstore import HOOK, TimedPostgresApplicationRecorder, recorder_environment
from tests.infrastructure.stored_states import chained_state


@pytest.fixture
def factories() -> Iterator[Callable[[dict[str, str]], InfrastructureFactory[Any]]]:
    made: list[InfrastructureFactory[Any]] = []

    def make(env: dict[str, str]) -> InfrastructureFactory[Any]:
        factory = InfrastructureFactory.construct(Environment("Ledger", env))
        made.append(factory)
        return factory

    yield make
    for factory in made:
        factory.close()


def _events(n: int, stream: uuid.UUID | None = None, first: int = 1) -> list[StoredEvent]:
    stream = stream or uuid.uuid4()
    return [StoredEvent(stream, v, "domain.x:Thing.Happened", chained_state(f"ciphertext {v} é".encode()))
            for v in range(first, first + n)]


def _assert_chained(recorder: Any, expected_rows: int) -> list[ChainRow]:
    rows = list(iter_rows(recorder, page=7))
    assert len(rows) == expected_rows
    prev = GENESIS
    for row in rows:
        assert row.prev_hash == prev, f"row {row.position} does not link"
        assert row.row_hash == row.expected_hash(), f"row {row.position} does not recompute"
        prev = row.row_hash
    verifier = ChainVerifier([], {})
    verifier.feed(rows)
    assert verifier.finish().intact
    return rows


def test_the_hash_encoding_is_fixed() -> None:
    # Known answers, computed independently (hashlib and struct by hand, as
    # docs/evidence-format.md states the bytes): changing what is hashed would orphan
    # every stored chain, so it must be a deliberate, versioned change, never an accident.
    fields = (GENESIS, 1, "6c1b3a52-55b0-4a43-9a5c-2f1f3f0b7e11", 1, "domain.customer:Customer.Registered",
              epoch_micros(datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)), state_digest(b"ciphertext"))
    meta = meta_digest(bytes(range(16)), b'{"context":{"actor_id":"staff-agent-7"}}')
    assert meta.hex() == "9d5e12be89f54922d55006f2102b6e7cc0018ee68bff0c2e9d9f1392719b2b31"
    assert row_hash(*fields).hex() == "da9c2af9c51815f6c251384d3f407881c48638d75d9c4f8e5797b249442c246b"
    assert row_hash(*fields, meta).hex() == "13e2d7c5060979532fbe42e2548a5496ff35e3d08fd37756d9af0f2932ae211f"


def test_a_new_store_chains_v2_from_its_first_row_and_names_a_row_without_a_metadata_digest(
    database_url: str, factories: Any
) -> None:
    """Strongroom's mapper always writes the header; a bare state (the library's own
    suites write them) is stored, and verification says its metadata is not chained."""
    recorder = factories(recorder_environment(database_url)).application_recorder()
    assert recorder.chain_v2_from() == 1
    recorder.insert_events(_events(2))
    recorder.insert_events([StoredEvent(uuid.uuid4(), 1, "domain.x:Thing.Happened", b"bare ciphertext")])
    rows = list(iter_rows(recorder))
    assert [r.meta_digest is not None for r in rows] == [True, True, False]
    verifier = ChainVerifier([], {}, v2_from=recorder.chain_v2_from())
    verifier.feed(rows)
    report = verifier.finish()
    assert [(p.position, p.what.split(",")[0]) for p in report.problems] == [
        (3, "the row carries no metadata digest")]


def test_every_row_chains_onto_the_row_committed_before_it(database_url: str, factories: Any) -> None:
    recorder = factories(recorder_environment(database_url)).application_recorder()
    assert recorder.insert_events(_events(3)) == [1, 2, 3]
    recorder.insert_events(_events(1))
    recorder.insert_events(_events(5))
    rows = _assert_chained(recorder, 9)
    assert rows[0].prev_hash == GENESIS
    assert recorder.chain_head() == (9, rows[-1].row_hash)
    # One save, one stamp; and the stamp hashed is the stamp stored.
    stamps = [n.recorded_at for n in recorder.select_timed_notifications(1, 10)]
    assert [epoch_micros(s) for s in stamps] == [r.recorded_at_us for r in rows]


def test_a_save_of_many_rows_is_one_chain_one_stamp_and_all_or_nothing(database_url: str, factories: Any) -> None:
    """A group of access records is one save of hundreds of rows; on SQLite they are
    chained in Python and written by one INSERT per chunk (issue 15): the chunk
    boundaries must not show, and a save that fails part-way leaves nothing."""
    recorder = factories(recorder_environment(database_url)).application_recorder()
    recorder.insert_events(_events(2))
    assert recorder.insert_events(_events(301)) == list(range(3, 304))
    rows = _assert_chained(recorder, 303)
    assert len({r.recorded_at_us for r in rows[2:]}) == 1
    # The 250th row of this save repeats a stream version already stored: the save fails, whole.
    taken = _events(1)[0]
    clash = [*_events(249), taken, *_events(50)]
    recorder.insert_events([taken])
    with pytest.raises(Exception, match="(?i)unique|integrity"):
        recorder.insert_events(clash)
    _assert_chained(recorder, 304)
    # The next save chains onto the last committed row (PostgreSQL's sequence may
    # have skipped the failed save's ids; the chain follows position order).
    recorder.insert_events(_events(1))
    _assert_chained(recorder, 305)


def test_concurrent_writers_never_fork_the_chain(database_url: str, factories: Any) -> None:
    """Two pools (two processes, as far as locks go), six threads: one chain."""
    env = recorder_environment(database_url)
    recorders = [factories(env).application_recorder(), factories(env).application_recorder()]
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def write(n: int) -> None:
        try:
            start.wait()
            for _ in range(10):
                recorders[n % 2].insert_events(_events(1 + n % 3))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    _assert_chained(recorders[0], sum(10 * (1 + n % 3) for n in range(6)))


@pytest.mark.parametrize("db_functions", ["y", "n"], ids=["db-functions", "statements"])
def test_postgres_both_insert_paths_and_tracking_chain_alike(pg_url: str, db_functions: str, factories: Any) -> None:
    env = recorder_environment(pg_url) | {"POSTGRES_ENABLE_DB_FUNCTIONS": db_functions}
    factory = factories(env)
    application = factory.application_recorder()
    assert isinstance(application, TimedPostgresApplicationRecorder)
    application.insert_events(_events(2))
    process = factory.process_recorder()
    process.insert_events(_events(3), tracking=Tracking("upstream", 7))
    assert process.max_tracking_id("upstream") == 7
    application.insert_events(_events(1))
    _assert_chained(application, 6)


def test_a_row_hash_does_not_depend_on_the_store(tmp_path: Any, pg_url: str, factories: Any) -> None:
    """The same row hashes alike on SQLite and PostgreSQL, so a backup restores either way."""
    stream = uuid.uuid4()
    heads = []
    for url in (f"sqlite:///{tmp_path / 'x.sqlite'}", pg_url):
        recorder = factories(recorder_environment(url)).application_recorder()
        recorder.insert_events(_events(2, stream))
        (first, second) = recorder.select_chain_rows(1, 10)
        # Recompute with a shared stamp to compare everything but the clock.
        heads.append([
            row_hash(r.prev_hash if r is first else GENESIS, r.position, r.stream_id, r.version, r.topic, 0, r.digest)
            for r in (first, second)
        ])
        assert first.stream_id == str(stream)
    assert heads[0] == heads[1]


# ------------------------------------------------------------------ append-only


@pytest.mark.controls("PCI-DSS-10.3.2")
def test_sqlite_refuses_to_update_or_delete_an_event(tmp_path: Any, factories: Any) -> None:
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    recorder = factories(recorder_environment(url)).application_recorder()
    recorder.insert_events(_events(2))
    conn = sqlite3.connect(tmp_path / "x.sqlite")
    try:
        for attempt in (
            "UPDATE stored_events SET state = x'00' WHERE rowid = 1",
            "UPDATE stored_events SET recorded_at = recorded_at",
            "DELETE FROM stored_events WHERE rowid = 2",
            "DELETE FROM stored_events",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(attempt)
    finally:
        conn.close()
    _assert_chained(recorder, 2)


@pytest.mark.controls("PCI-DSS-10.3.2")
def test_postgres_refuses_update_delete_and_truncate_even_to_the_owner(pg_url: str, factories: Any) -> None:
    recorder = factories(recorder_environment(pg_url)).application_recorder()
    recorder.insert_events(_events(2))
    # The test connects as the owner (indeed a superuser): the trigger still refuses.
    with psycopg.connect(pg_url, autocommit=True) as conn:
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'ledger_events'").fetchone()
        assert owner == (conn.info.user,)
        for attempt in (
            "UPDATE ledger_events SET state = '\\x00' WHERE notification_id = 1",
            "DELETE FROM ledger_events WHERE notification_id = 2",
            "TRUNCATE ledger_events",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(attempt)
    _assert_chained(recorder, 2)


def test_a_failing_read_model_hook_leaves_no_event_behind(database_url: str, factories: Any) -> None:
    """The inline projection's hook runs in the events' transaction (on PostgreSQL's
    function path too, whose connections are otherwise in autocommit): if it fails,
    neither the rows nor a link of the chain are left behind."""
    recorder = factories(recorder_environment(database_url, fail_fast=True)).application_recorder()
    recorder.insert_events(_events(1))

    def broken_hook(cursor: Any, positions: Any) -> None:
        raise RuntimeError("the read model refused the row")

    with pytest.raises(RuntimeError, match="refused"):
        recorder.insert_events(_events(2), **{HOOK: broken_hook})
    recorder.insert_events(_events(1))
    _assert_chained(recorder, 2)



def test_a_failing_read_model_hook_on_the_statement_path_leaves_no_event_behind(pg_url: str, factories: Any) -> None:
    """The same story on PostgreSQL's statement path (DB functions off, or tracking)."""
    env = recorder_environment(pg_url, fail_fast=True) | {"POSTGRES_ENABLE_DB_FUNCTIONS": "n"}
    recorder = factories(env).application_recorder()
    recorder.insert_events(_events(1))

    def broken_hook(cursor: Any, positions: Any) -> None:
        raise RuntimeError("the read model refused the row")

    with pytest.raises(RuntimeError, match="refused"):
        recorder.insert_events(_events(2), **{HOOK: broken_hook})
    recorder.insert_events(_events(1))
    _assert_chained(recorder, 2)
