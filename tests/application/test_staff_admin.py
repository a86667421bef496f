"""Staff administration (R2.5, R2.8, R2.9), on SQLite and again on PostgreSQL.

Accounts and roles change only through StaffMember events that say who and why;
grants of privileged or data-reading roles wait for a second, different approver;
nobody touches their own roles; break-glass is short, reasoned, recorded and listed.
Accounts made here are activated by their person through a code sent to a real SMTP
server on loopback (R2.9).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pyotp
import pytest

from application.context import RequestContext, acting_as
from application.errors import ValidationFailed
from application.staff_admin import (
    ApprovalAlreadyDecided,
    NotPermitted,
    PendingApproval,
    SelfApproval,
    SelfRoleChange,
    UsernameTaken,
)
from domain.audit import AccessRecord
from domain.errors import DomainError, UnknownRole
from domain.staff import StaffMember
from tests.application.conftest import OPERATOR, make_components, stepped_up
from tests.web.helpers import MovableClock


@pytest.fixture
def components(tmp_path, database_url, smtp):
    built = make_components(tmp_path, database_url, **smtp.settings)
    with acting_as(OPERATOR):
        yield built
    built.close()


@pytest.fixture
def clock(components):
    moving = MovableClock(datetime(2026, 11, 30, 9, 0, 10, tzinfo=UTC))
    components.identity.clock = moving
    return moving


@pytest.fixture
def admin_service(components, clock):
    return components.staff_admin


def signed_in(components, clock, roles, portfolios=(), *, step_up=True):
    """An actor as the API would build it: account, first login, session; stepped up
    (R2.11) unless told otherwise."""
    identity = components.identity
    created = components.staff_admin.add_staff_as_operator(
        username=f"user-{uuid.uuid4().hex[:8]}", display_name="Test Person", roles=list(roles),
        portfolios=list(portfolios),
    )
    started = identity.login(created.username, created.one_time_password)
    totp = pyotp.TOTP(pyotp.parse_uri(started.totp_uri).secret)
    opened = identity.complete_mfa(started.challenge, totp.at(clock.now))
    if step_up:
        return stepped_up(identity, opened.token, totp, clock), opened.token
    return identity.authenticate(opened.token).actor, opened.token


def last_event(app, kind=None):
    """The last event (of class `kind`, when given) with its metadata."""
    for notification in reversed(app.recorder.select_notifications(start=1, limit=100_000)):
        event = app.mapper.to_domain_event(notification)
        if kind is None or isinstance(event, kind):
            return event, app.mapper.metadata(notification)
    raise AssertionError(f"no {kind} event")


def approved(components, requester, approver, **request):
    """An account requested by one person and approved by another: (result, approval id)."""
    pending = components.staff_admin.create_staff(requester, **request)
    assert isinstance(pending, PendingApproval)
    return components.staff_admin.approve(approver, pending.approval_id), pending.approval_id


# -- accounts -----------------------------------------------------------------------------------------


def test_an_approved_agent_is_activated_by_the_person_with_the_mailed_code(components, admin_service, clock,
                                                                           app, smtp):
    admin, _ = signed_in(components, clock, ["admin"])
    officer, _ = signed_in(components, clock, ["security_officer"])
    done, _ = approved(components, admin, officer, username="Agent.Smith", display_name="Agent Smith",
                       roles=["agent"], portfolios=["retail"], email="agent.smith@bank.example")
    assert done["result"] == {"id": done["result"]["id"], "username": "agent.smith", "activation": "sent"}
    event, meta = last_event(app, StaffMember.Enrolled)
    assert meta["actor_id"] == officer.staff_id and meta["session_id"] == officer.session_id
    assert event.email == "agent.smith@bank.example"
    code = smtp.code_for("agent.smith@bank.example")
    started = components.activation.activate(
        "agent.smith", code, "plum-coloured tractor honks at dawn")
    assert started.status == "mfa_enrollment_required" and started.totp_uri
    totp = pyotp.TOTP(pyotp.parse_uri(started.totp_uri).secret)
    opened = components.identity.complete_mfa(started.challenge, totp.at(clock.now))
    assert not opened.must_change_password and opened.recovery_codes
    assert components.identity.authenticate(opened.token).actor.roles == frozenset({"agent"})


@pytest.mark.controls("PCI-DSS-8.2.1")
def test_a_username_is_taken_once(components, admin_service, clock):
    admin, _ = signed_in(components, clock, ["admin"])
    with acting_as(OPERATOR):
        admin_service.add_staff_as_operator(username="dana", display_name="Dana", roles=["agent"])
    with pytest.raises(UsernameTaken):
        admin_service.create_staff(admin, username="DANA", display_name="Another Dana", roles=["agent"],
                                   email="dana2@bank.example")


def test_the_staff_list_carries_no_secrets(components, admin_service, clock):
    admin, _ = signed_in(components, clock, ["admin"])
    listed = admin_service.list_staff(admin)
    assert [s["roles"] for s in listed] == [["admin"]]
    assert not {"password_hash", "totp_secret", "recovery_codes"} & set(listed[0])
    assert listed[0]["mfa_enrolled"] is True and listed[0]["locked_until"] is None


def test_only_staff_managers_create_staff(components, admin_service, clock):
    agent, _ = signed_in(components, clock, ["agent"], ["retail"])
    with pytest.raises(NotPermitted):
        admin_service.create_staff(agent, username="eve", display_name="Eve", roles=["agent"],
                                   email="eve@bank.example")
    with pytest.raises(NotPermitted):
        admin_service.list_staff(agent)


def test_unknown_roles_and_bad_usernames_are_refused_before_anything_waits(components, admin_service, clock):
    admin, _ = signed_in(components, clock, ["admin"])
    with pytest.raises(UnknownRole):
        admin_service.create_staff(admin, username="frank", display_name="Frank", roles=["superuser"],
                                   email="frank@bank.example")
    with pytest.raises(DomainError):
        admin_service.create_staff(admin, username="no spaces please", display_name="X", roles=["admin"],
                                   email="x@bank.example")
    with pytest.raises(DomainError):
        admin_service.create_staff(admin, username="xavier", display_name="X", roles=["admin"],
                                   email="x@bank.example\r\nBcc: thief@evil.example")
    assert admin_service.approvals.approvals() == []


def test_the_operator_path_is_for_the_command_line_only(components, admin_service, clock):
    with acting_as(RequestContext(actor_id="someone", via="api")), pytest.raises(NotPermitted):
        admin_service.add_staff_as_operator(username="gina", display_name="Gina", roles=["admin"])


def test_the_first_admin_signs_in_with_its_totp_and_must_change_its_password(components, admin_service, clock):
    first = admin_service.enrol_first_admin()
    assert components.staff_admin.directory.staff_id_for("admin") == first.staff_id  # findable at login
    started = components.identity.login("admin", first.one_time_password)
    assert started.status == "mfa_required"  # TOTP is already set up: no enrolment step
    totp = pyotp.TOTP(pyotp.parse_uri(first.totp_uri).secret)
    opened = components.identity.complete_mfa(started.challenge, totp.at(clock.now))
    assert opened.must_change_password  # the one-time password is shown once, then replaced
    assert components.identity.authenticate(opened.token).actor.roles == frozenset({"admin"})
    assert len(first.recovery_codes) == 10
    with pytest.raises(UsernameTaken):
        admin_service.enrol_first_admin()


def test_an_api_caller_cannot_bootstrap_an_admin(components, admin_service, clock):
    with acting_as(RequestContext(actor_id="someone", via="api")), pytest.raises(NotPermitted):
        admin_service.enrol_first_admin()
    assert components.staff_admin.directory.staff_id_for("admin") is None


# -- four eyes (R2.9) ----------------------------------------------------------------------------------------


def test_a_privileged_account_waits_for_a_second_person(components, admin_service, clock, app):
    first, _ = signed_in(components, clock, ["admin"])
    second, _ = signed_in(components, clock, ["security_officer"])
    pending = admin_service.create_staff(first, username="harry", display_name="Harry Privileged",
                                         roles=["dpo"], email="harry@bank.example")
    assert isinstance(pending, PendingApproval)
    assert components.identity.directory.staff_id_for("harry") is None  # nothing made yet
    [listed] = admin_service.pending_approvals(second)
    assert listed["summary"] == {"username": "harry", "roles": ["dpo"], "portfolios": [],
                                 "email": "harry@bank.example"}
    assert listed["requested_by"] == first.staff_id
    with pytest.raises(SelfApproval):
        admin_service.approve(first, pending.approval_id)
    done = admin_service.approve(second, pending.approval_id)
    assert done["status"] == "executed" and done["result"]["username"] == "harry"
    assert "one_time_password" not in done["result"] and done["result"]["activation"] == "sent"
    event, meta = last_event(app, StaffMember.Enrolled)
    assert event.roles == ["dpo"]
    assert meta["actor_id"] == second.staff_id
    assert pending.approval_id in meta["purpose"] and first.staff_id in meta["purpose"]
    record, record_meta = last_event(app, AccessRecord.Event)
    assert record.kind == "approval" and record.details["decision"] == "approved"
    assert record_meta["actor_id"] == second.staff_id
    assert admin_service.pending_approvals(second) == []
    with pytest.raises(ApprovalAlreadyDecided):
        admin_service.approve(second, pending.approval_id)


def test_a_pending_display_name_is_sealed_at_rest(components, admin_service, clock):
    admin, _ = signed_in(components, clock, ["admin"])
    admin_service.create_staff(admin, username="iris", display_name="Iris Plantedname", roles=["auditor"],
                               email="iris.plantedname@bank.example")
    with components.events_db.transaction(write=False) as cur:
        cur.execute("SELECT summary, payload FROM auth_approvals")
        summary, payload = cur.fetchone()
    assert b"Plantedname" not in bytes(payload) and "Plantedname" not in summary
    assert b"plantedname" not in bytes(payload) and "plantedname" not in summary


def test_nobody_changes_their_own_roles(components, admin_service, clock):
    admin, _ = signed_in(components, clock, ["admin"])
    for grant in (["security_officer"], ["agent"]):
        with pytest.raises(SelfRoleChange):
            admin_service.change_roles(admin, admin.staff_id, grant=grant)
    assert components.identity.staff(admin.staff_id).roles == ["admin"]


@pytest.mark.controls("PCI-DSS-8.2.4")
def test_data_reading_and_privileged_grants_and_privileged_revokes_wait(components, admin_service, clock, app):
    admin, _ = signed_in(components, clock, ["admin"])
    other_admin, _ = signed_in(components, clock, ["admin"])
    agent, _ = signed_in(components, clock, ["agent"], ["retail"])
    # R2.9: supervisor reads customer data (the policy's tables say so): it waits.
    pending = admin_service.change_roles(admin, agent.staff_id, grant=["supervisor"])
    assert isinstance(pending, PendingApproval)
    assert components.identity.staff(agent.staff_id).roles == ["agent"]
    admin_service.approve(other_admin, pending.approval_id)
    event, meta = last_event(app, StaffMember.RolesChanged)
    assert event.grant == ["supervisor"] and meta["actor_id"] == other_admin.staff_id
    pending = admin_service.change_roles(admin, agent.staff_id, grant=["compliance_officer"], revoke=["supervisor"])
    assert isinstance(pending, PendingApproval)
    admin_service.approve(other_admin, pending.approval_id)
    assert components.identity.staff(agent.staff_id).roles == ["agent", "compliance_officer"]
    # Revoking a privileged role waits too: else one admin strips every other approver.
    pending = admin_service.change_roles(admin, agent.staff_id, revoke=["compliance_officer"])
    assert isinstance(pending, PendingApproval)
    assert components.identity.staff(agent.staff_id).roles == ["agent", "compliance_officer"]
    # Revoking a role that is not privileged is least privilege: at once.
    assert admin_service.change_roles(admin, agent.staff_id, revoke=["agent"])["roles"] == ["compliance_officer"]


def test_the_subject_of_a_grant_cannot_approve_it(components, admin_service, clock):
    requester, _ = signed_in(components, clock, ["admin"])
    subject, _ = signed_in(components, clock, ["security_officer"])
    pending = admin_service.change_roles(requester, subject.staff_id, grant=["compliance_officer"])
    with pytest.raises(SelfRoleChange):
        admin_service.approve(subject, pending.approval_id)


def test_approving_needs_the_approvals_permission(components, admin_service, clock):
    admin, _ = signed_in(components, clock, ["admin"])
    supervisor, _ = signed_in(components, clock, ["supervisor"], ["retail"])
    pending = admin_service.create_staff(admin, username="joan", display_name="Joan", roles=["admin"],
                                         email="joan@bank.example")
    with pytest.raises(NotPermitted):
        admin_service.approve(supervisor, pending.approval_id)
    with pytest.raises(NotPermitted):
        admin_service.pending_approvals(supervisor)


# -- break-glass (R2.8) ----------------------------------------------------------------------------------------


def test_break_glass_opens_one_portfolio_until_it_runs_out(components, admin_service, clock, app):
    supervisor, token = signed_in(components, clock, ["supervisor"], ["retail"])
    grant = admin_service.start_break_glass(supervisor, portfolio="private-banking",
                                            reason="INC-4411 card fraud in progress", minutes=30)
    assert grant["expires_at"] == clock.now + timedelta(minutes=30) and grant["active"]
    actor = components.identity.authenticate(token).actor
    assert actor.portfolios == {"retail", "private-banking"}
    assert actor.break_glass_until == clock.now + timedelta(minutes=30)
    event, meta = last_event(app)
    assert isinstance(event, AccessRecord.Event) and event.kind == "break_glass"
    assert event.details["portfolio"] == "private-banking" and event.details["minutes"] == "30"
    assert meta["purpose"] == "break-glass: INC-4411 card fraud in progress"
    for _ in range(3):  # busy (no idle timeout) until the grant runs out
        assert components.identity.authenticate(token).actor.break_glass_until is not None
        clock.advance(minutes=10)
    actor = components.identity.authenticate(token).actor
    assert actor.portfolios == {"retail"} and actor.break_glass_until is None


def test_two_live_grants_open_both_portfolios_each_until_its_own_end(components, admin_service, clock):
    """Authentication reads the session, the lock and the grants in one statement, one
    row per grant (issue 15 item 6): two grants are two rows of one session, not two
    sessions, and each grant lapses on its own."""
    supervisor, token = signed_in(components, clock, ["supervisor"], ["retail"])
    admin_service.start_break_glass(supervisor, portfolio="corporate", reason="INC-1 fraud call", minutes=15)
    admin_service.start_break_glass(supervisor, portfolio="private", reason="INC-2 fraud call", minutes=45)
    actor = components.identity.authenticate(token).actor
    assert actor.portfolios == {"retail", "corporate", "private"}
    assert actor.break_glass_until == clock.now + timedelta(minutes=45)
    for _ in range(2):  # busy (no idle timeout) past the first grant's end
        clock.advance(minutes=8)
        actor = components.identity.authenticate(token).actor
    assert actor.portfolios == {"retail", "private"}
    assert actor.break_glass_until == clock.now + timedelta(minutes=29)


def test_break_glass_needs_a_reason_at_most_sixty_minutes_and_the_permission(components, admin_service, clock):
    supervisor, _ = signed_in(components, clock, ["supervisor"], ["retail"])
    agent, _ = signed_in(components, clock, ["agent"], ["retail"])
    with pytest.raises(ValidationFailed):
        admin_service.start_break_glass(supervisor, portfolio="sme", reason="long", minutes=61)
    with pytest.raises(ValidationFailed):
        admin_service.start_break_glass(supervisor, portfolio="sme", reason="zero", minutes=0)
    with pytest.raises(DomainError):
        admin_service.start_break_glass(supervisor, portfolio="sme", reason="   ", minutes=5)
    with pytest.raises(NotPermitted):
        admin_service.start_break_glass(agent, portfolio="sme", reason="curious", minutes=5)
    assert admin_service.break_glass.grants() == []


def test_break_glass_grants_are_listed_for_review(components, admin_service, clock):
    supervisor, _ = signed_in(components, clock, ["supervisor"], ["retail"])
    officer, _ = signed_in(components, clock, ["security_officer"])
    agent, _ = signed_in(components, clock, ["agent"], ["retail"])
    admin_service.start_break_glass(supervisor, portfolio="sme", reason="INC-1", minutes=1)
    clock.advance(minutes=2)  # within the step-up's 5 minutes (R2.11)
    admin_service.start_break_glass(supervisor, portfolio="corporate", reason="INC-2", minutes=10)
    listed = admin_service.break_glass_grants(officer)
    assert [(g["portfolio"], g["reason"], g["active"]) for g in listed] == [
        ("corporate", "INC-2", True), ("sme", "INC-1", False)]
    with pytest.raises(NotPermitted):
        admin_service.break_glass_grants(agent)
    with components.events_db.transaction(write=False) as cur:
        cur.execute("SELECT reason FROM auth_break_glass")
        assert all(b"INC-" not in bytes(row[0]) for row in cur.fetchall())  # sealed at rest


# -- refusals are recorded (R3.2, PCI DSS 10.2.1.2) -----------------------------------------------------


def refusals_since(app, position):
    """The access records written after `position`, with who they were written for."""
    found = []
    for notification in app.recorder.select_notifications(start=position + 1, limit=100_000):
        event = app.mapper.to_domain_event(notification)
        if isinstance(event, AccessRecord.Event) and event.kind == "denied":
            found.append((event.details["operation"], event.details["reason"],
                          app.mapper.metadata(notification)["actor_id"]))
    return found


def as_api(actor):
    return acting_as(RequestContext(actor_id=actor.staff_id, via="api", session_id=actor.session_id))


def test_an_agent_minting_accounts_or_roles_is_refused_and_recorded(components, admin_service, clock, app):
    """Attack: privilege escalation from a low-privilege seat (an insider, or a stolen
    agent session) by creating an admin account or granting a role. Each attempt is
    refused and leaves a denied access record naming the agent, so the monitoring
    and the audit trail see the probe, not just its failure."""
    agent, _ = signed_in(components, clock, ["agent"], ["retail"])
    colleague, _ = signed_in(components, clock, ["agent"], ["retail"])
    before = app.recorder.max_notification_id()
    with as_api(agent):
        with pytest.raises(NotPermitted):
            admin_service.create_staff(agent, username="mallory", display_name="Mallory", roles=["admin"],
                                       email="mallory@bank.example")
        with pytest.raises(NotPermitted):
            admin_service.change_roles(agent, colleague.staff_id, grant=["supervisor"])
        with pytest.raises(NotPermitted):
            admin_service.list_staff(agent)
        with pytest.raises(NotPermitted):
            admin_service.pending_approvals(agent)
    assert refusals_since(app, before) == [
        ("staff:create", "permission", agent.staff_id),
        ("staff:change_roles", "permission", agent.staff_id),
        ("staff:list", "permission", agent.staff_id),
        ("approvals:list", "permission", agent.staff_id),
    ]
    assert components.identity.directory.staff_id_for("mallory") is None
    assert admin_service.approvals.approvals() == []


def test_self_escalation_and_self_approval_are_refused_and_recorded(components, admin_service, clock, app):
    """Attack: one person granting themselves a role, or approving their own request,
    to get around the four-eyes rule (R2.9). Refused and recorded under their name."""
    admin, _ = signed_in(components, clock, ["admin"])
    before = app.recorder.max_notification_id()
    with as_api(admin):
        with pytest.raises(SelfRoleChange):
            admin_service.change_roles(admin, admin.staff_id, grant=["auditor"])
        pending = admin_service.create_staff(admin, username="ivan", display_name="Ivan", roles=["dpo"],
                                             email="ivan@bank.example")
        with pytest.raises(SelfApproval):
            admin_service.approve(admin, pending.approval_id)
    assert refusals_since(app, before) == [
        ("staff:change_roles", "self_role_change", admin.staff_id),
        ("approvals:approve", "self_approval", admin.staff_id),
    ]
