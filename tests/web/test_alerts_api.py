"""Alerts through the API, as a security officer works them (R3.6).

Alerts are raised as the monitor raises them (`Alert.raise_alert` saved through the
application); a security officer lists them with filters and a cursor, reads one,
acknowledges it with a note, once; a compliance officer reads but cannot acknowledge;
an agent is refused; each listing and refusal is in the audit trail; bad input is a
4xx in the one error shape, never a 500.
"""

from __future__ import annotations

from typing import Any

import pytest

from application.context import RequestContext, acting_as
from domain.alerts import Alert
from tests.web.customers_support import access_records_since, position
from tests.web.helpers import components, quick_login

ALERTS = "/api/v1/alerts"


@pytest.fixture
def app(app_factory: Any, database_url: str) -> Any:
    return app_factory(database_url=database_url, checkpoint_seconds=3600)


def raise_alert(app: Any, key: str, *, rule_id: str = "search_oracle", severity: str = "high") -> str:
    alert = Alert.raise_alert(rule_id=rule_id, key=key, severity=severity, summary="searches that found nothing",
                              actor_id="staff-prober", client_addr="198.51.100.9", positions=[int(key)])
    with acting_as(RequestContext(actor_id="monitor", via="worker")):
        components(app).app.save(alert)
    return str(alert.id)


def test_a_security_officer_lists_reads_and_acknowledges_once(client: Any, app: Any) -> None:
    ids = [raise_alert(app, str(n)) for n in range(1, 4)]
    raise_alert(app, "9", rule_id="break_glass", severity="critical")
    officer = quick_login(client, app, roles=["security_officer"], portfolios=[])
    before = position(app)

    first = client.get(ALERTS, query_string={"rule_id": "search_oracle", "limit": 2}, headers=officer)
    assert first.status_code == 200, first.get_json()
    page = first.get_json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = client.get(ALERTS, query_string={"rule_id": "search_oracle", "limit": 2, "cursor": page["next_cursor"]},
                      headers=officer).get_json()
    assert rest["next_cursor"] is None
    assert sorted(a["id"] for a in page["items"] + rest["items"]) == sorted(ids)
    critical = client.get(ALERTS, query_string={"severity": "critical"}, headers=officer).get_json()["items"]
    assert [a["rule_id"] for a in critical] == ["break_glass"]

    one = client.get(f"{ALERTS}/{ids[0]}", headers=officer)
    assert one.status_code == 200 and one.get_json()["status"] == "open"
    acked = client.post(f"{ALERTS}/{ids[0]}/ack", json={"note": "prober's sessions ended"}, headers=officer)
    assert acked.status_code == 200, acked.get_json()
    assert acked.get_json()["acknowledged_by"] == officer.staff_id and acked.get_json()["status"] == "acknowledged"
    again = client.post(f"{ALERTS}/{ids[0]}/ack", json={"note": "overwrite the note"}, headers=officer)
    assert again.status_code == 409 and again.get_json()["code"] == "already_acknowledged"
    still = client.get(ALERTS, query_string={"status": "acknowledged"}, headers=officer).get_json()["items"]
    assert [(a["id"], a["note"]) for a in still] == [(ids[0], "prober's sessions ended")]

    listings = [r for r in access_records_since(app, before) if r.details.get("operation") == "alerts:list"]
    assert len(listings) == 4 and all(r.kind == "audit_read" for r in listings)


def test_a_compliance_officer_reads_but_does_not_acknowledge(client: Any, app: Any) -> None:
    """Attack: a reviewer closes an alert about a colleague before the security officer sees it."""
    alert_id = raise_alert(app, "5")
    reviewer = quick_login(client, app, roles=["compliance_officer"], portfolios=[])
    assert client.get(ALERTS, headers=reviewer).status_code == 200
    before = position(app)
    refused = client.post(f"{ALERTS}/{alert_id}/ack", json={"note": "fine"}, headers=reviewer)
    assert refused.status_code == 403 and refused.get_json()["code"] == "forbidden"
    assert [(r.kind, r.details["operation"]) for r in access_records_since(app, before)] == [
        ("denied", "alerts:acknowledge")]


@pytest.mark.parametrize("role", ["agent", "supervisor", "auditor", "admin", "dpo"])
def test_other_roles_are_refused_and_each_refusal_is_recorded(client: Any, app: Any, role: str) -> None:
    """Attack: the staff member an alert is about looks up what the monitor saw."""
    alert_id = raise_alert(app, "6")
    headers = quick_login(client, app, roles=[role], portfolios=["retail"] if role in ("agent", "supervisor") else [])
    before = position(app)
    for response in (client.get(ALERTS, headers=headers), client.get(f"{ALERTS}/{alert_id}", headers=headers),
                     client.post(f"{ALERTS}/{alert_id}/ack", json={"note": "x"}, headers=headers)):
        assert response.status_code == 403, response.get_json()
        assert "summary" not in response.get_data(as_text=True)
    assert [r.details["operation"] for r in access_records_since(app, before) if r.kind == "denied"] == [
        "alerts:list", "alerts:get", "alerts:acknowledge"]


def test_bad_input_answers_in_the_error_shape(client: Any, app: Any) -> None:
    alert_id = raise_alert(app, "7")
    officer = quick_login(client, app, roles=["security_officer"], portfolios=[])
    cases = [
        (client.get(ALERTS, query_string={"status": "closed"}, headers=officer), 422),
        (client.get(ALERTS, query_string={"since": "2026-01-01T00:00:00"}, headers=officer), 422),
        (client.get(ALERTS, query_string={"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
                    headers=officer), 422),
        (client.get(ALERTS, query_string={"cursor": "garbage"}, headers=officer), 422),
        (client.get(ALERTS, query_string={"limit": 0}, headers=officer), 422),
        (client.get(ALERTS, query_string={"colour": "red"}, headers=officer), 422),
        (client.get(f"{ALERTS}/not-an-id", headers=officer), 404),
        (client.get(f"{ALERTS}/00000000-0000-4000-8000-000000000000", headers=officer), 404),
        (client.post(f"{ALERTS}/00000000-0000-4000-8000-000000000000/ack", json={"note": "n"}, headers=officer), 404),
        (client.post(f"{ALERTS}/{alert_id}/ack", json={}, headers=officer), 422),
        (client.post(f"{ALERTS}/{alert_id}/ack", json={"note": "card 4111111111111111"}, headers=officer), 422),
        (client.post(f"{ALERTS}/{alert_id}/ack", json={"note": "n" * 1001}, headers=officer), 422),
        (client.post(f"{ALERTS}/{alert_id}/ack", json={"note": "ok", "status": "open"}, headers=officer), 422),
        (client.get(ALERTS), 401),
    ]
    for response, status in cases:
        body = response.get_json()
        assert response.status_code == status, body
        assert body["status"] == status and body["code"] and body["message"]
    assert client.get(f"{ALERTS}/{alert_id}", headers=officer).get_json()["status"] == "open"
