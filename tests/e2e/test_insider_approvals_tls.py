"""Insider attacks on four-eyes and account activation (issue 10, items 2 and 3; R2.9)
performed over TLS against a real `strongroom serve`, once per store (SQLite and
PostgreSQL), with a real SMTP server on loopback as the activation channel.

One server per store for the whole module (scope="module"); the attacks run against
it one after the other, each on accounts of its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pyotp
import pytest

from tests.conftest import fresh_pg_database
from tests.e2e.server import call, first_sign_in, initialise, serving, staff_add
from tests.smtp import Mailbox

PASSWORD = "quiet-harbour lanterns at noon"


def sign_in_first_admin(server: dict[str, Any], admin: dict[str, Any]) -> str:
    """`strongroom init`'s admin: password, the TOTP made at init, a new password, then
    a step-up with the next step's code (each code counts once): creating accounts and
    deciding requests need one within 5 minutes (R2.11)."""
    status, _, started = call(server, "POST", "/api/v1/auth/login",
                              {"username": admin["username"], "password": admin["password"]})
    assert status == 200 and started["status"] == "mfa_required", started
    totp = pyotp.parse_uri(admin["totp_uri"])
    step = int(time.time()) // 30
    status, _, opened = call(server, "POST", "/api/v1/auth/mfa",
                             {"challenge": started["challenge"], "code": totp.generate_otp(step)})
    assert status == 200, opened
    status, _, changed = call(server, "POST", "/api/v1/auth/password", token=opened["token"],
                              body={"current_password": admin["password"], "new_password": PASSWORD})
    assert status == 200, changed
    status, _, stepped = call(server, "POST", "/api/v1/auth/step-up", {"code": totp.generate_otp(step + 1)},
                              token=opened["token"])
    assert status == 200, stepped
    return str(opened["token"])


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          smtp_module: Mailbox) -> Iterator[dict[str, Any]]:
    """A served instance with a first admin, and by `strongroom staff add` (the
    operator's bootstrap) a second admin, a security officer and an agent."""
    folder = tmp_path_factory.mktemp(f"insider-{request.param}")
    with _store(request.param) as url:
        instance = folder / "instance"
        admin = initialise(instance, {"STRONGROOM_DATABASE_URL": url} if url else None)
        config = json.loads((instance / "strongroom.json").read_text())
        (instance / "strongroom.json").write_text(json.dumps({**config, **smtp_module.settings,
                                                              **({"database_url": url} if url else {})}))
        accounts = {name: staff_add(instance, name, role, portfolio) for name, role, portfolio in (
            ("second.admin", "admin", None), ("sec.officer", "security_officer", None),
            ("field.agent", "agent", "retail"))}
        with serving(instance, folder / "serve.log") as server:
            tokens = {"admin": sign_in_first_admin(server, admin)}
            for name, account in accounts.items():
                tokens[name], _ = first_sign_in(server, account, PASSWORD)
            yield {"server": server, "tokens": tokens, "ids": {n: a["id"] for n, a in accounts.items()},
                   "smtp": smtp_module}


@contextmanager
def _store(kind: str) -> Iterator[str | None]:
    """A fresh PostgreSQL database, or None for SQLite in the instance folder."""
    if kind == "postgres":
        with fresh_pg_database() as url:
            yield url
    else:
        yield None


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def test_the_approver_never_holds_anything_to_sign_in_with(world):
    """Attack (item 2): the approver of a new account signs in as it with what the API
    gave them (formerly its one-time password), enrols their own TOTP and approves
    their own next request as that account."""
    server, tokens, smtp = world["server"], world["tokens"], world["smtp"]
    email = f"tls.sup.{server['port']}@bank.example"
    status, _, held = call(server, "POST", "/api/v1/staff", token=tokens["admin"], body={
        "username": "tls.sup", "display_name": "TLS Supervisor", "roles": ["supervisor"],
        "portfolios": ["retail"], "email": email})
    assert status == 202, held
    status, _, listed = call(server, "GET", "/api/v1/approvals", token=tokens["second.admin"])
    assert status == 200 and listed["items"][0]["summary"]["email"] == email
    status, _, approved = call(server, "POST", f"/api/v1/approvals/{held['approval_id']}/approve",
                               token=tokens["second.admin"])
    assert status == 200, approved
    code = smtp.code_for(email)
    seen = json.dumps([held, listed, approved])
    assert code not in seen and code.replace("-", "") not in seen and "password" not in seen
    for candidate in sorted(set(strings_in(approved["result"])) | {held["approval_id"]}):
        status, _, _ = call(server, "POST", "/api/v1/auth/login", {"username": "tls.sup", "password": candidate})
        assert status == 401, candidate
    status, _, wrong = call(server, "POST", "/api/v1/auth/activate",
                            {"username": "tls.sup", "code": "0" * 32, "new_password": PASSWORD})
    assert status == 401 and wrong["code"] == "invalid_credentials"
    # The person, with the code from their own mailbox: password of their own, then TOTP.
    status, _, started = call(server, "POST", "/api/v1/auth/activate",
                              {"username": "tls.sup", "code": code, "new_password": PASSWORD})
    assert status == 200 and started["status"] == "mfa_enrollment_required", started
    totp = pyotp.parse_uri(started["totp_uri"])
    status, _, opened = call(server, "POST", "/api/v1/auth/mfa", {"challenge": started["challenge"],
                                                                  "code": totp.generate_otp(int(time.time()) // 30)})
    assert status == 200, opened
    status, _, _ = call(server, "GET", "/api/v1/customers", token=opened["token"])
    assert status == 200
    status, _, reused = call(server, "POST", "/api/v1/auth/activate",
                             {"username": "tls.sup", "code": code, "new_password": "another long passphrase"})
    assert status == 401 and reused == wrong


def test_an_admin_alone_cannot_make_an_account_that_reads_customer_data(world):
    """Attack (item 3): an admin creates a supervisor, signs in as it and reveals
    national ids and IBANs, then opens break-glass."""
    server, tokens, smtp = world["server"], world["tokens"], world["smtp"]
    status, _, held = call(server, "POST", "/api/v1/staff", token=tokens["admin"], body={
        "username": "lone.sup", "display_name": "Lone Supervisor", "roles": ["supervisor"],
        "portfolios": ["retail"], "email": "admin.own.mailbox@bank.example"})
    assert status == 202, held
    status, _, refused = call(server, "POST", f"/api/v1/approvals/{held['approval_id']}/approve",
                              token=tokens["admin"])
    assert status == 403 and refused["code"] == "self_approval"
    assert smtp.to("admin.own.mailbox@bank.example") == []
    status, _, staff = call(server, "GET", "/api/v1/staff", token=tokens["admin"])
    assert "lone.sup" not in [s["username"] for s in staff["items"]]
    # Nor by granting the role to an account that exists.
    agent_id = world["ids"]["field.agent"]
    status, _, held = call(server, "POST", f"/api/v1/staff/{agent_id}/roles", token=tokens["admin"],
                           body={"grant": ["supervisor"]})
    assert status == 202, held
    status, _, staff = call(server, "GET", "/api/v1/staff", token=tokens["admin"])
    assert {s["id"]: s["roles"] for s in staff["items"]}[agent_id] == ["agent"]


def test_revoking_another_admin_waits_and_can_be_rejected(world):
    """Attack (item 3): one admin strips every other approver of their role."""
    server, tokens = world["server"], world["tokens"]
    rival = world["ids"]["second.admin"]
    status, _, held = call(server, "POST", f"/api/v1/staff/{rival}/roles", token=tokens["admin"],
                           body={"revoke": ["admin"]})
    assert status == 202, held
    path = f"/api/v1/approvals/{held['approval_id']}"
    status, _, refused = call(server, "POST", f"{path}/approve", token=tokens["admin"])
    assert status == 403 and refused["code"] == "self_approval"
    status, _, refused = call(server, "POST", f"{path}/approve", token=tokens["second.admin"])
    assert status == 403 and refused["code"] == "self_role_change"
    assert call(server, "GET", "/api/v1/staff", token=tokens["second.admin"])[0] == 200  # still an admin
    status, _, rejected = call(server, "POST", f"{path}/reject", token=tokens["sec.officer"],
                               body={"reason": "no change ticket"})
    assert status == 200 and rejected["status"] == "rejected", rejected
    status, _, late = call(server, "POST", f"{path}/approve", token=tokens["sec.officer"])
    assert status == 409 and late["code"] == "already_decided"
    assert call(server, "GET", "/api/v1/staff", token=tokens["second.admin"])[0] == 200
