"""Issue 10, items 4 and 9, performed as an insider would, against a real `strongroom
serve` over TLS: one server per store (SQLite, PostgreSQL), several attacks each.

* An auditor is granted `agent` (it then revealed contact fields in every portfolio);
  an account asked for as agent + auditor (it then read and revealed in another
  portfolio): both refused, 409 `separation_of_duties` (R2.9), by the API and by the
  operator's command line alike.
* A person holding an allowed pair (agent in retail + compliance officer) cannot use
  the officer's reach to change customers outside the agent's portfolio (R2.6).
* An admin session without a fresh step-up (a stolen token) grants no role (R2.11).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pyotp
import pytest

from tests.conftest import PG_ADMIN_URL
from tests.e2e.server import ROOT, call, clean_env, first_sign_in, serving, staff_add, strongroom

pytestmark = pytest.mark.slow

PASSWORD = "seven herons over the quarry"
CUSTOMER = {
    "type": "individual", "full_name": "Ada Roleplay", "date_of_birth": "1980-02-03",
    "email": "ada.roleplay@example.org", "phone": "+44 7700 900321", "national_id": "QQ123456C",
    "address": {"line1": "3 Role Row", "city": "Leeds", "postcode": "LS1 4AP", "country": "GB"},
    "portfolio": "corporate", "risk_rating": "low",
}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def instance(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`strongroom init` on the store, the first admin it printed, and the folder."""
    folder = tmp_path_factory.mktemp(f"insider-roles-{request.param}") / "instance"
    env, database = clean_env(), None
    if request.param == "postgres":
        database = f"sr_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{database}"')
        env["STRONGROOM_DATABASE_URL"] = f"{PG_ADMIN_URL.rpartition('/')[0]}/{database}"
    try:
        done = subprocess.run(strongroom("--instance", str(folder), "init", "--json"), cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        if database is not None:
            config = json.loads((folder / "strongroom.json").read_text())
            (folder / "strongroom.json").write_text(
                json.dumps({**config, "database_url": env["STRONGROOM_DATABASE_URL"]}))
        yield {"folder": folder, "admin": json.loads(done.stdout)["admin"]}
    finally:
        if database is not None:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture(scope="module")
def server(instance: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serving(instance["folder"], tmp_path_factory.mktemp("serve-roles") / "serve.log") as running:
        yield running


@pytest.fixture(scope="module")
def admin(server: dict[str, Any], instance: dict[str, Any]) -> dict[str, Any]:
    """The first admin signed in (its one-time password replaced) but not stepped up."""
    first = instance["admin"]
    status, _, started = call(server, "POST", "/api/v1/auth/login", {"username": "admin", "password": first["password"]})
    assert status == 200, started
    totp = pyotp.parse_uri(first["totp_uri"])
    step = int(time.time()) // 30
    status, _, opened = call(server, "POST", "/api/v1/auth/mfa",
                             {"challenge": started["challenge"], "code": totp.generate_otp(step)})
    assert status == 200, opened
    status, _, changed = call(server, "POST", "/api/v1/auth/password", token=opened["token"],
                              body={"current_password": first["password"], "new_password": PASSWORD})
    assert status == 200, changed
    return {"token": opened["token"], "totp": totp, "step": step}


def test_a_stolen_admin_session_without_a_step_up_grants_no_role(server, instance, admin):
    agent = staff_add(instance["folder"], f"agent.{uuid.uuid4().hex[:6]}", "agent", "retail")
    status, _, refused = call(server, "POST", f"/api/v1/staff/{agent['id']}/roles", {"grant": ["supervisor"]},
                              token=admin["token"])
    assert status == 403 and refused["code"] == "step_up_required", refused
    status, _, listed = call(server, "GET", "/api/v1/staff", token=admin["token"])
    assert [s["roles"] for s in listed["items"] if s["id"] == agent["id"]] == [["agent"]]


def test_an_auditor_granted_agent_is_refused(server, instance, admin):
    status, _, stepped = call(server, "POST", "/api/v1/auth/step-up", {"code": admin["totp"].generate_otp(admin["step"] + 1)},
                              token=admin["token"])
    assert status == 200, stepped
    auditor = staff_add(instance["folder"], f"auditor.{uuid.uuid4().hex[:6]}", "auditor")
    status, _, refused = call(server, "POST", f"/api/v1/staff/{auditor['id']}/roles", {"grant": ["agent"]},
                              token=admin["token"])
    assert status == 409 and refused["code"] == "separation_of_duties", refused
    # An account asked for with both (an agent in retail who audits everywhere): refused too.
    status, _, refused = call(server, "POST", "/api/v1/staff", {
        "username": f"two.hats.{uuid.uuid4().hex[:6]}", "display_name": "Two Hats",
        "roles": ["agent", "auditor"], "portfolios": ["retail"], "email": "two.hats@bank.example"},
        token=admin["token"])
    assert status == 409 and refused["code"] == "separation_of_duties", refused
    status, _, listed = call(server, "GET", "/api/v1/staff", token=admin["token"])
    assert not [s for s in listed["items"] if {"agent", "auditor"} <= set(s["roles"])]


def test_the_operator_command_line_refuses_the_pair_too(instance):
    done = subprocess.run(
        strongroom("--instance", str(instance["folder"]), "staff", "add", f"cli.hats.{uuid.uuid4().hex[:6]}",
                   "--role", "agent", "--role", "auditor", "--portfolio", "retail", "--json"),
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=120,
    )
    assert done.returncode != 0 and "separation of duties" in done.stderr, (done.stdout, done.stderr)


def test_an_agent_who_is_also_a_compliance_officer_changes_nothing_outside_the_agents_portfolio(server, instance):
    folder = instance["folder"]
    owner = staff_add(folder, f"corporate.{uuid.uuid4().hex[:6]}", "agent", "corporate")
    owner_token, _ = first_sign_in(server, owner, PASSWORD)
    status, _, theirs = call(server, "POST", "/api/v1/customers", CUSTOMER, token=owner_token)
    assert status == 201, theirs
    both = staff_add(folder, f"agent.co.{uuid.uuid4().hex[:6]}", ("agent", "compliance_officer"), "retail")
    token, _ = first_sign_in(server, both, PASSWORD)
    # The officer reads everywhere (that is the officer's duty) ...
    assert call(server, "GET", f"/api/v1/customers/{theirs['id']}", token=token)[0] == 200
    # ... but the agent's right to change data stays in retail.
    status, _, refused = call(server, "PATCH", f"/api/v1/customers/{theirs['id']}", {"risk_rating": "high"},
                              token=token, headers={"If-Match": '"1"'})
    assert status == 404 and refused["code"] == "not_found", refused
    status, _, refused = call(server, "POST", "/api/v1/customers", CUSTOMER, token=token)
    assert status == 403 and refused["code"] == "portfolio_out_of_scope", refused
    status, _, view = call(server, "GET", f"/api/v1/customers/{theirs['id']}", token=owner_token)
    assert view["risk_rating"] == "low" and view["version"] == 1


def test_the_served_document_names_the_new_codes(server):
    status, _, document = call(server, "GET", "/api/v1/openapi.json")
    assert status == 200
    roles = document["paths"]["/api/v1/staff/{staff_id}/roles"]["post"]["responses"]
    assert "step_up_required" in roles["403"]["description"]
    assert "separation_of_duties" in roles["409"]["description"]
