"""The application's PostgreSQL role cannot rewrite history; nor can the owner (R3.4).

A story an operator follows (README, "PostgreSQL roles"): an owner role creates the
schema, `strongroom db roles --app-role ...` grants the application role, and the
application runs as that role with STRONGROOM_CREATE_SCHEMA=false. The application
works (customers, access records, checkpoints, verification); its UPDATE, DELETE,
TRUNCATE and even direct INSERT of events are refused, and the owner's UPDATE is
refused by the trigger.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from application.context import acting_as
from cli.main import main
from infrastructure.composition import Settings, build
from infrastructure.crypto.kek import LocalKek
from tests.application.conftest import OPERATOR, customer_fields
from tests.conftest import PG_ADMIN_URL


def _url(user: str, database: str) -> str:
    base = PG_ADMIN_URL.rpartition("/")[0]
    scheme, _, rest = base.partition("://")
    host = rest.rpartition("@")[2]
    return f"{scheme}://{user}@{host}/{database}"


@pytest.fixture
def owned_database() -> Iterator[tuple[str, str, str]]:
    """A database owned by a fresh, non-superuser owner role; an app role name."""
    suffix = uuid.uuid4().hex[:8]
    owner, app_role, database = f"sr_owner_{suffix}", f"sr_app_{suffix}", f"sr_roles_{suffix}"
    # What a database administrator does once: two login roles and a database.
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{owner}" LOGIN')
        admin.execute(f'CREATE ROLE "{app_role}" LOGIN')
        admin.execute(f'CREATE DATABASE "{database}" OWNER "{owner}"')
    try:
        yield owner, app_role, database
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{app_role}"')
            admin.execute(f'DROP ROLE IF EXISTS "{owner}"')


def _instance(tmp_path: Path) -> Path:
    instance = tmp_path / "instance"
    instance.mkdir()
    LocalKek.create(instance / "kek.key")
    return instance


@pytest.mark.controls("PCI-DSS-7.2.5", "PCI-DSS-10.3.2")
def test_the_app_role_appends_but_never_rewrites(tmp_path: Path, owned_database: tuple[str, str, str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    owner, app_role, database = owned_database
    instance = _instance(tmp_path)
    owner_url, app_url = _url(owner, database), _url(app_role, database)

    # The owner creates the schema and grants the application role (as an operator would).
    monkeypatch.setenv("STRONGROOM_DATABASE_URL", owner_url)
    result = CliRunner().invoke(main, ["--instance", str(instance), "db", "roles", "--app-role", app_role, "--json"])
    assert result.exit_code == 0, result.output
    granted = json.loads(result.output)
    assert granted["created"] is False and granted["event_tables"] == ["public.strongroom_events"]

    # The application runs as the application role and does its work.
    app_settings = Settings.load(instance, {"database_url": app_url, "create_schema": "false"})
    built = build(app_settings)
    try:
        with acting_as(OPERATOR):
            customer = built.app.register_customer(customer_fields())
            built.app.access_log.record(kind="view", customer_ids=[customer["id"]], fields=["email"])
            built.app.update_customer(customer["id"], {"segment": "premium"})
        assert built.app.get_customer(customer["id"])["segment"] == "premium"
        assert built.tamper_evidence.checkpoint() is not None
        assert built.tamper_evidence.verify().intact
    finally:
        built.close()

    with psycopg.connect(app_url, autocommit=True) as conn:
        for attempt in (
            "UPDATE strongroom_events SET state = '\\x00' WHERE notification_id = 1",
            "DELETE FROM strongroom_events WHERE notification_id = 1",
            "TRUNCATE strongroom_events",
            "INSERT INTO strongroom_events (originator_id, originator_version, topic, state, recorded_at, "
            "prev_hash, row_hash) VALUES (gen_random_uuid(), 1, 't', '\\x00', now(), "
            "'\\x" + "00" * 32 + "', '\\x" + "00" * 32 + "')",
            "UPDATE audit_checkpoints SET signature = '\\x00'",
            "DELETE FROM audit_checkpoints",
            "UPDATE audit_chain_format SET from_position = from_position + 1",
            "DELETE FROM audit_chain_format",
            "ALTER TABLE strongroom_events DISABLE TRIGGER USER",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(attempt)
        assert conn.execute("SELECT count(*) FROM strongroom_events").fetchone()[0] == 3

    # The owner may not rewrite history either: the trigger refuses it.
    with psycopg.connect(owner_url, autocommit=True) as conn:
        for attempt in (
            "UPDATE strongroom_events SET state = '\\x00' WHERE notification_id = 1",
            "DELETE FROM strongroom_events",
            "TRUNCATE strongroom_events",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(attempt)


def test_the_app_role_must_not_be_the_owner(tmp_path: Path, owned_database: tuple[str, str, str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    owner, _, database = owned_database
    instance = _instance(tmp_path)
    monkeypatch.setenv("STRONGROOM_DATABASE_URL", _url(owner, database))
    result = CliRunner().invoke(main, ["--instance", str(instance), "db", "roles", "--app-role", owner])
    assert result.exit_code == 2
    assert "must not be the role that owns the schema" in result.output


def test_a_missing_app_role_is_named_not_guessed(tmp_path: Path, owned_database: tuple[str, str, str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    owner, _, database = owned_database
    instance = _instance(tmp_path)
    monkeypatch.setenv("STRONGROOM_DATABASE_URL", _url(owner, database))
    result = CliRunner().invoke(main, ["--instance", str(instance), "db", "roles", "--app-role", "sr_nobody_here"])
    assert result.exit_code == 2
    assert "role sr_nobody_here does not exist; have a superuser create it first" in result.output


def test_db_roles_is_for_postgresql(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    instance = _instance(tmp_path)
    monkeypatch.delenv("STRONGROOM_DATABASE_URL", raising=False)
    result = CliRunner().invoke(main, ["--instance", str(instance), "db", "roles", "--app-role", "x"])
    assert result.exit_code == 2 and "PostgreSQL" in result.output


