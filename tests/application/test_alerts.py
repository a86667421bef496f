"""Alerts for people (R3.6): the alerts table is written with each alert's events, in
both projection modes, rebuilt from the log, listed with filters and a cursor for
those holding `alerts:read`, and acknowledged with a note by security officers only;
every listing and every refusal is an access record.

Alerts are raised here as the monitor raises them: `Alert.raise_alert(...)` saved
through the application.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from application.alerts import AlertAlreadyAcknowledged, AlertFilter, AlertNotFound
from application.context import RequestContext, acting_as
from application.errors import ValidationFailed
from application.policy import AccessDenied
from application.security import Actor
from domain.alerts import Alert
from domain.audit import AccessRecord
from tests.application.conftest import make_components

ADDRESS = "203.0.113.77"  # the one personal datum an alert carries


def actor(role: str, staff_id: str | None = None) -> Actor:
    return Actor(staff_id=staff_id or f"staff-{role}", username=role, roles=frozenset({role}),
                 portfolios=frozenset())


def raise_alert(app, rule_id="search_burst", key="1", severity="high", actor_id="staff-agent-1",
                customer_ids=()):
    alert = Alert.raise_alert(rule_id=rule_id, key=key, severity=severity, summary=f"{rule_id} crossed",
                              actor_id=actor_id, client_addr=ADDRESS, customer_ids=customer_ids,
                              positions=[int(key)] if key.isdigit() else [])
    with acting_as(RequestContext(actor_id="monitor", via="worker")):
        app.save(alert)
    return alert


def access_records(app, since: int) -> list:
    events = [app.mapper.to_domain_event(n) for n in app.recorder.select_notifications(start=since + 1, limit=1000)]
    return [e for e in events if isinstance(e, AccessRecord.Event)]


def raw_alert_rows(components) -> list[tuple]:
    with components.events_db.transaction(write=False) as cur:
        cur.execute("SELECT id, rule_id, severity, status, raised_at, actor_id, version, position, record FROM alerts")
        return [tuple(row) for row in cur.fetchall()]


def test_a_saved_alert_is_in_the_table_with_its_events_and_no_plaintext_address(components):
    alert = raise_alert(components.app, customer_ids=["6f1c3c52-0000-4000-8000-000000000001"])
    stored = components.alert_table.get(str(alert.id))
    assert stored is not None and stored["rule_id"] == "search_burst" and stored["client_addr"] == ADDRESS
    rows = raw_alert_rows(components)
    assert len(rows) == 1 and rows[0][3] == "open" and rows[0][7] == components.app.recorder.max_notification_id()
    # The address is sealed with the record, never in clear (R3.6: no plaintext personal data).
    assert all(ADDRESS.encode() not in (bytes(v) if isinstance(v, (bytes, memoryview)) else str(v).encode())
               for v in rows[0])


def test_the_same_alert_raised_twice_is_stored_once_and_the_failed_save_leaves_the_row_alone(components):
    first = raise_alert(components.app, key="42")
    with pytest.raises(Exception):
        raise_alert(components.app, key="42", severity="critical")  # a second monitor racing
    rows = raw_alert_rows(components)
    assert [(r[0], r[2]) for r in rows] == [(str(first.id), "high")]


def test_the_table_is_written_with_the_events_in_worker_mode_with_no_worker_running(tmp_path, pg_url):
    built = make_components(tmp_path, pg_url, projection="worker")
    try:
        alert = raise_alert(built.app)
        assert built.alert_table.get(str(alert.id))["status"] == "open"
    finally:
        built.close()


def test_rebuilding_the_read_models_makes_the_alerts_table_again_with_acknowledgements(components):
    app, desk = components.app, components.alerts
    acked = raise_alert(app, key="1")
    raise_alert(app, key="2", severity="low")
    with acting_as(RequestContext(actor_id="staff-so", via="api")):
        desk.acknowledge(actor("security_officer", "staff-so"), str(acked.id), "looked at it: a test burst")
    before = sorted(raw_alert_rows(components))
    with components.events_db.transaction() as cur:
        cur.execute("DELETE FROM alerts")
    assert raw_alert_rows(components) == []
    components.operations.rebuild_read_models()
    after = sorted(raw_alert_rows(components))
    assert [r[:8] for r in after] == [r[:8] for r in before]
    assert components.alert_table.get(str(acked.id))["note"] == "looked at it: a test burst"


def test_a_security_officer_lists_with_filters_and_a_cursor_and_each_listing_is_recorded(components):
    app, desk = components.app, components.alerts
    for n in range(5):
        raise_alert(app, key=str(n + 1), severity="high" if n % 2 else "low", actor_id=f"staff-{n % 2}")
    raise_alert(app, rule_id="break_glass", key="9", severity="critical")
    officer = actor("security_officer")
    before = app.recorder.max_notification_id()
    page = desk.list_alerts(officer, AlertFilter(rule_id="search_burst"), limit=2)
    seen = [a["id"] for a in page.items]
    while page.next_cursor:
        page = desk.list_alerts(officer, AlertFilter(rule_id="search_burst"), limit=2, cursor=page.next_cursor)
        seen += [a["id"] for a in page.items]
    assert len(seen) == len(set(seen)) == 5
    raised = [components.alert_table.get(i)["raised_at"] for i in seen]
    assert raised == sorted(raised, reverse=True)  # newest first
    assert {a["severity"] for a in desk.list_alerts(officer, AlertFilter(severity="high")).items} == {"high"}
    assert [a["rule_id"] for a in desk.list_alerts(officer, AlertFilter(severity="critical")).items] == ["break_glass"]
    assert len(desk.list_alerts(officer, AlertFilter(actor="staff-1")).items) == 2
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    assert desk.list_alerts(officer, AlertFilter(since=future)).items == []
    assert len(desk.list_alerts(officer, AlertFilter(until=future)).items) == 6
    records = access_records(app, before)
    lists = [r for r in records if r.details.get("operation") == "alerts:list"]
    assert len(lists) == 3 + 5 and lists[0].kind == "audit_read" and lists[0].details["rule_id"] == "search_burst"


def test_bad_filters_and_cursors_are_refused_as_validation_errors(components):
    officer = actor("security_officer")
    with pytest.raises(ValidationFailed):
        components.alerts.list_alerts(officer, AlertFilter(), cursor="not-a-cursor")
    with pytest.raises(ValidationFailed):
        AlertFilter(status="closed")
    with pytest.raises(ValidationFailed):
        AlertFilter(since=datetime(2026, 1, 1))  # no zone
    with pytest.raises(AlertNotFound):
        components.alerts.get_alert(officer, "no-such-alert")


def test_an_agent_probing_alerts_is_refused_and_recorded(components):
    """Attack: an agent looks for the alerts their own burst raised, to learn what is watched."""
    app = components.app
    raise_alert(app)
    before = app.recorder.max_notification_id()
    with pytest.raises(AccessDenied):
        components.alerts.list_alerts(actor("agent"), AlertFilter())
    refusals = [r for r in access_records(app, before) if r.kind == "denied"]
    assert [(r.details["operation"], r.details["reason"]) for r in refusals] == [("alerts:list", "permission")]


def test_only_a_security_officer_acknowledges_and_only_once(components):
    """Attack: a compliance officer (who may read) closes an alert about a colleague."""
    app, desk = components.app, components.alerts
    alert = raise_alert(app)
    before = app.recorder.max_notification_id()
    with pytest.raises(AccessDenied):
        desk.acknowledge(actor("compliance_officer"), str(alert.id), "nothing to see")
    assert [r.details["operation"] for r in access_records(app, before) if r.kind == "denied"] == [
        "alerts:acknowledge"]
    assert desk.get_alert(actor("compliance_officer"), str(alert.id))["status"] == "open"

    with acting_as(RequestContext(actor_id="staff-so", via="api")):
        done = desk.acknowledge(actor("security_officer", "staff-so"), str(alert.id), "spoke to the agent")
        assert done["status"] == "acknowledged" and done["acknowledged_by"] == "staff-so"
        with pytest.raises(AlertAlreadyAcknowledged):
            desk.acknowledge(actor("security_officer", "staff-so"), str(alert.id), "second thoughts")
        with pytest.raises(ValidationFailed):
            desk.acknowledge(actor("security_officer", "staff-so"), str(raise_alert(app, key="7").id), " ")
    kept = components.alert_table.get(str(alert.id))
    assert kept["note"] == "spoke to the agent" and kept["status"] == "acknowledged"
    # The acknowledgement is an event on the alert, in the log (R3.1).
    assert app.repository.get(alert.id).note == "spoke to the agent"
