"""Issue 10 items 5-7 performed against a real `strongroom serve` over TLS, one server
per store (SQLite, PostgreSQL) for the whole module: break-glass with a lone surrogate,
card data in a note, an erased customer probed from outside its scope, and a stolen
session kept through a lockout. The Flask-client twins, with more cases, are in
tests/web/test_attacks_text.py.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import PG_ADMIN_URL, _database_url
from tests.e2e.server import (
    ROOT,
    call,
    clean_env,
    first_sign_in,
    serving,
    staff_add,
    strongroom,
)

PASSWORD = "quiet-harbour lanterns at noon"
CUSTOMER = {
    "type": "individual", "full_name": "Grace Plantedname", "date_of_birth": "1985-07-14",
    "address": {"line1": "2 Planted Row", "city": "Leeds", "postcode": "LS1 4AP", "country": "GB"},
    "risk_rating": "medium",
}


def _init(instance: Path, database_url: str | None) -> None:
    env = {**clean_env(), **({"STRONGROOM_DATABASE_URL": database_url} if database_url else {})}
    done = subprocess.run(strongroom("--instance", str(instance), "init", "--json"), cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    if database_url:
        config = json.loads((instance / "strongroom.json").read_text())
        (instance / "strongroom.json").write_text(json.dumps({**config, "database_url": database_url}))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp(f"attacks-text-{request.param}")
    database = None
    if request.param == "postgres":
        database = f"sr_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{database}"')
    try:
        instance = folder / "instance"
        _init(instance, _database_url(database) if database else None)
        accounts = {
            "supervisor": staff_add(instance, "tls.supervisor", "supervisor", "retail"),
            "outsider": staff_add(instance, "tls.outsider", "agent", "private"),
            "victim": staff_add(instance, "tls.victim", "agent", "retail"),
        }
        with serving(instance, folder / "serve.log") as server:
            tokens = {name: first_sign_in(server, account, PASSWORD)[0] for name, account in accounts.items()}
            yield {"server": server, "instance": instance, "tokens": tokens, "accounts": accounts}
    finally:
        if database:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _customer(world: dict[str, Any], who: str, portfolio: str) -> str:
    status, _, created = call(world["server"], "POST", "/api/v1/customers", {**CUSTOMER, "portfolio": portfolio},
                              token=world["tokens"][who])
    assert status == 201, created
    return str(created["id"])


def test_break_glass_with_a_lone_surrogate_leaves_no_grant_over_tls(world):
    server, token = world["server"], world["tokens"]["supervisor"]
    other = _customer(world, "outsider", "private")
    # json.dumps writes the lone surrogate as the escape \udfff: valid JSON, hostile text.
    status, _, body = call(server, "POST", "/api/v1/break-glass", token=token,
                           body={"portfolio": "private", "reason": "\udfff", "minutes": 30})
    assert status == 422 and "reason" in body["errors"]
    status, _, listed = call(server, "GET", "/api/v1/break-glass", token=token)
    assert status == 200 and listed["items"] == []
    assert call(server, "GET", f"/api/v1/customers/{other}", token=token)[0] == 404


def test_a_card_number_and_cvv_in_a_note_are_refused_over_tls(world):
    server, token = world["server"], world["tokens"]["supervisor"]
    cid = _customer(world, "supervisor", "retail")
    status, _, body = call(server, "POST", f"/api/v1/customers/{cid}/interactions", token=token,
                           body={"kind": "note", "channel": "phone", "notes": "card 4929381278166016 cvv 737"})
    assert status == 422 and "notes" in body["errors"] and "4929381278166016" not in json.dumps(body)
    status, _, listed = call(server, "GET", f"/api/v1/customers/{cid}/interactions", token=token)
    assert status == 200 and listed["items"] == []


def test_an_erased_customer_is_gone_only_for_those_in_scope_over_tls(world):
    server, tokens = world["server"], world["tokens"]
    cid = _customer(world, "supervisor", "retail")
    done = subprocess.run(strongroom("--instance", str(world["instance"]), "customers", "erase", cid,
                                     "--reason", "GDPR Art. 17 request"),
                          cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert call(server, "GET", f"/api/v1/customers/{cid}", token=tokens["supervisor"])[0] == 410
    status, _, erased = call(server, "GET", f"/api/v1/customers/{cid}", token=tokens["outsider"])
    absent_status, _, absent = call(server, "GET", f"/api/v1/customers/{uuid.uuid4()}", token=tokens["outsider"])
    assert status == absent_status == 404 and erased["code"] == absent["code"]


def test_a_lockout_ends_a_stolen_session_over_tls(world):
    server, token = world["server"], world["tokens"]["victim"]
    assert call(server, "GET", "/api/v1/auth/sessions", token=token)[0] == 200
    for n in range(10):  # from ten addresses: one address is throttled after 5 failures (item 8)
        status, _, _ = call(server, "POST", "/api/v1/auth/login",
                            {"username": "tls.victim", "password": "guess-guess-guess"}, source=f"127.0.5.{n + 1}")
        assert status == 401
    assert call(server, "GET", "/api/v1/auth/sessions", token=token)[0] == 401
