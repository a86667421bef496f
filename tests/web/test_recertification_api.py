"""Access recertification through the API (R6.2, PCI DSS 7.2.4).

The issue's check, as an internal auditor runs it: a campaign with one revocation
(taking effect on the revoked member's very next request) and one item nobody
answers, which escalates and then raises one alert, once. Reviewers are the
supervisors sharing a member's portfolio, else the security officers; nobody decides
their own access, nor someone else's review.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from application.recertification import OVERDUE_RULE
from domain.alerts import Alert, alert_id
from tests.web.customers_support import access_records_since, plant_customer, position
from tests.web.helpers import MovableClock, quick_login, step_up, use_clock


def _items(campaign):
    return {item["username"]: item for item in campaign["items"]}


@pytest.mark.controls("PCI-DSS-7.2.4")
def test_a_campaign_with_one_revocation_and_one_overdue_item(client, app):
    clock = MovableClock(datetime.now(UTC))
    use_clock(app, clock)
    cid = plant_customer(app)["id"]
    supervisor = quick_login(client, app, "recert.sup", roles=["supervisor"], portfolios=["retail"], stepped_up=True)
    revoked = quick_login(client, app, "recert.revoked", roles=["agent"], portfolios=["retail"])
    silent = quick_login(client, app, "recert.silent", roles=["agent"], portfolios=["retail"])
    officer = quick_login(client, app, "recert.officer", roles=["security_officer"], portfolios=[])
    auditor = quick_login(client, app, "recert.auditor", roles=["auditor"], portfolios=[])
    admin = quick_login(client, app, "recert.admin", roles=["admin"], portfolios=[])

    started = client.post("/api/v1/recertifications", headers=admin)
    assert started.status_code == 201, started.get_json()
    campaign = started.get_json()
    items = _items(campaign)
    # Supervisors review their portfolio; the unscoped (and the lone supervisor) go to security officers.
    assert items["recert.revoked"]["reviewers"] == [supervisor.staff_id]
    assert items["recert.silent"]["reviewers"] == [supervisor.staff_id]
    assert items["recert.sup"]["reviewers"] == [officer.staff_id]
    assert items["recert.auditor"]["reviewers"] == [officer.staff_id]
    assert campaign["summary"]["pending"] == len(campaign["items"])
    # A supervisor lists only the items they review, not everyone's access.
    (mine,) = client.get("/api/v1/recertifications", headers=supervisor).get_json()["items"]
    assert sorted(i["username"] for i in mine["items"]) == ["recert.revoked", "recert.silent"]
    again = client.post("/api/v1/recertifications", headers=admin)
    assert again.status_code == 409 and again.get_json()["code"] == "campaign_open"
    path = f"/api/v1/recertifications/{campaign['id']}"

    # Attacks: deciding one's own access, and someone else's review. Refused and recorded.
    before = position(app)
    own = client.post(f"{path}/items/{revoked.staff_id}/decision", headers=revoked, json={"decision": "confirm"})
    assert own.status_code == 403  # an agent holds no recertification:review at all
    step_up(client, officer)
    others = client.post(f"{path}/items/{revoked.staff_id}/decision", headers=officer, json={"decision": "confirm"})
    assert others.status_code == 403 and others.get_json()["code"] == "not_your_review"
    assert [r.details.get("reason") for r in access_records_since(app, before) if r.kind == "denied"] == [
        "permission", "not_reviewer"]

    # The supervisor revokes one agent's role: it is gone from the agent's next request.
    assert client.get(f"/api/v1/customers/{cid}", headers=revoked).status_code == 200
    decided = client.post(f"{path}/items/{revoked.staff_id}/decision", headers=supervisor,
                          json={"decision": "revoke", "roles": ["agent"]})
    assert decided.status_code == 200, decided.get_json()
    item = _items(decided.get_json())["recert.revoked"]
    assert (item["state"], item["revoked_roles"], item["decided_by"]) == ("revoked", ["agent"], supervisor.staff_id)
    assert client.get(f"/api/v1/customers/{cid}", headers=revoked).status_code == 403
    twice = client.post(f"{path}/items/{revoked.staff_id}/decision", headers=supervisor, json={"decision": "confirm"})
    assert twice.status_code == 409 and twice.get_json()["code"] == "already_decided"
    assert client.post(f"{path}/items/{supervisor.staff_id}/decision", headers=officer,
                       json={"decision": "confirm"}).status_code == 200

    # Nobody answers for recert.silent: after 14 days it escalates, 7 days later it alerts, once.
    clock.advance(days=15)
    manager = quick_login(client, app, "recert.manager", roles=["security_officer"], portfolios=[])
    checked = client.post("/api/v1/recertifications/check", headers=manager).get_json()
    assert checked["escalated"] >= 1 and checked["alerted"] == 0 and checked["started"] is None
    report = client.get(path, headers=manager).get_json()
    assert _items(report)["recert.silent"]["state"] == "escalated"
    clock.advance(days=7)
    manager = quick_login(client, app, "recert.manager2", roles=["security_officer"], portfolios=[])
    checked = client.post("/api/v1/recertifications/check", headers=manager).get_json()
    assert checked["alerted"] == report["summary"]["escalated"] >= 1  # one per item still open
    assert client.post("/api/v1/recertifications/check", headers=manager).get_json()["alerted"] == 0
    alert = app.extensions["strongroom"].app.repository.get(alert_id(OVERDUE_RULE, f"{campaign['id']}:{silent.staff_id}"))
    assert isinstance(alert, Alert) and alert.severity == "medium" and alert.details["staff_id"] == silent.staff_id

    # The outcome, as an auditor reads it (a new session: 22 days have passed).
    auditor = quick_login(client, app, "recert.auditor2", roles=["auditor"], portfolios=[])
    outcome = client.get(path, headers=auditor)
    assert outcome.status_code == 200
    final = _items(outcome.get_json())
    assert final["recert.revoked"]["state"] == "revoked" and final["recert.sup"]["state"] == "confirmed"
    assert final["recert.silent"]["state"] == "escalated" and final["recert.silent"]["alerted"] is True

    # An escalated item is the security officers' to decide now.
    step_up(client, manager)
    late = client.post(f"{path}/items/{silent.staff_id}/decision", headers=manager, json={"decision": "revoke"})
    assert late.status_code == 200, late.get_json()
    assert _items(late.get_json())["recert.silent"]["revoked_portfolios"] == ["retail"]


@pytest.mark.controls("PCI-DSS-7.2.4")
def test_revoking_a_privileged_role_waits_for_a_second_approver(client, app):
    """R2.9 still holds inside a campaign: a reviewer alone cannot strip a compliance
    officer of the role; the decision holds a four-eyes request that someone else approves."""
    officer = quick_login(client, app, roles=["security_officer"], portfolios=[], stepped_up=True)
    compliance = quick_login(client, app, roles=["compliance_officer"], portfolios=[])
    admin = quick_login(client, app, roles=["admin"], portfolios=[], stepped_up=True)
    campaign = client.post("/api/v1/recertifications", headers=admin).get_json()
    response = client.post(f"/api/v1/recertifications/{campaign['id']}/items/{compliance.staff_id}/decision",
                           headers=officer, json={"decision": "revoke", "roles": ["compliance_officer"]})
    assert response.status_code == 200, response.get_json()
    item = [i for i in response.get_json()["items"] if i["staff_id"] == compliance.staff_id][0]
    assert item["state"] == "revoked" and item["held_approval"]
    staff = {s["id"]: s for s in client.get("/api/v1/staff", headers=admin).get_json()["items"]}
    assert staff[compliance.staff_id]["roles"] == ["compliance_officer"]  # not yet
    approved = client.post(f"/api/v1/approvals/{item['held_approval']}/approve", headers=admin)
    assert approved.status_code == 200, approved.get_json()
    staff = {s["id"]: s for s in client.get("/api/v1/staff", headers=admin).get_json()["items"]}
    assert staff[compliance.staff_id]["roles"] == []


def test_a_revoke_needs_a_step_up(client, app):
    supervisor = quick_login(client, app, roles=["supervisor"], portfolios=["retail"])
    agent = quick_login(client, app, roles=["agent"], portfolios=["retail"])
    admin = quick_login(client, app, roles=["admin"], portfolios=[])
    campaign = client.post("/api/v1/recertifications", headers=admin).get_json()
    response = client.post(f"/api/v1/recertifications/{campaign['id']}/items/{agent.staff_id}/decision",
                           headers=supervisor, json={"decision": "revoke"})
    assert response.status_code == 403 and response.get_json()["code"] == "step_up_required"
    assert client.post("/api/v1/recertifications", headers=agent).status_code == 403
