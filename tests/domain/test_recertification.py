"""The recertification campaign's own rules (R6.2), on the aggregate itself."""

from __future__ import annotations

import pytest

from domain.errors import InvalidField
from domain.recertification import (
    SCHEDULE_ID,
    RecertificationCampaign,
    RecertificationSchedule,
)

ITEM = {"staff_id": "s-1", "username": "ann", "roles": ["agent"], "portfolios": ["retail"], "reviewers": ["s-2"]}


def campaign() -> RecertificationCampaign:
    return RecertificationCampaign.start(started_at="2026-12-01T00:00:00+00:00", due_at="2026-12-15T00:00:00+00:00",
                                         escalate_until="2026-12-22T00:00:00+00:00", started_by="s-9", items=[ITEM])


def test_a_decision_is_final_and_a_revoke_names_only_what_is_under_review():
    c = campaign()
    with pytest.raises(InvalidField):
        c.decide(staff_id="s-1", decision="revoked", decided_by="s-2", decided_at="t", revoked_roles=["admin"],
                 revoked_portfolios=[])
    with pytest.raises(InvalidField):
        c.decide(staff_id="s-1", decision="revoked", decided_by="s-2", decided_at="t", revoked_roles=[],
                 revoked_portfolios=[])
    c.decide(staff_id="s-1", decision="revoked", decided_by="s-2", decided_at="t", revoked_roles=["agent"],
             revoked_portfolios=[])
    assert c.complete and c.item("s-1")["state"] == "revoked"
    with pytest.raises(InvalidField):
        c.decide(staff_id="s-1", decision="confirmed", decided_by="s-2", decided_at="t", revoked_roles=[],
                 revoked_portfolios=[])


def test_escalation_touches_only_pending_items_and_one_item_per_member():
    c = campaign()
    c.escalate(staff_ids=["s-1"], escalated_at="t")
    assert c.item("s-1")["state"] == "escalated" and not c.complete
    with pytest.raises(InvalidField):
        RecertificationCampaign.start(started_at="a", due_at="b", escalate_until="c", started_by="d",
                                      items=[ITEM, ITEM])
    assert RecertificationSchedule.create().id == SCHEDULE_ID
