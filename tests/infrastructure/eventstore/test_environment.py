"""Stories about `recorder_environment`: one database URL, the store it names.

The URL is the operator's whole say in where events go and how they travel, so
what it asks for (TLS above all) must arrive, and what cannot be honoured must be
refused rather than quietly dropped.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.utils import Environment
from infrastructure.eventstore import TLSPostgresFactory, recorder_environment


class Ledger(Application[uuid.UUID]):
    pass


class Entry(Aggregate):
    def __init__(self, amount: int) -> None:
        self.amount = amount


def _factory(env: dict[str, str]) -> InfrastructureFactory[Any]:
    return InfrastructureFactory.construct(Environment("Ledger", env))


def test_sqlite_url_becomes_the_sqlite_environment(tmp_path: Any) -> None:
    env = recorder_environment(f"sqlite:///{tmp_path}/strongroom.sqlite")
    assert env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite"
    assert env["SQLITE_DBNAME"] == f"{tmp_path}/strongroom.sqlite"
    assert int(env["SQLITE_LOCK_TIMEOUT"]) > 0
    assert env["APPLICATION_RECORDER_TOPIC"].endswith(":TimedSQLiteApplicationRecorder")
    assert env["PROCESS_RECORDER_TOPIC"].endswith(":TimedSQLiteProcessRecorder")


def test_postgres_url_becomes_the_postgres_environment() -> None:
    env = recorder_environment(
        "postgresql://strong%40room:p%3Ass@db.internal:6543/records"
        "?sslmode=verify-full&sslrootcert=/etc/strongroom/ca.pem&schema=vault"
    )
    assert env["POSTGRES_DBNAME"] == "records"
    assert env["POSTGRES_HOST"] == "db.internal"
    assert env["POSTGRES_PORT"] == "6543"
    assert env["POSTGRES_USER"] == "strong@room"
    assert env["POSTGRES_PASSWORD"] == "p:ss"
    assert env["POSTGRES_SCHEMA"] == "vault"
    assert env["POSTGRES_SSLMODE"] == "verify-full"
    assert env["POSTGRES_SSLROOTCERT"] == "/etc/strongroom/ca.pem"
    assert env["POSTGRES_ENABLE_DB_FUNCTIONS"] == "y"
    assert env["APPLICATION_RECORDER_TOPIC"].endswith(":TimedPostgresApplicationRecorder")
    assert env["PROCESS_RECORDER_TOPIC"].endswith(":TimedPostgresProcessRecorder")

    plain = recorder_environment("postgres://postgres@127.0.0.1/strongroom")
    assert plain["POSTGRES_PORT"] == "5432"
    assert plain["POSTGRES_PASSWORD"] == ""
    assert "POSTGRES_SCHEMA" not in plain and "POSTGRES_SSLMODE" not in plain


@pytest.mark.controls("ASVS-V12")
def test_sslmode_in_the_url_reaches_the_postgres_connection(pg_url: str) -> None:
    # The attack: an operator asks for verify-full and silently gets libpq's
    # default "prefer", which talks to an impostor server. The local test server
    # has no certificate from this CA (nor the CA file at all), so a connection
    # that really applies the setting must fail, and fail for the TLS reason.
    factory = _factory(
        recorder_environment(
            f"{pg_url}?sslmode=verify-full&sslrootcert=/nonexistent/strongroom-ca.pem"
        )
    )
    try:
        assert isinstance(factory, TLSPostgresFactory)
        kwargs = factory.datastore.pool.kwargs
        assert isinstance(kwargs, dict)
        assert kwargs["sslmode"] == "verify-full"
        # libpq's own connect timeout is set too (a host that drops packets).
        assert kwargs["connect_timeout"] >= 2
        with pytest.raises(psycopg.OperationalError, match="SSL|root certificate"):
            psycopg.connect(**kwargs).close()
    finally:
        factory.close()
    # And a URL that asks for no TLS still connects (the local server has none).
    with Ledger(env=recorder_environment(f"{pg_url}?sslmode=disable")) as app:
        app.save(Entry(amount=1))


@pytest.mark.parametrize(
    "url",
    [
        "",
        "/var/lib/strongroom.sqlite",
        "mysql://root@127.0.0.1/strongroom",
        "sqlite://host/strongroom.sqlite",
        "sqlite:///",
        "sqlite:///x.sqlite?mode=memory",
        "postgresql://127.0.0.1/strongroom",
        "postgresql://postgres@127.0.0.1/",
        "postgresql://postgres@/strongroom",
        "postgresql://postgres@127.0.0.1:99999/strongroom",
        "postgresql://postgres@127.0.0.1/strongroom?sslcompression=1",
        "postgresql://postgres@127.0.0.1/strongroom?sslmode=",
        "postgresql://postgres@127.0.0.1/strongroom?sslmode=require&sslmode=disable",
    ],
)
def test_a_url_we_cannot_honour_is_refused(url: str) -> None:
    with pytest.raises(ValueError):
        recorder_environment(url)


def test_the_service_fails_fast_when_postgres_is_down(tmp_path: Any) -> None:
    # composition.build() asks for fail_fast: a request to a server that is down
    # should answer 503 in seconds, not wait 30 s per attempt through the retries.
    url = "postgresql://postgres@127.0.0.1/strongroom"
    env = recorder_environment(url, fail_fast=True)
    assert env == recorder_environment(url) | {
        "POSTGRES_CONNECT_TIMEOUT": "5",
        "POSTGRES_LOCK_TIMEOUT": "5",
    }
    # SQLite has no server to wait for: the setting changes nothing there.
    sqlite_url = f"sqlite:///{tmp_path}/strongroom.sqlite"
    assert recorder_environment(sqlite_url, fail_fast=True) == recorder_environment(sqlite_url)
