"""Fewer round trips per PostgreSQL transaction, with the same guarantees (issue 15 item 6).

A masked read over the API made about thirty round trips to PostgreSQL, most of them
bookkeeping: a ping before every connection was handed out, `BEGIN`, the request's
`statement_timeout`, the statement, `COMMIT`. Now a read is its statement alone, the
timeout is set only when it no longer fits, and a connection is pinged only when its
socket says the server has spoken since it was last used. Each test here is a
guarantee that change must keep, shown against a real server:

* a statement in a request is still cancelled at the request's deadline (a reader
  stuck behind a lock would otherwise hold a server thread; R7.6), and one outside
  any request is never cancelled by a deadline a request left on the connection;
* a write transaction that fails leaves nothing behind (R7.6: no partial state);
* a connection the server has ended is never handed out (the crash case of the
  faults suite), while a quiet one is handed out without a ping.
"""

from __future__ import annotations

import math
import threading
import time

import psycopg
import psycopg.conninfo
import psycopg.sql
import pytest

from infrastructure.faults import end_deadline, remaining, start_deadline
from infrastructure.sql import DatabaseUnavailable, PostgresDatabase


@pytest.fixture
def db(pg_url):
    database = PostgresDatabase(pg_url)
    with database.transaction() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS rt_things (id INTEGER PRIMARY KEY, label TEXT NOT NULL)")
    try:
        yield database
    finally:
        database.close()


def _timeout_ms(db: PostgresDatabase) -> int:
    with db.transaction(write=False) as cur:
        cur.execute("SELECT setting::int FROM pg_settings WHERE name = 'statement_timeout'")
        return int(cur.fetchone()[0])


def _statements_setting_the_timeout(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    execute = psycopg.Connection.execute

    def spy(self, query, *args, **kwargs):
        if "statement_timeout" in str(query):
            seen.append(str(query))
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", spy)
    return seen


def _pings(db: PostgresDatabase, monkeypatch: pytest.MonkeyPatch) -> list:
    """Every connection the pool pings from now on."""
    pings: list = []
    check = db.pool.check_connection

    def counting(conn):
        pings.append(conn)
        return check(conn)

    monkeypatch.setattr(db.pool, "check_connection", counting)
    return pings


def test_within_a_request_every_statement_is_bounded_by_what_is_left_of_its_deadline(db, monkeypatch):
    set_calls = _statements_setting_the_timeout(monkeypatch)
    token = start_deadline(5.0)
    try:
        for _ in range(10):
            left_ms = remaining(math.inf) * 1000
            bound = _timeout_ms(db)
            # Never unbounded, never shorter than what is left, at most one step longer.
            assert left_ms - 50 <= bound <= left_ms + PostgresDatabase.TIMEOUT_STEP_MS
    finally:
        end_deadline(token)
    # Ten statements in one request: the timeout was set once, not ten times.
    assert len(set_calls) == 1
    # Outside the request the same connection bounds nothing again.
    assert _timeout_ms(db) == 0


def test_a_read_stuck_behind_a_lock_is_cancelled_at_the_deadline_and_one_outside_a_request_waits(db, pg_url):
    """The attack on availability: a reader stuck behind a lock holds a server thread.
    Inside a request the server cancels it at the deadline (503); outside one (a
    command, a worker) it waits for the lock, even on the connection the request used."""
    locker = psycopg.connect(pg_url)
    try:
        locker.execute("LOCK TABLE rt_things IN ACCESS EXCLUSIVE MODE")  # held until rollback
        token = start_deadline(0.6)
        started = time.monotonic()
        try:
            with pytest.raises(DatabaseUnavailable):
                with db.transaction(write=False) as cur:
                    cur.execute("SELECT count(*) FROM rt_things")
                    cur.fetchone()
        finally:
            end_deadline(token)
        waited = time.monotonic() - started
        assert 0.5 < waited < 0.6 + PostgresDatabase.TIMEOUT_STEP_MS / 1000 + 0.3

        releaser = threading.Timer(0.8, locker.rollback)
        releaser.start()
        started = time.monotonic()
        with db.transaction(write=False) as cur:
            cur.execute("SELECT count(*) FROM rt_things")
            assert cur.fetchone()[0] == 0
        assert time.monotonic() - started >= 0.7  # it waited for the lock, uncancelled
        releaser.join()
    finally:
        locker.close()


def test_a_failed_write_transaction_leaves_nothing(db):
    with pytest.raises(RuntimeError):
        with db.transaction() as cur:
            cur.execute("INSERT INTO rt_things (id, label) VALUES (?, ?)", (1, "first"))
            cur.execute("INSERT INTO rt_things (id, label) VALUES (?, ?)", (2, "second"))
            raise RuntimeError("the second half of the action failed")
    with db.transaction(write=False) as cur:
        cur.execute("SELECT count(*) FROM rt_things")
        assert cur.fetchone()[0] == 0


def test_a_connection_the_server_ended_is_not_handed_out_and_a_quiet_one_is_not_pinged(db, pg_url, monkeypatch):
    pings = _pings(db, monkeypatch)
    for _ in range(5):
        _timeout_ms(db)
    assert pings == []  # an idle connection with nothing to read is handed out as it is

    with db.transaction(write=False) as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.2)  # the server's farewell reaches the socket

    with db.transaction(write=False) as cur:  # no error: the ended connection is replaced
        cur.execute("SELECT pg_backend_pid()")
        assert cur.fetchone()[0] != pid
    assert len(pings) >= 1  # the connection the server had ended was pinged, and failed


def test_while_the_watchdog_has_seen_the_server_hang_a_quiet_connection_is_still_pinged(db, monkeypatch):
    """A server that hangs closes no socket, so its connections look quiet. Until a
    ping answers, the pool must not take quiet for alive: it would clear the
    watchdog's mark and send every request into the hang (found in review)."""
    pings = _pings(db, monkeypatch)
    _timeout_ms(db)
    assert pings == []
    db.pool.__dict__["_strongroom_hung"] = True  # as the watchdog leaves it after a cut
    _timeout_ms(db)
    assert len(pings) == 1 and db.pool.__dict__["_strongroom_hung"] is False  # cleared by a real answer


def test_outside_a_request_the_servers_own_default_timeout_applies_again(pg_url):
    """A DBA's `ALTER DATABASE ... SET statement_timeout` is the default outside
    requests; a request's deadline must not replace it for good (found in review)."""
    name = psycopg.conninfo.conninfo_to_dict(pg_url)["dbname"]
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(psycopg.sql.SQL("ALTER DATABASE {} SET statement_timeout = '7s'").format(
            psycopg.sql.Identifier(name)))
    database = PostgresDatabase(pg_url)
    try:
        assert _timeout_ms(database) == 7000
        token = start_deadline(5.0)
        try:
            assert _timeout_ms(database) <= 5000 + PostgresDatabase.TIMEOUT_STEP_MS
        finally:
            end_deadline(token)
        assert _timeout_ms(database) == 7000
    finally:
        database.close()


def test_a_deadline_that_has_just_passed_leaves_no_millisecond_timeout_behind(db):
    """The next user of the connection sets its own timeout with a statement; under a
    1 ms timeout a loaded server could cancel even that (found in review)."""
    with db.pool.connection() as conn:
        token = start_deadline(0.001)
        try:
            time.sleep(0.01)
            db._bound_statements(conn)
        finally:
            end_deadline(token)
        setting = conn.execute("SELECT setting::int FROM pg_settings WHERE name = 'statement_timeout'").fetchone()
        assert setting[0] >= PostgresDatabase.TIMEOUT_STEP_MS
