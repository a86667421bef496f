"""Named insider attacks on four-eyes and account activation (issue 10, items 2 and 3;
R2.9), through Flask's client with a real SMTP server on loopback, on SQLite and on
PostgreSQL. The same attacks run over TLS against `strongroom serve` in
tests/e2e/test_insider_approvals_tls.py; here are the many small cases.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from domain.audit import AccessRecord
from tests.smtp import unreachable_smtp
from tests.web.helpers import PASSWORD, MovableClock, activate, from_a_new_address, quick_login, use_clock


@pytest.fixture
def app(app_factory, database_url, smtp):
    return app_factory(database_url=database_url, **smtp.settings)


def strings_in(value):
    """Every string anywhere in a JSON answer: what a caller could try to sign in with."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def request_account(client, requester, username, roles, email=None):
    response = client.post("/api/v1/staff", headers=requester, json={
        "username": username, "display_name": username.title(), "roles": roles,
        "portfolios": ["retail"] if set(roles) & {"agent", "supervisor"} else [],
        "email": email or f"{username}@bank.example"})
    assert response.status_code == 202, response.get_json()
    return response


# -- item 2: the approver never holds a credential of the new account ----------------------------------------


def test_the_approver_cannot_sign_in_as_the_account_they_approved(app, client, smtp):
    """Attack: the approver of a privileged account took its one-time password from the
    approval's answer, signed in as it, enrolled their own TOTP and approved their own
    next request as that account. Now nothing in any answer opens the account."""
    clock = MovableClock(datetime(2026, 11, 30, 9, 0, 10, tzinfo=UTC))
    use_clock(app, clock)
    requester = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    approver = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    seen = [request_account(client, requester, "sec.officer", ["security_officer"]).get_json()]
    seen.append(client.get("/api/v1/approvals", headers=approver).get_json())
    approval_id = seen[0]["approval_id"]
    approved = client.post(f"/api/v1/approvals/{approval_id}/approve", headers=approver)
    assert approved.status_code == 200
    seen.append(approved.get_json())
    seen.append(client.get("/api/v1/staff", headers=approver).get_json())
    code = smtp.code_for("sec.officer@bank.example")
    text = json.dumps(seen)
    assert code not in text and code.replace("-", "") not in text
    assert "one_time_password" not in text and "password" not in approved.get_json()["result"]
    for candidate in set(strings_in(seen)):
        login = client.post("/api/v1/auth/login", json={"username": "sec.officer", "password": candidate},
                            environ_base=from_a_new_address())
        assert login.status_code in (401, 429), candidate  # 429: the account's own throttle (R2.11)
        activation = client.post("/api/v1/auth/activate", json={"username": "sec.officer", "code": candidate,
                                                                 "new_password": PASSWORD},
                                 environ_base=from_a_new_address())
        assert activation.status_code in (401, 422, 429), candidate
    # Only the person, with the code that reached their own mailbox, gets in (once the
    # lockout the attempts caused has passed, R2.3).
    clock.advance(minutes=31)
    officer = activate(client, app, "sec.officer", code)
    assert client.get("/api/v1/approvals", headers=officer).status_code == 200


def test_an_activation_code_is_refused_when_wrong_used_or_expired(app, client, smtp):
    clock = MovableClock(datetime(2026, 11, 30, 9, 0, 10, tzinfo=UTC))
    use_clock(app, clock)
    requester = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    approver = quick_login(client, app, roles=["security_officer"], portfolios=[], stepped_up=True)
    for username in ("ursula", "victor"):
        approval_id = request_account(client, requester, username, ["agent"]).get_json()["approval_id"]
        assert client.post(f"/api/v1/approvals/{approval_id}/approve", headers=approver).status_code == 200
    code = smtp.code_for("ursula@bank.example")

    def attempt(username, code, password=PASSWORD):
        return client.post("/api/v1/auth/activate", json={"username": username, "code": code,
                                                          "new_password": password})

    wrong = attempt("ursula", "0" * 32)
    assert wrong.status_code == 401 and wrong.get_json()["code"] == "invalid_credentials"
    assert attempt("victor", code).status_code == 401  # someone else's code
    assert attempt("ursula", code, "password").status_code == 422  # weak: refused, code not spent
    assert attempt("ursula", code).status_code == 200
    reused = attempt("ursula", code, "another long and fine passphrase")
    assert reused.status_code == 401 and reused.get_json() == wrong.get_json()
    clock.advance(hours=24, seconds=1)
    expired = attempt("victor", smtp.code_for("victor@bank.example"))
    assert expired.status_code == 401 and expired.get_json() == wrong.get_json()
    for body in ({"username": "victor", "code": "\ud800", "new_password": PASSWORD},
                 {"username": "victor", "code": "x" * 129, "new_password": PASSWORD},
                 {"username": "victor", "code": "abc", "new_password": PASSWORD, "must_change_password": False}):
        assert client.post("/api/v1/auth/activate", json=body).status_code in (401, 422)


def test_an_unreachable_mail_relay_answers_503_and_creates_nothing(app_factory, database_url, client):
    app = app_factory(database_url=database_url, **unreachable_smtp())
    client = app.test_client()
    requester = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    approver = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    approval_id = request_account(client, requester, "wanda", ["agent"]).get_json()["approval_id"]
    response = client.post(f"/api/v1/approvals/{approval_id}/approve", headers=approver)
    assert response.status_code == 503 and response.get_json()["code"] == "activation_unavailable"
    assert response.headers["Retry-After"]
    assert set(response.get_json()) == {"code", "status", "message"}
    names = [s["username"] for s in client.get("/api/v1/staff", headers=approver).get_json()["items"]]
    assert "wanda" not in names
    # The request stays open: approved again once the relay is back.
    pending = client.get("/api/v1/approvals", headers=approver).get_json()["items"]
    assert [a["id"] for a in pending] == [approval_id]


def test_a_resent_code_goes_only_to_the_address_on_record(app, client, smtp):
    requester = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    approver = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    approval_id = request_account(client, requester, "xena", ["agent"]).get_json()["approval_id"]
    staff_id = client.post(f"/api/v1/approvals/{approval_id}/approve", headers=approver).get_json()["result"]["id"]
    first = smtp.code_for("xena@bank.example")
    response = client.post(f"/api/v1/staff/{staff_id}/activation", headers=requester)
    assert response.status_code == 200 and set(response.get_json()) == {"id", "username", "activation"}
    second = smtp.code_for("xena@bank.example")
    assert second != first and len(smtp.to("xena@bank.example")) == 2
    assert client.post("/api/v1/auth/activate", json={"username": "xena", "code": first,
                                                      "new_password": PASSWORD}).status_code == 401
    activate(client, app, "xena", second)
    again = client.post(f"/api/v1/staff/{staff_id}/activation", headers=requester)
    assert again.status_code == 409 and again.get_json()["code"] == "already_activated"
    assert len(smtp.to("xena@bank.example")) == 2


def test_a_work_email_that_smuggles_a_header_is_refused(app, client, smtp):
    admin = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    for email in ("x@bank.example\r\nBcc: thief@evil.example", "not-an-address", "ünï@bank.example", ""):
        response = client.post("/api/v1/staff", headers=admin, json={
            "username": "yara", "display_name": "Yara", "roles": ["agent"], "portfolios": ["retail"],
            "email": email})
        assert response.status_code == 422 and "email" in response.get_json()["errors"], email
    assert client.get("/api/v1/approvals", headers=admin).get_json()["items"] == []


# -- item 3: one admin alone never reaches customer data --------------------------------------------------------


@pytest.mark.parametrize("role", ["agent", "supervisor", "compliance_officer", "dpo", "auditor"])
@pytest.mark.controls("PCI-DSS-8.2.4")
def test_an_admin_alone_cannot_make_a_data_reading_account(app, client, smtp, role):
    """Attack: an admin creates a supervisor (or any role that reads customer data),
    signs in as it and reveals national ids and IBANs. The account waits for a second
    person, the admin cannot approve it, and no code ever reaches the admin."""
    admin = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    approval_id = request_account(client, admin, "zed", [role], email=f"{admin.username}@bank.example"
                                  ).get_json()["approval_id"]
    own = client.post(f"/api/v1/approvals/{approval_id}/approve", headers=admin)
    assert own.status_code == 403 and own.get_json()["code"] == "self_approval"
    assert "zed" not in [s["username"] for s in client.get("/api/v1/staff", headers=admin).get_json()["items"]]
    assert smtp.messages == []
    # Granting such a role to an existing account waits the same way.
    other = quick_login(client, app, roles=["security_officer"], portfolios=[], stepped_up=True)
    granted = client.post(f"/api/v1/staff/{other.staff_id}/roles", headers=admin, json={"grant": [role]})
    # An auditor may hold no role that changes anything (separation of duties, item 4):
    # that grant is refused outright rather than queued.
    assert granted.status_code == (409 if role == "auditor" else 202), granted.get_json()
    roles = {s["id"]: s["roles"] for s in client.get("/api/v1/staff", headers=admin).get_json()["items"]}
    assert roles[other.staff_id] == ["security_officer"]


def test_an_admin_alone_cannot_strip_the_other_approvers(app, client):
    """Attack: one admin revokes every other admin's role, and is left the only
    approver. Each revocation of a privileged role waits for a second person; the
    admin being stripped can neither approve nor block it."""
    admin = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    rival = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    officer = quick_login(client, app, roles=["security_officer"], portfolios=[], stepped_up=True)
    response = client.post(f"/api/v1/staff/{rival.staff_id}/roles", headers=admin, json={"revoke": ["admin"]})
    assert response.status_code == 202
    approval_id = response.get_json()["approval_id"]
    for who, code in ((admin, "self_approval"), (rival, "self_role_change")):
        refused = client.post(f"/api/v1/approvals/{approval_id}/approve", headers=who)
        assert refused.status_code == 403 and refused.get_json()["code"] == code
    blocked = client.post(f"/api/v1/approvals/{approval_id}/reject", headers=rival, json={"reason": "mine"})
    assert blocked.status_code == 403 and blocked.get_json()["code"] == "self_role_change"
    assert client.get("/api/v1/staff", headers=rival).status_code == 200  # still an admin
    assert client.post(f"/api/v1/approvals/{approval_id}/approve", headers=officer).status_code == 200
    assert client.get("/api/v1/staff", headers=rival).status_code == 403  # now revoked, by two people


def test_a_rejected_request_is_closed_for_good_and_recorded(app, client):
    admin = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    officer = quick_login(client, app, roles=["security_officer"], portfolios=[], stepped_up=True)
    approval_id = request_account(client, admin, "abel", ["supervisor"]).get_json()["approval_id"]
    for body in ({}, {"reason": ""}, {"reason": "x" * 501}, {"reason": "ok", "status": "approved"}):
        assert client.post(f"/api/v1/approvals/{approval_id}/reject", headers=officer, json=body).status_code == 422
    response = client.post(f"/api/v1/approvals/{approval_id}/reject", headers=officer,
                           json={"reason": "no HR ticket"})
    assert response.status_code == 200
    rejected = response.get_json()
    assert rejected["status"] == "rejected" and rejected["decided_by"] == officer.staff_id
    again = client.post(f"/api/v1/approvals/{approval_id}/approve", headers=officer)
    assert again.status_code == 409 and again.get_json()["code"] == "already_decided"
    assert client.get("/api/v1/approvals", headers=officer).get_json()["items"] == []
    built = app.extensions["strongroom"].app
    found = []
    for notification in built.recorder.select_notifications(start=1, limit=100_000):
        event = built.mapper.to_domain_event(notification)
        if isinstance(event, AccessRecord.Event) and event.kind == "approval":
            meta = built.mapper.metadata(notification)
            found.append((event.details["decision"], meta["actor_id"], meta["purpose"]))
    assert found == [("requested", admin.staff_id, "request for approval"),
                     ("rejected", officer.staff_id, "rejected: no HR ticket")]
    assert client.post(f"/api/v1/approvals/{approval_id}/reject", headers=admin,
                       json={"reason": "x"}).status_code == 409


def test_a_request_expires_after_72_hours(app, client):
    clock = MovableClock(datetime(2026, 11, 30, 9, 0, 10, tzinfo=UTC))
    use_clock(app, clock)
    admin = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    officer = quick_login(client, app, roles=["security_officer"], portfolios=[], stepped_up=True)
    approval_id = request_account(client, admin, "bea", ["dpo"]).get_json()["approval_id"]
    [listed] = client.get("/api/v1/approvals", headers=officer).get_json()["items"]
    assert listed["expires_at"].startswith("2026-12-03T09:00:")
    clock.advance(hours=72, seconds=1)
    # Sessions idle out meanwhile: the approver signs in again.
    officer = quick_login(client, app, roles=["security_officer"], portfolios=[], stepped_up=True)
    assert client.get("/api/v1/approvals", headers=officer).get_json()["items"] == []
    expired = client.post(f"/api/v1/approvals/{approval_id}/approve", headers=officer)
    assert expired.status_code == 409 and expired.get_json()["code"] == "approval_expired"
    again = client.post(f"/api/v1/approvals/{approval_id}/approve", headers=officer)
    assert again.status_code == 409 and again.get_json()["code"] == "already_decided"
    admin = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    assert "bea" not in [s["username"] for s in client.get("/api/v1/staff", headers=admin).get_json()["items"]]
