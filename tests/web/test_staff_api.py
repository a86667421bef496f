"""`/api/v1/staff`, `/api/v1/approvals`, `/api/v1/break-glass` and `strongroom staff add`,
through Flask's client and click's runner, on SQLite and on PostgreSQL (R2.5, R2.8, R2.9).
"""

from __future__ import annotations

import json
import uuid

import pytest
from click.testing import CliRunner

from cli.main import main
from domain.audit import AccessRecord
from domain.staff import StaffMember
from tests.web.helpers import activate, quick_login, sign_in


@pytest.fixture
def app(app_factory, database_url, smtp):
    return app_factory(database_url=database_url, **smtp.settings)


def requested_and_approved(client, requester, approver, body):
    """POST /staff by one person (202), approved by another: the approval's answer."""
    response = client.post("/api/v1/staff", headers=requester, json=body)
    assert response.status_code == 202, response.get_json()
    response = client.post(f"/api/v1/approvals/{response.get_json()['approval_id']}/approve", headers=approver)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def events(app):
    built = app.extensions["strongroom"].app
    for notification in built.recorder.select_notifications(start=1, limit=100_000):
        yield built.mapper.to_domain_event(notification), built.mapper.metadata(notification)


def test_an_approved_agent_activates_with_the_mailed_code_and_signs_in(app, client, smtp):
    admin = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    officer = quick_login(client, app, roles=["security_officer"], portfolios=[], stepped_up=True)
    done = requested_and_approved(client, admin, officer, {
        "username": "kim", "display_name": "Kim Agent", "roles": ["agent"], "portfolios": ["retail"],
        "email": "kim@bank.example"})
    assert set(done["result"]) == {"id", "username", "activation"} and done["result"]["username"] == "kim"
    [mail] = smtp.to("kim@bank.example")
    assert mail["From"] == "strongroom@bank.example" and "kim" in mail.get_content()
    kim = activate(client, app, "kim", smtp.code_for("kim@bank.example"))
    me = client.get("/api/v1/auth/sessions", headers=kim)
    assert me.status_code == 200  # no password change owed: the person chose their own


def test_the_staff_list_shows_accounts_without_secrets(app, client, smtp):
    admin = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    officer = quick_login(client, app, roles=["security_officer"], portfolios=[], stepped_up=True)
    requested_and_approved(client, admin, officer, {
        "username": "lee", "display_name": "Lee", "roles": ["agent"], "portfolios": ["retail"],
        "email": "lee@bank.example"})
    code = smtp.code_for("lee@bank.example")
    response = client.get("/api/v1/staff", headers=admin)
    assert response.status_code == 200
    staff = {s["username"]: s for s in response.get_json()["items"]}
    assert staff["lee"]["roles"] == ["agent"] and staff["lee"]["must_change_password"] is True
    assert staff["lee"]["mfa_enrolled"] is False and staff[admin.username]["mfa_enrolled"] is True
    text = response.get_data(as_text=True)
    for secret in ("password_hash", "totp_secret", "recovery_codes\"", code, code.replace("-", ""), "$argon2"):
        assert secret not in text


def test_a_privileged_account_is_held_for_approval_then_created_by_a_second_admin(app, client, smtp):
    first = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    second = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    response = client.post("/api/v1/staff", headers=first, json={
        "username": "morgan", "display_name": "Morgan", "roles": ["security_officer"], "portfolios": [],
        "email": "morgan@bank.example"})
    assert response.status_code == 202
    approval_id = response.get_json()["approval_id"]
    assert response.get_json()["status"] == "pending"
    listed = client.get("/api/v1/approvals", headers=second).get_json()["items"]
    assert [(a["id"], a["kind"], a["summary"]["roles"]) for a in listed] == [
        (approval_id, "create_staff", ["security_officer"])]
    response = client.post(f"/api/v1/approvals/{approval_id}/approve", headers=second)
    assert response.status_code == 200
    done = response.get_json()
    assert done["status"] == "executed" and done["result"]["username"] == "morgan"
    assert "one_time_password" not in done["result"]
    assert activate(client, app, "morgan", smtp.code_for("morgan@bank.example")).token
    assert client.get("/api/v1/approvals", headers=second).get_json()["items"] == []
    again = client.post(f"/api/v1/approvals/{approval_id}/approve", headers=second)
    assert again.status_code == 409 and again.get_json()["code"] == "already_decided"


def test_roles_are_granted_and_revoked_and_privileged_grants_wait(app, client):
    admin = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    other = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    agent = quick_login(client, app, roles=["agent"])
    response = client.post(f"/api/v1/staff/{agent.staff_id}/roles", headers=admin, json={"grant": ["supervisor"]})
    assert response.status_code == 202  # supervisor reads customer data (R2.9)
    approval_id = response.get_json()["approval_id"]
    assert client.post(f"/api/v1/approvals/{approval_id}/approve", headers=other).status_code == 200
    response = client.post(f"/api/v1/staff/{agent.staff_id}/roles", headers=admin,
                           json={"grant": ["compliance_officer"], "revoke": ["supervisor"]})
    assert response.status_code == 202
    approval_id = response.get_json()["approval_id"]
    assert client.post(f"/api/v1/approvals/{approval_id}/approve", headers=other).status_code == 200
    roles = {s["id"]: s["roles"] for s in client.get("/api/v1/staff", headers=admin).get_json()["items"]}
    assert roles[agent.staff_id] == ["agent", "compliance_officer"]
    response = client.post(f"/api/v1/staff/{agent.staff_id}/roles", headers=admin,
                           json={"revoke": ["compliance_officer"]})
    assert response.status_code == 202  # a privileged role's revocation waits too (R2.9)
    approval_id = response.get_json()["approval_id"]
    approved = client.post(f"/api/v1/approvals/{approval_id}/approve", headers=other)
    assert approved.status_code == 200 and approved.get_json()["result"]["roles"] == ["agent"]


def test_staff_endpoints_refuse_who_may_not_and_what_is_not_there(app, client):
    agent = quick_login(client, app, roles=["agent"])
    admin = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    for method, path, body in [("POST", "/api/v1/staff", {"username": "x-ray", "display_name": "X", "roles": ["agent"],
                                                          "email": "x-ray@bank.example"}),
                               ("GET", "/api/v1/staff", None), ("GET", "/api/v1/approvals", None),
                               ("POST", f"/api/v1/staff/{admin.staff_id}/roles", {"grant": ["agent"]})]:
        response = client.open(path, method=method, headers=agent, json=body)
        assert response.status_code == 403 and response.get_json()["code"] == "forbidden", path
    assert client.post(f"/api/v1/staff/{uuid.uuid4()}/roles", headers=admin, json={"grant": ["agent"]}).status_code == 404
    assert client.post("/api/v1/staff/not-an-id/roles", headers=admin, json={"grant": ["agent"]}).status_code == 404
    assert client.post(f"/api/v1/approvals/{uuid.uuid4()}/approve", headers=admin).status_code == 404
    response = client.post("/api/v1/staff", headers=admin, json={"username": agent.username, "display_name": "Dup",
                                                                 "roles": ["agent"], "email": "dup@bank.example"})
    assert response.status_code == 409 and response.get_json()["code"] == "username_taken"
    response = client.post("/api/v1/staff", headers=admin, json={"username": "newbie", "display_name": "N",
                                                                 "roles": ["root"], "email": "newbie@bank.example"})
    assert response.status_code == 422 and response.get_json()["errors"] == {"roles": [
        "unknown role; allowed roles are agent, supervisor, compliance_officer, dpo, security_officer, auditor, admin"]}
    assert client.post(f"/api/v1/staff/{agent.staff_id}/roles", headers=admin, json={}).status_code == 422


@pytest.mark.controls("PCI-DSS-10.2.1.2")
def test_who_and_why_reach_the_event_from_the_request(app, client):
    admin = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    nico = quick_login(client, app, username="nico", roles=["agent", "supervisor"])
    headers = {**admin, "X-Purpose": "onboarding ticket HR-88", "X-Request-Id": "req-0123456789abcdef"}
    response = client.post(f"/api/v1/staff/{nico.staff_id}/roles", headers=headers, json={"revoke": ["supervisor"]})
    assert response.status_code == 200
    changed = [(e, m) for e, m in events(app) if isinstance(e, StaffMember.RolesChanged)]
    [(_event, meta)] = changed
    assert meta["actor_id"] == admin.staff_id and meta["session_id"] == admin.session_id
    assert meta["purpose"] == "onboarding ticket HR-88" and meta["request_id"] == "req-0123456789abcdef"
    assert meta["client_addr"] == "127.0.0.1" and meta["via"] == "api"


def test_a_purpose_header_with_control_characters_is_refused(app, client):
    admin = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    # An escape sequence would repaint an operator's terminal reading the audit trail.
    response = client.get("/api/v1/staff", headers={**admin, "X-Purpose": "ticket \x1b[2J 42"})
    assert response.status_code == 422 and "X-Purpose" in response.get_json()["errors"]


# -- break-glass (R2.8) ------------------------------------------------------------------------------


def test_a_supervisor_breaks_the_glass_and_it_is_recorded_and_listed(app, client):
    supervisor = quick_login(client, app, roles=["supervisor"], portfolios=["retail"], stepped_up=True)
    officer = quick_login(client, app, roles=["security_officer"], portfolios=[], stepped_up=True)
    response = client.post("/api/v1/break-glass", headers=supervisor, json={
        "portfolio": "private", "reason": "INC-7 account takeover", "minutes": 20})
    assert response.status_code == 201
    grant = response.get_json()
    assert grant["portfolio"] == "private" and grant["active"] is True and grant["staff_id"] == supervisor.staff_id
    listed = client.get("/api/v1/break-glass", headers=officer).get_json()["items"]
    assert [(g["id"], g["reason"]) for g in listed] == [(grant["id"], "INC-7 account takeover")]
    records = [(e, m) for e, m in events(app) if isinstance(e, AccessRecord.Event) and e.kind == "break_glass"]
    [(record, meta)] = records
    assert record.details["grant_id"] == grant["id"] and meta["actor_id"] == supervisor.staff_id
    actor = app.extensions["strongroom"].identity.authenticate(supervisor.token).actor
    assert "private" in actor.portfolios and actor.break_glass_until is not None


@pytest.mark.parametrize(("body", "field"), [
    ({"portfolio": "private", "reason": "INC-7", "minutes": 61}, "minutes"),
    ({"portfolio": "private", "reason": "INC-7", "minutes": 0}, "minutes"),
    ({"portfolio": "private", "reason": "INC-7", "minutes": "30"}, "minutes"),
    ({"portfolio": "private", "minutes": 30}, "reason"),
    ({"portfolio": "private", "reason": "", "minutes": 30}, "reason"),
    ({"reason": "INC-7", "minutes": 30}, "portfolio"),
    ({"portfolio": "private", "reason": "INC-7", "minutes": 30, "until": "2099-01-01"}, "until"),
])
def test_break_glass_needs_a_reason_and_at_most_sixty_minutes(app, client, body, field):
    supervisor = quick_login(client, app, roles=["supervisor"], portfolios=["retail"], stepped_up=True)
    response = client.post("/api/v1/break-glass", headers=supervisor, json=body)
    assert response.status_code == 422 and field in response.get_json()["errors"]


def test_only_break_glass_holders_break_the_glass_and_reviewers_list_it(app, client):
    agent = quick_login(client, app, roles=["agent"])
    admin = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    response = client.post("/api/v1/break-glass", headers=agent, json={"portfolio": "x", "reason": "y", "minutes": 5})
    assert response.status_code == 403
    assert client.get("/api/v1/break-glass", headers=agent).status_code == 403
    assert client.get("/api/v1/break-glass", headers=admin).status_code == 403


# -- the command line: the bootstrap path -------------------------------------------------------------


def test_strongroom_staff_add_prints_a_one_time_password_that_signs_in(instance, app_factory):
    app = app_factory(database_url=f"sqlite:///{instance / 'strongroom.sqlite'}")  # the store init makes
    runner = CliRunner()
    result = runner.invoke(main, ["--instance", str(instance), "staff", "add", "olga", "--role", "security_officer",
                                  "--role", "compliance_officer", "--json"])
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert created["username"] == "olga" and created["one_time_password"]
    assert created["roles"] == ["compliance_officer", "security_officer"] and created["portfolios"] == []
    client = app.test_client()
    opened, _totp, _step = sign_in(client, app, "olga", created["one_time_password"])
    assert opened["must_change_password"] is True
    [(event, meta)] = [(e, m) for e, m in events(app) if isinstance(e, StaffMember.Enrolled)]
    assert sorted(event.roles) == ["compliance_officer", "security_officer"]
    assert meta["actor_id"].startswith("operator:") and meta["via"] == "cli"


def test_strongroom_staff_add_refuses_a_taken_name_and_an_unknown_role(instance, app_factory):
    app_factory(database_url=f"sqlite:///{instance / 'strongroom.sqlite'}")  # the store init makes
    runner = CliRunner()
    assert runner.invoke(main, ["--instance", str(instance), "staff", "add", "pat", "--role", "agent"]).exit_code == 0
    taken = runner.invoke(main, ["--instance", str(instance), "staff", "add", "pat", "--role", "agent"])
    assert taken.exit_code == 2 and "already in use" in taken.output
    unknown = runner.invoke(main, ["--instance", str(instance), "staff", "add", "quinn", "--role", "god"])
    assert unknown.exit_code == 2 and "unknown role" in unknown.output and "god" not in unknown.output
