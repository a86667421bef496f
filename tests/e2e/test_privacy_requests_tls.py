"""A data-protection officer's access request, end to end over TLS (R5.2, R5.3), on SQLite
and on PostgreSQL.

Two customers are imported at the command line; an agent contacts one (an interaction,
a consent), the agent and a supervisor look at both; the DPO receives an access request
for the first, verifies the requester, runs the export over the API with a passphrase,
and the file is opened with `strongroom requests open-export` against the published
audit key: everything about the subject is in it, including who looked; nothing about
the other customer is. Afterwards the planted values are searched for in the raw
stores (the SQLite files, or a pg_dump): none is there in clear.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from application.privacy_requests import OVERDUE_RULE

from tests.e2e.server import ROOT, call, clean_env, first_sign_in, initialise, serving, staff_add, strongroom

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PASSWORD = "violet kettles hum in the attic"
PASSPHRASE = "the subject's own long passphrase"
SUBJECT = {"full_name": "Philippa Subjectname", "email": "philippa.subject@example.org",
           "phone": "+44 7700 900811", "national_id": "QQ811811A", "notes": "called about the quince-coloured card"}
OTHER = {"full_name": "Octavius Otherbody", "email": "octavius.other@example.net",
         "phone": "+44 7700 900922", "national_id": "ZZ922922B", "notes": "asked about the teal-coloured card"}


def _line(person: dict[str, str]) -> str:
    return json.dumps({
        "type": "individual", "full_name": person["full_name"], "date_of_birth": "1979-03-04",
        "national_id": person["national_id"], "email": person["email"], "phone": person["phone"],
        "address": {"line1": f"{person['full_name'].split()[1]} House", "city": "York", "postcode": "YO1 7HH",
                    "country": "GB"},
        "portfolio": "retail", "risk_rating": "low",
    })


def _cli(instance: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(strongroom("--instance", str(instance), *args), cwd=ROOT, env={**clean_env(), **env},
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        yield {}
        return
    name = f"sr_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {"STRONGROOM_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{name}"}
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def world(store: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("privacy-e2e")
    instance = folder / "instance"
    initialise(instance, store)
    if store:
        config = json.loads((instance / "strongroom.json").read_text())
        (instance / "strongroom.json").write_text(json.dumps({**config, "database_url": store["STRONGROOM_DATABASE_URL"]}))
    lines = folder / "customers.jsonl"
    lines.write_text(_line(SUBJECT) + "\n" + _line(OTHER) + "\n")
    imported = _cli(instance, "customers", "import", str(lines), "--json", env={})
    assert imported.returncode == 0, imported.stderr
    accounts = {role: staff_add(instance, f"e2e.{role}", role, "retail") for role in ("agent", "supervisor", "dpo")}
    lines.unlink()
    # The server's workers check deadlines every second here (an hour by default).
    with serving(instance, folder / "serve.log", env={"STRONGROOM_PRIVACY_DEADLINE_CHECK_SECONDS": "1"}) as running:
        tokens = {role: first_sign_in(running, account, PASSWORD)[0] for role, account in accounts.items()}
        yield {"server": running, "instance": instance, "folder": folder, "tokens": tokens, "accounts": accounts,
               "store": store}


def _find(world: dict[str, Any], email: str) -> str:
    status, _, found = call(world["server"], "GET", f"/api/v1/customers?email={email}",
                            token=world["tokens"]["supervisor"])
    assert status == 200 and len(found["items"]) == 1, found
    return str(found["items"][0]["id"])


@pytest.mark.controls("GDPR-15", "GDPR-20", "CCPA-1798.110")
def test_an_access_request_exported_and_read_back_as_a_dpo_would(world: dict[str, Any]) -> None:
    server, tokens, instance, folder = world["server"], world["tokens"], world["instance"], world["folder"]
    subject, other = _find(world, SUBJECT["email"]), _find(world, OTHER["email"])

    # The agent contacts the subject and the other customer, records the subject's consent;
    # agent and supervisor look at both.
    for customer, person in ((subject, SUBJECT), (other, OTHER)):
        status, _, _ = call(server, "POST", f"/api/v1/customers/{customer}/interactions",
                            {"kind": "call", "channel": "phone", "notes": person["notes"]}, token=tokens["agent"])
        assert status == 201
    status, _, _ = call(server, "POST", f"/api/v1/customers/{subject}/consents",
                        {"purpose": "marketing_contact", "channel": "email", "granted": True,
                         "notice_version": "2026-11", "source": "phone_call"}, token=tokens["agent"])
    assert status == 201
    for role in ("agent", "supervisor"):
        for customer in (subject, other):
            assert call(server, "GET", f"/api/v1/customers/{customer}", token=tokens[role])[0] == 200

    # The DPO receives, verifies and exports.
    status, _, request = call(server, "POST", "/api/v1/requests",
                              {"customer_id": subject, "kind": "access", "jurisdiction": "gdpr"}, token=tokens["dpo"])
    assert status == 201, request
    status, _, refused = call(server, "POST", f"/api/v1/requests/{request['id']}/export", {"passphrase": PASSPHRASE},
                              token=tokens["dpo"])
    assert status == 409 and refused["code"] == "identity_not_verified"
    assert call(server, "POST", f"/api/v1/requests/{request['id']}/verify", {"method": "id_document"},
                token=tokens["dpo"])[0] == 200
    status, _, refused = call(server, "POST", f"/api/v1/requests/{request['id']}/export", {"passphrase": PASSPHRASE},
                              token=tokens["agent"])
    assert status == 403
    status, _, exported = call(server, "POST", f"/api/v1/requests/{request['id']}/export", {"passphrase": PASSPHRASE},
                               token=tokens["dpo"])
    assert status == 200, exported
    sealed = folder / exported["file_name"]
    sealed.write_bytes(base64.b64decode(exported["content_base64"]))
    assert SUBJECT["email"].encode() not in sealed.read_bytes()
    status, _, done = call(server, "POST", f"/api/v1/requests/{request['id']}/complete", {}, token=tokens["dpo"])
    assert status == 200 and done["status"] == "completed"

    # The subject opens it with the passphrase, checked against the published audit key.
    (folder / "passphrase").write_text(PASSPHRASE)
    opened = subprocess.run(
        strongroom("requests", "open-export", str(sealed), "--out", str(folder / "opened"),
                   "--passphrase-file", str(folder / "passphrase"), "--audit-key", str(instance / "audit-signing.pub")),
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert opened.returncode == 0, opened.stderr
    assert "the audit key you gave" in opened.stdout
    files = {p.relative_to(folder / "opened").as_posix(): p.read_bytes()
             for p in (folder / "opened").rglob("*") if p.is_file()}
    document = json.loads(files["export.json"])
    assert document["record"]["email"] == SUBJECT["email"] and document["record"]["full_name"] == SUBJECT["full_name"]
    assert document["record"]["interactions"][0]["notes"] == SUBJECT["notes"]
    assert [(c["purpose"], c["channel"], c["granted"]) for c in document["consents"]] == [
        ("marketing_contact", "email", True)]
    staff = {role: account["id"] for role, account in world["accounts"].items()}
    lookers = {a["actor_id"] for a in document["access_log"]}
    assert {staff["agent"], staff["supervisor"]} <= lookers, lookers
    assert "access_log.csv" in " ".join(files) and staff["supervisor"].encode() in files["tables/access_log.csv"]
    everything = b"".join(files.values())
    for value in (*OTHER.values(), other, "Otherbody House"):
        assert value.encode() not in everything, value

    # Planted values are nowhere in clear in the raw stores.
    planted = [v.encode() for v in (*SUBJECT.values(), *OTHER.values()) if not v.startswith("+")]
    raw = b"".join(p.read_bytes() for p in instance.rglob("*") if p.is_file())
    if world["store"]:
        raw += subprocess.run(["pg_dump", world["store"]["STRONGROOM_DATABASE_URL"]], capture_output=True,
                              check=True).stdout
        assert b"strongroom_events" in raw
    else:
        assert (instance / "strongroom.sqlite").exists()
    assert [v for v in planted if v in raw] == []
    log = world["server"]["log"].read_text()
    assert [v for v in planted if v.decode() in log] == [] and PASSPHRASE not in log


@pytest.mark.controls("CCPA-1798.130")
def test_the_server_raises_the_overdue_alert_of_a_late_request_once(world: dict[str, Any]) -> None:
    server, tokens, instance = world["server"], world["tokens"], world["instance"]
    subject = _find(world, SUBJECT["email"])
    late = (datetime.now(UTC) - timedelta(days=50)).isoformat()
    status, _, request = call(server, "POST", "/api/v1/requests", {"customer_id": subject, "kind": "objection",
                                                                   "jurisdiction": "ccpa", "received_at": late},
                              token=tokens["dpo"])
    assert status == 201 and request["overdue"] is True

    def raised() -> list[dict[str, Any]]:
        # Only this rule's: on SQLite the monitor runs inside serve and raises its own.
        listed = _cli(instance, "alerts", "list", "--rule", OVERDUE_RULE, "--json", env=world["store"])
        assert listed.returncode == 0, listed.stderr
        return [json.loads(line) for line in listed.stdout.splitlines()]

    deadline = time.monotonic() + 30
    while not raised() and time.monotonic() < deadline:
        time.sleep(1)
    assert len(raised()) == 1
    time.sleep(2)  # several more checks by the server: still one alert
    assert len(raised()) == 1
    checked = _cli(instance, "requests", "check-deadlines", "--json", env=world["store"])
    # Overdue, and this request's alert (its id is derived from the request) already
    # raised by the server: nothing new here.
    assert checked.returncode == 1
    assert json.loads(checked.stdout) == {"raised": [], "overdue": [request["id"]]}
