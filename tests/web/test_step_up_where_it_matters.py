"""Step-up where it matters (R2.11, issue 10 item 9), through Flask's client, on SQLite
and on PostgreSQL.

A stolen session (a token lifted from a browser or a log) must not be enough to open
break-glass, approve a held request, create an account, grant or revoke a role, or
change the password: each needs a TOTP code entered within the last 5 minutes, like a
reveal. Each operation is tried three ways: with no step-up, with one 5 minutes and a
second old (the identity's clock moved by hand), and with a fresh one. The first two
answer exactly as a reveal without step-up does (403 `step_up_required`), change
nothing, and leave a refusal in the access log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from domain.audit import AccessRecord
from tests.web.helpers import MovableClock, create_staff, quick_login, sign_in, step_up, use_clock


@pytest.fixture
def app(app_factory, database_url, smtp):
    # A mail relay: an approved account's activation code goes to the person (R2.9).
    return app_factory(database_url=database_url, **smtp.settings)


@pytest.fixture
def clock(app):
    moving = MovableClock()
    use_clock(app, moving)
    return moving


def staff(client, app, headers):
    return {s["id"]: s for s in client.get("/api/v1/staff", headers=headers).get_json()["items"]}


def requested(client, headers, kind: str, username: str) -> bool:
    """Whether a request of `kind` about `username` waits for a second person: every
    account made, and every data-reading role granted, through the API does (R2.9)."""
    return any(a["kind"] == kind and a["summary"].get("username") == username
               for a in client.get("/api/v1/approvals", headers=headers).get_json()["items"])


@dataclass
class Attempt:
    """Who tries, the request they send, and whether it took effect."""

    actor: Any
    send: Callable[[], Any]
    took_effect: Callable[[], bool]


def break_glass(client, app) -> Attempt:
    supervisor = quick_login(client, app, roles=["supervisor"], portfolios=["retail"])
    officer = quick_login(client, app, roles=["security_officer"], portfolios=[])
    return Attempt(
        supervisor,
        lambda: client.post("/api/v1/break-glass", headers=supervisor,
                            json={"portfolio": "corporate", "minutes": 30, "reason": "INC-7 fraud call"}),
        lambda: bool(client.get("/api/v1/break-glass", headers=officer).get_json()["items"]),
    )


def approve(client, app) -> Attempt:
    requester = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    approver = quick_login(client, app, roles=["admin"], portfolios=[])
    held = client.post("/api/v1/staff", headers=requester, json={
        "username": "held.officer", "display_name": "Held", "roles": ["security_officer"], "portfolios": [],
        "email": "held.officer@bank.example"})
    assert held.status_code == 202, held.get_json()
    approval_id = held.get_json()["approval_id"]
    return Attempt(
        approver,
        lambda: client.post(f"/api/v1/approvals/{approval_id}/approve", headers=approver),
        lambda: any(s["username"] == "held.officer" for s in staff(client, app, requester).values()),
    )


def create_account(client, app) -> Attempt:
    admin = quick_login(client, app, roles=["admin"], portfolios=[])
    return Attempt(
        admin,
        lambda: client.post("/api/v1/staff", headers=admin, json={
            "username": "new.agent", "display_name": "New", "roles": ["agent"], "portfolios": ["retail"],
            "email": "new.agent@bank.example"}),
        lambda: requested(client, admin, "create_staff", "new.agent"),
    )


def grant_role(client, app) -> Attempt:
    admin = quick_login(client, app, roles=["admin"], portfolios=[])
    agent = quick_login(client, app, roles=["agent"])
    return Attempt(
        admin,
        lambda: client.post(f"/api/v1/staff/{agent.staff_id}/roles", headers=admin, json={"grant": ["supervisor"]}),
        lambda: requested(client, admin, "change_roles", agent.username),
    )


def revoke_role(client, app) -> Attempt:
    admin = quick_login(client, app, roles=["admin"], portfolios=[])
    supervisor = quick_login(client, app, roles=["agent", "supervisor"])
    return Attempt(
        admin,
        lambda: client.post(f"/api/v1/staff/{supervisor.staff_id}/roles", headers=admin,
                            json={"revoke": ["supervisor"]}),
        lambda: "supervisor" not in staff(client, app, admin)[supervisor.staff_id]["roles"],
    )


def change_password(client, app) -> Attempt:
    member = quick_login(client, app)
    new = "a stolen session picks this"

    def took_effect() -> bool:
        response = client.post("/api/v1/auth/login", json={"username": member.username, "password": new})
        return response.status_code == 200

    return Attempt(
        member,
        lambda: client.post("/api/v1/auth/password", headers=member,
                            json={"current_password": member.password, "new_password": new}),
        took_effect,
    )


def erase(client, app) -> Attempt:
    """Issue 13: an erasure cannot be undone (R4.6)."""
    from tests.web.customers_support import plant_customer

    dpo = quick_login(client, app, roles=["dpo"], portfolios=[])
    customer_id = plant_customer(app)["id"]
    return Attempt(
        dpo,
        lambda: client.post(f"/api/v1/erasures/{customer_id}", headers=dpo, json={"reason": "DSR-2026-9"}),
        lambda: app.extensions["strongroom"].app.is_erased(customer_id),
    )


OPERATIONS = {
    "break_glass:start": break_glass,
    "approvals:approve": approve,
    "staff:create": create_account,
    "staff:change_roles/grant": grant_role,
    "staff:change_roles/revoke": revoke_role,
    "auth:password_change": change_password,
    "erase": erase,
}


def step_up_refusals(app) -> list[str]:
    built = app.extensions["strongroom"].app
    found = []
    for notification in built.recorder.select_notifications(start=1, limit=100_000):
        event = built.mapper.to_domain_event(notification)
        if isinstance(event, AccessRecord.Event) and event.details.get("reason") == "step_up_required":
            found.append(event.details["operation"])
    return found


def refused_like_a_reveal(response) -> None:
    body = response.get_json()
    assert response.status_code == 403, body
    assert body["code"] == "step_up_required" and "step-up" in body["message"]


@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_stolen_session_without_a_step_up_is_refused(app, client, clock, operation):
    attempt = OPERATIONS[operation](client, app)
    refused_like_a_reveal(attempt.send())
    assert not attempt.took_effect()
    assert operation.split("/")[0] in step_up_refusals(app)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_step_up_older_than_five_minutes_is_refused(app, client, clock, operation):
    attempt = OPERATIONS[operation](client, app)
    step_up(client, attempt.actor)
    clock.advance(minutes=5, seconds=1)
    refused_like_a_reveal(attempt.send())
    assert not attempt.took_effect()


@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_fresh_step_up_lets_the_operation_through(app, client, clock, operation):
    attempt = OPERATIONS[operation](client, app)
    step_up(client, attempt.actor)
    clock.advance(minutes=4, seconds=50)
    response = attempt.send()
    assert response.status_code in (200, 201, 202), response.get_json()  # 202: held for a second person
    assert attempt.took_effect()


def test_a_one_time_password_is_replaced_within_five_minutes_of_the_login_that_opened_the_session(
        app, client, clock):
    """The first change needs no second code: the session was opened by a fresh TOTP code
    and can do nothing else. Later than 5 minutes, it needs a step-up like any other."""
    _staff_id, username, one_time = create_staff(app)
    opened, totp, step = sign_in(client, app, username, one_time)
    headers = {"Authorization": f"Bearer {opened['token']}"}
    clock.advance(minutes=5, seconds=1)
    body = {"current_password": one_time, "new_password": "replaced a little late"}
    refused_like_a_reveal(client.post("/api/v1/auth/password", headers=headers, json=body))
    # The one-time-password gate lets the step-up through, so the member can go on.
    response = client.post("/api/v1/auth/step-up", headers=headers, json={"code": totp.at(clock.now)})
    assert response.status_code == 200, response.get_json()
    assert client.post("/api/v1/auth/password", headers=headers, json=body).status_code == 200


def test_the_openapi_document_names_the_step_up_on_each_such_route(app, client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    for path, method in [("/api/v1/break-glass", "post"), ("/api/v1/approvals/{approval_id}/approve", "post"),
                         ("/api/v1/staff", "post"), ("/api/v1/staff/{staff_id}/roles", "post"),
                         ("/api/v1/auth/password", "post"), ("/api/v1/erasures/{customer_id}", "post")]:
        assert "step_up_required" in paths[path][method]["responses"]["403"]["description"], path
