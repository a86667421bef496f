"""Role combinations that escape scope (R2.6, R2.9; issue 10 item 4), through Flask's
client, on SQLite and on PostgreSQL.

Two defences, each tried by the attack it stops:

* **Separation of duties as data.** `DUTY_CONFLICTS` in application/policy.py names
  the roles one person may not hold together; creating such an account, granting such
  a role, or approving a grant that would make such a set answers 409
  `separation_of_duties` and changes nothing. One test per rule, and a check that every
  rule has one.
* **Scoped roles stay scoped.** Each permission is decided per role with that role's
  scope. The accounts here are stored directly (as an account from before the rule, or
  an allowed pair such as agent + compliance officer, would be), so that the scope rule
  is tried on its own, not behind the conflict rule.
"""

from __future__ import annotations

import pytest

from application.policy import DUTY_CONFLICTS
from tests.web.customers_support import access_records_since, customer_body, plant_customer, position
from tests.web.helpers import quick_login, step_up


@pytest.fixture
def app(app_factory, database_url):
    return app_factory(database_url=database_url)


def roles_of(client, admin, staff_id):
    return {s["id"]: s["roles"] for s in client.get("/api/v1/staff", headers=admin).get_json()["items"]}[staff_id]


def refused_as_conflict(response, rule):
    body = response.get_json()
    assert response.status_code == 409, body
    assert body["code"] == "separation_of_duties" and rule in body["message"]


# -- separation of duties: one test per rule ----------------------------------------------------------

# rule -> (roles the account holds, role granted to it)
CONFLICT_ATTEMPTS = {
    "auditor_with_data_changing_role": (["auditor"], "agent"),
    "admin_with_data_reading_role": (["admin"], "supervisor"),
    "admin_with_monitoring_role": (["admin"], "security_officer"),
}


def test_every_declared_conflict_is_tried_here():
    assert set(CONFLICT_ATTEMPTS) == {conflict.rule for conflict in DUTY_CONFLICTS}


@pytest.mark.parametrize("rule", CONFLICT_ATTEMPTS)
def test_a_conflicting_grant_is_refused(app, client, rule):
    held, granted = CONFLICT_ATTEMPTS[rule]
    admin = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    member = quick_login(client, app, roles=held, portfolios=["retail"])
    before = position(app)
    response = client.post(f"/api/v1/staff/{member.staff_id}/roles", headers=admin, json={"grant": [granted]})
    refused_as_conflict(response, rule)
    assert roles_of(client, admin, member.staff_id) == held
    assert not client.get("/api/v1/approvals", headers=admin).get_json()["items"]  # nothing waits either
    [record] = [r for r in access_records_since(app, before) if r.kind == "denied"]
    assert record.details == {"operation": "staff:change_roles", "reason": "separation_of_duties"}


@pytest.mark.parametrize("rule", CONFLICT_ATTEMPTS)
def test_an_account_created_with_conflicting_roles_is_refused(app, client, rule):
    held, granted = CONFLICT_ATTEMPTS[rule]
    admin = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    response = client.post("/api/v1/staff", headers=admin, json={
        "username": "two.hats", "display_name": "Two Hats", "roles": [*held, granted], "portfolios": ["retail"],
        "email": "two.hats@bank.example"})
    refused_as_conflict(response, rule)
    assert "two.hats" not in {s["username"] for s in client.get("/api/v1/staff", headers=admin).get_json()["items"]}
    assert not client.get("/api/v1/approvals", headers=admin).get_json()["items"]


def test_an_approval_is_decided_on_the_account_as_it_is_when_approved(app, client):
    """A grant that was fine when asked for, but conflicts with a role granted while it
    waited, is refused at approval (and the request is not carried out)."""
    admin = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    approver = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    member = quick_login(client, app, roles=["agent"], portfolios=["retail"])
    held = client.post(f"/api/v1/staff/{member.staff_id}/roles", headers=admin,
                       json={"grant": ["auditor"], "revoke": ["agent"]})
    assert held.status_code == 202, held.get_json()
    response = client.post(f"/api/v1/staff/{member.staff_id}/roles", headers=admin, json={"grant": ["supervisor"]})
    assert response.status_code == 202  # supervisor reads customer data: four eyes (R2.9)
    second = client.post(f"/api/v1/approvals/{response.get_json()['approval_id']}/approve", headers=approver)
    assert second.status_code == 200, second.get_json()  # agent + supervisor: no conflict yet
    response = client.post(f"/api/v1/approvals/{held.get_json()['approval_id']}/approve", headers=approver)
    refused_as_conflict(response, "auditor_with_data_changing_role")
    assert roles_of(client, admin, member.staff_id) == ["agent", "supervisor"]


def test_revoking_the_conflicting_role_in_the_same_change_is_allowed(app, client):
    admin = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    member = quick_login(client, app, roles=["agent", "supervisor"], portfolios=["retail"])
    response = client.post(f"/api/v1/staff/{member.staff_id}/roles", headers=admin, json={"revoke": ["supervisor"]})
    assert response.status_code == 200 and response.get_json()["roles"] == ["agent"]


# -- scoped roles stay scoped ----------------------------------------------------------------------------


def test_an_auditor_who_is_also_an_agent_reveals_only_in_the_agents_portfolio(app, client):
    """The attack: an auditor granted `agent` revealed contact fields in every portfolio."""
    both = quick_login(client, app, roles=["auditor", "agent"], portfolios=["retail"])
    own = plant_customer(app, portfolio="retail")["id"]
    other = plant_customer(app, portfolio="corporate")["id"]
    step_up(client, both)
    reveal = {"fields": ["email"], "purpose": "curious about another portfolio"}
    response = client.post(f"/api/v1/customers/{other}/reveal", headers=both, json=reveal)
    assert response.status_code == 404 and response.get_json()["code"] == "not_found"
    assert "ada.planted@example.org" not in response.get_data(as_text=True)
    # Read as the auditor there: masked, nothing offered for reveal, notes masked.
    view = client.get(f"/api/v1/customers/{other}", headers=both).get_json()
    assert view["full_name"] == "A*** P***" and view["email"] == "a***@example.org"
    assert view["revealable"] == [] and view["cards"][0]["display"].startswith("••••")
    # In the agent's own portfolio the agent's rights apply.
    assert client.get(f"/api/v1/customers/{own}", headers=both).get_json()["full_name"] == "Ada Plantedname"
    response = client.post(f"/api/v1/customers/{own}/reveal", headers=both, json=reveal)
    assert response.status_code == 200 and response.get_json()["fields"] == {"email": "ada.planted@example.org"}


def test_an_agent_who_is_also_an_auditor_writes_nothing_outside_the_agents_portfolio(app, client):
    both = quick_login(client, app, roles=["agent", "auditor"], portfolios=["retail"])
    other = plant_customer(app, portfolio="corporate")
    response = client.patch(f"/api/v1/customers/{other['id']}", headers={**both, "If-Match": '"1"'},
                            json={"risk_rating": "high"})
    assert response.status_code == 404
    response = client.post(f"/api/v1/customers/{other['id']}/interactions", headers=both,
                           json={"kind": "call", "channel": "phone", "notes": "planted note"})
    assert response.status_code == 404
    response = client.post("/api/v1/customers", headers=both, json=customer_body(portfolio="corporate"))
    assert response.status_code == 403 and response.get_json()["code"] == "portfolio_out_of_scope"


def test_an_agent_who_is_also_a_compliance_officer_changes_only_the_agents_portfolio(app, client):
    """An allowed pair: the compliance officer reads and reveals everywhere, but the
    agent's create and update stay in the agent's portfolio."""
    both = quick_login(client, app, roles=["agent", "compliance_officer"], portfolios=["retail"])
    other = plant_customer(app, portfolio="corporate")
    assert client.get(f"/api/v1/customers/{other['id']}", headers=both).status_code == 200
    response = client.patch(f"/api/v1/customers/{other['id']}", headers={**both, "If-Match": '"1"'},
                            json={"risk_rating": "high"})
    assert response.status_code == 404
    response = client.post("/api/v1/customers", headers=both, json=customer_body(portfolio="corporate"))
    assert response.status_code == 403 and response.get_json()["code"] == "portfolio_out_of_scope"
    own = client.post("/api/v1/customers", headers=both, json=customer_body(portfolio="retail"))
    assert own.status_code == 201, own.get_json()
