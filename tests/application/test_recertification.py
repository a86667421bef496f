"""Access recertification (R6.2), on SQLite and again on PostgreSQL.

The campaign, its decisions, escalations and overdue alerts are events in the log:
a revoke and the account change it makes commit together; an overdue item raises
exactly one alert however many checks run; the next campaign starts a quarter later.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest

from application.policy import OPERATOR_ROLE
from application.recertification import OVERDUE_RULE, CampaignOpen, ItemNotYours
from application.security import Actor
from domain.alerts import Alert, alert_id
from domain.recertification import RecertificationCampaign
from tests.application.test_staff_admin import signed_in
from tests.web.helpers import MovableClock

OPERATOR_ACTOR = Actor(staff_id="operator:test", username="ops", roles=frozenset({OPERATOR_ROLE}),
                       portfolios=frozenset())


@pytest.fixture
def clock(components):
    moving = MovableClock(datetime(2026, 11, 30, 9, 0, 10, tzinfo=UTC))
    components.identity.clock = moving
    return moving


@pytest.mark.controls("PCI-DSS-7.2.4")
def test_a_revoke_commits_with_its_decision_and_an_overdue_item_alerts_once(components, clock):
    service = components.recertification
    supervisor, _ = signed_in(components, clock, ["supervisor"], ["retail"])
    agent, _ = signed_in(components, clock, ["agent"], ["retail", "corporate"])
    quiet, _ = signed_in(components, clock, ["agent"], ["retail"])
    campaign = service.start(OPERATOR_ACTOR)
    with pytest.raises(CampaignOpen):
        service.start(OPERATOR_ACTOR)
    with pytest.raises(ItemNotYours):  # nobody reviews their own access
        service.decide(supervisor, campaign["id"], supervisor.staff_id, decision="confirm")

    service.decide(supervisor, campaign["id"], agent.staff_id, decision="revoke", roles=[], portfolios=["corporate"])
    member = components.identity.staff(agent.staff_id)
    assert member.portfolios == ["retail"] and member.roles == ["agent"]
    stored = components.app.repository.get(UUID(campaign["id"]))
    assert isinstance(stored, RecertificationCampaign)
    assert stored.item(agent.staff_id)["revoked_portfolios"] == ["corporate"]

    clock.advance(days=14)
    assert service.check(OPERATOR_ACTOR)["escalated"] == 2  # quiet and the supervisor's own item
    clock.advance(days=7)
    assert service.check(OPERATOR_ACTOR)["alerted"] == 2
    assert service.check(OPERATOR_ACTOR)["alerted"] == 0
    alert = components.app.repository.get(alert_id(OVERDUE_RULE, f"{campaign['id']}:{quiet.staff_id}"))
    assert isinstance(alert, Alert) and alert.rule_id == OVERDUE_RULE

    # The operator may decide escalated items; once all are decided, a quarter on, the next starts.
    for staff_id in (quiet.staff_id, supervisor.staff_id):
        service.decide(OPERATOR_ACTOR, campaign["id"], staff_id, decision="confirm")
    assert service.check(OPERATOR_ACTOR)["started"] is None  # 21 days: not yet
    clock.advance(days=70)
    started = service.check(OPERATOR_ACTOR)["started"]
    assert started is not None and [c["id"] for c in service.list(OPERATOR_ACTOR)] == [campaign["id"], started]
