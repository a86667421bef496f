"""Security training through the API (R6.4, PCI DSS 12.6).

A member of staff reveals customer data only with a security training completed in
the last 12 months: a new member has none, a lapse closes reveal on the very next
request (403 `training_lapsed`, recorded as denied), a renewal reopens it. Training
is recorded by a compliance officer or admin (training:record, step-up), never by
the member themselves.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.web.customers_support import access_records_since, plant_customer, position
from tests.web.helpers import MovableClock, quick_login, step_up, use_clock

REVEAL = {"fields": ["email"], "purpose": "complaint 2026-118"}
COURSE = {"course": "security-awareness", "course_version": "2026.2", "evidence_ref": "LMS-4411"}


def _record(client, officer, staff_id, completed_at):
    return client.post(f"/api/v1/staff/{staff_id}/training", headers=officer,
                       json={**COURSE, "completed_at": completed_at.isoformat()})


def _reveal(client, who, cid):
    return client.post(f"/api/v1/customers/{cid}/reveal", headers=who, json=REVEAL)


@pytest.mark.controls("PCI-DSS-12.6.1", "PCI-DSS-12.6.3")
def test_a_new_member_reveals_nothing_until_trained_then_does(client, app):
    cid = plant_customer(app)["id"]
    newcomer = quick_login(client, app, roles=["supervisor"], trained=False, stepped_up=True)
    officer = quick_login(client, app, roles=["compliance_officer"], stepped_up=True)
    before = position(app)
    refused = _reveal(client, newcomer, cid)
    assert refused.status_code == 403 and refused.get_json()["code"] == "training_lapsed"
    (record,) = access_records_since(app, before)
    assert (record.kind, record.outcome, record.details["reason"]) == ("denied", "denied", "training_lapsed")
    # The masked view no longer offers what cannot be revealed.
    assert client.get(f"/api/v1/customers/{cid}", headers=newcomer).get_json()["revealable"] == []

    now = app.extensions["strongroom"].identity.now()
    recorded = _record(client, officer, newcomer.staff_id, now)
    assert recorded.status_code == 201, recorded.get_json()
    state = recorded.get_json()
    assert state["current"] is True and state["completions"][0]["recorded_by"] == officer.staff_id
    assert state["completions"][0]["evidence_ref"] == "LMS-4411"
    # The same session reveals now: nothing to sign in again for.
    assert _reveal(client, newcomer, cid).status_code == 200


@pytest.mark.controls("PCI-DSS-12.6.1", "PCI-DSS-12.6.3")
def test_a_lapse_closes_reveal_at_once_and_a_renewal_reopens_it(client, app):
    """The issue's check: the clock moves past the 12 months within one session."""
    clock = MovableClock(datetime.now(UTC))
    use_clock(app, clock)
    cid = plant_customer(app)["id"]
    agent = quick_login(client, app, roles=["agent"], trained=False)
    officer = quick_login(client, app, roles=["compliance_officer"], stepped_up=True)
    # Completed 365 days less ten minutes ago: current for ten more minutes.
    assert _record(client, officer, agent.staff_id, clock.now - timedelta(days=365) + timedelta(minutes=10)
                   ).status_code == 201
    step_up(client, agent)
    assert _reveal(client, agent, cid).status_code == 200

    clock.advance(minutes=11)
    step_up(client, agent)  # the session is alive (idle < 15 min) and freshly stepped up
    before = position(app)
    lapsed = _reveal(client, agent, cid)
    assert lapsed.status_code == 403 and lapsed.get_json()["code"] == "training_lapsed"
    assert [(r.kind, r.details["reason"]) for r in access_records_since(app, before)] == [
        ("denied", "training_lapsed")]
    listed = client.get(f"/api/v1/staff/{agent.staff_id}/training", headers=agent).get_json()
    assert listed["current"] is False

    step_up(client, officer)
    assert _record(client, officer, agent.staff_id, clock.now).status_code == 201
    assert _reveal(client, agent, cid).status_code == 200


@pytest.mark.controls("PCI-DSS-12.6.1")
def test_attack_nobody_records_their_own_training(client, app):
    """Attack: a compliance officer whose training lapsed records a completion for
    themselves to get reveal back. Refused (403) and recorded; nothing is stored."""
    officer = quick_login(client, app, roles=["compliance_officer"], trained=False, stepped_up=True)
    before = position(app)
    response = _record(client, officer, officer.staff_id, datetime.now(UTC))
    assert response.status_code == 403 and response.get_json()["code"] == "self_training_record"
    assert [(r.kind, r.details["reason"]) for r in access_records_since(app, before)] == [
        ("denied", "self_training_record")]
    assert client.get(f"/api/v1/staff/{officer.staff_id}/training", headers=officer).get_json()["completions"] == []


def test_attack_an_agent_cannot_record_training_nor_read_others(client, app):
    agent = quick_login(client, app, roles=["agent"], stepped_up=True)
    other = quick_login(client, app, roles=["agent"], trained=False)
    response = _record(client, agent, other.staff_id, datetime.now(UTC))
    assert response.status_code == 403 and response.get_json()["code"] == "forbidden"
    assert client.get(f"/api/v1/staff/{other.staff_id}/training", headers=agent).status_code == 403
    supervisor = quick_login(client, app, roles=["supervisor"])  # reports:read is not a key to colleagues' records
    assert client.get(f"/api/v1/staff/{other.staff_id}/training", headers=supervisor).status_code == 403


def test_recording_needs_a_step_up_and_refuses_a_date_in_the_future(client, app):
    """A stolen admin session alone reopens nobody's reveal (R2.11); a completion dated
    next year would stretch the 12 months (422, nothing stored)."""
    admin = quick_login(client, app, roles=["admin"])
    member = quick_login(client, app, roles=["agent"], trained=False)
    response = _record(client, admin, member.staff_id, datetime.now(UTC))
    assert response.status_code == 403 and response.get_json()["code"] == "step_up_required"
    step_up(client, admin)
    response = _record(client, admin, member.staff_id, datetime.now(UTC) + timedelta(days=300))
    assert response.status_code == 422 and response.get_json()["code"] == "validation_failed"
    response = client.post(f"/api/v1/staff/{member.staff_id}/training", headers=admin,
                           json={**COURSE, "completed_at": "2026-01-01T00:00:00"})  # no zone
    assert response.status_code == 422
    assert client.get(f"/api/v1/staff/{member.staff_id}/training", headers=admin).get_json()["completions"] == []
    response = _record(client, admin, "00000000-0000-0000-0000-000000000000", datetime.now(UTC))
    assert response.status_code == 404
