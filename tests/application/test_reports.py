"""Internal-audit reports (R6.1) on SQLite and again on PostgreSQL.

A report over a past window is the same tomorrow: rows after the window's end and
time passing change neither its rows nor its judgements (dormant, training current).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from application.identity import InvalidCredentials
from application.reports import REPORTS
from tests.application.test_recertification import OPERATOR_ACTOR
from tests.application.test_staff_admin import signed_in
from tests.web.helpers import MovableClock


@pytest.fixture
def clock(components):
    moving = MovableClock(datetime.now(UTC))
    components.identity.clock = moving
    return moving


def test_a_past_window_gives_the_same_reports_after_more_activity_and_time(components, clock):
    reports = components.reports
    member, _ = signed_in(components, clock, ["agent"], ["retail"])
    with pytest.raises(InvalidCredentials):
        components.identity.login(member.username, "not the password at all")
    time.sleep(0.05)
    until = datetime.now(UTC)
    time.sleep(0.05)
    before = {name: reports.report(None, name, until=until) for name in REPORTS}
    review = {r["staff_id"]: r for r in before["access-review"]["rows"]}[member.staff_id]
    assert review["last_login"] and review["dormant"] is False and review["training_current"] is False
    assert [r["staff_id"] for r in before["failed-logins"]["rows"]] == [member.staff_id]

    # Later: a training, another failure, another account, and months of silence.
    clock.advance(days=200)
    components.training.record(
        OPERATOR_ACTOR, member.staff_id,
        course="security-awareness", course_version="1", completed_at=datetime.now(UTC), evidence_ref="LMS-1")
    with pytest.raises(InvalidCredentials):
        components.identity.login(member.username, "still not the password")
    signed_in(components, clock, ["supervisor"], ["retail"])
    after = {name: reports.report(None, name, until=until) for name in REPORTS}
    assert after == before
    now = reports.report(None, "access-review")
    again = {r["staff_id"]: r for r in now["rows"]}[member.staff_id]
    assert again["training_current"] is True and len(now["rows"]) == len(before["access-review"]["rows"]) + 1
    # Judged at the window's end: 91 days on with no sign-in, the account is dormant and
    # the training taken today still current; 366 days on, lapsed.
    later = reports.report(None, "access-review", until=datetime.now(UTC) + timedelta(days=91))
    judged = {r["staff_id"]: r for r in later["rows"]}[member.staff_id]
    assert judged["dormant"] is True and judged["training_current"] is True
    year = reports.report(None, "access-review", until=datetime.now(UTC) + timedelta(days=366))
    assert {r["staff_id"]: r for r in year["rows"]}[member.staff_id]["training_current"] is False
