"""Alerts counted in /metrics (R3.6, R7.2): by rule id, severity and status, from the
alerts table when scraped; no staff id, address or customer id in any label; the
count follows an acknowledgement; the label set is bounded."""

from __future__ import annotations

import re
from typing import Any

import pytest

from application.context import RequestContext, acting_as
from domain.alerts import Alert
from tests.web.helpers import components, quick_login
from web import metrics

CUSTOMER = "6f1c3c52-0000-4000-8000-00000000c0de"


@pytest.fixture
def app(app_factory: Any, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(metrics, "ALERT_COUNTS_TTL", 0.0)
    return app_factory(database_url=database_url, checkpoint_seconds=3600)


def raise_alert(app: Any, rule_id: str, key: str, severity: str = "high") -> str:
    alert = Alert.raise_alert(rule_id=rule_id, key=key, severity=severity, summary="seen",
                              actor_id="staff-watched-1", client_addr="198.51.100.23", customer_ids=[CUSTOMER])
    with acting_as(RequestContext(actor_id="monitor", via="worker")):
        components(app).app.save(alert)
    return str(alert.id)


def series(text: str, name: str) -> dict[tuple[str, ...], float]:
    found = {}
    for line in text.splitlines():
        match = re.fullmatch(rf'{name}\{{(.*)\}} ([0-9.e+]+)', line)
        if match:
            found[tuple(sorted(match.group(1).split(",")))] = float(match.group(2))
    return found


def test_alerts_are_counted_by_rule_severity_and_status(client: Any, app: Any) -> None:
    first = raise_alert(app, "search_oracle", "1")
    raise_alert(app, "search_oracle", "2")
    raise_alert(app, "break_glass", "3", severity="critical")
    text = client.get("/metrics").get_data(as_text=True)
    counts = series(text, "strongroom_alerts")
    assert counts == {
        ('rule_id="search_oracle"', 'severity="high"', 'status="open"'): 2.0,
        ('rule_id="break_glass"', 'severity="critical"', 'status="open"'): 1.0,
    }
    for personal in ("198.51.100.23", "staff-watched-1", CUSTOMER):
        assert personal not in text

    officer = quick_login(client, app, roles=["security_officer"], portfolios=[])
    assert client.post(f"/api/v1/alerts/{first}/ack", json={"note": "seen"}, headers=officer).status_code == 200
    after = series(client.get("/metrics").get_data(as_text=True), "strongroom_alerts")
    assert after[('rule_id="search_oracle"', 'severity="high"', 'status="open"')] == 1.0
    assert after[('rule_id="search_oracle"', 'severity="high"', 'status="acknowledged"')] == 1.0
    assert series(text, "strongroom_webhook_deliveries")[('status="dead"',)] == 0.0


def test_the_label_set_is_bounded(client: Any, app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack: alerts of ever new rule ids grow the scrape without bound."""
    monkeypatch.setattr(metrics, "ALERT_SERIES_MAX", 3)
    for n in range(6):
        raise_alert(app, f"rule_{n}", str(n))
    counts = series(client.get("/metrics").get_data(as_text=True), "strongroom_alerts")
    assert len(counts) == 4 and counts[('rule_id="<other>"', 'severity="high"', 'status="open"')] == 3.0
