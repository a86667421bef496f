"""After an erasure no process serves the erased data (R5.4, issue 13 item 6).

The attack: a second API process read the customer a moment ago, so the customer's
keys sit in its cache (up to `key_cache_seconds`, 60 s by default). Another process
erases the customer. Without invalidation the second process goes on answering
with the erased values until its cache expires. Two separately built Components on
one store (PostgreSQL: NOTIFY; SQLite: the ledger polled) stand for the two processes.
"""

from __future__ import annotations

import time

import pytest

from application.context import acting_as
from application.errors import CustomerErased
from tests.application.conftest import OPERATOR, customer_fields, make_components


def test_another_process_cannot_read_the_erased_customer_immediately(tmp_path, database_url):
    first = make_components(tmp_path, database_url, aml_retention_years=0)
    second = make_components(tmp_path, database_url, aml_retention_years=0)
    try:
        with acting_as(OPERATOR):
            ada = first.app.register_customer(customer_fields())
            other = first.app.register_customer(customer_fields(email="other@example.org"))
            # The second process reads both: their keys are now in its cache for 60 s.
            assert second.app.get_customer(ada["id"])["email"] == "ada.planted@example.org"
            assert second.app.get_customer(other["id"])["email"] == "other@example.org"
            assert second.settings.key_cache_seconds == 60.0

            first.erasures.erase(ada["id"], "DSR-12")

            deadline = time.monotonic() + 0.25  # NOTIFY is asynchronous; give it a quarter second at most
            while True:
                try:
                    second.app.get_customer(ada["id"])
                except CustomerErased:
                    break
                assert time.monotonic() < deadline, "the second process still served the erased customer"
                time.sleep(0.01)
            with pytest.raises(CustomerErased):
                second.app.customer_view(ada["id"])
            # Everyone else is still served (their keys are unwrapped again as needed).
            assert second.app.get_customer(other["id"])["email"] == "other@example.org"
    finally:
        second.close()
        first.close()


def test_the_cache_still_spares_unwrapping_when_nothing_was_destroyed(tmp_path, database_url):
    built = make_components(tmp_path, database_url)
    try:
        with acting_as(OPERATOR):
            ada = built.app.register_customer(customer_fields())
            built.app.get_customer(ada["id"])
            unwraps = []
            real_unwrap = built.keyring.kek.unwrap
            built.keyring.kek.unwrap = lambda *a, **k: unwraps.append(a) or real_unwrap(*a, **k)
            for _ in range(3):
                built.app.get_customer(ada["id"])
            assert unwraps == []
    finally:
        built.close()


def test_a_lost_listener_says_so_once_turns_the_cache_off_and_on_again(pg_url, monkeypatch, caplog):
    """PostgreSQL: the listener's connection is cut and the server refuses it for a
    while. The cache is off (every use answers "changed") for as long as nobody
    listens; the log says so once, not once per retry; when the server lets it back,
    the listener says so and the cache is on again."""
    import logging

    import psycopg

    from infrastructure.crypto.ledger_watch import NotifiedLedger
    from tests.conftest import PG_ADMIN_URL

    monkeypatch.setattr(NotifiedLedger, "RETRY_SECONDS", 0.05)
    database = pg_url.rpartition("/")[2]
    watch = NotifiedLedger(pg_url)
    caplog.set_level(logging.INFO, logger="infrastructure.crypto.ledger_watch")
    try:
        watch.changed()  # the first answer after start-up is "changed"
        assert watch.changed() is False
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,))
            time.sleep(1.0)  # about twenty refused reconnections
            assert watch.changed() is True and watch.changed() is True
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        deadline = time.monotonic() + 5
        while watch.changed():
            assert time.monotonic() < deadline, "the listener did not come back"
            time.sleep(0.05)
        assert watch.changed() is False
    finally:
        watch.close()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "infrastructure.crypto.ledger_watch"]
    assert [level for level, _ in lines] == ["WARNING", "INFO"], lines
    assert "key cache off" in lines[0][1] and "key cache on" in lines[1][1]


def test_closing_the_listener_does_not_wait_out_its_timeout(pg_url):
    """PostgreSQL: `close()` wakes the listener rather than waiting for its next look
    at the clock (a rebuild worker closes its components as it ends, issue 15)."""
    from infrastructure.crypto.ledger_watch import NotifiedLedger

    watch = NotifiedLedger(pg_url)
    time.sleep(0.2)  # the listener is waiting on its connection
    started = time.monotonic()
    watch.close()
    assert time.monotonic() - started < NotifiedLedger.LISTEN_SECONDS / 2
    assert not watch._thread.is_alive()  # noqa: SLF001 - stopped, not abandoned


def test_a_read_model_row_looks_at_the_ledger_once_for_all_its_sealed_columns(tmp_path, database_url):
    """A row's sealed columns are opened under one look at the erasure ledger (on SQLite a
    query each; eight per read made concurrent readers hand the interpreter lock over
    eight more times, issue 15 item 4). The look still comes before the first open."""
    built = make_components(tmp_path, database_url)
    try:
        with acting_as(OPERATOR):
            ada = built.app.register_customer(customer_fields())
        built.directory.get(ada["id"])  # keys cached
        looks = []
        real_changed = built.keyring.watch.changed
        built.keyring.watch.changed = lambda: looks.append(1) or real_changed()
        record = built.directory.get(ada["id"])
        assert record["email"] == "ada.planted@example.org"
        assert len(looks) == 1
    finally:
        built.close()
