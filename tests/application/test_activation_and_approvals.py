"""Activation out of band and the life of a four-eyes request (R2.9), on SQLite and
again on PostgreSQL, with a real SMTP server on loopback.

Credentials never pass through another person: the code goes to the person's work
address, is kept only as a keyed hash, works once and expires. Requests can be
rejected with a reason and lapse after 72 hours; each decision is an access record
committed with the request's new status.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pyotp
import pytest

from application.activation import ActivationUnavailable
from application.context import acting_as
from application.identity import InvalidCredentials, WeakPassword
from application.policy import reads_customer_data, role_treatments
from application.security import ROLE_PERMISSIONS, Permission
from application.staff_admin import (
    ApprovalAlreadyDecided,
    ApprovalExpired,
    PendingApproval,
    SelfApproval,
    SelfRoleChange,
)
from domain.audit import AccessRecord
from domain.staff import StaffMember
from tests.application.conftest import OPERATOR, make_components
# The same built application and movable clock as the staff-administration tests.
from tests.application.test_staff_admin import clock, components, signed_in  # noqa: F401 - fixtures
from tests.smtp import unreachable_smtp
from tests.web.helpers import MovableClock

PASSWORD = "plum-coloured tractor honks at dawn"


def invite(components, requester, approver, username, roles=("agent",)):
    email = f"{username}@bank.example"
    pending = components.staff_admin.create_staff(requester, username=username, display_name=username.title(),
                                                  roles=list(roles), portfolios=["retail"], email=email)
    assert isinstance(pending, PendingApproval)
    components.staff_admin.approve(approver, pending.approval_id)
    return email


def decisions(app):
    found = []
    for notification in app.recorder.select_notifications(start=1, limit=100_000):
        event = app.mapper.to_domain_event(notification)
        if isinstance(event, AccessRecord.Event) and event.kind == "approval" and event.details["decision"] != "requested":
            found.append((event.details["approval_id"], event.details["decision"],
                          app.mapper.metadata(notification)["purpose"]))
    return found


# -- activation ---------------------------------------------------------------------------------------


def test_an_activation_code_works_once_for_its_person_only(components, clock, smtp):
    admin, _ = signed_in(components, clock, ["admin"])
    officer, _ = signed_in(components, clock, ["security_officer"])
    email = invite(components, admin, officer, "nadia")
    code = smtp.code_for(email)
    activation = components.activation
    with pytest.raises(InvalidCredentials):  # a wrong code
        activation.activate("nadia", code[:-1] + ("0" if code[-1] != "0" else "1"), PASSWORD)
    with pytest.raises(InvalidCredentials):  # the right code for another name
        activation.activate(admin.username, code, PASSWORD)
    with pytest.raises(WeakPassword):  # refused before the code is spent
        activation.activate("nadia", code, "password")
    started = activation.activate("nadia", code.upper().replace("-", " "), PASSWORD)
    assert started.status == "mfa_enrollment_required"
    with pytest.raises(InvalidCredentials):  # spent
        activation.activate("nadia", code, "another fine long passphrase")
    totp = pyotp.TOTP(pyotp.parse_uri(started.totp_uri).secret)
    opened = components.identity.complete_mfa(started.challenge, totp.at(clock.now))
    assert components.identity.authenticate(opened.token).actor.username == "nadia"
    assert components.identity.login("nadia", PASSWORD).status == "mfa_required"


def test_an_activation_code_expires_and_a_resent_one_replaces_it(components, clock, smtp):
    admin, _ = signed_in(components, clock, ["admin"])
    officer, _ = signed_in(components, clock, ["security_officer"])
    email = invite(components, admin, officer, "oscar")
    old = smtp.code_for(email)
    clock.advance(hours=24, seconds=1)
    with pytest.raises(InvalidCredentials):
        components.activation.activate("oscar", old, PASSWORD)
    staff_id = components.identity.directory.staff_id_for("oscar")
    assert components.staff_admin.resend_activation(admin, staff_id)["activation"] == "sent"
    assert len(smtp.to(email)) == 2
    new = smtp.code_for(email)
    assert new != old
    with pytest.raises(InvalidCredentials):
        components.activation.activate("oscar", old, PASSWORD)
    assert components.activation.activate("oscar", new, PASSWORD).challenge


@pytest.mark.controls("PCI-DSS-8.3.2")
def test_the_code_is_kept_only_as_a_keyed_hash(components, clock, smtp):
    admin, _ = signed_in(components, clock, ["admin"])
    officer, _ = signed_in(components, clock, ["security_officer"])
    code = smtp.code_for(invite(components, admin, officer, "petra"))
    with components.events_db.transaction(write=False) as cur:
        cur.execute("SELECT code_hash FROM auth_activations")
        [(stored,)] = cur.fetchall()
    plain = code.replace("-", "")
    assert plain not in stored and stored not in (hashlib.sha256(plain.encode()).hexdigest(),
                                                 hashlib.sha256(code.encode()).hexdigest())


def test_an_unreachable_mail_relay_creates_nothing_and_the_request_stays_open(tmp_path, database_url):
    components = make_components(tmp_path, database_url, **unreachable_smtp())
    try:
        with acting_as(OPERATOR):
            components.identity.clock = MovableClock(datetime(2026, 11, 30, 9, 0, 10, tzinfo=UTC))
            clock = components.identity.clock
            admin, _ = signed_in(components, clock, ["admin"])
            officer, _ = signed_in(components, clock, ["security_officer"])
            before = components.app.recorder.max_notification_id()
            pending = components.staff_admin.create_staff(admin, username="quentin", display_name="Quentin",
                                                          roles=["agent"], email="quentin@bank.example")
            with pytest.raises(ActivationUnavailable):
                components.staff_admin.approve(officer, pending.approval_id)
            assert components.identity.directory.staff_id_for("quentin") is None
            [still] = components.staff_admin.pending_approvals(officer)
            assert still["id"] == pending.approval_id and still["status"] == "pending"
            written = components.app.recorder.select_notifications(start=before + 1, limit=100)
            assert not any(isinstance(components.app.mapper.to_domain_event(n), StaffMember.Enrolled)
                           for n in written)
    finally:
        components.close()


# -- the life of a request ----------------------------------------------------------------------------


def test_a_rejected_request_can_never_be_approved_and_the_rejection_is_recorded(components, clock, app):
    admin, _ = signed_in(components, clock, ["admin"])
    other, _ = signed_in(components, clock, ["admin"])
    agent, _ = signed_in(components, clock, ["agent"], ["retail"])
    pending = components.staff_admin.change_roles(admin, agent.staff_id, grant=["supervisor"])
    rejected = components.staff_admin.reject(other, pending.approval_id, reason="no ticket HR-12 for this")
    assert rejected["status"] == "rejected" and rejected["decided_by"] == other.staff_id
    with pytest.raises(ApprovalAlreadyDecided):
        components.staff_admin.approve(other, pending.approval_id)
    with pytest.raises(ApprovalAlreadyDecided):
        components.staff_admin.reject(other, pending.approval_id, reason="again")
    assert components.identity.staff(agent.staff_id).roles == ["agent"]
    assert decisions(app) == [(pending.approval_id, "rejected", "rejected: no ticket HR-12 for this")]
    assert components.staff_admin.pending_approvals(other) == []


def test_a_request_lapses_after_72_hours(components, clock, app):
    admin, _ = signed_in(components, clock, ["admin"])
    other, _ = signed_in(components, clock, ["admin"])
    agent, _ = signed_in(components, clock, ["agent"], ["retail"])
    pending = components.staff_admin.change_roles(admin, agent.staff_id, grant=["supervisor"])
    clock.advance(hours=71, minutes=59)
    assert [a["id"] for a in components.staff_admin.pending_approvals(other)] == [pending.approval_id]
    clock.advance(minutes=2)
    assert components.staff_admin.pending_approvals(other) == []
    other, _ = signed_in(components, clock, ["admin"])  # a deciding approver has stepped up just now
    with pytest.raises(ApprovalExpired):
        components.staff_admin.approve(other, pending.approval_id)
    with pytest.raises(ApprovalAlreadyDecided):
        components.staff_admin.approve(other, pending.approval_id)
    assert components.identity.staff(agent.staff_id).roles == ["agent"]
    assert decisions(app) == [(pending.approval_id, "expired", "approval expired")]
    stored = components.staff_admin.approvals.approval(pending.approval_id)
    assert stored.status == "expired"


def test_nobody_decides_their_own_request_nor_one_about_themselves(components, clock):
    admin, _ = signed_in(components, clock, ["admin"])
    other, _ = signed_in(components, clock, ["admin"])
    pending = components.staff_admin.change_roles(admin, other.staff_id, revoke=["admin"])
    assert isinstance(pending, PendingApproval)
    with pytest.raises(SelfApproval):
        components.staff_admin.approve(admin, pending.approval_id)
    # The admin being stripped can neither approve nor block (reject) it.
    with pytest.raises(SelfRoleChange):
        components.staff_admin.approve(other, pending.approval_id)
    with pytest.raises(SelfRoleChange):
        components.staff_admin.reject(other, pending.approval_id, reason="I would rather keep it")
    assert components.identity.staff(other.staff_id).roles == ["admin"]


# -- which roles read customer data: from the policy's own tables ------------------------------------------


@pytest.mark.parametrize("role", sorted(ROLE_PERMISSIONS))
def test_data_reading_roles_come_from_the_policy(role):
    sees_a_field = any(by_role[role] != "-" for by_role in role_treatments().values())
    reads = Permission.CUSTOMERS_READ in ROLE_PERMISSIONS[role]
    assert reads_customer_data(role) == (sees_a_field or reads)


def test_data_reading_roles_by_hand():
    # Hand-written, so the function and the test cannot agree by sharing a mistake.
    assert {r for r in ROLE_PERMISSIONS if reads_customer_data(r)} == {
        "agent", "supervisor", "compliance_officer", "dpo", "auditor"}
