"""Who may read the audit trail (R2.5, R3.5), on SQLite and again on PostgreSQL.

The trail is open to auditors and compliance officers only; everyone else is
refused by the one policy, and the refusal is itself an access record (PCI DSS
10.2.1.2), like a refused look at a customer.
"""

from __future__ import annotations

import uuid

import pytest

from application.audit_trail import AuditFilter, AuditTrailDenied
from application.context import RequestContext, acting_as
from application.security import Actor
from domain.audit import AccessRecord
from tests.application.conftest import customer_fields


def actor(*roles):
    return Actor(staff_id=str(uuid.uuid4()), username=f"user-{roles[0]}", roles=frozenset(roles),
                 portfolios=frozenset({"retail"}), session_id=str(uuid.uuid4()))


def access_records_since(app, position):
    found = []
    for notification in app.recorder.select_notifications(start=position + 1, limit=100_000):
        event = app.mapper.to_domain_event(notification)
        if isinstance(event, AccessRecord.Event):
            found.append((event.kind, event.outcome, dict(event.details),
                          app.mapper.metadata(notification)["actor_id"]))
    return found


@pytest.mark.parametrize(("role", "reason"), [("agent", "permission"), ("security_officer", "role")])
def test_a_refused_look_at_the_trail_is_recorded(components, app, role, reason):
    """Attack: an insider without audit rights reads the trail to learn who looked at
    which customers (whose account is under investigation), or to see whether their own
    snooping was noticed. A security officer holds `audit:read` for alerts and reports,
    yet the trail itself stays closed to them. Each refusal is recorded under the
    caller's name and returns nothing."""
    trail = components.audit_trail
    curious = actor(role)
    before = app.recorder.max_notification_id() or 0
    with acting_as(RequestContext(actor_id=curious.staff_id, via="api", session_id=curious.session_id)):
        with pytest.raises(AuditTrailDenied):
            trail.events(curious, AuditFilter())
        with pytest.raises(AuditTrailDenied):
            trail.verify(curious)
    assert access_records_since(app, before) == [
        ("denied", "denied", {"operation": "audit:events", "reason": reason}, curious.staff_id),
        ("denied", "denied", {"operation": "audit:verify", "reason": reason}, curious.staff_id),
    ]


def test_an_auditor_reads_the_trail_and_the_read_is_recorded(components, app):
    customer = app.register_customer(customer_fields())
    auditor = actor("auditor")
    before = app.recorder.max_notification_id() or 0
    with acting_as(RequestContext(actor_id=auditor.staff_id, via="api")):
        page = components.audit_trail.events(auditor, AuditFilter(customer=customer["id"]))
        assert components.audit_trail.verify(auditor)["intact"] is True
    assert [(e.kind, e.event) for e in page.items] == [("change", "Customer.Registered")]
    kinds = [(kind, details["operation"]) for kind, _, details, _ in access_records_since(app, before)]
    assert kinds == [("audit_read", "audit:events"), ("audit_read", "audit:verify")]
