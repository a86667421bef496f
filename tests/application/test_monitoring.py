"""The monitor over the wired application (R3.6, R2.8, R7.4), on SQLite and again on PostgreSQL.

Each story plays an attack through the real use cases, lets the monitor read the log,
and looks at what it stored: the alert (once), and the response applied to the
attacker's sessions or account. Business hours cover the whole week here except in
the one story about them, so the clock of the machine running the tests cannot raise
`off_hours` alerts of its own.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from application.context import RequestContext, acting_as
from application.errors import CustomerNotFound
from application.identity import InvalidCredentials, NotAuthenticated
from application.monitoring import MONITOR_ACTOR
from application.policy import OPERATOR_ROLE
from application.restore import RecoveryRecords
from application.security import Actor
from application.throttle import RateLimited
from domain.alerts import Alert, alert_id
from infrastructure.monitor import build_monitor
from tests.application.conftest import (
    OPERATOR,
    customer_fields,
    make_components,
    stepped_up,
)
from tests.application.test_identity import enrol, new_account
from tests.web.helpers import MovableClock

ALL_WEEK = {"monitor_business_hours": "00:00-23:59:59", "monitor_business_days": "mon,tue,wed,thu,fri,sat,sun"}


@pytest.fixture
def watched(tmp_path, database_url):
    built = make_components(tmp_path, database_url, **ALL_WEEK)
    built.identity.clock = MovableClock(datetime(2026, 11, 30, 9, 0, 10, tzinfo=UTC))
    with acting_as(OPERATOR):
        yield built
    built.close()


def stored_alerts(app, rule_id=None):
    """Every alert in the log (its Raised event), with the metadata it was stored under."""
    found = []
    for notification in app.recorder.select_notifications(start=1, limit=1_000_000):
        if not notification.topic.endswith("Alert.Raised"):
            continue
        alert = app.repository.get(notification.originator_id)
        if rule_id is None or alert.rule_id == rule_id:
            found.append((alert, app.mapper.metadata(notification)))
    return found


def trained(built, staff_id):
    """A current security training (R6.4): without one a member of staff may not search
    by a field only revealers may search by, and the attacks below need to."""
    operator = Actor(staff_id=OPERATOR.actor_id, username="tests", roles=frozenset({OPERATOR_ROLE}),
                     portfolios=frozenset())
    built.training.record(operator, staff_id, course="security-awareness", course_version="2026.1",
                          completed_at=built.identity.now(), evidence_ref="LMS-TEST-0001")


def signed_in(built, roles=("agent",), portfolios=("retail",), addr="192.0.2.10"):
    created = new_account(built, roles=roles, portfolios=portfolios)
    trained(built, created.staff_id)
    with acting_as(RequestContext(actor_id="unauthenticated", via="api", client_addr=addr)):
        opened, totp = enrol(built.identity, created, built.identity.clock)
    return created, opened, totp


def as_client(addr, actor_id="unauthenticated", session_id=None):
    return acting_as(RequestContext(actor_id=actor_id, via="api", client_addr=addr, session_id=session_id))


@pytest.mark.controls("PCI-DSS-10.4.1.1")
def test_a_search_oracle_raises_one_critical_alert_and_ends_the_probers_sessions(watched):
    # The attack of issue 12: guessing a value (here an email address) by exact-match
    # searches that find nothing, one at a time.
    created, opened, _ = signed_in(watched)
    actor = watched.identity.authenticate(opened.token).actor
    with as_client("192.0.2.10", actor.staff_id, actor.session_id):
        for guess in range(12):
            watched.customers.search(actor, field="email", value=f"guess{guess}@example.org")
    monitor = build_monitor(watched)
    monitor.catch_up()
    found = stored_alerts(watched.app, "searches_empty")
    assert len(found) == 1
    alert, metadata = found[0]
    assert alert.severity == "critical" and alert.actor_id == created.staff_id
    assert len(alert.positions) == 10
    assert alert.applied == {"end_sessions": "every live session ended"}
    assert metadata["actor_id"] == MONITOR_ACTOR  # the monitor signs what it writes (R3.1)
    with pytest.raises(NotAuthenticated):
        watched.identity.authenticate(opened.token)
    # Read again from the start (a second monitor, a restart): nothing stored twice.
    build_monitor(watched).catch_up()
    assert len(stored_alerts(watched.app, "searches_empty")) == 1


@pytest.mark.controls("PCI-DSS-10.4.1.1")
def test_a_password_spray_from_one_address_raises_one_alert_per_burst(watched):
    names = [new_account(watched).username for _ in range(3)]
    with as_client("203.0.113.66"):
        for attempt in range(10):
            # Past five failures the address is throttled (429, R2.11): each refusal
            # is a failed login in the log all the same.
            with pytest.raises((InvalidCredentials, RateLimited)):
                watched.identity.login(names[attempt % 3], "Winter2026!Winter2026!")
    build_monitor(watched).catch_up()
    spray = stored_alerts(watched.app, "login_failures_address")
    assert [a.client_addr for a, _ in spray] == ["203.0.113.66"]
    assert spray[0][0].details["count"] == "10"
    assert stored_alerts(watched.app, "login_failures_account") == []  # three accounts, under five each


@pytest.mark.controls("PCI-DSS-10.4.1.1")
def test_break_glass_raises_an_alert_and_so_does_every_access_under_it(watched):
    _, opened, totp = signed_in(watched, roles=("supervisor",), portfolios=("retail",))
    with acting_as(OPERATOR):
        other = watched.app.register_customer(customer_fields(portfolio="private"))
    actor = stepped_up(watched.identity, opened.token, totp, watched.identity.clock)
    with as_client("192.0.2.10", actor.staff_id, actor.session_id):
        watched.staff_admin.start_break_glass(actor, portfolio="private", reason="incident 42", minutes=15)
        actor = watched.identity.authenticate(opened.token).actor
        watched.customers.read(actor, str(other["id"]))
    build_monitor(watched).catch_up()
    [(opened_alert, _)] = stored_alerts(watched.app, "break_glass_opened")
    assert opened_alert.severity == "critical" and opened_alert.details["portfolio"] == "private"
    [(access, _)] = stored_alerts(watched.app, "break_glass_access")
    assert access.customer_ids == [str(other["id"])]


@pytest.mark.controls("PCI-DSS-10.4.1.1")
def test_a_role_change_raises_a_privilege_alert(watched):
    created = new_account(watched, roles=("agent", "supervisor"))
    member = watched.identity.staff(created.staff_id)
    member.change_roles(revoke=["supervisor"])
    with acting_as(OPERATOR):
        watched.app._save(member)
    build_monitor(watched).catch_up()
    [(alert, _)] = stored_alerts(watched.app, "privilege_change")
    assert alert.details == {"staff_id": created.staff_id, "revoked": "supervisor"}
    assert alert.summary == "roles changed: revoked supervisor"


def test_a_new_address_and_two_addresses_at_once_are_noticed(watched):
    created, opened, totp = signed_in(watched, addr="192.0.2.10")
    first = watched.identity.authenticate(opened.token).actor
    with as_client("192.0.2.10", first.staff_id, first.session_id):
        watched.customers.search(first, portfolio="retail")
    # The same person (or a thief with the password and the second factor) from elsewhere.
    watched.identity.clock.advance(seconds=30)
    with as_client("198.51.100.7"):
        started = watched.identity.login(created.username, created.one_time_password)
        second = watched.identity.complete_mfa(started.challenge, totp.at(watched.identity.clock.now))
    build_monitor(watched).catch_up()
    [(new, _)] = stored_alerts(watched.app, "new_address")
    assert new.client_addr == "198.51.100.7" and new.actor_id == created.staff_id
    [(both, _)] = stored_alerts(watched.app, "concurrent_addresses")
    assert both.applied == {"step_up": "step-up lapsed on every live session"}
    assert second.session_id


@pytest.mark.controls("PCI-DSS-10.4.1.1")
def test_a_monitor_killed_mid_burst_resumes_and_raises_the_alert_once(watched):
    _, opened, _ = signed_in(watched)
    actor = watched.identity.authenticate(opened.token).actor
    first = build_monitor(watched)
    with as_client("192.0.2.10", actor.staff_id, actor.session_id):
        for guess in range(6):
            watched.customers.search(actor, field="email", value=f"guess{guess}@example.org")
        first.catch_up()  # six seen and tracked; then the monitor is gone
        for guess in range(6, 14):
            watched.customers.search(actor, field="email", value=f"other{guess}@example.org")
    second = build_monitor(watched)
    second.catch_up()  # rebuilds the window from the six before its position
    assert len(stored_alerts(watched.app, "searches_empty")) == 1
    build_monitor(watched).catch_up()
    assert len(stored_alerts(watched.app, "searches_empty")) == 1


def test_a_rule_set_to_lock_locks_the_account_until_a_security_officer_unlocks_it(tmp_path, database_url):
    rules = '{"out_of_scope": {"threshold": 3, "responses": ["alert", "lock_account"]}}'
    built = make_components(tmp_path, database_url, monitor_rules=rules, **ALL_WEEK)
    built.identity.clock = MovableClock(datetime(2026, 11, 30, 9, 0, 10, tzinfo=UTC))
    try:
        with acting_as(OPERATOR):
            elsewhere = built.app.register_customer(customer_fields(portfolio="private"))
            created, opened, _ = signed_in(built)
            actor = built.identity.authenticate(opened.token).actor
            with as_client("192.0.2.10", actor.staff_id, actor.session_id):
                for _ in range(3):
                    with pytest.raises(CustomerNotFound):
                        built.customers.read(actor, str(elsewhere["id"]))
            build_monitor(built).catch_up()
            [(alert, _)] = stored_alerts(built.app, "out_of_scope")
            assert "lock_account" in alert.applied
            assert built.identity.throttle.locked_until(created.staff_id, built.identity.now()) is not None
            with pytest.raises(NotAuthenticated):
                built.identity.authenticate(opened.token)
    finally:
        built.close()


@pytest.mark.controls("PCI-DSS-10.4.1.1", "PCI-DSS-10.7.2")
def test_failed_drills_and_overdue_backups_raise_alerts(watched):
    with acting_as(OPERATOR):
        RecoveryRecords(watched.app).record_backup("local", "b-1", 5)
        RecoveryRecords(watched.app).record_drill(target="local", backup_id="b-1", position=5, rpo_seconds=1,
                                                  rto_seconds=2, outcome="failed", failures=["verify"])
    monitor = build_monitor(watched)
    monitor.catch_up()
    assert len(stored_alerts(watched.app, "drill_failed")) == 1
    assert stored_alerts(watched.app, "backup_overdue") == []
    monitor.clock = lambda: datetime.now(UTC) + timedelta(hours=27)
    monitor._next_overdue = 0
    monitor.catch_up()
    monitor._next_overdue = 0
    monitor.catch_up()  # the same missed period: still one alert
    [(overdue, _)] = stored_alerts(watched.app, "backup_overdue")
    assert overdue.summary.startswith("no complete backup for 27 h")


@pytest.mark.controls("PCI-DSS-10.4.1.1", "PCI-DSS-10.7.2")
def test_a_failed_chain_verification_is_recorded_and_alerted(watched):
    with acting_as(OPERATOR):
        watched.audit_trail.record_verification(intact=False, problems=3)
    build_monitor(watched).catch_up()
    [(alert, _)] = stored_alerts(watched.app, "chain_verification_failed")
    assert alert.severity == "critical" and alert.details == {"problems": "3"}


def test_access_outside_business_hours_raises_one_alert_per_person_per_day(tmp_path, database_url):
    today = datetime.now(UTC)
    # Business hours on a day that is not today: everything now is outside them.
    other_day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[(today.weekday() + 3) % 7]
    built = make_components(tmp_path, database_url, monitor_business_days=other_day)
    built.identity.clock = MovableClock(datetime(2026, 11, 30, 9, 0, 10, tzinfo=UTC))
    try:
        with acting_as(OPERATOR):
            created, opened, _ = signed_in(built)
            actor = built.identity.authenticate(opened.token).actor
            with as_client("192.0.2.10", actor.staff_id, actor.session_id):
                for _ in range(3):
                    built.customers.search(actor, portfolio="retail")
            build_monitor(built).catch_up()
            found = stored_alerts(built.app, "off_hours")
            assert [a.actor_id for a, _ in found] == [created.staff_id]
            assert found[0][0].id == alert_id("off_hours", f"actor:{created.staff_id}@{today.date().isoformat()}")
    finally:
        built.close()


def test_alerts_are_aggregates_in_the_chained_log(watched):
    # The alert is an event like any other: it decrypts through the mapper and verifies.
    with as_client("203.0.113.9"):
        for _ in range(10):
            with pytest.raises((InvalidCredentials, RateLimited)):
                watched.identity.login(f"nobody-{uuid.uuid4().hex[:6]}", "wrong password entirely")
    build_monitor(watched).catch_up()
    [(alert, _)] = stored_alerts(watched.app, "login_failures_address")
    assert isinstance(alert, Alert)
    assert watched.tamper_evidence.verify().as_json()["intact"] is True
