"""Shared fixtures: a throwaway PostgreSQL database per test that asks for one.

PostgreSQL is a real server (127.0.0.1:5432 here and in CI; `scripts/test` starts a
throwaway cluster elsewhere). A test that needs it never skips: an unreachable
server fails the test, because a skipped database test proves nothing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from tests.smtp import Mailbox, loopback_smtp

PG_ADMIN_URL = os.environ.get(
    "STRONGROOM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def _database_url(name: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a new, empty PostgreSQL database, dropped after the test."""
    with fresh_pg_database() as url:
        yield url


@pytest.fixture(scope="module")
def module_pg_url() -> Iterator[str]:
    """Like `pg_url`, for a whole module (one real server per store, several attacks)."""
    with fresh_pg_database() as url:
        yield url


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for the duration (also for module-scoped fixtures)."""
    name = f"sr_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _database_url(name)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """The same test against the embedded store and against PostgreSQL (STYLE 12)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'strongroom.sqlite'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def smtp() -> Iterator[Mailbox]:
    """A real SMTP server on loopback that keeps what it receives (R2.9 activation codes)."""
    with loopback_smtp() as mailbox:
        yield mailbox


@pytest.fixture(scope="module")
def smtp_module() -> Iterator[Mailbox]:
    """The same, shared by a test module (its real server is started once)."""
    with loopback_smtp() as mailbox:
        yield mailbox
